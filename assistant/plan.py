"""The question plan: what kind of question this is, what it is about, and which papers answer it.

`plan_question()` reads a question (and the conversation) into a typed `Plan`: its kind (factoid, comparison,
listing), the standalone query, the filters, the compared targets and the names it asks about, with the reasons.
`gather()` retrieves the papers the plan needs. The assistant and the evals both call these two functions, so the
eval's `retrieval.*` metrics are the pipeline's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .filters import Filters, filter_words, filters_from_question
from .names import NameIndex, mentions, paper_name, salient_terms
from .paper import Paper
from .retrieve import Hit, Retriever

Kind = Literal["factoid", "comparison", "listing"]

PRONOUN = re.compile(
    r"\b(it|its|it's|they|them|their|this|that|these|those|the (?:paper|method|model|approach|authors?))\b", re.I
)
_COMPARE = re.compile(
    r"\b(compare|compared|comparison|contrast|differ|differs|difference|differences|distinguish\w*"
    r"|different (?:from|than|to)|vs\.?|versus)\b"
    r"|\bor\b[^?:]{1,60}[:,]\s*which\b",
    re.I,
)
_METHOD_SPLIT = [
    re.compile(
        r"how (?:does|do|is|are) (?P<a>.+?) (?:differ|compare|contrast|different)\w*(?: in [^,?]{1,40}?)?"
        r" (?:from|to|with|than) (?P<b>.+?)[?.]?$",
        re.I,
    ),
    # "one … , the other …": two papers described, not named
    re.compile(
        r"\bone (?:of them )?(?P<a>[^,;:?]{6,}?)\s*[,;]\s*(?:and |while |whereas )?the other (?P<b>[^,;:?]{6,})", re.I
    ),
    re.compile(
        r"\b(?:the|a) (?:paper|method|approach|one|work) (?:that|which) (?P<a>[^,;:?]{6,}?),?"
        r" (?:and|vs\.?|versus|or|while|whereas) (?:the|a) (?:paper|method|approach|one|work) (?:that|which)"
        r" (?P<b>[^,;:?]{6,})",
        re.I,
    ),
    # "how do A and B differ", "in what ways do A and B differ"
    re.compile(r"(?:how|in what ways?|where) (?:do|does|did) (?P<a>.+?) and (?P<b>.+?) (?:differ|compare)\b", re.I),
    re.compile(r"(?:difference|differences) between (?P<a>.+?) and (?P<b>.+?)[?.]?$", re.I),
    re.compile(r"distinguish(?:es)? (?P<a>.+?) from (?P<b>.+?)[?.]?$", re.I),
    re.compile(r"(?:compare|contrast) (?P<a>.+?) (?:and|with|to|against|vs\.?|versus) (?P<b>.+?)[?.:]?$", re.I),
    re.compile(r"(?P<a>[^,.?:;]+?) (?:vs\.?|versus) (?P<b>[^,.?:;]+)", re.I),
    # "A or B: which …", "A and B: how do they differ?"
    re.compile(r"^(?:between )?(?P<a>[^,.?:;]+?) or (?P<b>[^,.?:;]+?)\s*[:,]\s*which\b", re.I),
    re.compile(
        r"^(?P<a>[^,.?:;]+?) and (?P<b>[^,.?:;]+?):\s*(?:how|what|in what)\b.*\b(?:differ|difference|compare)", re.I
    ),
]
_DESCRIBED = _METHOD_SPLIT[1:3]  # "one …, the other …" and "the one that … and the one that …"
_CLAUSE = re.compile(r"^(?:its|their|which|that|who|whose|both|each|in terms of|with respect to)\b", re.I)
# A compared "target" that is a pronoun is the question's own subject: "…, and how does it compare with
# Medusa-1 in extra parameters?" asks one paper about a baseline it names, which is a factoid.
_PRONOUN_TARGET = re.compile(
    r"^(?:it|its|they|them|this|that|these|those|(?:this|that|the|our) (?:method|model|approach|paper|work|one))$",
    re.I,
)
# "One versus the other: …", "each one": the papers are counted or described elsewhere, not named here
_COUNTED_TARGET = re.compile(r"^(?:(?:the )?(?:one|other|first|second|former|latter)|each(?: one)?|both)$", re.I)
# "one …, the other …" / "the one that … vs the one that …": a sentence describing two papers to compare
_DESCRIBES_TWO = re.compile(
    r"\bone\b[^.?]{6,}[,;]\s*(?:and |while |whereas )?the other\b"
    r"|\bthe one (?:that|which)\b.+\bthe one (?:that|which)\b",
    re.I,
)
_SPLIT_TARGETS = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")


def _split_targets(group: str) -> list[str]:
    """A matched group split into targets at commas and "and" — except inside a description: "fusion of
    fully-connected and convolutional networks" is one target (a short nameless tail joins a long description)."""
    out: list[str] = []
    for part in _SPLIT_TARGETS.split(group):
        if out and len(out[-1].split()) > 4 and len(part.split()) <= 3 and not salient_terms(part):
            out[-1] = f"{out[-1]} and {part}"
        else:
            out.append(part)
    return out


_NAME_THEN_ASPECT = re.compile(r"^(\S*[A-Z0-9]\S*)\s+(?:in|on|for|regarding|in terms of|with respect to)\s+.+$")


def _trim_target(part: str) -> str:
    """A compared target without its article, a trailing verb ("… differ") or, after a name, the aspect asked
    about ("Medusa-1 in extra parameters" -> "Medusa-1")."""
    t = re.sub(r"^(?:the|a|an)\s+", "", part.strip(" ,.?"), flags=re.I)
    t = re.sub(r"\s+(?:differ|compare|contrast)\w*$", "", t, flags=re.I)
    # "… approach in how the sampling weights are computed": the aspect asked about, not part of the target
    t = re.sub(r"\s+(?:in|on|regarding) (?:how|what|which|terms of|the way)\b.*$", "", t, flags=re.I)
    m = _NAME_THEN_ASPECT.match(t)
    return m.group(1) if m else t


def comparison_targets(question: str) -> list[str]:
    """The methods a comparative question names (two or more), or [] for other questions."""
    if not _COMPARE.search(question):
        return []
    # the last sentence that asks a comparison the patterns can read; earlier ones are background ("What
    # distinguishes A from B? Both …, but each … a different task" asks in its first sentence)
    sentences = [s for s in re.split(r"(?<=[.?!])\s+", question.strip()) if s]
    for sentence in reversed(sentences):
        if _COMPARE.search(sentence) or _DESCRIBES_TWO.search(sentence):
            found = _targets_in(sentence)
            if found is not None:
                return found
    return []


def _targets_in(sentence: str) -> list[str] | None:
    """The compared targets of one sentence; [] for a question about "it" that names a baseline; None when no
    pattern reads the sentence."""
    head = sentence.split(":")[0]
    # "Compare A and B: …" names them before the colon; "Compare the two X: the one that …, and the one that …"
    # describes them after it
    first = head if _COMPARE.search(head) and not re.search(r"\bor\b", head) else sentence
    for target in dict.fromkeys([first, sentence]):
        for pattern in _METHOD_SPLIT:
            m = pattern.search(target)
            if not m:
                continue
            if pattern in _DESCRIBED:  # each group is one paper's description, "and" included
                parts = [m.group("a"), m.group("b")]
            else:
                parts = [*_split_targets(m.group("a")), *_split_targets(m.group("b"))]
            cleaned = [_trim_target(p) for p in parts]
            if any(_PRONOUN_TARGET.match(c) or _COUNTED_TARGET.match(c) for c in cleaned):
                return []  # a baseline mentioned by a question about "it", or papers counted, not named
            # drop trailing clauses ("…, its predecessor among …"), keep names and short descriptions
            cleaned = [c for c in cleaned if len(c) > 1 and not _CLAUSE.match(c)]
            if len(cleaned) >= 2:
                return cleaned[:4]
    return None


_REFERENCE = re.compile(
    r"\b(?:(?P<poss>its|their)|it|they|them|(?:this|that|the) (?:method|model|approach|paper|work|technique|agent"
    r"|framework|system|network|detector|architecture|algorithm))\b",
    re.I,
)


def conversation_names(history: list[dict], index: NameIndex | None = None) -> list[str]:
    """The names a conversation is about, the likeliest referent first: the user's words before the assistant's,
    the latest first, and (with the corpus's name index) a paper's own method (Kangaroo) before a benchmark or
    baseline it mentions (Spec-Bench, Medusa-1)."""

    def find(text: str) -> list[str]:
        if index is None:
            return salient_terms(text)
        # a paper's own name counts wherever it stands ("Kangaroo: it trains …" starts a sentence)
        own = [t for t in re.findall(r"[A-Za-z][\w.\-]*\w", text) if index.looks_like_name(t) and index.owners(t)]
        return [*index.names_in(text), *own]

    terms = [t for m in reversed(history) if m["role"] == "user" for t in find(m["content"])]
    terms += [t for m in reversed(history) for t in find(m["content"])]
    terms = list(dict.fromkeys(terms))
    if index is not None:
        terms.sort(key=lambda t: 0 if index.owners(t) else 1)  # stable: the order above breaks ties
    return terms


def resolve_references(question: str, history: list[dict], index: NameIndex | None = None, referent: str = "") -> str:
    """Replace the first pronoun of a follow-up with the referent (by default the method the conversation was
    about; no model needed)."""
    terms = [referent] if referent else conversation_names(history, index)
    if not terms:
        last_user = next((m["content"] for m in reversed(history) if m["role"] == "user"), "")
        return f"{question} {last_user}".strip()
    name = terms[0]
    m = _REFERENCE.search(question)
    if not m:
        return f"{question} ({name})"
    replacement = f"{name}'s" if m.group("poss") else name
    return question[: m.start()] + replacement + question[m.end() :]


def discussed_papers(history: list[dict], papers: dict, index: NameIndex) -> list[str]:
    """Ids of the papers under discussion: those the latest answer cited (a message's ``papers``, which the UI
    and the CLI record), else the papers whose own method the last exchange names (a pasted conversation)."""
    for m in reversed(history):
        if m["role"] == "assistant" and m.get("papers"):
            return [pid for pid in m["papers"] if pid in papers]
    owned = [pid for name in conversation_names(history[-2:], index) for pid in sorted(index.owners(name))]
    return list(dict.fromkeys(owned))


def referent_of(history: list[dict], discussed: list[str], papers: dict, index: NameIndex) -> str:
    """What "it" / "this method" / "the paper" stands for: the name the user used for a discussed paper, else
    the discussed paper's method name or title; without discussed papers, the conversation's likeliest name."""
    terms = conversation_names(history, index)
    if not discussed:
        return terms[0] if terms else ""
    for t in terms:
        if index.owners(t) & set(discussed):
            return t
    return paper_name(papers[discussed[0]])


# "who are its authors?" asks about the paper; "other papers by its authors" asks for an author filter
_GROUP = re.compile(
    r"\b(?:the )?same (?:group|authors|team|lab)\b"
    r"|\b(?:by|from) (?P<ref>(?:these|those|its|their|the paper's|the) authors)\b",
    re.I,
)
_FIRST = re.compile(r"\b(?:its|their|the paper's|the) (?:first|lead) author\b", re.I)


def author_reference(question: str, paper) -> tuple[str, list[str], str]:
    """("the same group" | "its first author") in a follow-up -> (the question with the name put in, the author
    filter, why). The group is its senior (last-listed) author when the list is complete, else its first."""
    if not paper.authors:
        return question, [], ""
    if m := _FIRST.search(question):
        name = paper.authors[0]
        why = f"“{m.group(0)}” = {name}, first author of “{paper.title}”"
    elif m := _GROUP.search(question):
        name = paper.authors[0] if paper.authors_truncated or len(paper.authors) == 1 else paper.authors[-1]
        why = f"“{m.group(0)}” = papers with {name}, an author of “{paper.title}”"
    else:
        return question, [], ""
    start, end = m.span("ref") if m.groupdict().get("ref") else m.span()
    return question[:start] + name + question[end:], [name], why


_SUCCESSOR = re.compile(
    r"\b(?:its|their|the paper's|the method's|the|a) (?:successor|follow-up(?: paper| work)?"
    r"|(?:newer|next|later|improved) version)\b",
    re.I,
)


def successor_of(paper: Paper, papers: dict[str, Paper]) -> Paper | None:
    """The paper that continues ``paper``: another paper whose title names its method with a version mark
    ("LLaVA-UHD v2", "Res2Net++", "Enhanced Res2Net"), or whose abstract says it extends or improves it; a dated
    one must be later. None when the corpus has no such paper."""
    name = paper_name(paper)
    if name == paper.title:
        return None  # no short name a later title could carry
    n = re.escape(name)
    versioned = re.compile(
        rf"(?<![\w-]){n}[\s-]*(?:v\d+|\+\+|plus|\d)\b|\b(?:enhanced|improved|extended) {n}(?![\w-])", re.I
    )
    extends = re.compile(rf"\b(?:extend|improv|build)\w* (?:on |upon )?(?:the |our )?(?:previous |prior )?{n}\b", re.I)
    found = [
        q
        for q in papers.values()
        if q.id != paper.id
        and (versioned.search(q.title) or extends.search(q.abstract))
        and not (paper.date and q.date and q.date < paper.date)
    ]
    return max(found, key=lambda q: (bool(versioned.search(q.title)), q.date or "", q.year or 0), default=None)


def successor_reference(question: str, paper: Paper, papers: dict[str, Paper]) -> tuple[str, str | None, str]:
    """ "its successor / newer version" in a follow-up -> (the question with the successor named, its id, why)."""
    m = _SUCCESSOR.search(question)
    if not m:
        return question, None, ""
    base = paper_name(paper)
    later = successor_of(paper, papers)
    if later is None:
        why = f"“{m.group(0)}”: no later paper in the corpus names {base}"
        rest = re.sub(r"^\s+(?:of|to|for) (?:it|them|this (?:paper|method))\b", "", question[m.end() :], flags=re.I)
        return question[: m.start()] + f"a successor of {base}" + rest, None, why
    name = paper_name(later)
    if name == base:  # "LLaVA-UHD v2" is named by its title's head
        name = later.title.split(":", 1)[0].strip()
    why = f"“{m.group(0)}” = {name}, a later paper that builds on {base} (“{later.title}”)"
    return question[: m.start()] + name + question[m.end() :], later.id, why


def has_reference(question: str) -> bool:
    return _REFERENCE.search(question) is not None


def looks_like_followup(question: str) -> bool:
    """A question that refers back ("it", "they", "the agent", "this method") or is too short to stand alone."""
    return (
        bool(PRONOUN.search(question) or _GROUP.search(question) or _FIRST.search(question))
        or _SUCCESSOR.search(question) is not None
        or has_reference(question)
        or len(question.split()) <= 5
    )


_LISTING = re.compile(
    r"^\s*(?:which|what|list|show|find|name)\b[^?]{0,80}\b(?:papers?|works?|articles?)\b"
    r"|^\s*what (?:else|other)\b|^\s*(?:all |the )?papers\b",
    re.I,
)
_MORE_ASKED = re.compile(r"\band\s+(?:what|how|why|which|who|when|where)\b|,\s*and\b", re.I)
# "…, and what does each propose?": a listing whose line per paper is its proposal, which the records give
_EACH_PROPOSES = re.compile(
    r"(?:,?\s*and\s+)?\b(?:what|which \w+) (?:does|did) each (?:one |paper |of them )?"
    r"(?:propose|introduce|present|contribute|do)\b"
    r"|,?\s*and (?:their|its) (?:main )?(?:proposals?|contributions?|methods?)\b",
    re.I,
)


def is_listing(question: str, filters: Filters) -> bool:
    """A question that asks which papers match its filters (and at most what each proposes)."""
    if filters.is_empty() or not _LISTING.search(question):
        return False
    return not _MORE_ASKED.search(_EACH_PROPOSES.sub(" ", question))


def asks_about_matches(question: str, filters: Filters) -> bool:
    """A listing-shaped question that asks more about the matching papers ("Which 2023 papers by X use
    distillation, and what accuracy do they report?"): answered from all of them, not from the top three."""
    return not filters.is_empty() and bool(_LISTING.search(question)) and not is_listing(question, filters)


class Plan(BaseModel):
    """What the pipeline makes of a question before it retrieves anything."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    question: str
    kind: Kind = "factoid"
    followup: bool = Field(False, description="The question was rewritten from the conversation.")
    query: str = Field(description="The standalone question retrieval and answering use.")
    history_query: str = Field(
        "", description="Follow-ups: the question with the earlier user turns; retrieval fuses it with ``query``."
    )
    discussed: list[str] = Field(default_factory=list, description="Ids of the papers the conversation is about.")
    every_match: bool = Field(False, description="Answer from every paper the filters admit, not the top few.")
    filters: Filters = Field(default_factory=Filters)
    compared: list[str] = Field(default_factory=list, description="The compared targets (names or descriptions).")
    described: str = Field(
        "", description="Papers counted, not named (“two papers here that …”): the description all targets share."
    )
    names: list[str] = Field(default_factory=list, description="Names the question asks about (DoViT, COCO, …).")
    why: list[str] = Field(default_factory=list, description="Which words of the question decided what.")


class ModelPlan(BaseModel):
    """The part of a plan a model may propose (``ASSISTANT_LLM__PLANNER=model``); anything else is rejected."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind
    query: str = Field(min_length=3)
    compared: list[str] = Field(default_factory=list)
    filters: Filters = Field(default_factory=Filters)


def read_model_plan(reply: str, rules: Plan) -> ModelPlan:
    """The model's JSON plan, validated against the schema and against the rules' own reading where the rules are
    certain (a comparison needs two targets, a listing needs filters). ValueError says what was wrong."""
    m = re.search(r"\{.*\}", reply, re.S)
    if not m:
        raise ValueError("no JSON object in the reply")
    proposed = ModelPlan.model_validate_json(m.group(0))
    proposed.filters.validate()
    if proposed.kind == "comparison" and len(proposed.compared) < 2:
        raise ValueError("a comparison with fewer than two targets")
    if proposed.kind != "comparison" and proposed.compared:
        raise ValueError(f"compared targets for a {proposed.kind}")
    if proposed.kind == "listing" and proposed.filters.merged(rules.filters).is_empty():
        raise ValueError("a listing without filters")
    return proposed


class PlanError(ValueError):
    """The question's constraints cannot be met as given (an empty year range); the message says why."""


def plan_question(
    question: str,
    history: list[dict],
    retriever: Retriever,
    filters: Filters | None = None,
    rewrite: Callable[[str, list[dict]], str] | None = None,
    propose: Callable[[str, list[dict]], str] | None = None,
) -> Plan:
    """The plan for a (validated) question. ``rewrite`` turns a follow-up into a standalone query; without it the
    first pronoun is resolved to the method the conversation was about. ``propose`` (a model's JSON plan) replaces
    the rules' kind, query, targets and filters when it passes `read_model_plan`."""
    plan = _rules_plan(question, history, retriever, filters, rewrite)
    if propose is None:
        return plan
    try:
        proposed = read_model_plan(propose(question, history), plan)
    except Exception as exc:  # a bad reply, a schema violation, an LLM error: the rules' plan stands
        plan.why.append(f"model plan rejected ({str(exc).splitlines()[0][:120]}); rules used")
        return plan
    if proposed.compared != plan.compared:
        plan.described = ""  # the model named its own targets
    plan.kind, plan.query, plan.compared = proposed.kind, proposed.query, proposed.compared
    plan.filters = proposed.filters.merged(filters)
    plan.every_match = plan.every_match and plan.kind == "factoid"
    plan.why.append(f"plan from the model: {proposed.model_dump_json(exclude_defaults=True)}")
    return plan


def _rules_plan(
    question: str,
    history: list[dict],
    retriever: Retriever,
    filters: Filters | None,
    rewrite: Callable[[str, list[dict]], str] | None,
) -> Plan:
    why: list[str] = []
    query, followup, history_query = question, False, ""
    papers, index = retriever.papers, retriever.name_index
    discussed: list[str] = []
    group: list[str] = []
    named_later = False
    if history and looks_like_followup(question):
        discussed = discussed_papers(history, papers, index)
        if discussed:
            query, later, said = successor_reference(question, papers[discussed[0]], papers)
            if said:
                why.append(said)
                named_later = True  # "its successor" now reads "LLaVA-UHD v2" (or "a successor of Kangaroo")
            if later:
                discussed = [*discussed, later]
            query, group, said = author_reference(query, papers[discussed[0]])
            if group:
                why.append(said)
        referent = referent_of(history, discussed, papers, index)
        # an author filter or a named successor leaves nothing to resolve
        standalone = bool(group) or (named_later and not has_reference(query))
        if not standalone and ((referent and has_reference(query)) or rewrite is None):
            query = resolve_references(query, history, index, referent)
        elif not standalone:
            query = rewrite(query, history)  # nothing in the conversation to point at: the model rewrites
        followup = query != question
        earlier = [m["content"] for m in history if m["role"] == "user"][-2:]
        history_query = " ".join([question, *earlier])
        if followup:
            why.append(f"follow-up rewritten as {query!r}")
    applied = filters_from_question(query, list(retriever.papers.values()))
    if not applied.is_empty():
        why.append(f"filters from the question: {applied.describe()}")
    if group:
        applied.authors = list(dict.fromkeys([*applied.authors, *group]))
    applied = applied.merged(filters)
    try:
        applied.validate()
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    compared = comparison_targets(query)
    stated = filter_words(applied)
    if _only_filters(query, stated):
        said = f" ({applied.describe()})" if not applied.is_empty() else ""
        raise PlanError(
            f"“{question}” only states a filter{said}: ask about the papers, e.g. "
            "“Which papers are from 2023?” or “What do the 2023 papers propose for detection?”"
        )
    # "March", "mid-2023", "cs.CV", "Peking": words of the filters, not names of what the question asks about
    names = [n for n in index.names_in(query) if n.casefold() not in stated and not _DATED.search(n)]
    kind: Kind = "factoid"
    listing = is_listing(query, applied)
    if not compared and not listing:
        compared = _implicit_targets(names, index)
        if compared:
            why.append("names the methods of different papers: " + ", ".join(compared))
    described = ""
    if not compared and not listing:
        count, described = counted_papers(query)
        if count:
            compared = [f"described paper {i}" for i in range(1, count + 1)]
            why.append(f"compares {count} papers described as “{described}”")
    every = False
    if compared:
        kind = "comparison"
        why.append("comparison of " + ", ".join(compared))
    elif listing:
        kind = "listing"
        why.append("asks which papers match the filters")
    elif asks_about_matches(query, applied):
        every = True
        why.append("asks about every paper the filters admit")
    if names:
        why.append("names asked about: " + ", ".join(names))
    return Plan(
        question=question,
        kind=kind,
        followup=followup,
        query=query,
        history_query=history_query,
        discussed=discussed,
        every_match=every,
        filters=applied,
        compared=compared,
        described=described,
        names=names,
        why=why,
    )


_NUMBERS = {"two": 2, "three": 3, "four": 4, "2": 2, "3": 3, "4": 4}
_COUNTED = re.compile(
    r"\b(?P<n>two|three|four|[234])\s+(?:[\w-]+\s+){0,4}?(?:papers|works|methods|approaches|studies|articles)\b",
    re.I,
)
_EACH = re.compile(
    r"\b(?:each(?: one| of them)?|both|one (?:versus|vs\.?|against) the other|they differ|do they (?:differ|compare)"
    r"|compare them|contrast them)\b",
    re.I,
)


def counted_papers(question: str) -> tuple[int, str]:
    """ "Two papers here speed up X. How does each …?": (2, the sentence that describes them) — a comparison of
    papers the question counts and describes but does not name; (0, "") otherwise."""
    m = _COUNTED.search(question)
    if not m or not _EACH.search(question):
        return 0, ""
    described = next((x for x in _clauses(question) if _COUNTED.search(x)), question)
    return _NUMBERS[m.group("n").lower()], described.rstrip(" :")


def _only_filters(question: str, stated: set[str]) -> bool:
    """A question with no word beyond its filters ("2023", "cs.CV March 2024")."""
    words = re.findall(r"[\w.-]+", question.casefold())
    return all(w in stated or re.fullmatch(r"[\d.-]+", w) or w in _FILLER for w in words)


_FILLER = {"in", "from", "of", "since", "before", "after", "between", "and", "to", "by", "the", "a", "with"}
_DATED = re.compile(r"^(?:early|mid|late|q[1-4])-?(?:19|20)\d\d$", re.I)


def _implicit_targets(names: list[str], index: NameIndex) -> list[str]:
    """Two or more names that are each some paper's own method, used together by no paper ("Which is faster,
    Gold-YOLO or DAMO-YOLO?"): the question is about several papers, whatever its wording."""
    owned = [n for n in names if not index.is_record_field(n) and index.owners(n)]
    if len(owned) < 2:
        return []
    if set.intersection(*(index.papers_with(n) for n in owned)):
        return []  # one paper uses them all: a question about that paper
    owners = [frozenset(index.owners(n)) for n in owned]
    return owned[:4] if len(set(owners)) == len(owners) else []


# Family names many papers share: a compared target named only by one of these is found by retrieval, not by name.
_GENERIC_NAMES = {"yolo", "vit", "cnn", "gnn", "llm", "llms", "nlp", "rl"}
LISTING_MAX = 20
EVERY_MAX = 8  # papers answered from when a question asks about every match (the prompt's budget is the limit)


class Gathered(BaseModel):
    """The papers a plan retrieved: the ranked hits and, for a comparison, each target's paper (or None)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    hits: list[Hit]
    per_target: dict[str, Hit | None] = Field(default_factory=dict)

    def picked(self) -> dict[str, str | None]:
        """Each compared target and the title of the paper picked for it (None: the corpus lacks it)."""
        return {m: h.paper.title if h else None for m, h in self.per_target.items()}


def gather(plan: Plan, retriever: Retriever, top_k: int, depth: int | None = None, mode: str | None = None) -> Gathered:
    """Retrieve for a plan: the top papers, every compared target's own paper first (a named target must be named
    by its paper, else the corpus lacks it), all matching papers for a listing, and any paper that uses every name
    the question asks about (a name retrieval missed is still the question's subject)."""
    depth = depth or top_k
    filters = None if plan.filters.is_empty() else plan.filters
    if plan.kind == "listing":
        return Gathered(
            hits=retriever.search(plan.query, top_k=max(top_k, LISTING_MAX, depth), filters=filters, mode=mode)
        )
    if plan.every_match:
        depth = max(depth, EVERY_MAX)
    hits = _search(plan, retriever, depth, filters, mode)
    if plan.kind != "comparison":
        return Gathered(hits=_with_named_paper(plan, retriever, hits, depth, filters, mode))
    per_target: dict[str, Hit | None] = {}
    chosen: dict[str, Hit] = {}
    if plan.described:  # the N papers the question (its description and what it asks) fits best, one per target
        found = retriever.search(plan.query, top_k=len(plan.compared), filters=filters, mode=mode)
        per_target = {t: (found[i] if i < len(found) else None) for i, t in enumerate(plan.compared)}
        chosen = {h.paper.id: h for h in found}
    else:
        background = _background(plan.query)
        for target in plan.compared:
            names = [t for t in salient_terms(target) if t.casefold() not in _GENERIC_NAMES]
            # a described target ("the one that rebalances by return") is searched with the question's background
            query = target if names or not background else f"{target}. {background}"
            found = retriever.search(query, top_k=3, filters=filters, mode=mode)
            if names:
                found = [h for h in found if any(mentions(f"{h.paper.title} {h.paper.abstract}", n) for n in names)]
            hit = next((h for h in found if h.paper.id not in chosen), found[0] if found else None)
            per_target[target] = hit
            if hit is not None:
                chosen.setdefault(hit.paper.id, hit)
    # the compared papers alone make a shorter, clearer prompt; fill up only for targets not found
    room = len(plan.compared) if all(per_target.values()) else max(top_k, len(plan.compared))
    room = max(room, depth) if depth > top_k else room
    for hit in hits:
        if len(chosen) >= room:
            break
        chosen.setdefault(hit.paper.id, hit)
    return Gathered(hits=list(chosen.values()), per_target=per_target)


def _search(plan: Plan, retriever: Retriever, depth: int, filters, mode) -> list[Hit]:
    """The plan's search; for a follow-up, the rewritten query fused (reciprocal rank) with the question plus the
    earlier user turns, which finds the paper under discussion when the rewrite picked the wrong referent."""
    hits = retriever.search(plan.query, top_k=depth, filters=filters, mode=mode)
    if not plan.history_query or plan.history_query == plan.query:
        return hits
    other = retriever.search(plan.history_query, top_k=depth, filters=filters, mode=mode)
    k = retriever.settings.retrieval.rrf_k
    score: dict[str, float] = {}
    by_id: dict[str, Hit] = {}
    for run in (hits, other):
        for rank, h in enumerate(run):
            score[h.paper.id] = score.get(h.paper.id, 0.0) + 1.0 / (k + rank + 1)
            by_id.setdefault(h.paper.id, h)
    return sorted(by_id.values(), key=lambda h: -score[h.paper.id])[:depth]


def _background(question: str) -> str:
    """The sentences of a question before the one that asks the comparison ("Two offline RL papers change how
    often transitions are sampled. How does …"): the topic a described target belongs to."""
    return " ".join(_clauses(question)[:-1])


def _clauses(question: str) -> list[str]:
    """A question's sentences, a colon also ending one ("Two papers here …: how does each …")."""
    return [x for x in re.split(r"(?<=[.?!:])\s+", question.strip()) if x]


def _with_named_paper(plan: Plan, retriever: Retriever, hits: list[Hit], depth: int, filters, mode) -> list[Hit]:
    index: NameIndex = retriever.name_index
    known = [n for n in plan.names if index.papers_with(n)]
    if not known:
        return hits
    users = set.intersection(*(index.papers_with(n) for n in known)) & set(retriever.papers)
    if filters is not None:
        users = {pid for pid in users if filters.matches(retriever.papers[pid])}
    if not users or any(h.paper.id in users for h in hits) or len(users) > 3:
        return hits
    extra = [h for h in retriever.search(plan.query, top_k=30, filters=filters, mode=mode) if h.paper.id in users]
    if not extra:
        extra = [Hit(paper=retriever.papers[pid]) for pid in sorted(users)]
    return (extra[:1] + hits)[:depth] if depth > 1 else extra[:1]
