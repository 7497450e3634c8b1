"""The answer pipeline: standalone query -> filters -> retrieval -> prompt -> streamed answer -> checked citations.

`Assistant.stream()` yields events as they happen; `Assistant.ask()` returns the final `Answer`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from .cite import CLEAR_SUPPORT, SourceText, check_citations, content_words, drop_uncited
from .config import Settings
from .corpus import Paper
from .filters import Filters
from .llm import estimate_tokens
from .prompts import REFUSAL, render
from .retrieve import Hit, Retriever, filters_from_question
from .text import author_list, split_sentences

log = logging.getLogger(__name__)


class QuestionError(ValueError):
    """The question cannot be asked as given (empty, too long); the message says why."""


def validate_question(question: object, limit: int) -> str:
    """The question as the pipeline uses it: control characters removed, other whitespace made a space.

    Raises QuestionError for a non-text, empty or over-long question (checked before anything is loaded)."""
    if not isinstance(question, str):
        raise QuestionError("The question must be text.")
    kept = []
    for ch in question:
        if ch in "\n\t" or ch.isprintable():
            kept.append(ch)
        elif ch.isspace():  # no-break, thin, ideographic spaces: a space, so "DoViT\u00a0speed" stays two words
            kept.append(" ")
    cleaned = "".join(kept).strip()
    if not cleaned:
        raise QuestionError("The question is empty: type a question about the papers.")
    if len(cleaned) > limit:
        raise QuestionError(f"The question is {len(cleaned):,} characters long; the limit is {limit:,}. Shorten it.")
    return cleaned


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
_REFUSAL_KEY = " ".join(REFUSAL.lower().rstrip(".").split())


def source_sentences(abstract: str) -> list[str]:
    """An abstract's sentences without planted instructions or the refusal sentence."""
    sents = split_sentences(abstract) or [abstract]
    kept = [x for x in sents if not _INSTRUCTION.search(x) and _REFUSAL_KEY not in " ".join(x.lower().split())]
    return kept or ["(This abstract contains no usable text.)"]


class Citation(BaseModel):
    n: int = Field(description="The [n] marker in the answer text.")
    paper_id: str
    title: str
    authors: list[str]
    year: int | None
    evidence: str = Field(description="The abstract sentence that supports the cited claim.")
    attached: bool = Field(False, description="Added by post-hoc attribution, not written by the model.")

    @classmethod
    def of(cls, n: int, paper: Paper, evidence: str, attached: bool = False) -> Citation:
        return cls(
            n=n,
            paper_id=paper.id,
            title=paper.title,
            authors=paper.authors,
            year=paper.year,
            evidence=evidence,
            attached=attached,
        )


class Context(BaseModel):
    n: int
    paper_id: str
    title: str
    authors: list[str]
    year: int | None
    category: str | None
    text: str = Field(description="What the model was shown for this source.")
    score: float
    dense: float
    bm25: float


class Answer(BaseModel):
    question: str
    standalone_query: str
    text: str
    refused: bool = False
    citations: list[Citation] = Field(default_factory=list)
    contexts: list[Context] = Field(default_factory=list)
    possibly_related: list[str] = Field(default_factory=list, description="Closest titles, given with a refusal.")
    filters: Filters = Field(default_factory=Filters)
    filters_applied: str = "none"
    compared: list[str] = Field(default_factory=list, description="Methods compared, for comparison questions.")
    not_found: list[str] = Field(default_factory=list, description="Compared methods no paper in the corpus names.")
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: dict[str, float] = Field(default_factory=dict)
    repair: dict[str, Any] = Field(default_factory=dict, description="Markers removed and citations attached.")
    incomplete: bool = False
    error: str | None = None


@dataclass
class Event:
    kind: Literal["status", "token", "answer"]
    data: Any


_PRONOUN = re.compile(
    r"\b(it|its|it's|they|them|their|this|that|these|those|the (?:paper|method|model|approach|authors?))\b", re.I
)
_COMPARE = re.compile(
    r"\b(compare|compared|comparison|contrast|differ|differs|difference|differences|vs\.?|versus)\b", re.I
)
_METHOD_SPLIT = [
    re.compile(
        r"how (?:does|do|is|are) (?P<a>.+?) (?:differ|compare|contrast)\w* (?:from|to|with) (?P<b>.+?)[?.]?$", re.I
    ),
    re.compile(r"(?:difference|differences) between (?P<a>.+?) and (?P<b>.+?)[?.]?$", re.I),
    re.compile(r"compare (?P<a>.+?) (?:and|with|to|against|vs\.?|versus) (?P<b>.+?)[?.:]?$", re.I),
    re.compile(r"(?P<a>[^,.?:;]+?) (?:vs\.?|versus) (?P<b>[^,.?:;]+)", re.I),
]


_CLAUSE = re.compile(r"^(?:its|their|which|that|who|whose|both|each|in terms of|with respect to)\b", re.I)


def comparison_targets(question: str) -> list[str]:
    """The methods a comparative question names (two or more), or [] for other questions."""
    if not _COMPARE.search(question):
        return []
    # judge only the last sentence that asks the comparison; earlier ones are background
    sentences = [s for s in re.split(r"(?<=[.?!])\s+", question.strip()) if s]
    target = next((s for s in reversed(sentences) if _COMPARE.search(s)), question)
    target = target.split(":")[0] if _COMPARE.search(target.split(":")[0]) else target  # "Compare A and B: which …"
    for pattern in _METHOD_SPLIT:
        m = pattern.search(target)
        if m:
            split = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")
            parts = [*split.split(m.group("a")), *split.split(m.group("b"))]
            cleaned = [re.sub(r"^(?:the|a|an)\s+", "", p.strip(" ,.?"), flags=re.I) for p in parts]
            # drop trailing clauses ("…, its predecessor among …"), keep names and short descriptions
            cleaned = [c for c in cleaned if len(c) > 1 and not _CLAUSE.match(c)]
            if len(cleaned) >= 2:
                return cleaned[:4]
    return []


_TERM = re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:[-.][A-Za-z0-9]+)*(?: \d+(?:\.\d+)?\b)?")


def salient_terms(text: str) -> list[str]:
    """Method-like names (DoViT, Gold-YOLO, LAUDNet, ERNIE 5.0) in a text, first seen first."""
    terms = []
    for m in _TERM.finditer(text):
        term = m.group(0)
        if sum(ch.isupper() for ch in term) >= 2 and term not in {"AI", "ML", "OK"}:
            terms.append(term)
    return list(dict.fromkeys(terms))


_NUMERIC_QUESTION = re.compile(r"\b(how (?:much|many|fast|large|big)|what (?:accuracy|speed|score)|\d)", re.I)
_REFERENCE = re.compile(
    r"\b(?:(?P<poss>its|their)|it|they|them|(?:this|that|the) (?:method|model|approach|paper|work|technique|agent"
    r"|framework|system|network|detector|architecture|algorithm))\b",
    re.I,
)


def resolve_references(question: str, history: list[dict]) -> str:
    """Replace the first pronoun of a follow-up with the method the conversation was about (no model needed)."""
    terms = [t for m in reversed(history) if m["role"] == "user" for t in salient_terms(m["content"])]
    terms += [t for m in reversed(history) for t in salient_terms(m["content"])]
    if not terms:
        last_user = next((m["content"] for m in reversed(history) if m["role"] == "user"), "")
        return f"{question} {last_user}".strip()
    name = terms[0]
    m = _REFERENCE.search(question)
    if not m:
        return f"{question} ({name})"
    replacement = f"{name}'s" if m.group("poss") else name
    return question[: m.start()] + replacement + question[m.end() :]


class Assistant:
    def __init__(self, settings: Settings, retriever: Retriever, llm):
        self.settings = settings
        self.retriever = retriever
        self.llm = llm

    @classmethod
    def from_settings(cls, settings: Settings, llm=None, progress: bool = True) -> Assistant:
        """Open the store, build the retriever, start (or reach) the LLM, and say which each one is."""
        from .store import PaperStore

        store = PaperStore(settings).open()
        try:
            retriever = Retriever(store, settings)
            retriever.warm_up()
            if llm is None:
                from .llm import LLM

                llm = LLM.from_settings(settings, progress=progress)
        except BaseException:
            store.close()
            raise
        log.info("embedder: %s", store.embedder.describe())
        log.info("store: %s (%d papers)", store.describe(), len(retriever.papers))
        return cls(settings, retriever, llm)

    def describe(self) -> dict[str, str]:
        store = self.retriever.store
        return {"llm": self.llm.describe(), "embedder": store.embedder.describe(), "store": store.describe()}

    def close(self) -> None:
        self.llm.close()
        self.retriever.store.close()

    # -- public ---------------------------------------------------------------------------------
    def ask(self, question: str, history: list[dict] | None = None, **kw) -> Answer:
        answer = None
        for event in self.stream(question, history, **kw):
            if event.kind == "answer":
                answer = event.data
        assert answer is not None
        return answer

    def stream(
        self,
        question: str,
        history: list[dict] | None = None,
        filters: Filters | None = None,
        top_k: int | None = None,
    ) -> Iterator[Event]:
        started = time.perf_counter()
        question = self._validate(question)
        history = [m for m in (history or []) if m.get("role") in ("user", "assistant") and m.get("content")]
        timings: dict[str, float] = {}

        query = question
        if history and self._looks_like_followup(question):
            yield Event("status", "rewriting the follow-up into a standalone query")
            t = time.perf_counter()
            query = self.rewrite(question, history)
            timings["rewrite_s"] = time.perf_counter() - t

        yield Event("status", f"searching: {query}")
        t = time.perf_counter()
        applied, compared, hits, per_method = self._plan(query, filters, top_k)
        timings["retrieval_s"] = time.perf_counter() - t

        answer = Answer(
            question=question,
            standalone_query=query,
            text="",
            filters=applied,
            filters_applied=applied.describe(),
            compared=compared,
            not_found=[m for m in compared if per_method.get(m) is None],
            model=self.llm.describe(),
        )
        if hits and not compared and is_listing(query, applied):
            # "Which papers by X / from 2025 / in cs.CL …?" is answered from the records themselves: every
            # paper the filters admit, most relevant first, each cited. No model call, nothing to invent.
            hits = self.retriever.search(query, top_k=max(self.settings.retrieval.top_k, LISTING_MAX), filters=applied)
            self._listing(answer, hits)
            timings["total_s"] = time.perf_counter() - started
            answer.timings = {k: round(v, 3) for k, v in timings.items()}
            yield Event("token", answer.text)
            yield Event("answer", answer)
            return
        if not hits or not self._relevant(hits, query, applied):
            answer.refused = True
            answer.text = REFUSAL
            answer.possibly_related = [h.paper.title for h in hits[:3]]
            answer.contexts = self._contexts(hits, [])
            timings["total_s"] = time.perf_counter() - started
            answer.timings = timings
            yield Event("token", REFUSAL)
            yield Event("answer", answer)
            return

        sources = self._source_texts(hits, query)
        answer.contexts = self._contexts(hits, sources)
        messages = self._messages(question, query, hits, sources, compared)
        yield Event("status", f"answering from {len(hits)} papers")
        text = ""
        if compared:
            # The per-method table is extracted from the abstracts (a 0.5B model cannot fill one reliably);
            # the model writes the comparison prose under it.
            text = comparison_table(compared, per_method, hits) + "\n\n"
            yield Event("token", text)
        t = time.perf_counter()
        first = None
        try:
            for delta in self.llm.stream_chat(
                messages, max_tokens=self.settings.llm.max_tokens, temperature=self.settings.llm.temperature
            ):
                if first is None:
                    first = time.perf_counter()
                text += delta
                yield Event("token", delta)
        except Exception as exc:  # LLMError subclasses carry a readable message
            answer.error = str(exc)
            answer.incomplete = True
            log.warning("answer interrupted: %s", exc)
        end = time.perf_counter()
        timings["ttft_s"] = (first or end) - started
        timings["generation_s"] = end - t
        stats = getattr(self.llm, "last", None)
        if stats is not None:
            answer.prompt_tokens = stats.prompt_tokens or 0
            answer.completion_tokens = stats.completion_tokens or 0
        self._finish(answer, text, hits, table_rows=len(compared))
        timings["total_s"] = time.perf_counter() - started
        answer.timings = {k: round(v, 3) for k, v in timings.items()}
        yield Event("answer", answer)

    def build_messages(self, question: str, filters: Filters | None = None, top_k: int | None = None) -> list[dict]:
        """The exact prompt `stream()` sends for a question without history (benchmarks compare against it)."""
        question = self._validate(question)
        _applied, compared, hits, _ = self._plan(question, filters, top_k)
        return self._messages(question, question, hits, self._source_texts(hits, question), compared)

    # -- steps ----------------------------------------------------------------------------------
    def _plan(self, query: str, filters: Filters | None, top_k: int | None):
        """Filters (explicit ones in the question + given ones), comparison targets, and the retrieved papers."""
        applied = filters_from_question(query, list(self.retriever.papers.values()))
        if filters is not None:
            applied = Filters(**{**applied.model_dump(exclude_none=True), **filters.model_dump(exclude_none=True)})
        try:
            applied.validate()
        except ValueError as exc:
            raise QuestionError(str(exc)) from None
        compared = comparison_targets(query)
        hits, per_method = self._retrieve(query, applied, top_k, compared)
        return applied, compared, hits, per_method

    def _validate(self, question: str) -> str:
        return validate_question(question, self.settings.max_question_chars)

    @staticmethod
    def _looks_like_followup(question: str) -> bool:
        return bool(_PRONOUN.search(question)) or len(question.split()) <= 5

    def rewrite(self, question: str, history: list[dict]) -> str:
        """A standalone query for a follow-up.

        A pronoun with a named method in the conversation is resolved directly (instant, and more reliable
        than a 0.5B model); otherwise the model rewrites, and its rewrite is checked against the conversation.
        """
        recent = history[-4:]
        terms = list(dict.fromkeys(t for m in reversed(recent) for t in salient_terms(m["content"])))
        if terms and _REFERENCE.search(question):
            return resolve_references(question, recent)
        convo = "\n".join(f"{m['role']}: {m['content'][:600]}" for m in recent)
        rewritten = ""
        try:
            reply = self.llm.chat(
                [{"role": "user", "content": render("rewrite.md", history=convo, question=question)}],
                max_tokens=64,
                temperature=0.0,
            )
            rewritten = (reply.strip().splitlines() or [""])[0].strip().strip('"')
        except Exception as exc:
            log.warning("query rewrite failed, using a heuristic: %s", exc)
        rewritten = re.sub(r"^(?:rewritten (?:question|query)\s*:\s*)", "", rewritten, flags=re.I).strip()
        asked = content_words(_PRONOUN.sub(" ", question))
        # accept a rewrite only if it keeps the question's words and names something from the conversation
        keeps_question = not asked or len(asked & content_words(rewritten)) >= max(1, len(asked) // 2)
        names_referent = not terms or any(t.lower() in rewritten.lower() for t in terms)
        if rewritten and keeps_question and names_referent:
            return rewritten
        return resolve_references(question, recent)

    def _retrieve(
        self, query: str, filters: Filters, top_k: int | None, compared: list[str]
    ) -> tuple[list[Hit], dict[str, Hit | None]]:
        top_k = top_k or self.settings.retrieval.top_k
        hits = self.retriever.search(query, top_k=top_k, filters=filters)
        if not compared:
            return hits, {}
        # every compared method must be in the context: retrieve for each one separately
        per_method: dict[str, Hit | None] = {}
        chosen: dict[str, Hit] = {}
        for target in compared:
            found = self.retriever.search(target, top_k=3, filters=filters)
            names = [t for t in salient_terms(target) if t.casefold() not in _GENERIC_NAMES]
            if names:
                # a named method must be named by the paper, else the corpus does not have it
                found = [h for h in found if any(_mentions(h.paper, n) for n in names)]
            hit = next((h for h in found if h.paper.id not in chosen), found[0] if found else None)
            per_method[target] = hit
            if hit is not None:
                chosen.setdefault(hit.paper.id, hit)
        # the compared papers alone make a shorter, clearer prompt; fill up only for methods not found
        room = len(compared) if all(per_method.values()) else max(top_k, len(compared))
        for hit in hits:
            if len(chosen) >= room:
                break
            chosen.setdefault(hit.paper.id, hit)
        return list(chosen.values()), per_method

    def _relevant(self, hits: list[Hit], query: str = "", filters: Filters | None = None) -> bool:
        """Refuse without calling the model when even the best hit is far from the question.

        A method name the corpus contains ("What does DoViT propose?") is relevant whatever the scores say:
        MiniLM knows made-up names least, and a short question gives BM25 little to score."""
        cfg = self.settings.retrieval
        if max(h.dense for h in hits) >= cfg.min_relevance or any(h.bm25 >= cfg.min_bm25 for h in hits):
            return True
        if filters is not None and filters.author:
            return True  # the question names an author of these papers: they are what it is about
        return bool(query) and bool(self.retriever.names(query, filters))

    def _source_texts(self, hits: list[Hit], query: str) -> list[str]:
        """What the model sees of each paper: its sentences that bear on the question, within a token budget.

        Prefill dominates answer latency on a CPU (~270 prompt tokens/s), so the model gets every source's
        best sentence first, then the next best sentences across sources (higher-ranked papers first) until
        ``retrieval.context_tokens`` is spent. Sentences keep their order inside an abstract.
        """
        cfg = self.settings.retrieval
        per_source = [source_sentences(h.paper.abstract) for h in hits]
        if cfg.context_tokens <= 0:
            return [" ".join(sents) for sents in per_source]
        q = content_words(query)
        numeric = bool(_NUMERIC_QUESTION.search(query))
        ranked: list[tuple[float, int, int]] = []  # (score, source, sentence)
        for si, sents in enumerate(per_source):
            for i, sent in enumerate(sents):
                words = content_words(sent)
                score = len(q & words) / (len(q) or 1)
                score += 0.2 * (i == 0) + (0.2 if numeric and re.search(r"\d", sent) else 0.0)
                ranked.append((score / (1 + 0.15 * si), si, i))
        ranked.sort(key=lambda r: -r[0])
        chosen: list[set[int]] = [set() for _ in hits]
        used = 0
        for _score, si, i in ranked:  # every source gets its best sentence
            if not chosen[si]:
                chosen[si].add(i)
                used += estimate_tokens(per_source[si][i])
        for _score, si, i in ranked:
            if i in chosen[si] or len(chosen[si]) >= cfg.sentences_per_source:
                continue
            cost = estimate_tokens(per_source[si][i])
            if used + cost > cfg.context_tokens:
                continue
            chosen[si].add(i)
            used += cost
        return [" ".join(sents[i] for i in sorted(keep)) for sents, keep in zip(per_source, chosen, strict=True)]

    def _messages(self, question: str, query: str, hits: list[Hit], sources: list[str], compared: list[str]):
        blocks = []
        for n, (hit, text) in enumerate(zip(hits, sources, strict=True), start=1):
            p = hit.paper
            authors = author_list(p.authors, p.authors_truncated)
            blocks.append(
                render(
                    "source.md",
                    n=n,
                    title=p.title,
                    authors=authors or "unknown authors",
                    year=p.year or "n.d.",
                    text=text,
                )
            )
        system = render("system.md", max_sentences=self.settings.llm.max_sentences)
        asked = query  # the model sees no history: give it the standalone form of a follow-up
        if compared:
            user = render("compare.md", sources="\n\n".join(blocks), question=asked, methods=" and ".join(compared))
        else:
            user = render("answer.md", sources="\n\n".join(blocks), question=asked)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _contexts(self, hits: list[Hit], sources: list[str]) -> list[Context]:
        out = []
        for n, hit in enumerate(hits, start=1):
            p: Paper = hit.paper
            out.append(
                Context(
                    n=n,
                    paper_id=p.id,
                    title=p.title,
                    authors=p.authors,
                    year=p.year,
                    category=p.category,
                    text=sources[n - 1] if sources else "",
                    score=round(hit.score, 5),
                    dense=round(hit.dense, 4),
                    bm25=round(hit.bm25, 3),
                )
            )
        return out

    def _finish(self, answer: Answer, raw: str, hits: list[Hit], table_rows: int = 0) -> None:
        table, prose = raw.split("\n\n", 1) if table_rows and "\n\n" in raw else ("", raw)
        sources = [
            SourceText(n, h.paper.id, " ".join(source_sentences(h.paper.abstract)), h.paper.title)
            for n, h in enumerate(hits, start=1)
        ]
        if is_refusal(prose):
            # The refusal sentence counts only when nothing the sources support is left without it: a model
            # that copies a planted refusal around a real answer must not lose the answer.
            rest = strip_refusal(prose)
            kept = check_citations(rest, sources) if rest else None
            if kept is None or not any(c.support >= CLEAR_SUPPORT for c in kept.citations):
                if not table_rows:
                    self._refuse(answer, hits)
                    return
                prose = ""  # keep the cited table, drop a refusal the model added under it
        raw = strip_refusal(f"{table}\n\n{prose}" if table else prose)
        checked = check_citations(raw, sources)
        checked.text, dropped = drop_uncited(checked.text)
        answer.text = checked.text
        answer.repair = {
            "removed_markers": checked.removed_markers,
            "attached": checked.attached,
            "dropped_sentences": dropped,
            "repaired": checked.repaired or bool(dropped),
        }
        answer.citations += [Citation.of(c.n, hits[c.n - 1].paper, c.evidence, c.attached) for c in checked.citations]
        words_outside_markers = re.sub(r"\[\d+\]|[\W\d_]+", " ", answer.text).split()
        if (not answer.citations or not words_outside_markers) and not answer.incomplete:
            # an answer that cites nothing, or is nothing but markers, is not grounded: refuse instead
            self._refuse(answer, hits)

    def _listing(self, answer: Answer, hits: list[Hit]) -> None:
        firsts = [source_sentences(h.paper.abstract)[0] for h in hits]
        answer.contexts = self._contexts(hits, firsts)
        lines = [
            (f"{len(hits)} papers in the corpus match" if len(hits) != 1 else "1 paper in the corpus matches")
            + f" {answer.filters_applied}"
            + (" (the most relevant first):" if len(hits) > 1 else ":")
        ]
        for n, (hit, first) in enumerate(zip(hits, firsts, strict=True), start=1):
            p = hit.paper
            facts = ", ".join(str(x) for x in (author_list(p.authors, p.authors_truncated), p.year, p.category) if x)
            name = method_name(p)
            named = f" — {name}" if name and name not in p.title else ""
            lines.append(f"- {p.title} ({facts}){named} [{n}]")
            answer.citations.append(Citation.of(n, p, first))
        if len(hits) >= LISTING_MAX:
            lines.append(f"(showing the first {LISTING_MAX}; narrow the filters to see others)")
        answer.text = "\n".join(lines)
        answer.model = "records (no model call)"

    @staticmethod
    def _refuse(answer: Answer, hits: list[Hit]) -> None:
        answer.refused = True
        answer.text = REFUSAL
        answer.citations = []
        answer.possibly_related = [h.paper.title for h in hits[:3]]


LISTING_MAX = 10
_LISTING = re.compile(r"^\s*(?:which|what|list|show|find|name)\b[^?]{0,80}\bpapers?\b", re.I)
_MORE_ASKED = re.compile(r"\band\s+(?:what|how|why|which|who|when|where)\b|,\s*and\b", re.I)


def is_listing(question: str, filters: Filters) -> bool:
    """A question that asks only which papers match an author, year or category filter."""
    return not filters.is_empty() and bool(_LISTING.search(question)) and not _MORE_ASKED.search(question)


_NOT_NAMES = {
    *("coco", "imagenet", "imagenet-1k", "ade20k", "cityscapes", "gpu", "gpus", "cpu", "ap", "miou", "flops"),
    *("map", "fps", "sota", "llm", "llms", "vit", "vits", "cnn", "cnns", "nlp", "rl", "gnn", "gnns", "mlp"),
    *("ai", "api", "qa", "ood", "3d", "2d", "iou", "url", "kd"),
}
_INTRO = re.compile(
    r"\b(?:we (?:propose|introduce|present|develop|design|build|call)|called|dubbed|named|termed|coined)\b", re.I
)


def method_name(paper: Paper) -> str | None:
    """The name a paper gives its method (MOSS, DoViT, Dyn-Perceiver), if it gives one.

    Listings show it because users ask by these names, which titles often lack."""
    head = paper.title.split(":", 1)[0].strip()
    if ":" in paper.title and len(head.split()) <= 2 and salient_terms(head):
        return head
    for sentence in split_sentences(paper.abstract):
        if not _INTRO.search(sentence):
            continue
        for term in salient_terms(sentence):
            if term.casefold() in _NOT_NAMES:
                continue
            uses = len(re.findall(rf"(?<![\w-]){re.escape(term)}(?![\w-])", paper.abstract))
            if uses >= 2 or term in paper.title:
                return term
    return None


_GENERIC_NAMES = {"yolo", "vit", "cnn", "gnn", "llm", "llms", "nlp", "rl"}


def _mentions(paper: Paper, name: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", f"{paper.title} {paper.abstract}", re.I) is not None


_PROBLEM = re.compile(
    r"\b(however|challeng|problem|suffer|limit|costly|expensive|difficult|bottleneck|remain|issue)", re.I
)
_APPROACH = re.compile(
    r"\b(we (?:propose|introduce|present|develop|design|build)|(?:this|our) (?:paper|work|study) (?:propose|introduce"
    r"|present)|called|dubbed|named)",
    re.I,
)
_RESULT = re.compile(r"\b(achiev|outperform|attain|improv|reduc|surpass|gain|boost|exceed|speed)", re.I)


def _result_signal(sentence: str) -> float:
    """How much a sentence reads like a reported result: numbers, percentages, result verbs."""
    return len(re.findall(r"\d+(?:\.\d+)?", sentence)) + 2 * sentence.count("%") + 3 * bool(_RESULT.search(sentence))


def _cell(text: str, words: int = 28) -> str:
    parts = text.replace("|", "/").split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


def comparison_table(compared: list[str], per_method: dict[str, Hit | None], hits: list[Hit]) -> str:
    """A markdown table, one cited row per compared method, cells taken from its abstract."""
    number = {h.paper.id: n for n, h in enumerate(hits, start=1)}
    rows = ["| Method | Problem | Approach | Reported results |", "|---|---|---|---|"]
    for method in compared:
        hit = per_method.get(method)
        if hit is None:
            rows.append(f"| {_cell(method, 8)} | not found in the corpus | – | – |")
            continue
        sents = source_sentences(hit.paper.abstract)
        problem = next((x for x in sents if _PROBLEM.search(x)), sents[0])
        approach = next((x for x in sents if _APPROACH.search(x) and x != problem), sents[min(1, len(sents) - 1)])
        result = max(reversed(sents), key=_result_signal)
        n = number[hit.paper.id]
        rows.append(f"| {_cell(method, 8)} [{n}] | {_cell(problem)} | {_cell(approach)} | {_cell(result)} [{n}] |")
    return "\n".join(rows)


_REFUSAL_WORDS = content_words(REFUSAL)


def strip_refusal(text: str) -> str:
    """Remove a refusal sentence the model appended after real content."""
    return re.sub(re.escape(REFUSAL.rstrip(".")) + r"\.?", "", text, flags=re.I).strip()


def is_refusal(text: str) -> bool:
    """The model answered with the refusal sentence (possibly with small variations), not with content."""
    lowered = " ".join(text.lower().split())
    if lowered.startswith(_REFUSAL_KEY) or (_REFUSAL_KEY in lowered and len(lowered) < 2 * len(REFUSAL)):
        return True
    head = lowered[: len(REFUSAL) + 40]
    words = content_words(head)
    return len(_REFUSAL_WORDS & words) >= len(_REFUSAL_WORDS) - 1 and len(lowered) < 2 * len(REFUSAL)
