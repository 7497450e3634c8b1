"""Answerability, decided by the pipeline from evidence: before generation (can the corpus answer this?) and after
(did the model's text stay on its evidence?). The model never decides to refuse.

Before generation (`judge_question`), in order:
1. *Filters*: the question's filters admit no paper (said with the closest values).
2. *Off topic*: the best retrieval scores are below the calibrated floor (`retrieval.min_relevance` dense cosine
   and `retrieval.min_bm25`), no name of the question is in the corpus and no author filter applies.
3. *A quoted title* of four or more capitalised words that no paper has.
4. Surveys: some abstract names the term, or some paper fits the topic (`coverage.ADDRESSED`); comparisons: a
   target the corpus lacks is a row of the table, never a refusal.
5. Questions about one paper (`_judge_paper`): the learned answerability model (`assistant.relevance`, fit by
   `assistant tune`) gives P(the corpus answers it) from the relevance model's scored candidates; below
   ``retrieval.min_probability`` the question is refused, saying which names no paper writes or owns. Then the
   chosen paper's own evidence: a figure asked of a name the paper never writes, or a quantity none of its
   sentences reports, is refused for that paper; a name it does not mention in any other question is said in
   the answer ("No. The abstract of DoViT does not mention COCO."), which corrects a false premise.
A refusal says which check failed in one sentence and lists the closest papers.

After generation (`check_reply`): citations are checked against the numbered evidence (`cite.check_citations`);
a sentence that names a method must cite a source whose paper names it (re-cited when exactly one source does);
sentences the evidence they cite does not clearly support (clause by clause), and repeated ones, are dropped.
The reply *failed* when nothing supported is left (a refusal from the model, markers only, off-evidence text) —
then the answer falls back to quoted evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .cite import (
    CLEAR_SUPPORT,
    MARKER,
    CheckResult,
    SourceText,
    check_citations,
    cited_clauses,
    content_words,
    drop_uncited,
    units,
    unsupported_fact,
)
from .config import RetrievalSettings
from .coverage import ADDRESSED, Coverage
from .names import NameIndex, mentions, method_name, named_by_shape
from .plan import Plan
from .quantities import _WHAT_FIGURE, paper_reports_quantity, quantity_heads
from .retrieve import Hit


@dataclass
class Verdict:
    """Whether to answer, and if not, why (one sentence for the user) and which check decided."""

    answerable: bool
    # "filters_empty" | "off_topic" | "title_absent" | "not_relevant" | "absent_in_paper" | "quantity"
    # | "name_absent" | "topic_absent" (surveys)
    check: str = ""
    reason: str = ""
    missing: list[str] = field(default_factory=list)
    subject_papers: list[str] = field(default_factory=list)  # ids of the papers that use every name asked about


def _quoted_titles(question: str) -> list[str]:
    """Quoted spans that read as titles: four or more words, the first capitalised ('An Image is Worth 16x16
    Words'); a quoted phrase in lower case is a quotation, not a title."""
    spans = re.findall(r"[\"“‘']([^\"”’']{12,200})[\"”’']", question)
    return [s.strip() for s in spans if len(s.split()) >= 4 and s.strip()[:1].isupper()]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def judge_question(
    plan: Plan,
    hits: list[Hit],
    index: NameIndex,
    cfg: RetrievalSettings,
    sentences_of,
    coverage: Coverage | None = None,
    answerable: float | None = None,
) -> Verdict:
    """Answer or refuse, before any model call. ``sentences_of(paper)`` gives a paper's usable sentences;
    ``coverage`` is what a survey's gathering found (every paper naming its term, or fitting its topic)."""
    if not plan.filters.is_empty() and (empty := plan.filters.explain_empty(list(index.papers.values()))):
        return Verdict(False, "filters_empty", empty)
    if not hits:
        return Verdict(False, "off_topic", "No paper in the corpus matches the question.")
    known = [n for n in plan.names if index.papers_with(n)]
    best_dense = max(h.dense for h in hits)
    if (
        best_dense < cfg.min_relevance
        and not any(h.bm25 >= cfg.min_bm25 for h in hits)
        and not known
        and not (plan.filters.authors or plan.filters.first_author)
        and plan.kind != "listing"  # "which papers match these filters": the filters decide, and some match
    ):
        said = f"No paper in the corpus addresses {plan.topic}." if plan.kind == "survey" and plan.topic else ""
        return Verdict(False, "off_topic", said)

    for title in _quoted_titles(plan.query):
        t = _norm(title)
        if any(t in _norm(f"{p.title} {p.abstract}") or _norm(p.title) in t for p in index.papers.values()):
            continue  # a title of the corpus, or words quoted from an abstract
        return Verdict(False, "title_absent", f"No paper in the corpus is titled “{title}”.", [title])

    if plan.kind == "listing":
        return Verdict(True)
    if plan.kind == "survey":
        return _judge_survey(plan, index, coverage)

    # a capitalised word the corpus lacks may be plain English ("University"); a name by its shape is a name
    absent = [n for n in plan.names if named_by_shape(n) and not index.papers_with(n)]
    if plan.kind == "comparison":
        return Verdict(True, missing=absent)  # a target the corpus lacks is a row of the table, not a refusal
    return _judge_paper(plan, hits, index, cfg, sentences_of, answerable)


def _judge_paper(
    plan: Plan, hits: list[Hit], index: NameIndex, cfg: RetrievalSettings, sentences_of, answerable: float | None
) -> Verdict:
    """A question about one paper (or a few) is answered when the learned answerability model, reading the
    relevance model's scored candidates, gives P(the corpus answers it) of at least ``retrieval.min_probability``
    (a question word the corpus lacks is one of its features, never a refusal by itself). Then the chosen paper's
    own evidence decides:
    - the question asks for a figure of a name (a dataset, a baseline) the paper never writes, or no sentence of
      the paper reports the asked quantity: refused, saying what the abstract lacks;
    - otherwise it is answered, and what the paper does not mention is said (``missing``): a "no" to a yes/no
      question, or a false premise corrected from the abstract, is an answer."""
    from .relevance import load_model, names_its_subject

    ranked = [h for h in hits if h.relevance is not None]
    if not ranked or answerable is None:
        return Verdict(True, subject_papers=[h.paper.id for h in hits[:1]])
    model = load_model()
    threshold = cfg.min_probability if cfg.min_probability is not None else model.meta.get("threshold", 0.5)
    best = ranked[0]
    # a paper that presents a method the question names is its subject: then its own evidence decides (a "no", a
    # corrected premise, or a figure it lacks), not the answerability model, whose tune traps ("Mamba's own paper",
    # "TransFuser itself") are questions whose named method no candidate presents
    if answerable < threshold and not names_its_subject(index, best.paper.id, plan.names):
        # what the evidence lacks, said in the user's words: the names no paper writes or presents as its own
        shaped = [n for n in plan.names if named_by_shape(n) and not index.is_record_field(n)]
        absent = [n for n in shaped if not index.papers_with(n)]
        unowned = [n for n in shaped if index.papers_with(n) and not index.owners(n, by_title=False)]
        said = (
            f"No paper in the corpus mentions {_join(absent)}. "
            if absent
            else f"No paper in the corpus presents {_join(unowned)} as its own; abstracts only mention it. "
            if unowned
            else ""
        )
        return Verdict(
            False,
            "not_relevant",
            f"{said}The corpus does not answer this: the closest paper, “{best.paper.title}”, is not about it "
            f"(P = {answerable:.2f}, answered from {threshold:.2f}).",
            absent or unowned,
        )
    pair = model.meta.get("pair_threshold", 0.5)
    subject = [h.paper for h in ranked if h.relevance >= pair] or [best.paper]
    lacking = paper_lacks(plan.question, plan.query, plan.names, subject, index, sentences_of)
    if lacking is not None:
        return lacking
    return Verdict(True, missing=_not_written(plan.names, subject[0], index), subject_papers=[p.id for p in subject])


def _not_written(names: list[str], paper, index: NameIndex) -> list[str]:
    """The names of the question (not authors or affiliations) that the paper's record never writes."""
    missing = [n for n in names if not index.is_record_field(n) and not index.paper_uses(paper.id, n)]
    return [n for n in missing if not mentions(f"{paper.title} {paper.abstract}", n)]


def paper_lacks(question: str, query: str, names: list[str], subject: list, index: NameIndex, sentences_of):
    """The refusal the chosen paper's own evidence decides, or None: a figure asked of a name (a dataset, a
    baseline) the paper never writes, or a quantity none of its sentences reports. ``subject``: the chosen papers,
    the lead first."""
    lead = subject[0]
    missing = _not_written(names, lead, index)
    heads = [] if _asks_more_than_quantities(query) else quantity_heads(query)
    asks_figure = bool(heads) or bool(_WHAT_FIGURE.search(query))
    name = method_name(lead) or f"“{lead.title}”"
    if asks_figure and missing and not yes_no(question):
        return Verdict(
            False,
            "absent_in_paper",
            f"The abstract of {name} does not mention {_join(missing)}, so it reports no figure for it.",
            missing,
            subject_papers=[lead.id],
        )
    for how, head in heads:
        if not any(paper_reports_quantity(sentences_of(p), how, head) for p in subject[:2]):
            what = {"long": "how long it takes"}.get(how, f"the number of {head}" if how == "many" else head)
            return Verdict(
                False, "quantity", f"The abstract of {name} does not report {what}.", [head or how], [lead.id]
            )
    return None


def yes_no(question: str) -> bool:
    """A yes/no question (syntax: it opens with an auxiliary verb)."""
    return _YES_NO.match(question.strip()) is not None


_YES_NO = re.compile(r"(?:does|do|did|is|are|was|were|can|could|has|have|had|will|would)\b", re.I)


def _judge_survey(plan: Plan, index: NameIndex, coverage: Coverage | None) -> Verdict:
    """A survey is answered when the corpus holds what it asks for: some abstract names its term, or some paper
    fits its topic at least as well as a paper that addresses it (`coverage.ADDRESSED`, calibrated on the dev set).
    A topic no paper addresses is refused naming the topic (the closest papers are listed), never answered from
    whatever ranks first."""
    absent = [n for n in plan.names if named_by_shape(n) and not index.papers_with(n)]
    if absent:
        return Verdict(False, "name_absent", f"No paper in the corpus mentions {_join(absent)}.", absent)
    if coverage is None or not coverage.hits:
        what = plan.term or plan.topic
        return Verdict(False, "topic_absent", f"No paper in the corpus addresses {what}.", [what])
    people = plan.filters.authors or plan.filters.first_author  # "which … has Yuang Liu co-authored": they decide
    if not plan.term and coverage.best < ADDRESSED and not people:
        return Verdict(False, "topic_absent", f"No paper in the corpus addresses {plan.topic}.", [plan.topic])
    return Verdict(True, subject_papers=[h.paper.id for h in coverage.hits])


# a question's asks: split at "?", ";" and at ", and how …" / "and what …" before another question word
_ASKS = re.compile(r"[?;]|,?\s+\b(?:and|or|but)\s+(?=(?:how|what|which|why|where|when|who|does|do|is|are|can)\b)", re.I)


def _asks_more_than_quantities(query: str) -> bool:
    """Whether the question asks something besides the quantities ("How many stages does it use, and how does it
    gate?"): it is answered for that part, the number said to be missing, not refused whole."""
    asks = [a for a in _ASKS.split(query) if len(a.split()) >= 2]
    return len(asks) > 1 and any(not quantity_heads(a) for a in asks)


def _join(items: list[str], lead: str = "") -> str:
    items = list(dict.fromkeys(items))
    body = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return f"{lead} {body}".strip()


# -- after generation ------------------------------------------------------------------------------------------
@dataclass
class CheckedReply:
    """The model's reply after the checks: the text kept, its citations, what was repaired, whether it failed."""

    text: str
    check: CheckResult | None
    dropped: list[str] = field(default_factory=list)
    recited: int = 0
    failed: str = ""  # why the reply cannot be the answer ("" = usable)

    @property
    def repaired(self) -> bool:
        return bool(self.dropped or self.recited or (self.check and self.check.repaired))


def recite_names(text: str, sources: list[SourceText], index: NameIndex) -> tuple[str, int]:
    """Make each sentence that names methods cite, for every name, a source whose paper uses it.

    A sentence citing [3] for "Gold-YOLO changes the neck …" where paper [3] never mentions Gold-YOLO is re-cited
    to the source whose paper does: cited sources that use none of the sentence's names are removed, and a name no
    cited source uses gets the one source that uses it (none or several: no marker, and `drop_uncited` removes the
    sentence unless one source clearly supports it). Table rows are the pipeline's own and are left alone."""
    by_n = {s.n: s for s in sources}

    def uses(n: int, name: str) -> bool:
        return index.paper_uses(by_n[n].paper_id, name)

    out, recited = [], 0
    for unit in units(text):
        cited = [int(x) for m in MARKER.finditer(unit) for x in re.split(r"[,;]", m.group(1)) if int(x) in by_n]
        claim = MARKER.sub("", unit)
        names = [n for n in index.names_in(claim) if any(index.paper_uses(s.paper_id, n) for s in sources)]
        if not cited or not names or unit.lstrip().startswith("|"):
            out.append(unit)
            continue
        keep = [n for n in dict.fromkeys(cited) if any(uses(n, x) for x in names)]
        for x in names:
            if not any(uses(n, x) for n in keep):
                users = [s.n for s in sources if uses(s.n, x)]
                if len(users) == 1:
                    keep.append(users[0])
        if keep == list(dict.fromkeys(cited)):
            out.append(unit)
            continue
        recited += 1
        body = MARKER.sub("", unit).rstrip()
        tail = unit[len(unit.rstrip()) :]
        end = body[-1] if body.endswith((".", "!", "?")) else ""
        body = body[:-1].rstrip() if end else body
        markers = "".join(f"[{n}]" for n in sorted(keep))
        out.append((f"{body} {markers}{end}" if markers else f"{body}{end}") + tail)
    return "".join(out), recited


def drop_weak(
    text: str, sources: list[SourceText], floor: float, index: NameIndex | None = None
) -> tuple[str, list[str]]:
    """Remove prose sentences whose cited sources support them below ``floor`` (share of content words) or that
    state a fact the cited sources do not (a number, a name, a negation: `cite.unsupported_fact`), and sentences
    the reply repeats word for word."""
    names = index.names_in if index is not None else None
    by_n = {s.n: s for s in sources}
    out, dropped, seen = [], [], set()
    for unit in units(text):
        stripped = unit.strip()
        cited = [int(x) for m in MARKER.finditer(unit) for x in re.split(r"[,;]", m.group(1)) if int(x) in by_n]
        claim = MARKER.sub("", unit)
        if not cited or stripped.startswith(("|", ">")) or len(content_words(claim)) < 3:
            out.append(unit)
            continue
        key = " ".join(sorted(content_words(claim)))
        supported = all(
            max((by_n[n].support(part)[0] for n in numbers if n in by_n), default=0.0) >= floor
            and not unsupported_fact(
                part, " ".join(f"{by_n[n].abstract} {by_n[n].title}" for n in numbers if n in by_n), names
            )
            for part, numbers in cited_clauses(unit)
            if len(content_words(part)) >= 2
        )
        if key in seen or not supported:
            dropped.append(stripped)
            continue
        seen.add(key)
        out.append(unit)
    return re.sub(r"\n{3,}", "\n\n", "".join(out)).strip(), dropped


WEAK_SUPPORT = CLEAR_SUPPORT  # a sentence is kept only where the evidence it cites clearly states it (measured:
# 0.3 kept sentences the eval's checker found unsupported; 0.5 lost no must-include fact on the tuning split)

# What a model writes when it declines; recorded as the reason the reply failed (the verdict stays the pipeline's).
_DECLINES = re.compile(
    r"\b(?:do(?:es)? not|don't|doesn't|cannot|can't|unable to|no (?:information|mention|source))\b[^.]{0,60}"
    r"\b(?:contain|provide|mention|answer|information|specif|state|say|report|determine)",
    re.I,
)


def check_reply(raw: str, sources: list[SourceText], index: NameIndex) -> CheckedReply:
    """The model's reply checked against the numbered evidence; ``failed`` says why it cannot stand alone."""
    if not raw.strip():
        return CheckedReply("", None, failed="the model returned no text")
    text, recited = recite_names(raw, sources, index)
    checked = check_citations(text, sources)
    kept, dropped = drop_uncited(checked.text)
    kept, weak = drop_weak(kept, sources, WEAK_SUPPORT, index)
    dropped += weak
    checked.citations = [c for c in checked.citations if f"[{c.n}]" in kept]
    words = re.sub(r"\[\d+\]|[\W\d_]+", " ", kept).split()
    reply = CheckedReply(kept, checked, dropped, recited)
    if not words or not checked.citations:
        declined = _DECLINES.search(raw) is not None
        reply.failed = "the model declined to answer" if declined else "no sentence of the reply is supported"
        reply.text = ""
    return reply
