"""Metrics of the eval suite: retrieval, citations, answers, refusals, latency and tokens.

Every per-question function returns ``None`` when the metric does not apply to the question (no
expected titles, no citations, a refused answer...); aggregates average only the questions where
it applies, and say over how many (``support``). The functions take plain values so that they can
be tested on hand-made cases; ``assistant.evaluation.runner`` feeds them the assistant's answers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from assistant.cite import MARKER, SourceText, cited_clauses, content_words, unsupported_fact

TYPES = (
    "factoid",
    "comparative",
    "metadata",
    "unanswerable",
    "followup",
    # the kinds a researcher asks beyond those (evals/datasets/kinds.jsonl)
    "survey",
    "listing",
    "summary",
    "casual",
    "trap",
)
# Types whose correct answer is the refusal: questions about what the corpus does not hold.
UNANSWERABLE = frozenset({"unanswerable", "trap"})


def is_answerable(question_type: str) -> bool:
    return question_type not in UNANSWERABLE


# The flat metric names of metrics.json, in report order (names fixed by the issue).
RETRIEVAL_KEYS = ("retrieval.hit@5", "retrieval.recall@5", "retrieval.mrr", "retrieval.ndcg@10")
ANSWER_KEYS = (
    "citation.precision",
    "citation.recall",
    "answer.must_include",
    "answer.faithfulness",
    "refusal.accuracy",
    "refusal.false_refusals",
    # comparisons: share of the expected papers the plan picked for the compared targets (a described target
    # resolved to the wrong paper scores 0 for it)
    "comparison.targets",
    # a question that asks for a length ("in two sentences"): the answer's prose keeps it (1) or not (0)
    "answer.length",
    # follow-ups with ``not_titles``: 1 when the answer cites a paper the question excludes ("another paper")
    "answer.wrong_paper",
)
SCORE_KEYS = RETRIEVAL_KEYS + ANSWER_KEYS  # averaged over the questions they apply to
COST_KEYS = ("latency.p50_s", "latency.p95_s", "tokens.mean")
METRIC_KEYS = SCORE_KEYS + COST_KEYS
# Lower is better for these; higher for every other metric.
LOWER_IS_BETTER = frozenset(
    {"refusal.false_refusals", "answer.wrong_paper", "latency.p50_s", "latency.p95_s", "tokens.mean"}
)

# Thresholds of the transparent faithfulness check (see evals/README.md).
LEXICAL_SUPPORT = 0.5  # share of a sentence's content words found in its cited abstract (as in assistant.cite)
EMBEDDING_SUPPORT = 0.7  # ...or cosine similarity of the sentence to one abstract sentence (all-MiniLM-L6-v2)
MIN_CONTENT_WORDS = 3  # shorter units ("Yes.", "In summary:") are not claims
# A question passes a fractional metric when its score reaches this.
PASS_AT = {"answer.faithfulness": 0.8}


def norm_title(title: str) -> str:
    return " ".join(title.casefold().split())


_norm = norm_title  # the name this module used before


def _norm_text(text: str) -> str:
    """Lower-cased, LaTeX-free (``39.9\\%`` -> ``39.9%``), whitespace-collapsed text for substring matching."""
    text = text.replace("\\%", "%").replace("$", "").replace("\\", "")
    return " ".join(text.casefold().split())


# -- retrieval -----------------------------------------------------------------------------------
def retrieval_scores(ranked_titles: list[str], expected_titles: list[str], k: int = 5) -> dict[str, float]:
    """hit@k, recall@k, reciprocal rank and nDCG@10 of one ranked list against the expected titles."""
    expected = {norm_title(t) for t in expected_titles}
    ranked = [norm_title(t) for t in ranked_titles]
    rel = [1 if t in expected else 0 for t in ranked]
    hit = float(any(rel[:k]))
    recall = len(expected & set(ranked[:k])) / len(expected) if expected else 0.0
    rr = next((1.0 / (i + 1) for i, r in enumerate(rel) if r), 0.0)
    dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel[:10]))
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(expected), 10)))
    return {f"hit@{k}": hit, f"recall@{k}": recall, "mrr": rr, "ndcg@10": dcg / ideal if ideal else 0.0}


def retrieval_metrics(ranked_titles: list[str], expected_titles: list[str]) -> dict[str, float | None]:
    """The four ``retrieval.*`` scores of one question; all ``None`` when nothing is expected (unanswerable)."""
    if not expected_titles:
        return dict.fromkeys(RETRIEVAL_KEYS)
    s = retrieval_scores(ranked_titles, expected_titles, k=5)
    return {
        "retrieval.hit@5": s["hit@5"],
        "retrieval.recall@5": s["recall@5"],
        "retrieval.mrr": s["mrr"],
        "retrieval.ndcg@10": s["ndcg@10"],
    }


# -- citations -----------------------------------------------------------------------------------
def citation_precision(cited: Sequence[tuple[str, bool]], expected_titles: Iterable[str]) -> float | None:
    """Share of cited papers that are expected, or that really support what cites them.

    ``cited`` holds one ``(title, grounded)`` pair per cited paper; ``grounded`` says the paper contains the
    evidence quoted for it and supports a sentence that cites it. ``None`` when nothing is cited.
    """
    if not cited:
        return None
    expected = {norm_title(t) for t in expected_titles}
    good = sum(1 for title, grounded in cited if norm_title(title) in expected or grounded)
    return good / len(cited)


def citation_recall(cited_titles: Iterable[str], expected_titles: Sequence[str]) -> float | None:
    """Share of expected papers that the answer cites; ``None`` when nothing is expected."""
    expected = {norm_title(t) for t in expected_titles}
    if not expected:
        return None
    return len(expected & {norm_title(t) for t in cited_titles}) / len(expected)


# -- answer text ---------------------------------------------------------------------------------
def must_include(text: str, needles: Sequence[str]) -> tuple[float | None, list[str]]:
    """(share of the must-include strings found case-insensitively in the answer, the missing ones)."""
    if not needles:
        return None, []
    hay = _norm_text(text)
    missing = [n for n in needles if _norm_text(n) not in hay]
    return 1 - len(missing) / len(needles), missing


_SENT_END = re.compile(r"[.!?](?:\s*\[\d[\d,; ]*\])*\s+")
_EMPTY_CELLS = {"not stated in the abstract", "–", "-", "not found in the corpus"}  # table cells that claim nothing
_TABLE_SEPARATOR = re.compile(r"^\|?[\s:|-]+\|?$")


def answer_units(text: str) -> list[str]:
    """The answer's claims: table rows and list items per line, prose per sentence (markers kept).

    Table header and separator rows are dropped; so are units with fewer than three content words that cite
    nothing ("Yes.", "In summary:").
    """
    lines = text.splitlines()
    units: list[str] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("|"):
            if _TABLE_SEPARATOR.match(stripped):
                continue
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if following.startswith("|") and _TABLE_SEPARATOR.match(following) and "-" in following:
                continue  # header row
            # a cell that says the abstract states nothing on an aspect claims nothing: the row's other cells do
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            kept = [c for c in cells if MARKER.sub("", c).strip() not in _EMPTY_CELLS]
            markers = MARKER.findall(stripped)
            row = "| " + " | ".join(kept) + " |"
            if len(kept) > 1:  # the label and at least one cell that says something
                units.append(row if not markers or f"[{markers[-1]}]" in kept[-1] else row[:-1] + f"[{markers[-1]}] |")
            continue
        elif stripped.startswith(("-", "*", ">")) or re.match(r"^\d+\.", stripped):
            units.append(stripped)
        else:
            start = 0
            for m in _SENT_END.finditer(stripped + " "):
                units.append(stripped[start : m.end()].strip())
                start = m.end()
            if start < len(stripped):
                units.append(stripped[start:].strip())
    # a unit that cites something is a claim however short ("[2][3]" cites papers for nothing); others need words,
    # and a lead-in that cites nothing ("Quoted from the abstracts:", "4 papers match …:") introduces, not claims
    return [
        u
        for u in units
        if MARKER.search(u) or (len(content_words(u)) >= MIN_CONTENT_WORDS and not u.rstrip().endswith(":"))
    ]


def markers(unit: str) -> list[int]:
    """The source numbers a unit cites, in order, without repeats."""
    found = [int(n) for m in MARKER.finditer(unit) for n in re.split(r"\s*[,;]\s*", m.group(1))]
    return list(dict.fromkeys(found))


@dataclass
class SentenceCheck:
    """One answer claim and whether its cited sources support it."""

    text: str
    cited: list[int]
    supported: bool
    lexical: float = 0.0  # best share of content words found in one cited abstract
    cosine: float | None = None  # best embedding similarity to one cited abstract sentence (only if lexical fails)
    judge: str | None = None  # the LLM judge's verdict, when a judge was used
    evidence: str = ""
    by_source: dict[int, bool] = field(default_factory=dict)  # cited source n -> supports this claim

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "cited": self.cited,
            "supported": self.supported,
            "lexical": round(self.lexical, 3),
            "cosine": None if self.cosine is None else round(self.cosine, 3),
            "judge": self.judge,
            "evidence": self.evidence,
        }


Embed = Callable[[list[str]], list[list[float]]]


class SupportChecker:
    """The transparent faithfulness check: lexical overlap with a cited abstract, then embedding similarity.

    A claim is supported by a source when at least half of its content words occur in one sentence of the
    abstract (or 80% of them in the whole abstract), as in ``assistant.cite``; failing that, when its
    embedding is at least ``EMBEDDING_SUPPORT`` cosine-similar to one sentence of the abstract (if an
    embedding function is given).
    """

    def __init__(
        self,
        embed: Embed | None = None,
        lexical: float = LEXICAL_SUPPORT,
        cosine: float = EMBEDDING_SUPPORT,
        names: Callable[[str], list[str]] | None = None,
    ):
        self.embed = embed
        self.names = names  # the corpus's name finder: names a claim states must be in its source (as the pipeline)
        self.lexical_threshold = lexical
        self.cosine_threshold = cosine
        self._vectors: dict[str, list[tuple[str, list[float]]]] = {}

    @property
    def method(self) -> str:
        how = f"lexical (content-word overlap >= {self.lexical_threshold})"
        if self.embed is not None:
            how += f" or embedding (cosine >= {self.cosine_threshold})"
        return how

    def _sentence_vectors(self, source: SourceText) -> list[tuple[str, list[float]]]:
        key = source.paper_id or source.abstract
        if key not in self._vectors:
            sents = [s for s, _ in source.sentences()]
            self._vectors[key] = list(zip(sents, _unit(self.embed(sents)), strict=True)) if sents else []
        return self._vectors[key]

    def support(self, claim: str, source: SourceText) -> tuple[bool, float, float | None, str]:
        """(supported, lexical score, cosine or None when not computed, best evidence sentence). A claim stating a
        number, a name or a negation its source does not is unsupported whatever its overlap (as in the pipeline:
        `cite.unsupported_fact`)."""
        lexical, evidence = source.support(claim)
        if not content_words(claim):  # only markers or punctuation: nothing is claimed, nothing is supported
            return False, 0.0, None, ""
        if unsupported_fact(claim, f"{source.abstract} {source.title}", self.names):
            return False, lexical, None, evidence
        if lexical >= self.lexical_threshold or self.embed is None:
            return lexical >= self.lexical_threshold, lexical, None, evidence
        vectors = self._sentence_vectors(source)
        if not vectors:
            return False, lexical, None, evidence
        claim_vec = _unit(self.embed([claim]))[0]
        best, best_sent = max(((sum(a * b for a, b in zip(claim_vec, v, strict=True)), s) for s, v in vectors))
        return best >= self.cosine_threshold, lexical, best, best_sent if best >= self.cosine_threshold else evidence

    def check(self, unit: str, sources: dict[int, SourceText]) -> SentenceCheck:
        clauses = cited_clauses(unit) if not unit.lstrip().startswith("|") else []
        if len(clauses) > 1:  # "A does X [1], while B does Y [2]": each clause by the sources it cites
            parts = [
                self.check(f"{claim} " + "".join(f"[{n}]" for n in numbers), sources) for claim, numbers in clauses
            ]
            parts = [p for p in parts if len(content_words(MARKER.sub("", p.text))) >= 2] or parts
            merged = SentenceCheck(text=unit, cited=markers(unit), supported=all(p.supported for p in parts))
            for p in parts:
                merged.by_source.update(p.by_source)
            merged.lexical = min(p.lexical for p in parts)
            merged.evidence = parts[0].evidence
            cosines = [p.cosine for p in parts if p.cosine is not None]
            merged.cosine = min(cosines) if cosines else None
            return merged
        cited = markers(unit)
        claim = MARKER.sub("", unit).strip(" |")
        check = SentenceCheck(text=unit, cited=cited, supported=False)
        best_cos: float | None = None
        for n in cited:
            source = sources.get(n)
            if source is None:
                continue
            ok, lexical, cosine, evidence = self.support(claim, source)
            check.by_source[n] = ok
            if lexical > check.lexical or (ok and not check.supported):
                check.lexical = max(check.lexical, lexical)
                check.evidence = evidence
            if cosine is not None:
                best_cos = cosine if best_cos is None else max(best_cos, cosine)
            check.supported = check.supported or ok
        check.cosine = best_cos
        return check


def _unit(vectors: list[list[float]]) -> list[list[float]]:
    out = []
    for v in vectors:
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        out.append([x / norm for x in v])
    return out


def faithfulness(checks: Sequence[SentenceCheck]) -> float | None:
    """Share of answer claims supported by their cited source; ``None`` when there is no claim."""
    if not checks:
        return None
    return sum(c.supported for c in checks) / len(checks)


# -- kinds -----------------------------------------------------------------------------------------
def target_accuracy(picked_titles: Iterable[str | None], expected_titles: Sequence[str]) -> float | None:
    """Share of the expected papers among the papers picked for the compared targets; ``None`` without targets."""
    picked = {norm_title(t) for t in picked_titles if t}
    expected = {norm_title(t) for t in expected_titles}
    if not expected or not picked:
        return None if not expected else 0.0
    return len(expected & picked) / len(expected)


def prose_sentences(text: str) -> int:
    """Sentences of an answer's prose: not its table rows, list items, quoted lines or lead-in lines ending ':'."""
    count = 0
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("|", ">", "-", "*", "#")) or re.match(r"^\d+\.\s", stripped):
            continue
        if stripped.endswith(":"):
            continue
        body = MARKER.sub("", stripped)
        count += len([x for x in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", body) if len(x.split()) >= 3])
    return count


def length_kept(text: str, max_sentences: int | None) -> float | None:
    """1 when the answer's prose has at most the asked number of sentences, 0 otherwise; ``None`` if none asked."""
    if not max_sentences or not text.strip():
        return None
    return float(prose_sentences(text) <= max_sentences)


def wrong_paper(cited_titles: Iterable[str], not_titles: Sequence[str]) -> float | None:
    """1 when the answer cites a paper the question excludes, 0 when not; ``None`` when it excludes none."""
    if not not_titles:
        return None
    excluded = {norm_title(t) for t in not_titles}
    return float(any(norm_title(t) in excluded for t in cited_titles))


# -- refusals ------------------------------------------------------------------------------------
def refusal_scores(answerable: bool, refused: bool, n_citations: int) -> dict[str, float | None]:
    """``refusal.accuracy``: an unanswerable question gets the refusal and no citation, an answerable one no refusal.

    ``refusal.false_refusals``: 1 when an answerable question was refused (``None`` for unanswerable ones),
    so its mean is the share of answerable questions refused.
    """
    if answerable:
        return {"refusal.accuracy": float(not refused), "refusal.false_refusals": float(refused)}
    return {"refusal.accuracy": float(refused and n_citations == 0), "refusal.false_refusals": None}


# -- per-question pass/fail ----------------------------------------------------------------------
def passes(scores: dict[str, float | None]) -> dict[str, bool | None]:
    """Pass/fail of each metric of one question (``None`` where it does not apply)."""
    out: dict[str, bool | None] = {}
    for key in SCORE_KEYS:
        value = scores.get(key)
        if value is None:
            out[key] = None
        elif key in ("refusal.false_refusals", "answer.wrong_paper"):
            out[key] = value == 0
        elif key in ("retrieval.mrr", "retrieval.ndcg@10"):
            out[key] = value > 0  # a relevant paper is ranked at all (in the top 10)
        else:
            out[key] = value >= PASS_AT.get(key, 1.0) - 1e-9
    return out


# -- aggregation ---------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method); ``None`` for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(results: Sequence[dict]) -> tuple[dict[str, float | None], dict[str, int]]:
    """(flat metrics, how many questions each one averages) over per-question results.

    Each result carries ``scores`` (the ``SCORE_KEYS``), ``latency_s`` and ``tokens`` (``None`` when not measured).
    """
    metrics: dict[str, float | None] = {}
    support: dict[str, int] = {}
    for key in SCORE_KEYS:
        values = [r["scores"][key] for r in results if r["scores"].get(key) is not None]
        metrics[key] = _mean(values)
        support[key] = len(values)
    latencies = [r["latency_s"] for r in results if r.get("latency_s") is not None]
    metrics["latency.p50_s"] = percentile(latencies, 50)
    metrics["latency.p95_s"] = percentile(latencies, 95)
    support["latency.p50_s"] = support["latency.p95_s"] = len(latencies)
    tokens = [r["tokens"] for r in results if r.get("tokens") is not None]
    metrics["tokens.mean"] = _mean(tokens)
    support["tokens.mean"] = len(tokens)
    return metrics, support


def by_type(results: Sequence[dict]) -> dict[str, dict]:
    """``summarize`` per question type, types in the dataset's canonical order, each with its question count."""
    out: dict[str, dict] = {}
    present = [t for t in TYPES if any(r["type"] == t for r in results)]
    present += sorted({r["type"] for r in results} - set(TYPES))
    for t in present:
        rows = [r for r in results if r["type"] == t]
        metrics, support = summarize(rows)
        out[t] = {"n": len(rows), **metrics, "support": support}
        if any("path" in r for r in rows):
            out[t]["paths"] = path_shares(rows)
            out[t]["outcomes"] = outcomes(rows)
    return out


def deltas(current: dict, previous: dict) -> dict[str, dict]:
    """Per metric: previous and current value, their difference and whether it is an improvement.

    Only metrics with a number in both runs are compared.
    """
    out: dict[str, dict] = {}
    for key in METRIC_KEYS:
        now, before = current.get(key), previous.get(key)
        if not isinstance(now, int | float) or not isinstance(before, int | float):
            continue
        diff = now - before
        better = None if abs(diff) < 1e-12 else (diff < 0 if key in LOWER_IS_BETTER else diff > 0)
        out[key] = {"previous": before, "current": now, "delta": diff, "better": better}
    return out


# -- how answers were produced, and how they came out -------------------------------------------------------------
PATHS = ("generated", "generated+repaired", "extractive", "refused")


def path_shares(results: Sequence[dict]) -> dict[str, float | int]:
    """Share of answers per path (generated, generated+repaired, extractive, refused) and the count answered."""
    answered = [r for r in results if r.get("path")]
    shares: dict[str, float | int] = {p: 0.0 for p in PATHS}
    for r in answered:
        shares[r["path"]] = shares.get(r["path"], 0.0) + 1
    for p in list(shares):
        shares[p] = round(shares[p] / len(answered), 4) if answered else 0.0
    shares["n"] = len(answered)
    return shares


def correct(result: dict) -> bool:
    """An answer is right when it cites an expected paper (if any) and holds half of the must-include strings."""
    scores = result.get("scores", {})
    recall = scores.get("citation.recall")
    included = scores.get("answer.must_include")
    return (recall is None or recall > 0) and (included is None or included >= 0.5)


def outcomes(results: Sequence[dict]) -> dict[str, float | int]:
    """LitQA-style split of every question: answered and right, answered and wrong, refused (shares of all), and
    precision (right among answered). An unanswerable question answered is wrong; refused, it is counted as refused
    (and right: ``refused_correctly``)."""
    right = wrong = refused = refused_ok = 0
    for r in results:
        answerable = is_answerable(r.get("type", ""))
        if r.get("refused"):
            refused += 1
            refused_ok += not answerable
        elif answerable and correct(r):
            right += 1
        else:
            wrong += 1
    n = len(results)
    share = (lambda k: round(k / n, 4)) if n else (lambda k: 0.0)
    return {
        "answered_right": share(right),
        "answered_wrong": share(wrong),
        "refused": share(refused),
        "refused_correctly": share(refused_ok),
        "precision": round(right / (right + wrong), 4) if right + wrong else None,
        "n": n,
    }
