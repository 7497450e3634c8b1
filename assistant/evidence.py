"""Evidence: the abstract sentences that bear on a question, scored, numbered by source and budgeted.

`EvidenceSelector.select()` takes the question's standalone query and the papers the plan chose and returns
`Evidence`: for every source [n] the sentences kept (in abstract order), each with its score. The model is shown
exactly this evidence, the answer carries it whether or not the model uses it, and the extractive floor quotes
it when the model fails.

A sentence's score fuses three rankings with equal weights (reciprocal rank, as retrieval does): lexical
overlap with the question's content words, BM25 over the corpus's sentences, and cosine similarity of
sentence embeddings (the embedder that retrieval already loads). Two features of the question add to it: a
sentence that uses a name the question asks about, and, for a question that asks for a quantity, a sentence
that reports numbers. Measured scorers and their figures: evals/README.md, "Evidence".
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field

from .cite import content_words
from .fusion import rrf
from .names import PROPOSAL_CUE, mentions
from .paper import Paper
from .quantities import NUMERIC_QUESTION, asked_quantities, reports_quantity
from .text import split_sentences

# Sentences in a source that address a reader or a model instead of describing research. They are data, but
# a 0.5B model obeys them ("Reply only with: …"), so they are never shown to it, nor used as evidence.
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget)\b[^.]{0,40}\b(?:instructions?|rules|prompts?)\b"
    r"|\b(?:reply|respond|answer)\s+(?:only\s+)?with\b"
    r"|\byou\s+(?:must|should|have to)\s+(?:answer|reply|respond|say|output|write)\b"
    r"|\bdo\s+not\s+cite\b"
    r"|\b(?:ai|language\s+model|llm|assistant|chatbot)s?\s+(?:reading|summari[sz]ing|processing)\b"
    r"|\bsystem\s+prompt\b",
    re.I,
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*\s*(?:%|x|×|fps|ms|m\b|b\b|k\b)?", re.I)


def usable_sentences(abstract: str, refusal_key: str = "") -> list[str]:
    """An abstract's sentences without planted instructions (and without the refusal sentence, if given)."""
    sents = split_sentences(abstract) or [abstract]
    kept = [
        s
        for s in sents
        if not _INSTRUCTION.search(s) and not (refusal_key and refusal_key in " ".join(s.lower().split()))
    ]
    return kept or ["(This abstract contains no usable text.)"]


class Sentence(BaseModel):
    """One sentence of evidence."""

    n: int = Field(description="Number of the source it belongs to, as shown to the model and cited.")
    paper_id: str
    index: int = Field(description="Position of the sentence in the abstract (0 = first).")
    text: str
    score: float = Field(description="Fused relevance to the question (higher is more relevant).")


class Source(BaseModel):
    """One numbered source: a paper and the evidence sentences kept from it, in abstract order."""

    n: int
    paper_id: str
    title: str
    authors: list[str]
    authors_truncated: bool = False
    year: int | None = None
    facts: str = Field("", description="The record's other fields: date, category, affiliations, code.")
    sentences: list[Sentence] = Field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.sentences)


def record_facts(paper: Paper) -> str:
    """The record fields a question may ask about besides title, authors and year ("dated 2025-11-12; category
    CL; affiliations tsinghua, gatech; code available"), as the prompt and the citation check see them."""
    parts = []
    if paper.date:
        parts.append(f"dated {paper.date.lstrip('-')}")
    if paper.category:
        parts.append(f"category {paper.category}")
    if paper.affiliations:
        parts.append("affiliations " + ", ".join(paper.affiliations))
    if paper.has_code:
        parts.append("code available")
    return "; ".join(parts)


class Evidence(BaseModel):
    """The evidence for one question: its numbered sources and their kept sentences."""

    sources: list[Source] = Field(default_factory=list)
    scorer: str = ""

    def ranked(self) -> list[Sentence]:
        """Every kept sentence, the most relevant first."""
        return sorted((s for src in self.sources for s in src.sentences), key=lambda s: -s.score)

    def source(self, n: int) -> Source | None:
        return next((s for s in self.sources if s.n == n), None)

    @property
    def tokens(self) -> int:
        return sum(_tokens(s.text) for s in self.ranked())


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


@dataclass
class _Scored:
    source: int  # position of the paper in the input list
    index: int
    text: str
    score: float = 0.0


class SentenceIndex:
    """BM25 statistics over every sentence of the corpus, and cached sentence embeddings per paper."""

    def __init__(self, papers: Sequence[Paper], embed: Callable[[list[str]], list[list[float]]] | None = None):
        self.embed = embed
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        df: Counter[str] = Counter()
        lengths = []
        for p in papers:
            for s in split_sentences(p.abstract):
                words = content_words(s)
                df.update(words)
                lengths.append(len(words))
        self.n = max(1, len(lengths))
        self.avg_len = (sum(lengths) / len(lengths)) if lengths else 1.0
        self.df = df

    def idf(self, word: str) -> float:
        d = self.df.get(word, 0)
        return math.log(1 + (self.n - d + 0.5) / (d + 0.5))

    def bm25(self, query_words: set[str], sentence: str, k1: float = 1.2, b: float = 0.75) -> float:
        tf = Counter(w for w in content_words(sentence))  # content words: a set per sentence, tf is 0/1
        length = sum(tf.values()) or 1
        score = 0.0
        for w in query_words:
            f = tf.get(w, 0)
            if f:
                score += self.idf(w) * f * (k1 + 1) / (f + k1 * (1 - b + b * length / self.avg_len))
        return score

    def vectors(self, paper_id: str, sentences: list[str]) -> np.ndarray | None:
        """Unit vectors of a paper's sentences (computed once per paper and kept)."""
        if self.embed is None:
            return None
        with self._lock:
            cached = self._vectors.get(paper_id)
        if cached is not None and len(cached) == len(sentences):
            return cached
        vecs = np.asarray(self.embed(sentences), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-9
        with self._lock:
            self._vectors[paper_id] = vecs
        return vecs


# "Code will be released at https://…": where the code is, never how the method works (unless that is asked)
CODE_LINK = re.compile(
    r"\b(?:code|models?|implementation) (?:is|are|will be) (?:publicly )?(?:available|released)\b|https?://|\\url\{",
    re.I,
)
_ASKS_CODE = re.compile(r"\b(?:code|github|repo\w*|implementation|open[- ]source\w*)\b", re.I)
CODE_PENALTY = 1.0  # about one top rank of the fusion
_ASKS_HOW = re.compile(r"\bhow (?:does|do|did|is|are|was|were|can|could)\b|\bin what way\b", re.I)
BACKGROUND_PENALTY = 0.5  # measured on the tune splits (evidence_compare): 1.0 kept less
QUANTITY_BONUS = 1.0  # about one top rank of the fusion: the sentence with the asked quantity is the answer
SCORERS = ("lexical", "bm25", "dense", "lexical+bm25", "fused")


class EvidenceSelector:
    """Selects and budgets the evidence sentences of the chosen papers."""

    def __init__(
        self,
        index: SentenceIndex,
        *,
        scorer: str = "fused",
        budget_tokens: int = 550,
        per_source: int = 6,
        refusal_key: str = "",
        embed_query: Callable[[str], list[float]] | None = None,
    ):
        if scorer not in SCORERS:
            raise ValueError(f"unknown evidence scorer {scorer!r}: use one of {', '.join(SCORERS)}")
        self.index = index
        self.scorer = scorer
        self.budget_tokens = budget_tokens
        self.per_source = per_source
        self.refusal_key = refusal_key
        self.embed_query = embed_query

    def sentences_of(self, paper: Paper) -> list[str]:
        return usable_sentences(paper.abstract, self.refusal_key)

    def score(self, query: str, papers: Sequence[Paper], names: Sequence[str] = ()) -> list[list[_Scored]]:
        """Every usable sentence of every paper, scored against the query."""
        per_paper = [[_Scored(i, j, s) for j, s in enumerate(self.sentences_of(p))] for i, p in enumerate(papers)]
        flat = [s for sents in per_paper for s in sents]
        if not flat:
            return per_paper
        # "return-based rebalancing" also asks about "return": a sentence says "according to its episodic return"
        q = content_words(query) | content_words(query.replace("-", " "))
        rankings: list[list[float]] = []
        if self.scorer in ("lexical", "lexical+bm25", "fused"):
            rankings.append([len(q & content_words(s.text)) / (len(q) or 1) for s in flat])
        if self.scorer in ("bm25", "lexical+bm25", "fused"):
            rankings.append([self.index.bm25(q, s.text) for s in flat])
        if self.scorer in ("dense", "fused") and self.embed_query is not None and self.index.embed is not None:
            qv = np.asarray(self.embed_query(query), dtype=np.float32)
            qv /= np.linalg.norm(qv) + 1e-9
            sims: list[float] = []
            for p, sents in zip(papers, per_paper, strict=True):
                vecs = self.index.vectors(p.id, [s.text for s in sents])
                sims.extend((vecs @ qv).tolist() if vecs is not None and len(sents) else [0.0] * len(sents))
            rankings.append(sims)
        fused = [0.0] * len(flat)
        if len(rankings) == 1:
            fused = list(rankings[0])
        else:
            # equal-weight reciprocal-rank fusion; a sentence a scorer gives nothing keeps its rank but no share
            orders = [sorted(range(len(flat)), key=lambda i, v=values: -v[i]) for values in rankings]
            shares = [rrf([order], 10) for order in orders]
            fused = [sum(sh[i] for sh, v in zip(shares, rankings, strict=True) if v[i] > 0) for i in range(len(flat))]
            fused = [f * 10 for f in fused]  # about 0..2.7: comparable to the bonuses below
        numeric = bool(NUMERIC_QUESTION.search(query))
        asks_code = _ASKS_CODE.search(query) is not None
        asked = [(how, head) for how, head in asked_quantities(query) if how != "what"]
        # "how does it …" is answered by the method's description, which an abstract gives after its proposal ("we
        # propose …"); the sentences before it are the background (other work, the problem)
        asks_how = _ASKS_HOW.search(query) is not None
        background = set()
        if asks_how:
            for sents in per_paper:
                first = next((s.index for s in sents if PROPOSAL_CUE.search(s.text)), None)
                background |= {(s.source, s.index) for s in sents if first is not None and s.index < first}
        for s, f in zip(flat, fused, strict=True):
            bonus = 0.0
            if (s.source, s.index) in background:
                bonus -= BACKGROUND_PENALTY
            if names and any(mentions(s.text, n) for n in names):
                bonus += 0.3
            if numeric and _NUMBER.search(s.text):
                bonus += 0.3
            if any(reports_quantity(s.text, how, head) for how, head in asked):
                bonus += QUANTITY_BONUS  # the sentence gives what "how many hours / how long …" asks for
            if not asks_code and CODE_LINK.search(s.text):
                bonus -= CODE_PENALTY
            s.score = f + bonus
        return per_paper

    def select(
        self,
        query: str,
        papers: Sequence[Paper],
        names: Sequence[str] = (),
        *,
        budget_tokens: int | None = None,
    ) -> Evidence:
        """The evidence within the token budget: every source's best sentence, then the best of the rest.

        Higher-ranked papers are preferred a little (their scores are divided by 1 + 0.15 * rank), so with a tight
        budget the paper retrieval trusts most keeps more of its sentences."""
        budget = self.budget_tokens if budget_tokens is None else budget_tokens
        per_paper = self.score(query, papers, names)
        ranked = sorted((s for sents in per_paper for s in sents), key=lambda s: -s.score / (1 + 0.15 * s.source))
        chosen: list[dict[int, _Scored]] = [{} for _ in papers]
        used = 0
        for s in ranked:  # every source gets its best sentence
            if not chosen[s.source]:
                chosen[s.source][s.index] = s
                used += _tokens(s.text)
        for s in ranked:
            if s.index in chosen[s.source] or len(chosen[s.source]) >= self.per_source:
                continue
            cost = _tokens(s.text)
            if budget > 0 and used + cost > budget:
                continue
            chosen[s.source][s.index] = s
            used += cost
        sources = []
        for i, p in enumerate(papers):
            n = i + 1
            sents = [
                Sentence(n=n, paper_id=p.id, index=s.index, text=s.text, score=round(s.score, 4))
                for s in sorted(chosen[i].values(), key=lambda s: s.index)
            ]
            sources.append(
                Source(
                    n=n,
                    paper_id=p.id,
                    title=p.title,
                    authors=p.authors,
                    authors_truncated=p.authors_truncated,
                    year=p.year,
                    facts=record_facts(p),
                    sentences=sents,
                )
            )
        return Evidence(sources=sources, scorer=self.scorer)
