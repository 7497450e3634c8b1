"""Which papers a question is about, decided by scoring the corpus: every abstract that names a term, or every
paper that clearly addresses a topic — not the top three whatever the corpus holds.

- A *term* the question names (a dataset, benchmark, method or technique: ADE20K, PASCAL VOC, RetinaNet) is
  matched over the whole corpus (`papers_naming`): exhaustive, counted, each paper with the sentence that names it.
- A *topic* ("diffusion models for video", "hypergraph neural networks") is scored against every candidate paper:
  the dense similarity of the topic to the paper's best chunk, and how much of the topic's distinctive vocabulary
  (IDF-weighted, stemmed) the paper's record contains (`TopicIndex.coverage`). Papers that clearly address it
  pass a cut calibrated on the dev set (`topic_cut`); a topic no paper clearly addresses is a refusal (a trap).

No model is involved: the coverage of an answer is the pipeline's decision, and it is exhaustive by construction.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .names import name_key
from .paper import Paper
from .text import split_sentences

# Words of the request, not of the topic: "Which papers here …", "give me an overview of the work in this corpus on
# …", "what does each contribute". A vocabulary, not phrasings: any wording made of these words is request.
META = frozenset(
    {
        *("paper", "papers", "work", "works", "study", "studies", "article", "articles", "research", "researcher"),
        *("approach", "approaches", "method", "methods", "technique", "techniques", "model", "models", "system"),
        *("corpus", "collection", "here", "dataset", "list", "overview", "survey", "summary", "summarize", "summarise"),
        *("contribute", "contributes", "contribution", "contributions", "propose", "proposes", "proposed", "offer"),
        *("offers", "cover", "covers", "covered", "say", "says", "tell", "give", "show", "find", "mention", "mentions"),
        *("each", "one", "ones", "any", "all", "every", "other", "another", "there", "which", "what", "how", "who"),
        *("does", "do", "did", "is", "are", "was", "were", "be", "been", "has", "have", "had", "can", "could"),
        *("would", "should", "me", "i", "we", "you", "they", "them", "their", "it", "its", "this", "that", "these"),
        *("those", "the", "a", "an", "of", "in", "on", "for", "to", "with", "by", "from", "about", "and", "or", "as"),
        *("at", "into", "using", "use", "uses", "used", "based", "built", "looking", "interested", "well", "good"),
        *("best", "main", "key", "briefly", "short", "please", "also", "some", "such", "so", "if", "than", "then"),
        *("instead", "exist", "exists", "available", "include", "includes", "included", "address", "addresses"),
        *("tackle", "tackles", "handle", "handles", "deal", "deals", "focus", "focuses", "report", "reports"),
        *("result", "results", "evaluate", "evaluates", "evaluated", "abstract", "abstracts", "name", "names"),
    }
)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-'][A-Za-z0-9]+)*")
_STEMMER = None


def _stem(words: list[str]) -> list[str]:
    global _STEMMER
    if _STEMMER is None:
        import Stemmer  # PyStemmer: the stemmer BM25 already uses

        _STEMMER = Stemmer.Stemmer("english")
    return _STEMMER.stemWords(words)


def topic_words(text: str) -> list[str]:
    """The words of a question that say what it is about: its words without the request vocabulary, in order
    ("Which papers here use diffusion models for video?" -> diffusion, video)."""
    out = []
    for w in _WORD.findall(text):
        low = w.casefold()
        if low in META or len(low) < 2:
            continue
        out.append(low)
    return list(dict.fromkeys(out))


def _stems_of(words: Iterable[str]) -> list[str]:
    parts = [p for w in words for p in re.split(r"[-']", w.casefold()) if len(p) > 1 and p not in META]
    return _stem(parts)


@dataclass
class TopicIndex:
    """Stemmed words of every paper's record (title and abstract) and their document frequencies."""

    stems: dict[str, frozenset[str]] = field(default_factory=dict)
    df: Counter = field(default_factory=Counter)
    n: int = 0

    @classmethod
    def build(cls, papers: Iterable[Paper]) -> TopicIndex:
        index = cls()
        for p in papers:
            words = _stems_of(_WORD.findall(f"{p.title} {p.abstract}"))
            index.stems[p.id] = frozenset(words)
            index.df.update(index.stems[p.id])
        index.n = max(1, len(index.stems))
        return index

    def idf(self, stem: str) -> float:
        return math.log(1 + (self.n - self.df.get(stem, 0) + 0.5) / (self.df.get(stem, 0) + 0.5))

    def coverage(self, paper_id: str, topic: Sequence[str]) -> float:
        """Share of the topic's IDF mass the paper's record contains (a word no paper uses still counts: a topic
        made of words the corpus lacks is covered by no paper)."""
        stems = set(_stems_of(topic))
        if not stems:
            return 0.0
        have = self.stems.get(paper_id, frozenset())
        total = sum(self.idf(s) for s in stems)
        return sum(self.idf(s) for s in stems if s in have) / total if total else 0.0


# -- terms: exhaustive -------------------------------------------------------------------------------------------
def term_pattern(term: str, case_sensitive: bool) -> re.Pattern:
    """A term as a whole token, its parts joined by a hyphen, a space or nothing ("PASCAL VOC", "ResNet-101" =
    "ResNet101"); never inside a longer token ("T4" is not in "GPT4")."""
    parts = [re.escape(p) for p in re.split(r"[\s\-_.]+", term.strip()) if p]
    body = r"[\s\-_.]?".join(parts)
    return re.compile(rf"(?<![A-Za-z0-9]){body}(?![A-Za-z])", 0 if case_sensitive else re.I)


@dataclass
class Naming:
    """A paper that names a term, with the first sentence that does."""

    paper: Paper
    sentence: str


def papers_naming(term: str, papers: Iterable[Paper], lower_words: set[str] = frozenset()) -> list[Naming]:
    """Every paper whose title or abstract names ``term``, with the sentence naming it (the title when only the
    title does). Matched case-insensitively, except a term whose lower-case form is an ordinary word of the
    corpus ("CLIP" vs "a video clip"), which must keep its capitals."""
    key = name_key(term)
    case_sensitive = term.casefold() in lower_words and term != term.casefold()
    pattern = term_pattern(term, case_sensitive)
    out = []
    for p in papers:
        if key and not pattern.search(f"{p.title}\n{p.abstract}"):
            continue
        sentence = next((s for s in split_sentences(p.abstract) if pattern.search(s)), p.title)
        out.append(Naming(p, sentence))
    return out


# -- topics: scored and cut --------------------------------------------------------------------------------------
# A paper's fit to a description: dense cosine of the description to its best chunk, plus half the share of the
# description's distinctive (IDF-weighted) words its record holds. Calibrated on the tune part of
# evals/datasets/kinds.jsonl (surveys vs topic traps): every addressed topic had a paper at 0.74 or more, every
# trap's best paper stayed at or under 0.59.
COVERAGE_WEIGHT = 0.5
ADDRESSED = 0.66  # the best paper's fit for a topic to count as addressed by the corpus (traps <= 0.59, topics >= 0.74)
KEEP_FLOOR = ADDRESSED  # a survey lists every paper that addresses the topic as clearly as that …
KEEP_BELOW_BEST = 0.45  # … and is not far below the best one (expected papers 0.68-0.96 on the tune surveys)
SURVEY_MAX = 8  # papers a topical survey lists at most (the answer says how many more fit)
CANDIDATES = 30  # papers scored per topic (the fused retrieval's top)


def paper_fit(retriever, text: str, paper_ids: list[str]) -> dict[str, float]:
    """How well each paper fits a description ("the method that prunes channels by their gradients", a survey's
    topic): dense similarity of the description to the paper's best chunk, plus `COVERAGE_WEIGHT` times the share
    of the description's distinctive words the paper's record holds. One scorer for topics and compared targets."""
    words = topic_words(text)
    dense = retriever.paper_dense(text, paper_ids)
    return {
        pid: dense.get(pid, 0.0) + COVERAGE_WEIGHT * retriever.topics.coverage(pid, words)
        for pid in dict.fromkeys(paper_ids)
    }


@dataclass
class Coverage:
    """The papers a survey covers, each with its fit, and the best fit (a topic trap stays under `ADDRESSED`)."""

    hits: list = field(default_factory=list)  # retrieve.Hit, best fit first
    fit: dict[str, float] = field(default_factory=dict)
    best: float = 0.0
    matching: int = 0  # papers that fit (a survey lists at most SURVEY_MAX of them)
    namings: dict[str, str] = field(default_factory=dict)  # term listings: paper id -> the sentence naming the term


def topic_coverage(retriever, topic: str, filters=None, mode=None, exclude: Sequence[str] = ()) -> Coverage:
    """The papers that clearly address a topic: the fused retrieval's candidates scored by `paper_fit`, cut at the
    best fit minus `KEEP_BELOW_BEST` (and at `KEEP_FLOOR`); ``exclude`` (papers already discussed) left out."""
    query = " ".join(topic_words(topic)) or topic
    candidates = retriever.search(query, top_k=CANDIDATES + len(exclude), filters=filters, mode=mode)
    candidates = [h for h in candidates if h.paper.id not in exclude]
    if not candidates:
        return Coverage()
    fit = paper_fit(retriever, topic, [h.paper.id for h in candidates])
    ranked = sorted(candidates, key=lambda h: -fit[h.paper.id])
    best = fit[ranked[0].paper.id]
    kept = [h for h in ranked if fit[h.paper.id] >= max(KEEP_FLOOR, best - KEEP_BELOW_BEST)]
    # nothing fits: the nearest three, for the refusal's "closest papers"
    return Coverage(hits=kept[:SURVEY_MAX] if kept else ranked[:3], fit=fit, best=best, matching=len(kept))


def term_coverage(retriever, term: str, query: str, filters=None, mode=None) -> Coverage:
    """Every paper that names the term (filters applied), the ones retrieval ranks higher for the question first."""
    papers = [p for p in retriever.papers.values() if filters is None or filters.matches(p)]
    found = papers_naming(term, papers, retriever.name_index.lower_words)
    if not found:
        return Coverage()
    rank = {h.paper.id: i for i, h in enumerate(retriever.search(query, top_k=CANDIDATES, filters=filters, mode=mode))}
    found.sort(key=lambda n: (rank.get(n.paper.id, len(rank)), n.paper.title))
    from .retrieve import Hit  # the retriever's result type (retrieve imports this module)

    hits = [Hit(paper=n.paper, score=1.0) for n in found]
    return Coverage(
        hits=hits,
        fit={h.paper.id: 1.0 for h in hits},
        best=1.0,
        matching=len(hits),
        namings={n.paper.id: n.sentence for n in found},
    )
