"""Which papers a question is about: one learned, calibrated relevance model over (question, conversation, paper).

Retrieval proposes candidates (the fused BM25 + dense + name search); this model decides. For each candidate it
reads features the pipeline already computes — the question's dense similarity to the paper's best chunk and to
its best sentence (and how far each is below the best candidate's), the BM25 score relative to the best, the
fused rank, how the question's names meet the paper (owned as its method, used, name-shaped words the paper
never writes), the title's overlap with the question, and the paper's place in the conversation — and turns them
into P(the paper is one the question is about) with a logistic regression fit by ``assistant tune`` on labelled
pairs: the tuning splits of the eval sets plus synthetic questions made from the abstracts (see `assistant.tune`).

Logistic regression is calibrated by construction on its training distribution; `assistant tune` measures the
calibration on held-out pairs (reliability and the precision of the threshold) and stores it with the weights,
so ``relevance.min_probability`` in Settings means a probability, not a hand-tuned score. The weights are a small
JSON file (``assistant/trained/relevance.json``), built locally, never downloaded. A missing or unreadable
artefact is an error, not a fallback to the old ranking.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .cite import content_words
from .names import NameIndex, named_by_shape

TRAINED_DIR = Path(__file__).with_name("trained")
RELEVANCE_FILE = TRAINED_DIR / "relevance.json"

# The feature vector, in order. Adding one changes FEATURE_VERSION and needs `assistant tune`.
FEATURES = (
    "dense",  # cosine of the question to the paper's best chunk
    "dense_gap",  # that cosine minus the best candidate's
    "sentence",  # cosine of the question to the paper's best sentence
    "sentence_gap",
    "clause",  # best cosine of any clause of the question to any sentence of the paper
    "bm25_rel",  # BM25 of the paper's best chunk / the best candidate's
    "fused_rank",  # 1 / (1 + rank) in the fused retrieval
    "has_names",  # the question uses names the corpus knows
    "name_owned",  # share of the names some paper presents as its own that this paper presents as its own
    "name_used",  # share of those names the paper's record uses
    "name_missing",  # name-shaped words of the question the paper never writes (capped at 2, halved)
    "title_overlap",  # share of the title's content words the question uses
    "question_overlap",  # share of the question's content words the paper's title and abstract use
    "focus",  # the conversation's question points at this paper ("the former", its successor)
    "discussed",  # the conversation discussed this paper (1 for the latest, less for earlier ones)
)
# Whether the corpus answers the question at all, from the scored candidates: a second logistic regression, fit on
# the tune questions (answerable ones against traps and synthetic traps), so refusing is a calibrated decision.
ANSWERABLE_FEATURES = (
    "top",  # the best candidate's probability
    "margin",  # its lead over the runner-up
    "top_sentence",
    "top_dense",
    "top_name_owned",
    "has_names",
    "absent_names",  # name-shaped words of the question no paper of the corpus writes (capped at 2, halved)
    "lead_unowned",  # the question's first name is one the corpus writes but no paper presents as its own
)
# (whether the chosen paper writes every name is not a feature here: a name it lacks is said in the answer, a "no"
# or a corrected premise, or refuses a figure asked of it — `judge.paper_lacks` — never the whole question)
FEATURE_VERSION = 4


class RelevanceModelError(RuntimeError):
    """The trained relevance model is missing or does not fit this code (run ``assistant tune``)."""


@dataclass
class Candidate:
    """One (question, paper) pair's features and, once scored, its probability."""

    paper_id: str
    features: dict[str, float]
    probability: float = 0.0


@dataclass
class Linear:
    """A logistic regression over standardised features."""

    coef: list[float]
    intercept: float
    mean: list[float]
    scale: list[float]

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        x = (rows - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(x @ np.asarray(self.coef) + self.intercept)))

    def to_json(self) -> dict:
        return {"coef": self.coef, "intercept": self.intercept, "mean": self.mean, "scale": self.scale}

    @classmethod
    def from_json(cls, d: dict) -> Linear:
        return cls(list(d["coef"]), float(d["intercept"]), list(d["mean"]), list(d["scale"]))


@dataclass
class RelevanceModel:
    """Logistic regression weights over standardised `FEATURES`, with the calibration measured at training, and the
    question-level answerability model over `ANSWERABLE_FEATURES`."""

    coef: list[float]
    intercept: float
    mean: list[float]
    scale: list[float]
    features: tuple[str, ...] = FEATURES
    meta: dict = field(default_factory=dict)
    answerable: Linear | None = None

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        return Linear(self.coef, self.intercept, self.mean, self.scale).probabilities(rows)

    def score(self, candidates: list[Candidate]) -> list[Candidate]:
        """The candidates with their probabilities, most probable first."""
        if not candidates:
            return []
        rows = np.asarray([[c.features[f] for f in self.features] for c in candidates], dtype=np.float64)
        for c, p in zip(candidates, self.probabilities(rows).tolist(), strict=True):
            c.probability = float(p)
        return sorted(candidates, key=lambda c: -c.probability)

    def answer_probability(self, question_features: dict[str, float]) -> float:
        """P(the corpus answers the question), from `question_features`."""
        if self.answerable is None:
            raise RelevanceModelError("the relevance model has no answerability part: run `assistant tune`")
        row = np.asarray([[question_features[f] for f in ANSWERABLE_FEATURES]], dtype=np.float64)
        return float(self.answerable.probabilities(row)[0])

    def to_json(self) -> dict:
        return {
            "feature_version": FEATURE_VERSION,
            "features": list(self.features),
            "answerable_features": list(ANSWERABLE_FEATURES),
            "coef": self.coef,
            "intercept": self.intercept,
            "mean": self.mean,
            "scale": self.scale,
            "answerable": self.answerable.to_json() if self.answerable else None,
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, data: dict) -> RelevanceModel:
        if data.get("feature_version") != FEATURE_VERSION or tuple(data.get("features", ())) != FEATURES:
            raise RelevanceModelError(
                "the trained relevance model was built for other features: run `assistant tune` to rebuild it"
            )
        if tuple(data.get("answerable_features", ())) != ANSWERABLE_FEATURES or not data.get("answerable"):
            raise RelevanceModelError("the trained answerability model does not fit this code: run `assistant tune`")
        return cls(
            coef=list(data["coef"]),
            intercept=float(data["intercept"]),
            mean=list(data["mean"]),
            scale=list(data["scale"]),
            meta=dict(data.get("meta", {})),
            answerable=Linear.from_json(data["answerable"]),
        )

    def save(self, path: Path = RELEVANCE_FILE) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> RelevanceModel:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RelevanceModelError(f"cannot read the relevance model {path}: {exc}; run `assistant tune`") from None
    return RelevanceModel.from_json(data)


def load_model(path: Path = RELEVANCE_FILE) -> RelevanceModel:
    """The trained relevance model (cached until the file changes)."""
    try:
        mtime = path.stat().st_mtime
    except OSError:
        raise RelevanceModelError(f"no trained relevance model at {path}: run `assistant tune`") from None
    return _load(str(path), mtime)


def clauses(question: str) -> list[str]:
    """A question's clauses: its sentences, split again at commas and semicolons (syntax only), long enough to
    carry meaning."""
    parts = [p.strip() for p in question.replace(";", ",").replace("?", "?,").split(",")]
    return [p for p in parts if len(p.split()) >= 3][:4]


def _unit(v) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / (np.linalg.norm(a, axis=-1, keepdims=True) + 1e-9)


def candidate_features(
    retriever,
    query: str,
    hits: list,
    names: list[str],
    focus: list[str] = (),
    discussed: list[str] = (),
    sentences_of=None,
) -> list[Candidate]:
    """Features of each hit (a `retrieve.Hit`, in fused order) for ``query``. ``names`` are the names the question
    uses; ``focus``/``discussed`` the conversation's papers (latest first); ``sentences_of(paper)`` a paper's
    usable sentences (default: its abstract's)."""
    from .text import split_sentences

    if not hits:
        return []
    index: NameIndex = retriever.name_index
    embed = retriever.store.embedder
    ids = [h.paper.id for h in hits]
    dense = retriever.paper_dense(query, ids)
    q = _unit(embed.embed_query(query))
    parts = clauses(query)
    cq = _unit(embed.embed_texts(parts)) if len(parts) > 1 else None
    sent: dict[str, float] = {}
    clause: dict[str, float] = {}
    for h in hits:
        sentences = sentences_of(h.paper) if sentences_of else split_sentences(h.paper.abstract)
        sentences = [s for s in sentences if s.strip()] or [h.paper.title]
        vecs = retriever.sentences.vectors(h.paper.id, sentences)
        if vecs is None:
            raise RelevanceModelError("the relevance model needs sentence embeddings (the store has no embedder)")
        sims = vecs @ q
        sent[h.paper.id] = float(sims.max())
        clause[h.paper.id] = float((vecs @ cq.T).max()) if cq is not None else sent[h.paper.id]
    best_dense = max(dense.values(), default=0.0)
    best_sent = max(sent.values(), default=0.0)
    best_bm25 = max((h.bm25 for h in hits), default=0.0) or 1.0
    known = [n for n in names if index.papers_with(n) and not index.is_record_field(n)]
    owned = [n for n in known if index.owners(n, by_title=False)]  # names some paper presents as its own
    shaped = [n for n in names if named_by_shape(n)]
    qwords = content_words(query)
    out = []
    for rank, h in enumerate(hits):
        pid = h.paper.id
        title_words = content_words(h.paper.title)
        paper_words = title_words | content_words(h.paper.abstract)
        missing = sum(1 for n in shaped if not index.paper_uses(pid, n))
        place = list(discussed).index(pid) if pid in discussed else -1
        f = {
            "dense": dense.get(pid, 0.0),
            "dense_gap": dense.get(pid, 0.0) - best_dense,
            "sentence": sent[pid],
            "sentence_gap": sent[pid] - best_sent,
            "clause": clause[pid],
            "bm25_rel": h.bm25 / best_bm25,
            "fused_rank": 1.0 / (1.0 + rank),
            "has_names": 1.0 if known else 0.0,
            "name_owned": (sum(index.owns(pid, n) for n in owned) / len(owned)) if owned else 0.0,
            "name_used": (sum(index.paper_uses(pid, n) for n in known) / len(known)) if known else 0.0,
            "name_missing": min(missing, 2) / 2.0,
            "title_overlap": len(qwords & title_words) / max(1, len(title_words)),
            "question_overlap": len(qwords & paper_words) / max(1, len(qwords)),
            "focus": 1.0 if pid in focus else 0.0,
            "discussed": 0.0 if place < 0 else 1.0 / (1.0 + place),
        }
        out.append(Candidate(pid, {k: (0.0 if math.isnan(v) else float(v)) for k, v in f.items()}))
    return out


def question_features(retriever, names: list[str], scored: list[Candidate]) -> dict[str, float]:
    """`ANSWERABLE_FEATURES` of a question from its scored candidates (most probable first)."""
    index: NameIndex = retriever.name_index
    top = scored[0] if scored else Candidate("", dict.fromkeys(FEATURES, 0.0))
    second = scored[1].probability if len(scored) > 1 else 0.0
    shaped = [n for n in names if named_by_shape(n) and not index.is_record_field(n)]
    absent = sum(1 for n in shaped if not index.papers_with(n))
    lead = next((n for n in names if not index.is_record_field(n) and index.papers_with(n)), None)
    return {
        "top": top.probability,
        "margin": top.probability - second,
        "top_sentence": top.features["sentence"],
        "top_dense": top.features["dense"],
        "top_name_owned": top.features["name_owned"],
        "has_names": top.features["has_names"],
        "absent_names": min(absent, 2) / 2.0,
        "lead_unowned": 1.0 if lead is not None and not index.owners(lead, by_title=False) else 0.0,
    }


def names_its_subject(index: NameIndex, paper_id: str, names: list[str]) -> bool:
    """Whether the paper presents a method the question names as its own: then the question is about it, and the
    paper's own evidence (`judge.paper_lacks`) decides whether it answers, not the answerability model."""
    return any(index.owns(paper_id, n, by_title=False) for n in names)
