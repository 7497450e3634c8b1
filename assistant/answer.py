"""The answer pipeline: plan -> retrieval -> answerability -> evidence -> prompt -> streamed reply -> checked answer.

The pipeline judges, the model writes. Whether to answer is decided before any model call (`judge.judge_question`);
the model is handed the selected evidence, numbered, and asked only to write; its reply is checked against that
evidence (`judge.check_reply`), and when it fails (a refusal, nothing supported, an LLM error) the answer is the
best evidence quoted with citations. Every answer records the path that produced it (`Answer.path`).

`Assistant.stream()` yields events as they happen (the evidence before the model's first token);
`Assistant.ask()` returns the final `Answer`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal

from pydantic import BaseModel, Field

from .cite import SourceText, cited_clauses, cited_grammar, content_words, units
from .config import Settings
from .evidence import Evidence, EvidenceSelector, Sentence, usable_sentences
from .filters import Filters
from .judge import Verdict, check_reply, judge_question
from .llm_errors import LLMAuthError, LLMError, LLMModelNotFound, LLMStartError, one_line
from .names import PROPOSAL_CUE, mentions, method_name, proposal_sentence, salient_terms
from .paper import Paper
from .plan import (
    PRONOUN,
    Gathered,
    Plan,
    PlanError,
    conversation_names,
    gather,
    plan_question,
    resolve_references,
)
from .prompts import REFUSAL, render
from .quantities import answers_quantity, asked_quantities, new_numbers, reports_quantity
from .retrieve import Hit, Retriever
from .text import author_list, plain_math

log = logging.getLogger(__name__)

# LLM failures that end an answer with an error instead of the extractive floor: the model cannot run at all
# (a crashed or garbage-producing embedded server), or the endpoint refuses the key or the model name.
BROKEN = (LLMStartError, LLMAuthError, LLMModelNotFound)

AnswerPath = Literal["generated", "generated+repaired", "extractive", "refused"]
PATHS: tuple[AnswerPath, ...] = ("generated", "generated+repaired", "extractive", "refused")


class QuestionError(ValueError):
    """The question cannot be asked as given (empty, too long, an impossible filter); the message says why and
    ``reason`` says what for code: empty, too_long, not_text, plan (its filters), no_model (answered without one)."""

    def __init__(self, message: str, reason: str = "plan"):
        super().__init__(message)
        self.reason = reason


def validate_question(question: object, limit: int) -> str:
    """The question as the pipeline uses it: control characters removed, other whitespace made a space.

    Raises QuestionError for a non-text, empty or over-long question (checked before anything is loaded)."""
    if not isinstance(question, str):
        raise QuestionError("The question must be text.", "not_text")
    kept = []
    for ch in question:
        if ch in "\n\t" or ch.isprintable():
            kept.append(ch)
        elif ch.isspace():  # no-break, thin, ideographic spaces: a space, so "DoViT\u00a0speed" stays two words
            kept.append(" ")
    cleaned = "".join(kept).strip()
    if not cleaned:
        raise QuestionError("The question is empty: type a question about the papers.", "empty")
    if len(cleaned) > limit:
        raise QuestionError(
            f"The question is {len(cleaned):,} characters long; the limit is {limit:,}. Shorten it.", "too_long"
        )
    if not any(ch.isalnum() for ch in cleaned):  # emoji or punctuation only: nothing to search for or to plan from
        raise QuestionError("The question has no words: type a question about the papers in words.", "no_words")
    # citation markers the user typed are not citations of this answer's sources
    cleaned = re.sub(r"\s*\[\d{1,3}(?:\s*[,;]\s*\d{1,3})*\]", "", cleaned).strip() or cleaned
    return cleaned


_REFUSAL_KEY = " ".join(REFUSAL.lower().rstrip(".").split())


def source_sentences(abstract: str) -> list[str]:
    """An abstract's sentences without planted instructions or the refusal sentence."""
    return usable_sentences(abstract, _REFUSAL_KEY)


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
    text: str = Field(description="What the model was shown for this source (its evidence sentences).")
    score: float
    dense: float
    bm25: float


class Answer(BaseModel):
    question: str
    standalone_query: str
    text: str
    path: AnswerPath = Field("generated", description="What produced the text: " + ", ".join(PATHS) + ".")
    kind: str = Field("factoid", description="The plan's question kind: factoid, comparison or listing.")
    refused: bool = False
    refusal_check: str = Field("", description="The answerability check that refused (off_topic, name_absent, …).")
    failure: str = Field("", description="Why the model's reply could not be the answer (extractive path).")
    reply: str = Field("", description="The model's reply as it streamed, before any check.")
    citations: list[Citation] = Field(default_factory=list)
    contexts: list[Context] = Field(default_factory=list)
    evidence: list[Sentence] = Field(default_factory=list, description="The evidence sentences, most relevant first.")
    possibly_related: list[str] = Field(default_factory=list, description="Closest titles, given with a refusal.")
    filters: Filters = Field(default_factory=Filters)
    filters_applied: str = "none"
    compared: list[str] = Field(default_factory=list, description="Methods compared, for comparison questions.")
    not_found: list[str] = Field(default_factory=list, description="Compared methods no paper in the corpus names.")
    picked: dict[str, str | None] = Field(
        default_factory=dict, description="Each compared target and the title of the paper the plan picked for it."
    )
    notes: list[str] = Field(default_factory=list, description="What the user should know about the filters.")
    plan_why: list[str] = Field(default_factory=list, description="What the planner read from the question.")
    plan: Plan | None = Field(None, description="The whole plan the answer followed (the evals rank with it).")
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: dict[str, float] = Field(default_factory=dict)
    repair: dict[str, Any] = Field(default_factory=dict, description="Markers removed and citations attached.")
    incomplete: bool = False
    error: str | None = None

    def as_message(self) -> dict:
        """This answer as a history message; ``papers`` (the cited paper ids) tells the planner what a follow-up's
        "it" or "the same group" refers to."""
        return {
            "role": "assistant",
            "content": self.text,
            "papers": list(dict.fromkeys(c.paper_id for c in self.citations)),
        }


@dataclass
class Event:
    """A step of `Assistant.stream()`: ``status`` (str, for people), ``evidence`` (`Evidence`, before any token),
    ``token`` (str), ``answer`` (the final `Answer`). ``step`` says where a status stands for code that reacts to
    it: ``rewrite`` and ``search`` read the indexes, ``write`` (the model is writing) no longer does."""

    kind: Literal["status", "evidence", "token", "answer"]
    data: Any
    step: Literal["rewrite", "search", "write"] | None = None


@dataclass
class Prepared:
    """Everything decided before the model is called."""

    plan: Plan
    gathered: Gathered
    verdict: Verdict
    hits: list[Hit]
    evidence: Evidence | None = None
    messages: list[dict] | None = None
    grammar: str | None = None  # the decoding constraint sent with the messages, if any
    table: str = ""
    rows: dict[int, Row] | None = None  # comparisons: source n -> the compared paper's table row


class Assistant:
    def __init__(self, settings: Settings, retriever: Retriever, llm):
        self.settings = settings
        self.retriever = retriever
        self.llm = llm

    def describe(self) -> dict[str, str]:
        store = self.retriever.store
        llm = self.llm.describe() if self.llm is not None else "none (plans and retrieves only)"
        return {"llm": llm, "embedder": store.embedder.describe(), "store": store.describe()}

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.retriever.close()

    @property
    def selector(self) -> EvidenceSelector:
        cfg = self.settings.retrieval
        return EvidenceSelector(
            self.retriever.sentences,
            scorer=cfg.evidence_scorer,
            budget_tokens=cfg.context_tokens,
            per_source=cfg.sentences_per_source,
            refusal_key=_REFUSAL_KEY,
            embed_query=self.retriever.store.embedder.embed_query,
        )

    # -- public ---------------------------------------------------------------------------------
    def ask(self, question: str, history: list[dict] | None = None, **kw) -> Answer:
        answer = None
        for event in self.stream(question, history, **kw):
            if event.kind == "answer":
                answer = event.data
        assert answer is not None
        return answer

    def plan(self, question: str, history: list[dict] | None = None, filters: Filters | None = None) -> Plan:
        """The plan for a question (follow-ups rewritten, filters read, comparison targets found)."""
        question = self._validate(question)
        history = [m for m in (history or []) if m.get("role") in ("user", "assistant") and m.get("content")]
        try:
            propose = self.propose_plan if self.settings.llm.planner == "model" else None
            return plan_question(question, history, self.retriever, filters, rewrite=self.rewrite, propose=propose)
        except PlanError as exc:
            raise QuestionError(str(exc)) from None

    def prepare(self, plan: Plan, top_k: int | None = None) -> Prepared:
        """Retrieve for the plan, judge answerability, select the evidence and build the prompt."""
        top_k = top_k or self.settings.retrieval.top_k
        gathered = gather(plan, self.retriever, top_k)
        hits = gathered.hits
        verdict = judge_question(plan, hits, self.retriever.name_index, self.settings.retrieval, self._sentences)
        prepared = Prepared(plan, gathered, verdict, hits)
        if not verdict.answerable or plan.kind == "listing":
            return prepared
        if verdict.subject_papers and plan.kind == "factoid":
            # the question names its subject: papers that do not use every name it asks about are distractors
            hits = [h for h in hits if h.paper.id in verdict.subject_papers] or hits
        if plan.kind == "comparison":
            hits = self._comparison_order(plan, gathered)
        prepared.hits = hits
        evidence = self.selector.select(plan.query, [h.paper for h in hits], plan.names)
        if plan.kind == "comparison":
            prepared.rows = self._table_rows(plan, gathered, hits)
            evidence = _with_row_sentences(evidence, prepared.rows)
            prepared.table = comparison_table(plan, gathered.per_target, hits, prepared.rows)
        prepared.evidence = evidence
        prepared.messages = self._messages(plan, evidence, gathered)
        prepared.grammar = self._grammar(len(evidence.sources))
        return prepared

    def build_messages(self, question: str, filters: Filters | None = None, top_k: int | None = None) -> list[dict]:
        """The exact prompt `stream()` sends for a question without history (benchmarks compare against it)."""
        return self.model_request(question, filters, top_k)[0]

    def model_request(
        self, question: str, filters: Filters | None = None, top_k: int | None = None
    ) -> tuple[list[dict], str | None]:
        """(messages, grammar) exactly as `stream()` sends them for a question without history.

        Raises QuestionError for a question the pipeline answers without the model (refused, or listed)."""
        prepared = self.prepare(self.plan(question, None, filters), top_k)
        if prepared.messages is None:
            raise QuestionError(
                "this question is answered without the model (refused or listed from the records)", "no_model"
            )
        return prepared.messages, prepared.grammar

    def stream(
        self,
        question: str,
        history: list[dict] | None = None,
        filters: Filters | None = None,
        top_k: int | None = None,
    ) -> Iterator[Event]:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        has_history = bool(history)
        if has_history:
            yield Event("status", "reading the follow-up in the light of the conversation", "rewrite")
        t = time.perf_counter()
        plan = self.plan(question, history, filters)
        timings["plan_s"] = time.perf_counter() - t
        yield Event("status", f"searching: {plan.query}", "search")
        t = time.perf_counter()
        prepared = self.prepare(plan, top_k)
        timings["retrieval_s"] = time.perf_counter() - t
        answer = Answer(
            question=plan.question,
            standalone_query=plan.query,
            text="",
            kind=plan.kind,
            filters=plan.filters,
            filters_applied=plan.filters.describe(),
            compared=plan.compared,
            not_found=[m for m in plan.compared if prepared.gathered.per_target.get(m) is None],
            picked=prepared.gathered.picked(),
            plan_why=plan.why,
            plan=plan,
            model=self.llm.describe(),
        )
        if not plan.filters.is_empty() and (note := plan.filters.lacking_note(list(self.retriever.papers.values()))):
            answer.notes.append(note)

        def finish() -> Event:
            timings["total_s"] = time.perf_counter() - started
            answer.timings = {k: round(v, 3) for k, v in timings.items()}
            return Event("answer", answer)

        if plan.kind == "listing" and prepared.hits and prepared.verdict.answerable:
            # "Which papers by X / from 2025 / in cs.CL …?" is answered from the records themselves: every
            # paper the filters admit, most relevant first, each cited. No model call, nothing to invent.
            self._listing(answer, prepared.hits)
            timings["first_evidence_s"] = time.perf_counter() - started
            yield Event("token", answer.text)
            yield finish()
            return
        if not prepared.verdict.answerable:
            self._refuse(answer, prepared.hits, prepared.verdict)
            answer.contexts = self._contexts(prepared.hits, None)
            yield Event("token", answer.text)
            yield finish()
            return

        evidence = prepared.evidence
        assert evidence is not None and prepared.messages is not None
        hits = prepared.hits
        answer.contexts = self._contexts(hits, evidence)
        answer.evidence = evidence.ranked()
        timings["first_evidence_s"] = time.perf_counter() - started
        yield Event("evidence", evidence)
        yield Event("status", f"writing from {len(hits)} papers", "write")
        text = ""
        if prepared.table:
            # The per-method table is built by the pipeline from each paper's evidence; the model writes the prose.
            yield Event("token", prepared.table + "\n\n")
        t = time.perf_counter()
        first = None
        try:
            for delta in self.llm.stream_chat(
                prepared.messages,
                max_tokens=self.settings.llm.max_tokens,
                temperature=self.settings.llm.temperature,
                grammar=prepared.grammar,
            ):
                if first is None:
                    first = time.perf_counter()
                text += delta
                yield Event("token", delta)
        except BROKEN:
            raise  # a model that cannot run or a wrong key/model name is a broken installation, not an answer path
        except LLMError as exc:  # a timeout, a server that died mid-answer, a 5xx: the evidence is quoted instead
            answer.error = one_line(exc)
            answer.incomplete = True
            log.warning("answer interrupted: %s", exc)
        end = time.perf_counter()
        timings["ttft_s"] = (first or end) - started
        timings["generation_s"] = end - t
        stats = getattr(self.llm, "last", None)
        if stats is not None:
            answer.prompt_tokens = stats.prompt_tokens or 0
            answer.completion_tokens = stats.completion_tokens or 0
        self._finish(answer, text, prepared)
        answer.evidence = evidence.ranked()
        yield finish()

    # -- steps ----------------------------------------------------------------------------------
    def _grammar(self, n_sources: int) -> str | None:
        """The decoding constraint for the reply (every sentence cited), where the setting and the server allow."""
        if self.settings.llm.constrained != "grammar" or not getattr(self.llm, "supports_grammar", False):
            return None
        return cited_grammar(n_sources, self.settings.llm.max_sentences)

    def _validate(self, question: str) -> str:
        return validate_question(question, self.settings.max_question_chars)

    @staticmethod
    def _sentences(paper: Paper) -> list[str]:
        return source_sentences(paper.abstract)

    def propose_plan(self, question: str, history: list[dict]) -> str:
        """The model's JSON plan for a question (``ASSISTANT_LLM__PLANNER=model``); the planner validates it."""
        prompt = render("plan.md", history=_conversation(history[-4:]) or "(none)", question=question)
        return self.llm.chat([{"role": "user", "content": prompt}], max_tokens=200, temperature=0.0)

    def rewrite(self, question: str, history: list[dict]) -> str:
        """A standalone query for a follow-up whose conversation names nothing to point at (the planner resolves
        the others itself): the model rewrites, and its rewrite is checked against the conversation."""
        recent = history[-4:]
        index = self.retriever.name_index
        terms = conversation_names(recent, index)
        convo = _conversation(recent)
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
        asked = content_words(PRONOUN.sub(" ", question))
        # accept a rewrite only if it keeps the question's words and names something from the conversation
        keeps_question = not asked or len(asked & content_words(rewritten)) >= max(1, len(asked) // 2)
        names_referent = not terms or any(t.lower() in rewritten.lower() for t in terms)
        if rewritten and keeps_question and names_referent:
            return rewritten
        return resolve_references(question, recent, index)

    @staticmethod
    def _comparison_order(plan: Plan, gathered: Gathered) -> list[Hit]:
        """Each compared target's paper in the order the question names them, then any other retrieved paper."""
        first = [h for m in plan.compared if (h := gathered.per_target.get(m)) is not None]
        seen: dict[str, Hit] = {}
        for h in [*first, *gathered.hits]:
            seen.setdefault(h.paper.id, h)
        return list(seen.values())

    def _table_rows(self, plan: Plan, gathered: Gathered, hits: list[Hit]) -> dict[int, Row]:
        """Each compared paper's usable sentences, scored against the question, and the table cells chosen."""
        number = {h.paper.id: n for n, h in enumerate(hits, start=1)}
        found = list(dict.fromkeys(h.paper.id for h in gathered.per_target.values() if h is not None))
        papers = [self.retriever.papers[pid] for pid in found]
        scored = self.selector.score(plan.query, papers, plan.names)
        rows = {}
        for pid, sents in zip(found, scored, strict=True):
            texts = [x.text for x in sents]
            paper = self.retriever.papers[pid]
            rows[number[pid]] = table_row(texts, [x.score for x in sents], method_name(paper))
        return rows

    def _messages(self, plan: Plan, evidence: Evidence, gathered: Gathered) -> list[dict]:
        """The prompt: the numbered sources, then the evidence sentences, most relevant first, each already
        carrying its source's marker — a model that copies evidence copies its citation with it."""
        sources = "\n".join(
            render(
                "source.md",
                n=s.n,
                title=plain_math(s.title),
                authors=author_list(s.authors, s.authors_truncated) or "unknown authors",
                year=s.year or "n.d.",
                facts=f"; {s.facts}" if s.facts else "",
            )
            for s in evidence.sources
        )
        lines = "\n".join(f"- {plain_math(s.text)} [{s.n}]" for s in evidence.ranked())
        system = render("system.md", max_sentences=self.settings.llm.max_sentences)
        if plan.kind == "comparison":
            number = {s.paper_id: s.n for s in evidence.sources}
            found = [(row_label(m, h.paper), number[h.paper.id]) for m, h in gathered.per_target.items() if h]
            methods = " and ".join(f"{m} [{n}]" for m, n in found) or " and ".join(plan.compared)
            user = render("compare.md", sources=sources, evidence=lines, question=plan.query, methods=methods)
        else:
            user = render("answer.md", sources=sources, evidence=lines, question=plan.query)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _contexts(self, hits: list[Hit], evidence: Evidence | None) -> list[Context]:
        out = []
        for n, hit in enumerate(hits, start=1):
            p: Paper = hit.paper
            src = evidence.source(n) if evidence is not None else None
            out.append(
                Context(
                    n=n,
                    paper_id=p.id,
                    title=p.title,
                    authors=p.authors,
                    year=p.year,
                    category=p.category,
                    text=src.text if src is not None else "",
                    score=round(hit.score, 5),
                    dense=round(hit.dense, 4),
                    bm25=round(hit.bm25, 3),
                )
            )
        return out

    def _finish(self, answer: Answer, raw: str, prepared: Prepared) -> None:
        """Check the reply against the evidence; fall back to quoted evidence when it cannot be the answer."""
        evidence = prepared.evidence
        assert evidence is not None
        hits = prepared.hits
        sources = [source_text(s) for s in evidence.sources]
        answer.reply = raw
        reply = check_reply(raw, sources, self.retriever.name_index)
        answer.repair = {
            "removed_markers": reply.check.removed_markers if reply.check else [],
            "attached": reply.check.attached if reply.check else 0,
            "recited": reply.recited,
            "dropped_sentences": reply.dropped,
            "repaired": reply.repaired,
        }
        table = prepared.table
        if reply.failed or answer.error:
            answer.failure = answer.error or reply.failed
            kept = "" if reply.failed else reply.text
            self._extractive(answer, prepared, kept, reply)
            return
        text = reply.text
        text = self._named_answer(prepared.plan.query, text, hits, reply)
        appended = self._missing_quantities(prepared.plan.query, text, evidence, hits)
        contrast, paired = ("", []) if prepared.plan.kind != "comparison" else self._contrast(prepared, text)
        if appended:
            text += "\n\nFrom the abstracts:\n" + "\n".join(_quote(s) for s in appended)
        if contrast:
            text += "\n\nHow they differ in approach, quoted from the abstracts:\n" + contrast
        if appended or contrast:
            answer.repair["quoted"] = [s.text for s in [*appended, *paired]]
            answer.repair["repaired"] = True
        appended += paired
        answer.text = f"{table}\n\n{text}" if table else text
        answer.citations = self._citations(reply, hits, appended, table, evidence)
        answer.path = "generated+repaired" if answer.repair["repaired"] else "generated"

    @staticmethod
    def _named_answer(question: str, text: str, hits: list[Hit], reply) -> str:
        """A "which method / which paper …" question is answered by a name: when the reply describes the method
        without naming it, the name of the paper it cites first leads the answer."""
        m = _WHICH.search(question)
        cited = [c.n for c in reply.check.citations] if reply.check else []
        if not m or not cited or cited[0] > len(hits):
            return text
        paper = hits[cited[0] - 1].paper
        name = method_name(paper)
        if name is not None and mentions(text, name):
            return text
        if name is None and paper.title.casefold() in text.casefold():
            return text
        noun = m.group(1).lower()
        said = f"The {noun} is {name}" if name else f"The {noun} is “{paper.title}”"
        return f"{said} [{cited[0]}]. {text}"

    def _missing_quantities(self, question: str, text: str, evidence: Evidence, hits: list[Hit]) -> list[Sentence]:
        """For each quantity the question asks and the reply does not state, the best sentence that reports it
        ("how many GPUs … and how many days": one sentence per missing quantity): from the evidence first, else
        from the rest of the same abstracts (and then it joins the evidence)."""
        selected = {(s.n, s.index) for s in evidence.ranked()}
        rest = [
            Sentence(n=n, paper_id=h.paper.id, index=i, text=t, score=0.0)
            for n, h in enumerate(hits, start=1)
            for i, t in enumerate(self._sentences(h.paper))
            if (n, i) not in selected
        ]
        out: list[Sentence] = []
        for how, head in asked_quantities(question):
            if answers_quantity(text, question, how, head):
                continue
            best = next(
                (
                    s
                    for s in [*evidence.ranked(), *rest]
                    if new_numbers(s.text, question) and (how == "what" or reports_quantity(s.text, how, head))
                ),
                None,
            )
            if best is not None and best not in out:
                out.append(best)
                text += " " + best.text
                src = evidence.source(best.n)
                if src is not None and (best.n, best.index) not in selected:
                    src.sentences = sorted([*src.sentences, best], key=lambda x: x.index)
        return out

    def _contrast(self, prepared: Prepared, text: str) -> tuple[str, list[Sentence]]:
        """For each pair of compared papers that no sentence of the reply cites together, one quoted line that
        sets their approach sentences side by side, each cited (the prose must state a difference per pair)."""
        evidence = prepared.evidence
        assert evidence is not None
        rows = prepared.rows or {}
        number = {h.paper.id: n for n, h in enumerate(prepared.hits, start=1)}
        targets = [(m, h) for m in prepared.plan.compared if (h := prepared.gathered.per_target.get(m)) is not None]
        cited_together = [set(n for _, ns in cited_clauses(u) for n in ns) for u in units(text)]
        lines, used = [], []
        for (ma, ha), (mb, hb) in combinations(targets, 2):
            a, b = number[ha.paper.id], number[hb.paper.id]
            if a == b or any({a, b} <= c for c in cited_together):
                continue
            quoted = []
            for m, h, n in ((ma, ha, a), (mb, hb, b)):
                src = evidence.source(n)
                if src is None or n not in rows:
                    break
                row = rows[n]
                index = row.relevant if row.relevant is not None else row.proposes
                sentence = next(x for x in src.sentences if x.index == index)
                quoted.append(f"{row_label(m, h.paper)}: “{sentence.text.strip()}” [{n}]")
                used.append(sentence)
            if len(quoted) == 2:
                lines.append("> " + " — ".join(quoted))
        return "\n".join(lines), used

    def _citations(self, reply, hits: list[Hit], appended: list[Sentence], table: str, evidence: Evidence):
        by_n = {n: h.paper for n, h in enumerate(hits, start=1)}
        citations: dict[int, Citation] = {}
        if table:
            for n in sorted({int(m) for m in re.findall(r"\[(\d+)\]", table)}):
                src = evidence.source(n)
                if n in by_n and src is not None and src.sentences:
                    citations[n] = Citation.of(n, by_n[n], max(src.sentences, key=lambda s: s.score).text)
        if reply.check is not None:
            for c in reply.check.citations:
                if c.n in by_n and (c.n not in citations or not table):
                    citations[c.n] = Citation.of(c.n, by_n[c.n], c.evidence, c.attached)
        for s in appended:
            citations.setdefault(s.n, Citation.of(s.n, by_n[s.n], s.text))
        order = [int(m) for m in re.findall(r"\[(\d+)\]", "\n".join([table, reply.text, *(x.text for x in appended)]))]
        order += [s.n for s in appended]
        return [citations[n] for n in dict.fromkeys(order) if n in citations]

    def _extractive(self, answer: Answer, prepared: Prepared, kept: str, reply) -> None:
        """The extractive floor: the best evidence, quoted with citations, labelled as quotations."""
        evidence = prepared.evidence
        assert evidence is not None
        quotes = floor_sentences(evidence, prepared.plan, self.settings.retrieval.extractive_sentences)
        why = answer.failure.rstrip(".")
        lines = []
        if prepared.table:
            lines += [prepared.table, ""]
        if kept:
            lines += [kept, ""]
        lines.append(f"Quoted from the abstracts (the model's answer could not be used: {why}):")
        lines += [_quote(s) for s in quotes]
        answer.text = "\n".join(lines)
        answer.path = "extractive"
        by_n = {n: h.paper for n, h in enumerate(prepared.hits, start=1)}
        citations: dict[int, Citation] = {}
        if kept and reply.check is not None:
            for c in reply.check.citations:
                citations.setdefault(c.n, Citation.of(c.n, by_n[c.n], c.evidence, c.attached))
        for s in quotes:
            citations.setdefault(s.n, Citation.of(s.n, by_n[s.n], s.text))
        if prepared.table:
            for n in sorted({int(m) for m in re.findall(r"\[(\d+)\]", prepared.table)}):
                src = evidence.source(n)
                if n in by_n and src is not None and src.sentences:
                    citations.setdefault(n, Citation.of(n, by_n[n], src.sentences[0].text))
        order = [int(m) for m in re.findall(r"\[(\d+)\]", answer.text)]
        answer.citations = [citations[n] for n in dict.fromkeys(order) if n in citations]

    def _listing(self, answer: Answer, hits: list[Hit]) -> None:
        firsts = [proposal_sentence(h.paper) for h in hits]
        answer.contexts = [
            c.model_copy(update={"text": first}) for c, first in zip(self._contexts(hits, None), firsts, strict=True)
        ]
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
            lines.append(f"- {p.title} ({facts}){named}: “{_cell(first, 45)}” [{n}]")
            answer.citations.append(Citation.of(n, p, first))
        matching = sum(answer.filters.matches(p) for p in self.retriever.papers.values())
        if matching > len(hits):
            lines.append(f"(showing the {len(hits)} most relevant of {matching}; narrow the filters to see others)")
        answer.text = "\n".join(lines)
        answer.model = "records (no model call)"
        answer.path = "extractive"

    @staticmethod
    def _refuse(answer: Answer, hits: list[Hit], verdict: Verdict) -> None:
        answer.refused = True
        answer.path = "refused"
        answer.refusal_check = verdict.check
        answer.text = verdict.reason or REFUSAL
        answer.citations = []
        answer.possibly_related = [h.paper.title for h in hits[:3]]


def _with_row_sentences(evidence: Evidence, rows: dict[int, Row]) -> Evidence:
    """A comparison's evidence keeps every sentence its table shows, so every cell the user sees is evidence the
    model saw and the answer can cite."""
    for src in evidence.sources:
        if src.n not in rows:
            continue
        row = rows[src.n]
        have = {s.index for s in src.sentences}
        for i in row.indexes():
            if i not in have:
                src.sentences.append(
                    Sentence(n=src.n, paper_id=src.paper_id, index=i, text=row.sentences[i], score=0.0)
                )
        src.sentences.sort(key=lambda s: s.index)
    return evidence


def _conversation(history: list[dict]) -> str:
    """Chat turns as the rewrite and plan prompts show them ("role: text", each cut at 600 characters)."""
    return "\n".join(f"{m['role']}: {m['content'][:600]}" for m in history)


def source_text(src) -> SourceText:
    """What the citation check compares a sentence with: the source's evidence, and its title and record fields
    (a claim about a paper's date or category is supported by the record)."""
    header = f"{src.title} ({author_list(src.authors, src.authors_truncated)}, {src.year or 'n.d.'}; {src.facts})"
    return SourceText(src.n, src.paper_id, " ".join(x.text for x in src.sentences), header)


_WHICH = re.compile(
    r"^\s*(?:which|what)\s+(?:[\w-]+\s+){0,3}?(method|paper|approach|framework|model|detector|network|benchmark"
    r"|dataset|technique|family|architecture|system|algorithm|work)\b",
    re.I,
)


def _quote(s: Sentence) -> str:
    return f"> “{s.text.strip()}” [{s.n}]"


def floor_sentences(evidence: Evidence, plan: Plan, count: int) -> list[Sentence]:
    """The sentences the extractive floor quotes: the best ones overall (at most two per paper), or for a
    comparison each compared paper's best; in abstract order within a paper."""
    ranked = [s for s in evidence.ranked() if s.score > 0] or evidence.ranked()
    if plan.kind == "comparison":
        per: dict[int, list[Sentence]] = {}
        for s in ranked:
            per.setdefault(s.n, []).append(s)
        picked = [x for n in sorted(per)[: max(2, len(plan.compared))] for x in per[n][:1]]
    else:
        picked, used = [], {}
        per_paper = 2 if len({s.n for s in ranked}) > 1 else count  # several papers: the best two of each
        for s in ranked:
            if used.get(s.n, 0) >= per_paper:
                continue
            picked.append(s)
            used[s.n] = used.get(s.n, 0) + 1
            if len(picked) >= count:
                break
    return sorted(picked, key=lambda s: (s.n, s.index))


# -- comparison table ---------------------------------------------------------------------------------------------
_PROBLEM = re.compile(
    r"\b(however|challeng|problem|suffer|limit|costly|expensive|difficult|bottleneck|remain|issue)", re.I
)
_APPROACH = re.compile(
    r"\b(we (?:propose|introduce|present|develop|design|build|unveil|devise)|(?:this|our) (?:paper|work|study)"
    r" (?:propose|introduce|present|provide)|called|dub|dubbed|named)",
    re.I,
)
_RESULT = re.compile(r"\b(achiev|outperform|attain|improv|reduc|surpass|gain|boost|exceed|speed)", re.I)


def _result_signal(sentence: str) -> float:
    """How much a sentence reads like a reported result: numbers, percentages, result verbs."""
    return len(re.findall(r"\d+(?:\.\d+)?", sentence)) + 2 * sentence.count("%") + 3 * bool(_RESULT.search(sentence))


class Row(BaseModel):
    """One compared paper's table row: its usable sentences and the index of each cell's sentence (None: none)."""

    sentences: list[str]
    problem: int
    proposes: int
    relevant: int | None = None
    result: int | None = None

    def indexes(self) -> list[int]:
        return sorted({i for i in (self.problem, self.proposes, self.relevant, self.result) if i is not None})


def table_row(sents: list[str], scores: list[float], name: str | None = None) -> Row:
    """The row of one compared paper, read from the usual order of an abstract (background, then what the paper
    proposes, then how it works, then results): what it proposes (the proposal sentence that names its method
    first), the sentence after it most relevant to the question that is not a results sentence (the aspect asked
    about: the sampling weights, the neck), the reported result that best fits the question, and the problem."""
    problem = next((i for i, x in enumerate(sents) if _PROBLEM.search(x)), 0)
    named = [bool(name and mentions(x, name)) for x in sents]
    proposals = [
        i
        for i, x in enumerate(sents)
        if _APPROACH.search(x) or PROPOSAL_CUE.search(x) or (named[i] and _NOVEL.search(x))
    ]
    proposes = max(proposals, key=lambda i: named[i] + scores[i]) if proposals else min(1, len(sents) - 1)
    usable = [i for i in range(len(sents)) if i != proposes and not _CODE.search(sents[i])]
    # how it works comes after the proposal; before it stand the background and the problem
    descriptive = [i for i in usable if _result_signal(sents[i]) < 3]  # a sentence of numbers is a result
    start = min(proposals, default=proposes)  # the first "we propose …": the method's description starts there
    after = [i for i in descriptive if i >= start] or [i for i in descriptive if i not in (0, problem)]
    relevant = max(after, key=lambda i: scores[i], default=None)
    results = [i for i in range(len(sents)) if i not in (proposes, relevant) and _result_signal(sents[i]) > 0]
    # a result with numbers on what the question asks (its dataset, its metric)
    result = max(reversed(results), key=lambda i: scores[i] + min(_result_signal(sents[i]), 6)) if results else None
    return Row(sentences=sents, problem=problem, proposes=proposes, relevant=relevant, result=result)


_NOVEL = re.compile(r"\b(?:novel|new|propos\w*|present\w*|introduc\w*)\b", re.I)
_CODE = re.compile(
    r"\b(?:code|models?|implementation) (?:is|are|will be) (?:publicly )?(?:available|released)\b|https?://", re.I
)
_ASKS_PROBLEM = re.compile(r"\b(?:problems?|address\w*|motivat\w*|challenges?|limitations?|tackles?|solves?)\b", re.I)


def _cell(text: str, words: int = 28) -> str:
    parts = text.replace("|", "/").split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


def row_label(target: str, paper: Paper | None) -> str:
    """A table row's name: the target when it is a name (DoViT), else the paper's method name or short title —
    never a pronoun or a clause of the question."""
    if salient_terms(target) and len(target.split()) <= 4:
        return target
    if paper is not None:
        name = method_name(paper)
        if name:
            return name
        return _cell(paper.title.split(":")[0], 8)
    return _cell(target, 8)


def comparison_table(plan: Plan, per_target: dict[str, Hit | None], hits: list[Hit], rows: dict[int, Row]) -> str:
    """A markdown table, one cited row per compared target, each cell a sentence of its paper's abstract (``rows``:
    source number -> `Row`). The problem column only when the question asks about problems."""
    number = {h.paper.id: n for n, h in enumerate(hits, start=1)}
    problem = bool(_ASKS_PROBLEM.search(plan.query))
    head = ["Method", *(["Problem"] if problem else []), "Proposes", "On the question", "Reported results"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for target in plan.compared:
        hit = per_target.get(target)
        if hit is None:
            out.append(f"| {_cell(target, 8)} | not found in the corpus |" + " – |" * (len(head) - 2))
            continue
        n = number[hit.paper.id]
        row = rows[n]
        picked = [row.problem] if problem else []
        picked += [row.proposes, row.relevant, row.result]
        texts = [_cell(row.sentences[i]) if i is not None else "–" for i in picked]
        out.append(f"| {row_label(target, hit.paper)} [{n}] | " + " | ".join(texts) + f" [{n}] |")
    return "\n".join(out)
