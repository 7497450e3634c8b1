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

import numpy as np
from pydantic import BaseModel, Field

from .cite import SourceText, cited_clauses, cited_grammar, content_words, units
from .compose import (
    CELL_WORDS,
    DEFAULT_ASPECTS,
    Cell,
    Findings,
    Row,
    aspect_cells,
    clean_prose,
    display,
    floor_sentences,
    quote,
    render_list,
    render_table,
    row_label,
    source_details,
)
from .config import Settings
from .evidence import Evidence, EvidenceSelector, Sentence, record_facts, usable_sentences
from .filters import Filters
from .judge import Verdict, check_reply, judge_question, yes_no
from .llm_errors import LLMAuthError, LLMError, LLMModelNotFound, LLMStartError, one_line
from .names import mentions, method_name, proposal_sentence
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

# A survey's synthesis after its findings: two or three sentences from the rows, so a short prompt and reply.
SURVEY_EVIDENCE_TOKENS = 200
SURVEY_TOKENS = 128

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
            "refused": self.refused,
        }


@dataclass
class Event:
    """A step of `Assistant.stream()`: ``status`` (str, for people), ``evidence`` (`Evidence`, before any token),
    ``findings`` (`compose.Findings`: a comparison's rows or a survey's papers, complete before the model writes;
    their rendering is also the first ``token``), ``token`` (str), ``answer`` (the final `Answer`). ``step`` says
    where a status stands for code that reacts to
    it: ``rewrite`` and ``search`` read the indexes, ``write`` (the model is writing) no longer does."""

    kind: Literal["status", "evidence", "findings", "token", "answer"]
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
    findings: Findings | None = None  # comparisons and surveys: the rows the pipeline found, before any model
    table: str = ""  # comparisons: the findings as a table


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
        history = without_refused(history)
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
        verdict = judge_question(
            plan,
            hits,
            self.retriever.name_index,
            self.settings.retrieval,
            self._sentences,
            gathered.coverage,
            gathered.answerable,
        )
        prepared = Prepared(plan, gathered, verdict, hits)
        if not verdict.answerable or plan.kind == "listing":
            return prepared
        if plan.kind == "survey":
            prepared.findings = self._survey_findings(plan, gathered)
            prepared.table = render_list(prepared.findings, self.retriever.papers)
            if plan.term:
                return prepared  # a content listing is complete from the records: no model to ask
            # a topical survey: the findings first, then the model's synthesis of them
        if verdict.subject_papers and plan.kind in ("factoid", "summary") and not plan.every_match:
            # the question names its subject: papers that do not use every name it asks about are distractors
            hits = [h for h in hits if h.paper.id in verdict.subject_papers] or hits
        if plan.kind == "summary":
            hits = hits[:1]  # a summary is of one paper: the one the question names or describes best
        if plan.kind == "comparison":
            hits = self._comparison_order(plan, gathered)
        prepared.hits = hits
        # a survey's evidence is its rows (added below) and little else: the synthesis is short, the prompt too
        budget = SURVEY_EVIDENCE_TOKENS if plan.kind == "survey" else None
        evidence = self.selector.select(plan.query, [h.paper for h in hits], plan.names, budget_tokens=budget)
        if plan.kind == "comparison":
            prepared.findings = self._comparison_findings(plan, gathered, hits)
            evidence = _with_findings(evidence, prepared.findings)
            prepared.table = render_table(prepared.findings)
        elif plan.kind == "summary" and hits:
            # a summary is written from what the paper is about: its problem, what it proposes, its main result
            evidence = _with_findings(evidence, self._summary_findings(plan, hits[0]))
        elif plan.kind == "survey" and prepared.findings is not None:
            evidence = _with_findings(evidence, prepared.findings)  # every row the list shows is citable evidence
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
        if plan.exclude:
            left = "; ".join(
                f"“{self.retriever.papers[pid].title}”" for pid in plan.exclude if pid in self.retriever.papers
            )
            answer.notes.append(f"Left out the papers discussed before: {left}.")

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
        if plan.kind == "survey" and plan.term and prepared.findings is not None and prepared.verdict.answerable:
            # "Which papers name X / address Y": every paper the corpus holds on it, counted, each with the clause
            # that answers, decided and quoted by the pipeline (no model call, nothing to invent)
            self._survey(answer, prepared)
            timings["first_evidence_s"] = timings["findings_s"] = time.perf_counter() - started
            yield Event("findings", prepared.findings)
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
        if prepared.findings is not None:
            timings["findings_s"] = time.perf_counter() - started
            yield Event("findings", prepared.findings)
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
                max_tokens=min(self.settings.llm.max_tokens, SURVEY_TOKENS)
                if plan.kind == "survey"
                else self.settings.llm.max_tokens,
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
        if (said := _not_mentioned(prepared)) and not answer.refused:
            answer.text = f"{said}\n\n{answer.text}"
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
        except BROKEN:
            raise  # a model that cannot run is an error, not a reason to guess
        except LLMError as exc:  # a timeout or a server error: the planner's own resolution stands in
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

    def _comparison_findings(self, plan: Plan, gathered: Gathered, hits: list[Hit]) -> Findings:
        """One row per compared target: its paper's cells for the aspects the question asks about (or problem /
        approach / result), each the clause of its abstract that scores best for the aspect."""
        number = {h.paper.id: n for n, h in enumerate(hits, start=1)}
        aspects = list(plan.aspects) or list(DEFAULT_ASPECTS)
        found = list(dict.fromkeys(h.paper.id for h in gathered.per_target.values() if h is not None))
        papers = [self.retriever.papers[pid] for pid in found]
        scored = self.selector.score(plan.query, papers, plan.names)
        base = {pid: [x.score for x in sents] for pid, sents in zip(found, scored, strict=True)}
        by_aspect: dict[str, dict[str, list[float]]] = {pid: {} for pid in found}
        cosines: dict[str, dict[str, list[float]]] = {pid: {} for pid in found}
        for aspect in aspects:
            per = self.selector.score(aspect, papers, ()) if aspect not in DEFAULT_ASPECTS else None
            for k, pid in enumerate(found):
                by_aspect[pid][aspect] = [x.score for x in per[k]] if per is not None else base[pid]
                if per is not None:
                    cosines[pid][aspect] = self._cosines(aspect, self.retriever.papers[pid])
        rows = []
        for target in plan.compared:
            hit = gathered.per_target.get(target)
            if hit is None:
                rows.append(Row(n=0, paper_id="", label=display(target, 8), sentences=[]))
                continue
            paper = hit.paper
            sents = self._sentences(paper)
            context = target if target.strip() and not target.startswith("described paper") else ""
            if context:  # the target's own words count for its row ("the return-based rebalancing approach")
                for aspect in by_aspect[paper.id]:
                    if aspect not in DEFAULT_ASPECTS:
                        own = self.selector.score(f"{aspect} {context}", [paper], ())[0]
                        by_aspect[paper.id][aspect] = [x.score for x in own]
            cells = aspect_cells(
                sents, by_aspect[paper.id], method_name(paper), base[paper.id], cosines[paper.id], context
            )
            label = row_label(target, paper)
            rows.append(Row(n=number[paper.id], paper_id=paper.id, label=label, sentences=sents, cells=cells))
        return Findings(kind="comparison", columns=aspects, rows=rows)

    def _cosines(self, text: str, paper: Paper) -> list[float]:
        """Sentence-embedding similarity of a text to each usable sentence of a paper (vectors cached per paper)."""
        sents = self._sentences(paper)
        vecs = self.retriever.sentences.vectors(paper.id, sents)
        if vecs is None or not len(sents):
            return [0.0] * len(sents)
        q = np.asarray(self.retriever.store.embedder.embed_query(text), dtype=np.float32)
        q /= np.linalg.norm(q) + 1e-9
        return (vecs @ q).tolist()

    def _summary_findings(self, plan: Plan, hit: Hit) -> Findings:
        """The one summarised paper's problem, proposal and main result (the sentences a summary rests on)."""
        paper = hit.paper
        sents = self._sentences(paper)
        base = [x.score for x in self.selector.score(plan.query, [paper], plan.names)[0]]
        cells = aspect_cells(sents, dict.fromkeys(DEFAULT_ASPECTS, base), method_name(paper), base)
        row = Row(n=1, paper_id=paper.id, label=method_name(paper) or "", sentences=sents, cells=cells)
        return Findings(kind="summary", columns=list(DEFAULT_ASPECTS), rows=[row])

    def _survey_findings(self, plan: Plan, gathered: Gathered) -> Findings:
        """A survey's rows: every covered paper with the sentence that names the listed term, or the clause that
        answers what the question asks of each paper (its aspect), else what the paper proposes."""
        coverage = gathered.coverage
        assert coverage is not None
        total = len(self.retriever.papers)
        aspect = "; ".join(plan.aspects)
        rows = []
        for n, hit in enumerate(gathered.hits, start=1):
            paper = hit.paper
            sents = self._sentences(paper)
            if plan.term and paper.id in coverage.namings:
                said = coverage.namings[paper.id]
                index = next((i for i, x in enumerate(sents) if x == said), None)
                cells = [Cell(aspect="names", index=index, text=display(said, CELL_WORDS))]
            else:
                base = [x.score for x in self.selector.score(plan.query, [paper], plan.names)[0]]
                cells = []
                if aspect:
                    scores = [x.score for x in self.selector.score(aspect, [paper], ())[0]]
                    cells = aspect_cells(sents, {aspect: scores}, method_name(paper), base)
                if not cells or cells[0].index is None:  # nothing on the aspect: what the paper proposes
                    cells = aspect_cells(sents, {"Approach": base}, method_name(paper), base)
            rows.append(Row(n=n, paper_id=paper.id, label=method_name(paper) or "", sentences=sents, cells=cells))
        if plan.term:
            names = "names" if len(rows) == 1 else "name"
            lead = f"{len(rows)} of the {total} abstracts {names} {plan.term}:"
        else:
            many = "1 paper in the corpus addresses" if len(rows) == 1 else f"{len(rows)} papers in the corpus address"
            lead = f"{many} {plan.topic}:"
        more = ""
        if coverage.matching > len(rows):
            more = f"(the {len(rows)} that fit best of {coverage.matching}; narrow the question to see the others)"
        return Findings(kind="survey", columns=[aspect or "Contribution"], rows=rows, lead=lead, more=more)

    def _survey(self, answer: Answer, prepared: Prepared) -> None:
        """A survey answered from its findings: the lead line and one cited line per paper."""
        findings = prepared.findings
        assert findings is not None
        papers = self.retriever.papers
        answer.text = render_list(findings, papers)
        answer.contexts = self._contexts(prepared.hits, None)
        for row in findings.rows:
            cell = row.cells[0] if row.cells else None
            evidence = row.sentences[cell.index] if cell is not None and cell.index is not None else row.sentences[0]
            answer.citations.append(Citation.of(row.n, papers[row.paper_id], evidence))
        answer.model = "records (no model call)"
        answer.path = "extractive"

    def _messages(self, plan: Plan, evidence: Evidence, gathered: Gathered) -> list[dict]:
        """The prompt: the numbered sources, then the evidence sentences, most relevant first, each already
        carrying its source's marker — a model that copies evidence copies its citation with it."""
        sources = "\n".join(
            render(
                "source.md",
                n=s.n,
                title=plain_math(s.title),
                details=source_details(s.authors, s.authors_truncated, s.year, s.facts),
            )
            for s in evidence.sources
        )
        lines = "\n".join(f"- {plain_math(s.text)} [{s.n}]" for s in evidence.ranked())
        asked = plan.max_sentences
        system = render("system.md", max_sentences=asked or self.settings.llm.max_sentences)
        if plan.kind == "comparison":
            number = {s.paper_id: s.n for s in evidence.sources}
            found = [(row_label(m, h.paper), number[h.paper.id]) for m, h in gathered.per_target.items() if h]
            methods = " and ".join(f"{m} [{n}]" for m, n in found) or " and ".join(plan.compared)
            user = render("compare.md", sources=sources, evidence=lines, question=plan.query, methods=methods)
        else:
            length = "one to three sentences" if not asked else ("one sentence" if asked == 1 else f"{asked} sentences")
            if plan.kind == "survey":
                length = "two or three sentences that say what these papers share and how each differs"
            user = render("answer.md", sources=sources, evidence=lines, question=plan.query, length=length)
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
        text = clean_prose(reply.text, prepared.plan.max_sentences)
        if prepared.plan.kind == "summary" and hits:
            text = _named_summary(text, hits[0].paper)
        text = self._named_answer(prepared.plan.answer_noun, text, hits, reply)
        # a survey's rows already quote each paper; the quantity repair is for questions about one or two papers
        appended = (
            []
            if prepared.plan.kind == "survey"
            else self._missing_quantities(prepared.plan.query, text, evidence, hits)
        )
        contrast, paired = ("", []) if prepared.plan.kind != "comparison" else self._contrast(prepared, text)
        if appended:
            text += "\n\nFrom the abstracts:\n" + "\n".join(quote(s) for s in appended)
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
    def _named_answer(noun: str, text: str, hits: list[Hit], reply) -> str:
        """A "which method / which paper …" question (``noun``, read by the planner) is answered by a name: when the
        reply describes the method without naming it, the name of the paper it cites first leads the answer."""
        cited = [c.n for c in reply.check.citations] if reply.check else []
        if not noun or not cited or cited[0] > len(hits):
            return text
        paper = hits[cited[0] - 1].paper
        name = method_name(paper)
        if name is not None and mentions(text, name):
            return text
        if name is None and paper.title.casefold() in text.casefold():
            return text
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
        sets their cells on the question's first aspect (or their approach) side by side, each cited (the prose
        must state a difference per pair)."""
        evidence, findings = prepared.evidence, prepared.findings
        assert evidence is not None and findings is not None
        aspect = findings.columns[0] if findings.columns[0] not in DEFAULT_ASPECTS else "Approach"
        rows = [r for r in findings.rows if r.n]
        cited_together = [set(n for _, ns in cited_clauses(u) for n in ns) for u in units(text)]
        lines, used = [], []
        for ra, rb in combinations(rows, 2):
            if ra.n == rb.n or any({ra.n, rb.n} <= c for c in cited_together):
                continue
            quoted = []
            for row in (ra, rb):
                cell = (
                    row.cell(aspect)
                    or row.cell("Approach")
                    or next((c for c in row.cells if c.index is not None), None)
                )
                src = evidence.source(row.n)
                if cell is None or cell.index is None or src is None:
                    break
                sentence = next((x for x in src.sentences if x.index == cell.index), None)
                if sentence is None:
                    break
                quoted.append(f"{row.label}: “{cell.text}” [{row.n}]")
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
        plan = prepared.plan
        count = plan.max_sentences or self.settings.retrieval.extractive_sentences
        quotes = floor_sentences(evidence, plan.kind, len(plan.compared), count)
        why = answer.failure.rstrip(".")
        lines = []
        if prepared.table:
            lines += [prepared.table, ""]
        if kept:
            lines += [kept, ""]
        if plan.kind != "survey":  # a survey's rows are quotations already
            lines.append(f"Quoted from the abstracts (the model's answer could not be used: {why}):")
            lines += [quote(s) for s in quotes]
        else:
            quotes = []
        answer.text = "\n".join(lines).strip()
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
        # the count is of every record the filters admit (the figure a "how many" asks for), not of those shown
        matching = sum(answer.filters.matches(p) for p in self.retriever.papers.values())
        lines = [
            (f"{matching} papers in the corpus match" if matching != 1 else "1 paper in the corpus matches")
            + f" {answer.filters_applied}"
            + (" (the most relevant first):" if len(hits) > 1 else ":")
        ]
        for n, (hit, first) in enumerate(zip(hits, firsts, strict=True), start=1):
            p = hit.paper
            facts = ", ".join(str(x) for x in (author_list(p.authors, p.authors_truncated), p.year, p.category) if x)
            name = method_name(p)
            named = f" — {name}" if name and name not in p.title else ""
            lines.append(f"- {display(p.title)} ({facts}){named}: “{display(first, 45)}” [{n}]")
            answer.citations.append(Citation.of(n, p, first))
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


def _not_mentioned(prepared: Prepared) -> str:
    """What the chosen paper's abstract does not mention of the names asked about ("No: …" to a yes/no question,
    the correction of a false premise), decided by the judge from the paper's own record."""
    missing = prepared.verdict.missing
    if not missing or prepared.plan.kind == "comparison" or not prepared.hits:
        return ""
    paper = prepared.hits[0].paper
    name = method_name(paper) or f"“{paper.title}”"
    said = f"The abstract of {name} does not mention {' or '.join(missing)}."
    return f"No. {said}" if yes_no(prepared.plan.question) else said


def _with_findings(evidence: Evidence, findings: Findings) -> Evidence:
    """A comparison's evidence keeps every sentence its table shows, so every cell the user sees is evidence the
    model saw and the answer can cite."""
    rows = {r.n: r for r in findings.rows if r.n}
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


def without_refused(history: list[dict]) -> list[dict]:
    """The conversation without its refused exchanges: a refused question ("What is FooBarNet?") and its refusal
    discussed nothing, so they give a follow-up no referent (recorded by `Answer.as_message`)."""
    out: list[dict] = []
    for m in history:
        if m["role"] == "assistant" and m.get("refused"):
            if out and out[-1]["role"] == "user":
                out.pop()
            continue
        out.append(m)
    return out


def _named_summary(text: str, paper: Paper) -> str:
    """A summary says which paper it summarises: the method's name (or the title) leads when the prose omits it."""
    name = method_name(paper)
    if name and mentions(text, name):
        return text
    if not name and paper.title.casefold() in text.casefold():
        return text
    return f"{name or '“' + display(paper.title) + '”'}: {text}"


def _conversation(history: list[dict]) -> str:
    """Chat turns as the rewrite and plan prompts show them ("role: text", each cut at 600 characters)."""
    return "\n".join(f"{m['role']}: {m['content'][:600]}" for m in history)


def source_text(src) -> SourceText:
    """What the citation check compares a sentence with: the source's evidence, and its title and record fields
    (a claim about a paper's date or category is supported by the record)."""
    header = f"{src.title} ({author_list(src.authors, src.authors_truncated)}, {src.year or 'n.d.'}; {src.facts})"
    return SourceText(src.n, src.paper_id, " ".join(x.text for x in src.sentences), header)


def record_header(paper: Paper) -> str:
    """A paper's title with its record fields, as `source_text` gives them to the checks."""
    authors = author_list(paper.authors, paper.authors_truncated)
    return f"{paper.title} ({authors}, {paper.year or 'n.d.'}; {record_facts(paper)})"
