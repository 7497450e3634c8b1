"""`assistant tune`: fit the relevance model (and the answer-shape classifier) from labelled and synthetic data.

Relevance pairs come from two sources:
- the *tune* splits of the eval question sets: each question is planned as the pipeline plans it (rules, no
  model), its candidates retrieved as the pipeline retrieves them, and each candidate labelled by whether it is
  an expected paper (every candidate of a trap is a negative);
- synthetic inverse-cloze questions made from the corpus: a sentence of an abstract, with a share of its words
  dropped so it is not a verbatim copy, asked of its own paper; its hard negatives are the other candidates the
  retriever returns for it (BM25 and dense neighbours).

The held-out splits are scored, never fit: top-1 accuracy against the retriever's own order, MRR, and the
calibration (reliability by bins and the precision of the chosen threshold), all stored with the weights and
printed. The threshold is chosen on the tune questions: the probability of the best candidate below which the
question is judged unanswerable, maximising answer/refuse accuracy there.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .relevance import (
    ANSWERABLE_FEATURES,
    FEATURES,
    RELEVANCE_FILE,
    Candidate,
    Linear,
    RelevanceModel,
    candidate_features,
    names_its_subject,
    question_features,
)

POOL = 20  # candidates scored per question: the retriever's fused top (what the pipeline reranks)
SYNTHETIC_PER_PAPER = 2
DROP = 0.3  # share of a synthetic question's words dropped
SYNTHETIC_WEIGHT = 0.3  # weight of a synthetic pair against a labelled one
KEEP_ANSWERABLE = 0.95  # the threshold keeps this share of the tune questions that the corpus answers
JUDGED_KINDS = ("factoid", "summary")  # plans whose refusal the answerability model decides
PAIR_THRESHOLD = 0.5  # P(relevant) from which a candidate is one of the papers the question is about
ANSWERABLE_TYPES = {"factoid", "comparative", "metadata", "followup", "survey", "listing", "summary", "casual"}


@dataclass
class Group:
    """One question's candidates: features, labels, whether it is answerable, where it came from."""

    qid: str
    source: str  # "tune" | "holdout" | "synthetic"
    type: str
    rows: np.ndarray
    labels: np.ndarray
    ids: list[str]
    answerable: bool
    question: str = ""
    names: list[str] = field(default_factory=list)
    kind: str = ""  # the plan's kind: the answerability model is fit on the questions it judges


def _norm(title: str) -> str:
    return " ".join(title.casefold().split())


def question_groups(retriever, datasets: list[Path], progress=None) -> list[Group]:
    """A `Group` per question of the datasets (answerable ones whose expected paper the pool holds, and traps)."""
    from .plan import PlanError, gather, plan_question

    by_title: dict[str, set[str]] = {}
    for p in retriever.papers.values():
        by_title.setdefault(_norm(p.title), set()).add(p.id)
    rows = []
    for path in datasets:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    groups = []
    for i, r in enumerate(rows):
        if progress:
            progress(i, len(rows))
        try:
            plan = plan_question(r["question"], r.get("history", []), retriever)
        except PlanError:
            continue
        expected = set().union(*(by_title.get(_norm(t), set()) for t in r.get("expected_titles", [])))
        answerable = r["type"] in ANSWERABLE_TYPES
        if answerable and not expected:
            continue
        group = _group(retriever, plan, expected, pool_of(retriever, plan, gather))
        if group is None:
            continue
        ids, feats = group
        labels = np.asarray([1 if pid in expected else 0 for pid in ids])
        if answerable and not labels.any():
            # retrieval missed the expected paper: no pair says anything about the ranking
            continue
        groups.append(
            Group(
                r["id"],
                r.get("split") or "holdout",
                r["type"],
                feats,
                labels,
                ids,
                bool(answerable and labels.any()),
                r["question"],
                list(plan.names),
                plan.kind,
            )
        )
    return groups


def pool_of(retriever, plan, gather) -> list:
    """The candidates the pipeline scores for a plan: the retriever's fused top `POOL`."""
    return gather(plan, retriever, POOL, depth=POOL, rerank=False).hits


def _group(retriever, plan, expected, hits):
    if not hits:
        return None
    cands = candidate_features(retriever, plan.query, hits, plan.names, plan.focus, plan.discussed)
    feats = np.asarray([[c.features[f] for f in FEATURES] for c in cands], dtype=np.float64)
    return [c.paper_id for c in cands], feats


def _synthetic_group(retriever, qid: str, kind: str, question: str, positive: str) -> Group | None:
    """A synthetic question planned and retrieved as the pipeline does, its one positive paper labelled; None when
    the planner rejects it ("only states a filter") or the pool misses the paper."""
    from .plan import PlanError, gather, plan_question

    try:
        plan = plan_question(question, [], retriever)
    except PlanError:
        return None
    got = _group(retriever, plan, {positive}, pool_of(retriever, plan, gather))
    if got is None:
        return None
    ids, feats = got
    labels = np.asarray([1 if pid == positive else 0 for pid in ids])
    if not labels.any():
        return None
    return Group(qid, "synthetic", kind, feats, labels, ids, True, question, plan.names, plan.kind)


def synthetic_groups(retriever, per_paper: int = SYNTHETIC_PER_PAPER, seed: int = 13, progress=None) -> list[Group]:
    """Inverse-cloze questions: a sentence of each abstract (words dropped), its paper the positive."""
    from .text import split_sentences

    rng = random.Random(seed)
    groups = []
    papers = sorted(retriever.papers.values(), key=lambda p: p.id)
    for i, paper in enumerate(papers):
        if progress:
            progress(i, len(papers))
        sentences = [s for s in split_sentences(paper.abstract) if 8 <= len(s.split()) <= 60]
        for k, sentence in enumerate(rng.sample(sentences, min(per_paper, len(sentences)))):
            words = sentence.split()
            kept = [w for w in words if rng.random() > DROP] or words
            query = " ".join(kept)
            group = _synthetic_group(retriever, f"syn-{paper.id}-{k}", "synthetic", query, paper.id)
            if group is not None:
                groups.append(group)
    return groups


def synthetic_premises(retriever, seed: int = 11, progress=None) -> list[Group]:
    """Questions that name a paper's own method and ask it about another paper's subject ("How does DoViT handle
    <another paper's title>?"): the named paper is the positive, though the rest of the question fits the other
    paper better. People ask so when a premise is false or a method is used outside its paper's task; without
    them the tune questions rarely show the model that a named method decides the paper (there, the owner is
    already first in the fused ranking)."""
    from .names import method_name

    rng = random.Random(seed)
    papers = sorted(retriever.papers.values(), key=lambda p: p.id)
    named = [(p, n) for p in papers if (n := method_name(p)) and retriever.name_index.owners(n, by_title=False)]
    out = []
    for i, (paper, name) in enumerate(named):
        if progress:
            progress(i, len(named))
        other = rng.choice([p for p in papers if p.id != paper.id])
        question = f"How does {name} handle {other.title.split(':')[-1].strip().lower()}?"
        group = _synthetic_group(retriever, f"premise-{paper.id}", "premise", question, paper.id)
        if group is not None:
            out.append(group)
    return out


def synthetic_traps(retriever, groups: list[Group], seed: int = 7) -> list[Group]:
    """Near-miss questions made from the tune questions that name a paper's own method: the name swapped for one the
    corpus only mentions (a baseline no paper presents as its own) or for a version of it the corpus lacks. The
    corpus does not answer them: every candidate is a negative, and the question a trap."""
    from .plan import PlanError, gather, plan_question

    index = retriever.name_index
    rng = random.Random(seed)
    unowned = sorted(
        {
            index.surface[k]
            for k in index.surface
            if index.by_key.get(k) and 1 <= len(index.by_key[k]) <= 4 and not index.owners(index.surface[k], False)
        }
    )
    out = []
    for g in groups:
        if g.source != "tune" or not g.answerable:
            continue
        owned = [n for n in g.names if index.owners(n, by_title=False) and n in g.question]
        if not owned or not unowned:
            continue
        name = owned[0]
        for variant in (rng.choice(unowned), _next_version(name)):
            if not variant or index.papers_with(variant) and index.owners(variant, by_title=False):
                continue
            question = g.question.replace(name, variant)
            try:
                plan = plan_question(question, [], retriever)
            except PlanError:
                continue
            got = _group(retriever, plan, set(), pool_of(retriever, plan, gather))
            if got is None:
                continue
            ids, feats = got
            out.append(
                Group(
                    f"trap-{g.qid}-{variant}",
                    "synthetic",
                    "trap",
                    feats,
                    np.zeros(len(ids), dtype=int),
                    ids,
                    False,
                    question,
                    list(plan.names),
                    plan.kind,
                )
            )
    return out


def _next_version(name: str) -> str:
    """A later version of a name than any the question gives ("GhostNetV2" -> "GhostNetV7", "DoViT" -> "DoViT-3")."""
    import re

    m = re.search(r"(\d+)$", name)
    return name[: m.start()] + str(int(m.group(1)) + 5) if m else f"{name}-3"


def _stack(groups: list[Group]) -> tuple[np.ndarray, np.ndarray]:
    return np.vstack([g.rows for g in groups]), np.concatenate([g.labels for g in groups])


def _standardised_lr(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None, c: float) -> Linear:
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    lr = LogisticRegression(C=c, max_iter=5000)
    lr.fit((x - mean) / scale, y, sample_weight=weights)
    return Linear(
        [float(v) for v in lr.coef_[0]], float(lr.intercept_[0]), [float(v) for v in mean], [float(v) for v in scale]
    )


def fit(groups: list[Group], c: float = 1.0, synthetic_weight: float = SYNTHETIC_WEIGHT) -> RelevanceModel:
    """The pair model: every candidate of every group one example; a synthetic group's pairs weigh less (they are
    easier than people's questions)."""
    x, y = _stack(groups)
    w = np.concatenate([np.full(len(g.labels), synthetic_weight if g.source == "synthetic" else 1.0) for g in groups])
    lin = _standardised_lr(x, y, w, c)
    return RelevanceModel(coef=lin.coef, intercept=lin.intercept, mean=lin.mean, scale=lin.scale)


def question_rows(model: RelevanceModel, retriever, groups: list[Group]) -> np.ndarray:
    """`ANSWERABLE_FEATURES` of each group, its candidates scored by ``model``."""
    rows = []
    for g in groups:
        p = model.probabilities(g.rows)
        cands = [
            Candidate(pid, dict(zip(FEATURES, row, strict=True)), float(q))
            for pid, row, q in zip(g.ids, g.rows.tolist(), p.tolist(), strict=True)
        ]
        cands.sort(key=lambda c: -c.probability)
        f = question_features(retriever, g.names, cands)
        rows.append([f[k] for k in ANSWERABLE_FEATURES])
    return np.asarray(rows, dtype=np.float64)


def _subject_named(model: RelevanceModel, retriever, g: Group) -> bool:
    p = model.probabilities(g.rows)
    return names_its_subject(retriever.name_index, g.ids[int(np.argmax(p))], g.names)


def _decide(model: RelevanceModel, retriever, groups: list[Group]) -> np.ndarray:
    """P(answerable) as the judge uses it: 0 when the chosen paper's evidence refuses, 1 when the chosen paper
    presents a method the question names (its evidence decides), else the answerability model's."""
    p = model.answerable.probabilities(question_rows(model, retriever, groups))
    p = np.where([_subject_named(model, retriever, g) for g in groups], 1.0, p)
    return np.where([refused_by_evidence(model, retriever, g) for g in groups], 0.0, p)


def refused_by_evidence(model: RelevanceModel, retriever, g: Group) -> bool:
    """Whether the chosen paper's own evidence refuses the question anyway (`judge.paper_lacks`): such a trap
    teaches the answerability model nothing it must decide."""
    from .evidence import usable_sentences
    from .judge import paper_lacks

    p = model.probabilities(g.rows)
    order = np.argsort(-p)
    subject = [retriever.papers[g.ids[i]] for i in order if p[i] >= PAIR_THRESHOLD] or [
        retriever.papers[g.ids[order[0]]]
    ]
    lacks = paper_lacks(
        g.question,
        g.question,
        g.names,
        subject,
        retriever.name_index,
        lambda paper: usable_sentences(paper.abstract, ""),
    )
    return lacks is not None


def fit_answerable(model: RelevanceModel, retriever, groups: list[Group], c: float = 1.0) -> Linear:
    groups = [
        g
        for g in groups
        if (g.answerable or not refused_by_evidence(model, retriever, g)) and not _subject_named(model, retriever, g)
    ]
    x = question_rows(model, retriever, groups)
    y = np.asarray([1 if g.answerable else 0 for g in groups])
    return _standardised_lr(x, y, None, c)


def choose_threshold(model: RelevanceModel, retriever, groups: list[Group]) -> tuple[float, dict]:
    """The P(answerable) below which a question is refused, chosen on the tune questions: the highest that still
    answers `KEEP_ANSWERABLE` of the answerable ones (a false refusal costs a researcher more than a trap answered
    with its evidence shown), so it refuses as many traps as that allows."""
    p = _decide(model, retriever, groups)
    ans = np.asarray([g.answerable for g in groups])
    best = (0.05, 0.0, 0.0)
    for t in np.round(np.arange(0.05, 0.96, 0.01), 2):
        kept = float((p[ans] >= t).mean()) if ans.any() else 1.0
        refused = float((p[~ans] < t).mean()) if (~ans).any() else 0.0
        if kept >= KEEP_ANSWERABLE:
            best = (float(t), kept, refused)
    return best[0], {
        "rule": f"highest threshold keeping >= {KEEP_ANSWERABLE} of tune answerable",
        "tune_kept": round(best[1], 4),
        "tune_traps_refused": round(best[2], 4),
    }


def answerable_scores(model: RelevanceModel, retriever, groups: list[Group], threshold: float = 0.5) -> dict:
    """Answerable questions kept and traps refused at P(answerable) ≥ ``threshold``, per source."""
    if not groups or model.answerable is None:
        return {}
    p = _decide(model, retriever, groups)
    ans = np.asarray([g.answerable for g in groups])
    out = {
        "answerable": int(ans.sum()),
        "answerable_kept": round(float((p[ans] >= threshold).mean()), 4) if ans.any() else None,
        "traps": int((~ans).sum()),
        "traps_refused": round(float((p[~ans] < threshold).mean()), 4) if (~ans).any() else None,
    }
    return out


def ranking_scores(model: RelevanceModel, groups: list[Group]) -> dict:
    """Top-1 accuracy and MRR of the model and of the retriever's fused order, on answerable groups."""
    top1 = base1 = mrr = base_mrr = 0.0
    n = 0
    for g in groups:
        if not g.answerable:
            continue
        n += 1
        p = model.probabilities(g.rows)
        order = np.argsort(-p, kind="stable")
        ranks = [i for i, j in enumerate(order) if g.labels[j]]
        top1 += g.labels[order[0]] == 1
        mrr += 1.0 / (1 + ranks[0])
        base_ranks = [i for i in range(len(g.labels)) if g.labels[i]]
        base1 += g.labels[0] == 1
        base_mrr += 1.0 / (1 + base_ranks[0])
    if not n:
        return {"n": 0}
    return {
        "n": n,
        "top1": round(top1 / n, 4),
        "mrr": round(mrr / n, 4),
        "retriever_top1": round(base1 / n, 4),
        "retriever_mrr": round(base_mrr / n, 4),
    }


def calibration(model: RelevanceModel, groups: list[Group], threshold: float, bins: int = 5) -> dict:
    """Reliability of the pair probabilities (mean predicted vs observed per bin), the expected calibration error,
    and the precision/recall of ``p >= threshold`` over the pairs."""
    if not groups:
        return {}
    x, y = _stack(groups)
    p = model.probabilities(x)
    edges = np.linspace(0, 1, bins + 1)
    table, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if not m.any():
            continue
        pred, obs = float(p[m].mean()), float(y[m].mean())
        ece += m.mean() * abs(pred - obs)
        table.append(
            {"bin": f"{lo:.1f}-{hi:.1f}", "n": int(m.sum()), "predicted": round(pred, 3), "observed": round(obs, 3)}
        )
    sel = p >= threshold
    return {
        "pairs": int(len(y)),
        "ece": round(float(ece), 4),
        "reliability": table,
        "threshold_precision": round(float(y[sel].mean()), 4) if sel.any() else None,
        "threshold_recall": round(float(sel[y == 1].mean()), 4) if (y == 1).any() else None,
    }


def train_relevance(
    retriever, datasets: list[Path], synthetic: int = SYNTHETIC_PER_PAPER, progress=None, groups=None
) -> dict:
    """Fit on tune + synthetic, score the holdout; the artefact and its report. ``groups`` (question, synthetic and
    trap groups already built) skips building them."""
    import hashlib

    if groups is None:
        questions = question_groups(retriever, datasets, progress)
        syn = synthetic_groups(retriever, synthetic, progress=progress) if synthetic else []
        syn += synthetic_premises(retriever, progress=progress) if synthetic else []
        traps = synthetic_traps(retriever, questions)
    else:
        questions, syn, traps = groups
    tune = [g for g in questions if g.source == "tune"]
    held = [g for g in questions if g.source != "tune"]
    # the pair model ranks the candidates of answerable questions; whether to answer at all is the next model
    model = fit([g for g in tune + syn if g.answerable])
    # the answerability model judges the questions about one paper (surveys and comparisons have their own checks)
    judged = [g for g in tune + traps if g.kind in JUDGED_KINDS]
    model.answerable = fit_answerable(model, retriever, judged)
    threshold, chosen = choose_threshold(model, retriever, judged)
    corpus = hashlib.sha256("\n".join(sorted(retriever.papers)).encode()).hexdigest()[:16]
    data = hashlib.sha256(b"".join(Path(d).read_bytes() for d in datasets)).hexdigest()[:16]
    model.meta = {
        "threshold": threshold,
        "threshold_choice": chosen,
        "pair_threshold": PAIR_THRESHOLD,
        "corpus": corpus,
        "datasets": [Path(d).name for d in datasets],
        "datasets_sha256": data,
        "pairs": {
            "tune_questions": len(tune),
            "synthetic_questions": len(syn),
            "synthetic_traps": len(traps),
            "holdout_questions": len(held),
        },
        "tune": {
            **ranking_scores(model, tune),
            **answerable_scores(model, retriever, [g for g in tune if g.kind in JUDGED_KINDS], threshold),
        },
        "holdout": {
            **ranking_scores(model, held),
            **answerable_scores(model, retriever, [g for g in held if g.kind in JUDGED_KINDS], threshold),
            "calibration": calibration(model, [g for g in held if g.answerable], PAIR_THRESHOLD),
        },
        "weights": dict(zip(FEATURES, [round(c, 4) for c in model.coef], strict=True)),
        "answerable_weights": dict(zip(ANSWERABLE_FEATURES, [round(c, 4) for c in model.answerable.coef], strict=True)),
    }
    return {"model": model, "meta": model.meta, "path": RELEVANCE_FILE}
