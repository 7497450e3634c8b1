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

from .coverage import Coverage, paper_fit, term_coverage, topic_coverage
from .filters import Filters, filter_words, filters_from_question
from .fusion import rrf
from .llm_errors import LLMAuthError, LLMError, LLMModelNotFound, LLMStartError
from .names import NameIndex, mentions, method_name, paper_name, salient_terms
from .paper import Paper
from .retrieve import Hit, Retriever
from .shape import predict_shape

Kind = Literal["factoid", "comparison", "listing", "survey", "summary"]

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
        r"\bone (?:of them )?(?P<a>[^,;:?]{6,}?)\s*[,;]\s*(?:and |while |whereas )?(?:the other|another)(?: one)?"
        r" (?P<b>[^,;:?]{6,})",
        re.I,
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
# "A quantization method and a language-model distillation method in this corpus both …": two described papers
_METHOD_SPLIT.append(
    re.compile(
        r"^(?:[\w-]+,?\s+){0,3}?(?:a|an) (?P<a>[^,;:?]{4,}?) and (?:a|an) (?P<b>[^,;:?]{4,}?)"
        r"(?: (?:in|from|of) (?:this|the) (?:corpus|collection)| here)? (?:both|each)\b",
        re.I,
    )
)
_DESCRIBED = [*_METHOD_SPLIT[1:3], _METHOD_SPLIT[-1]]  # "one …, the other …", "the one that … and the one that …"
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
    r"\bone\b[^.?]{6,}[,;]\s*(?:and |while |whereas )?(?:the other|another)\b"
    r"|\bthe one (?:that|which)\b.+\bthe one (?:that|which)\b"
    r"|\b(?:a|an) [^,;:?]{4,} and (?:a|an) [^,;:?]{4,} (?:both|each)\b",
    re.I,
)
_FIELD_WORDS = frozenset(
    {
        *("state", "of", "the", "art", "sota", "baseline", "baselines", "prior", "previous", "existing", "other"),
        *("methods", "systems", "approaches", "works", "work", "competitors", "alternatives", "models", "others"),
        *("competing", "current", "leading", "best", "strong", "standard", "conventional", "traditional"),
    }
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
    if not _COMPARE.search(question) and not _DESCRIBES_TWO.search(question):
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
    ones = re.split(r"(?:,\s*)?(?:\band\s+|\bor\s+|\bvs\.?\s+|\bversus\s+)?\bthe one (?:that|which)\s+", sentence)
    if len(ones) >= 3:  # "the one that …, the one that …, and the one that …": each a described paper
        described = [_trim_target(x.split("?")[0]) for x in ones[1:]]
        described = [d for d in described if len(d) > 5]
        if len(described) >= 2:
            return described[:4]
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
            # "… vs the state of the art", "… compared with prior work": the field, not a paper to compare with
            cleaned = [c for c in cleaned if not set(re.findall(r"[a-z]+", c.casefold())) <= _FIELD_WORDS]
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
    r"|(?:newer|next|later|improved|extended)(?:,? \w+)? version)\b"
    r"|\b(?:same|that) (?:team|group|line of work|authors?)\b.{0,40}\b(?:later|newer|new version|extend\w*|follow)"
    r"|\b(?:later|since) (?:get |been |was |were )?extended\b",
    re.I,
)


def successor_of(paper: Paper, papers: dict[str, Paper]) -> Paper | None:
    """The paper that continues ``paper``: another paper whose title names its method with a version mark
    ("LLaVA-UHD v2", "Res2Net++", "Enhanced Res2Net"), or whose abstract says it extends or improves it; a dated
    one must be later. None when the corpus has no such paper."""
    name = paper_name(paper)
    head = " ".join(paper.title.split(":", 1)[0].split()[:4]).casefold()
    if name == paper.title:  # no short name a later title could carry: only one line of work by its title's head
        same = [
            q
            for q in papers.values()
            if q.id != paper.id
            and len(head.split()) >= 4
            and q.title.casefold().startswith(head)
            and (set(q.authors) & set(paper.authors) or not (q.authors and paper.authors))
            and not (paper.date and q.date and q.date < paper.date)
        ]
        return max(same, key=lambda q: (q.date or "", q.year or 0, len(q.abstract)), default=None)
    if later := _next_version(paper, name, papers):  # "GhostNetV2" -> "GhostNetV3"
        return later
    n = re.escape(name)
    versioned = re.compile(
        rf"(?<![\w-]){n}[\s-]*(?:v\d+|\+\+|plus|\d)\b|\b(?:enhanced|improved|extended) {n}(?![\w-])", re.I
    )
    extends = re.compile(rf"\b(?:extend|improv|build)\w* (?:on |upon )?(?:the |our )?(?:previous |prior )?{n}\b", re.I)
    same_line = len(head.split()) >= 4  # "Deep High-Resolution Representation Learning for …": one line of work
    found = [
        q
        for q in papers.values()
        if q.id != paper.id
        and (
            versioned.search(q.title)
            or extends.search(q.abstract)
            or (same_line and q.title.casefold().startswith(head) and mentions(q.abstract, name))
        )
        and not (paper.date and q.date and q.date < paper.date)
    ]
    return max(found, key=lambda q: (bool(versioned.search(q.title)), q.date or "", q.year or 0), default=None)


def _next_version(paper: Paper, name: str, papers: dict[str, Paper]) -> Paper | None:
    """For a name with a version ("GhostNetV2", "Medusa-1"): the paper whose title carries the same name with the
    next higher version. A number over 20 is a size, not a version (ResNet-50 is not followed by ResNet-101)."""
    m = re.fullmatch(r"(.+?)[\s-]*[vV]?(\d{1,2})", name)
    if not m or int(m.group(2)) > 20:
        return None
    base, version = m.group(1), int(m.group(2))
    pattern = re.compile(rf"(?<![\w-]){re.escape(base)}[\s-]*[vV]?(\d{{1,2}})(?![\w.])", re.I)
    later = [
        (int(v.group(1)), q)
        for q in papers.values()
        if q.id != paper.id
        and (v := pattern.search(q.title.split(":", 1)[0]))
        and version < int(v.group(1)) <= 20
        and not (paper.date and q.date and q.date < paper.date)
    ]
    return min(later, key=lambda vq: vq[0])[1] if later else None


def successor_reference(question: str, paper: Paper, papers: dict[str, Paper]) -> tuple[str, str | None, str]:
    """ "its successor / newer version" in a follow-up -> (the question with the successor named, its id, why)."""
    m = _SUCCESSOR.search(question)
    if not m:
        return question, None, ""
    base = paper_name(paper)
    later = successor_of(paper, papers)
    noun = m.group(0).split()[0].casefold() in ("its", "their", "the", "a")  # "its successor": a noun phrase
    if later is None:
        why = f"“{m.group(0)}”: no later paper in the corpus names {base}"
        if not noun:
            return f"{question} (a successor of {base})", None, why
        rest = re.sub(r"^\s+(?:of|to|for) (?:it|them|this (?:paper|method))\b", "", question[m.end() :], flags=re.I)
        return question[: m.start()] + f"a successor of {base}" + rest, None, why
    name = paper_name(later)
    if name == base:  # "LLaVA-UHD v2" is named by its title's head
        name = later.title.split(":", 1)[0].strip()
    why = f"“{m.group(0)}” = {name}, a later paper that builds on {base} (“{later.title}”)"
    if not noun:  # "did the same line of work later get extended …": the question stays, the later paper named
        return f"{question} ({name})", later.id, why
    return question[: m.start()] + name + question[m.end() :], later.id, why


# -- follow-ups: what was discussed, and which of it the question means ---------------------------------------------
EXCLUDE = "<exclude>"  # pick_referent: the question asks for a paper other than those discussed
_ORDINAL = re.compile(
    r"\b(?:the\s+)?(?P<ord>first|second|third|fourth|last|former|latter)"
    r"(?:\s+(?:one|paper|method|approach|model|work|of (?:the|them|those)(?: two| three)?))?\b",
    re.I,
)
_ORDINALS = {"first": 0, "former": 0, "second": 1, "third": 2, "fourth": 3, "last": -1, "latter": -1}
_CHOICE = re.compile(r"\bwhich (?:one|of (?:the|these|those|them)(?: two| three| papers| methods)?)\b", re.I)
_ANOTHER = re.compile(
    r"\b(?:another|(?:any|some)\s+other|other|a different|different)\s+(?:[\w-]+\s+){0,2}?"
    r"(?:paper|papers|work|works|study|studies|method|methods|approach|approaches|model|models|one)\b"
    r"|\b(?:anything|something|anyone) else\b",
    re.I,
)
RECENT = 0.15  # fit bonus of a paper the latest answer discussed: "it" most often means the latest one
ASKED = 0.25  # fit bonus of a paper the user's latest question named


class Mention(BaseModel):
    """A paper the conversation discussed: how it was called, in which message, where in it."""

    paper_id: str
    name: str
    turn: int
    pos: int


def conversation_papers(history: list[dict], papers: dict, index: NameIndex) -> list[Mention]:
    """The papers a conversation discussed, in order of mention: the papers each answer cited (a message's
    ``papers``, recorded by the UI and the CLI) and the papers whose own name or title a message writes (a pasted
    conversation). A dataset, metric or benchmark is no paper's own name, so it is never a candidate."""
    out: list[Mention] = []
    for turn, message in enumerate(history):
        text = message.get("content") or ""
        low = text.casefold()
        found: dict[str, Mention] = {}

        def add(pid: str, name: str, pos: int, turn: int = turn, found: dict[str, Mention] = found) -> None:
            if pid in papers and (pid not in found or pos < found[pid].pos):
                found[pid] = Mention(paper_id=pid, name=name, turn=turn, pos=pos)

        for k, pid in enumerate(message.get("papers") or []):
            add(pid, paper_name(papers[pid]) if pid in papers else "", -100 + k)
        # a paper's own name where the message writes it ("BBS-Net"), else the name or title the message used
        for pid, p in papers.items():
            head = p.title.split(":", 1)[0].strip()
            for title in dict.fromkeys([p.title, head if len(head.split()) >= 2 else ""]):
                if title and (pos := low.find(title.casefold())) >= 0:
                    add(pid, title if title == head else paper_name(p), pos)
        own = [t for t in re.findall(r"[A-Za-z][\w.\-]*\w", text) if index.looks_like_name(t)]
        for name in dict.fromkeys([*index.names_in(text), *own]):
            owners = index.owners(name, by_title=False) or index.owners(name)
            if 0 < len(owners) <= 2:
                for pid in owners:
                    add(pid, name, text.find(name))
        for m in found.values():
            own_name = method_name(papers[m.paper_id])
            if own_name and own_name != m.name and mentions(text, own_name):
                m.name = own_name
        out += sorted(found.values(), key=lambda m: m.pos)
    return out


def _mention_name(mentions: list[Mention], paper_id: str, papers: dict) -> str:
    names = [m.name for m in mentions if m.paper_id == paper_id and m.name]
    return names[0] if names else paper_name(papers[paper_id])


def pick_referent(
    question: str, mentions: list[Mention], retriever: Retriever, history_roles: dict[int, str] | None = None
) -> tuple[str, str, str]:
    """(the paper a follow-up means, the question with an ordinal or choice naming it, why) — by syntax where the
    question says so (an ordinal picks by order of mention; "another paper" excludes the discussed ones), else by
    scoring: every discussed paper against the question (`coverage.paper_fit`, the one scorer), the latest
    answer's papers a little ahead. ("", question, "") when nothing was discussed."""
    if not mentions:
        return "", question, ""
    history_roles = history_roles or {}
    papers = retriever.papers
    if m := _ANOTHER.search(question):
        names = ", ".join(dict.fromkeys(_mention_name(mentions, x.paper_id, papers) for x in mentions))
        return EXCLUDE, question, f"“{m.group(0)}”: leaves out the papers discussed ({names})"
    last_turn = max(x.turn for x in mentions)
    latest = list(dict.fromkeys(x.paper_id for x in mentions if x.turn == last_turn))
    ordered = latest if len(latest) >= 2 else list(dict.fromkeys(x.paper_id for x in mentions))
    if m := _ORDINAL.search(question):
        k = _ORDINALS[m.group("ord").casefold()]
        if -len(ordered) <= k < len(ordered):
            pid = ordered[k]
            name = _mention_name(mentions, pid, papers)
            said = f"“{m.group(0)}” = {name}, by order of mention"
            return pid, question[: m.start()] + name + question[m.end() :], said
    choice = _CHOICE.search(question)
    # "which of the two …": the papers just discussed (over the last turns when the last named only one), chosen by
    # the question alone; "it": any paper discussed, the latest and the one the user named leading
    pool = ordered if choice else list(dict.fromkeys(x.paper_id for x in mentions))
    words = PRONOUN.sub(" ", question)
    fit = paper_fit(retriever, words, pool)
    for pid in [] if choice else latest:
        fit[pid] = fit.get(pid, 0.0) + RECENT
    # the paper the user last asked about by name is what "it" most likely means (an answer may cite others too)
    user_turns = [x.turn for x in mentions if history_roles.get(x.turn) == "user"]
    if user_turns and not choice:
        for pid in {x.paper_id for x in mentions if x.turn == max(user_turns)}:
            fit[pid] = fit.get(pid, 0.0) + ASKED
    pid = max(pool, key=lambda p: fit.get(p, 0.0))
    name = _mention_name(mentions, pid, papers)
    if choice:
        said = f"“{choice.group(0)}” = {name}, the one of them the question fits best"
        return pid, question[: choice.end()] + f" ({name})" + question[choice.end() :], said
    if len(pool) > 1:
        return pid, question, f"the question fits {name} best of the papers discussed"
    return pid, question, ""


def _names_its_subject(question: str, index: NameIndex) -> bool:
    """A short question that names a paper's own method and refers to nothing ("What is DoViT?") stands alone."""
    if _refers_back(question):
        return False
    return any(index.owners(n) for n in index.names_in(question) if not index.is_record_field(n))


def _refers_back(question: str) -> bool:
    """Words that point into the conversation: a pronoun, "the method", "the same group", "its successor", an
    ordinal, a choice, "another paper"."""
    return bool(
        PRONOUN.search(question)
        or _GROUP.search(question)
        or _FIRST.search(question)
        or _SUCCESSOR.search(question)
        or has_reference(question)
        or _ORDINAL.search(question)
        or _CHOICE.search(question)
        or _ANOTHER.search(question)
    )


def has_reference(question: str) -> bool:
    return _REFERENCE.search(question) is not None


def looks_like_followup(question: str) -> bool:
    """A question that refers back ("it", "they", "the agent", "this method") or is too short to stand alone."""
    return _refers_back(question) or len(question.split()) <= 5


_MORE_ASKED = re.compile(r"\band\s+(?:what|how|why|which|who|when|where)\b|,\s*and\b", re.I)
# "…, and what does each propose?": a listing whose line per paper is its proposal, which the records give
_EACH_PROPOSES = re.compile(
    r"(?:,?\s*and\s+)?\b(?:what|which \w+) (?:does|did) each (?:one |paper |of them )?"
    r"(?:propose|introduce|present|contribute|do)\b"
    r"|,?\s*and (?:their|its) (?:main )?(?:proposals?|contributions?|methods?)\b",
    re.I,
)


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
    exclude: list[str] = Field(
        default_factory=list, description="“Another / a different paper”: ids of the discussed papers left out."
    )
    focus: list[str] = Field(
        default_factory=list, description="Follow-ups: the paper the question means (“the former”, its successor)."
    )
    every_match: bool = Field(False, description="Answer from every paper the filters admit, not the top few.")
    filters: Filters = Field(default_factory=Filters)
    compared: list[str] = Field(default_factory=list, description="The compared targets (names or descriptions).")
    described: str = Field(
        "", description="Papers counted, not named (“two papers here that …”): the description all targets share."
    )
    names: list[str] = Field(default_factory=list, description="Names the question asks about (DoViT, COCO, …).")
    topic: str = Field("", description="Surveys: what the papers must address, in the question's own words.")
    term: str = Field("", description="Surveys by a name: the term every listed abstract names (ADE20K).")
    aspects: list[str] = Field(
        default_factory=list, description="What the question asks about each paper: the comparison's columns."
    )
    max_sentences: int | None = Field(None, description="The length the question asks for (“in two sentences”).")
    answer_noun: str = Field("", description="“Which method/paper/… …”: what the answer must name (method, paper, …).")
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
    except (LLMStartError, LLMAuthError, LLMModelNotFound):
        raise  # a model that cannot run is an error, not a reason to plan by rules
    except (ValueError, LLMError) as exc:  # a bad reply or schema violation (ValidationError is one), a timeout
        plan.why.append(f"model plan rejected ({str(exc).splitlines()[0][:120]}); rules used")
        return plan
    if proposed.compared != plan.compared:
        plan.described = ""  # the model named its own targets
    plan.kind, plan.query, plan.compared = proposed.kind, proposed.query, proposed.compared
    plan.filters = proposed.filters.merged(filters)
    plan.every_match = plan.every_match and plan.kind == "factoid"
    plan.why.append(f"plan from the model: {proposed.model_dump_json(exclude_defaults=True)}")
    return plan


def _shouted(question: str) -> bool:
    """A question typed in capitals ("HOW DOES HDENSEUNET WORK"): three or more words, no lower-case letter."""
    words = re.findall(r"[A-Za-z]+", question)
    return len(words) >= 3 and not any(ch.islower() for ch in question)


def _rules_plan(
    question: str,
    history: list[dict],
    retriever: Retriever,
    filters: Filters | None,
    rewrite: Callable[[str, list[dict]], str] | None,
) -> Plan:
    why: list[str] = []
    papers, index = retriever.papers, retriever.name_index
    if _shouted(question):  # every word in capitals says nothing about which words are names
        question = question.lower()
        why.append("read in lower case (written in capitals)")
    typed = index.typed_names(question)
    query = question
    for span, name in typed:  # "damo yolo", "flaten transformer": the names as the corpus writes them
        query = re.sub(rf"(?<![\w-]){re.escape(span)}(?![\w-])", name, query, count=1)
    if typed:
        why.append("read " + ", ".join(f"“{span}” as {name}" for span, name in typed))
    question_as_typed, question = question, query
    followup, history_query = False, ""
    discussed: list[str] = []
    group: list[str] = []
    named_later = False
    exclude: list[str] = []
    focus: list[str] = []
    earlier_paper = ""  # a successor was found: the paper it continues
    if history and looks_like_followup(question) and not _names_its_subject(question, index):
        mentions_ = conversation_papers(history, papers, index)
        roles = {i: m["role"] for i, m in enumerate(history)}
        picked, query, said = pick_referent(question, mentions_, retriever, roles)
        if said:
            why.append(said)
        if picked == EXCLUDE:
            exclude = list(dict.fromkeys(m.paper_id for m in mentions_))
            discussed = list(exclude)  # "other papers by its first author": still the discussed paper's author
        elif picked:
            discussed = [picked, *dict.fromkeys(m.paper_id for m in mentions_ if m.paper_id != picked)]
        else:
            discussed = discussed_papers(history, papers, index)
        if picked and picked != EXCLUDE:
            question = query  # the ordinal or choice now names its paper
            focus = [picked]
        query = question
        if discussed:
            query, later, said = successor_reference(question, papers[discussed[0]], papers)
            if said:
                why.append(said)
                named_later = True  # "its successor" now reads "LLaVA-UHD v2" (or "a successor of Kangaroo")
            if later:
                earlier_paper = discussed[0]
                discussed = [*discussed, later]
                focus = [later]  # "its successor": the later paper is what the question is about
            query, group, said = author_reference(query, papers[discussed[0]])
            if group:
                why.append(said)
        referent = (
            _mention_name(mentions_, discussed[0], papers)
            if discussed and picked
            else referent_of(history, discussed, papers, index)
        )
        # an author filter, a named successor or "another paper" leaves nothing to resolve
        standalone = (
            bool(group)
            or (named_later and not has_reference(query))
            or (bool(exclude) and not _FIRST.search(query))
            or (bool(focus) and not has_reference(query))  # "the second one" now names its paper
        )
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
    stated = filter_words(applied)
    if _only_filters(query, stated):
        said = f" ({applied.describe()})" if not applied.is_empty() else ""
        raise PlanError(
            f"“{question}” only states a filter{said}: ask about the papers, e.g. "
            "“Which papers are from 2023?” or “What do the 2023 papers propose for detection?”"
        )
    # "March", "mid-2023", "cs.CV", "Peking": words of the filters, not names of what the question asks about
    names = [n for n in index.names_in(query) if n.casefold() not in stated and not _DATED.search(n)]
    # the answer's shape is the learned classifier's (assistant.shape); the syntax below only fills it in
    shapes = predict_shape(query, retriever.store.embedder, index)
    shape = next(iter(shapes))
    why.append("shape: " + ", ".join(f"{k} {v:.2f}" for k, v in list(shapes.items())[:2]))
    kind: Kind = "factoid"
    compared: list[str] = []
    described = ""
    every = False
    topic = term = ""
    aspects: list[str] = []
    length = asked_length(query)
    if shape == "compare":
        compared, described, said = _compared_targets(query, names, index)
        if said:
            why.append(said)
        if len(compared) < 2:  # a comparison with one real target is a question about that paper
            compared, described = [], ""
            why.append("fewer than two compared papers: answered as a question about one paper")
    if shape in ("set", "aggregate") and not applied.is_empty() and not focus:
        if _MORE_ASKED.search(_EACH_PROPOSES.sub(" ", query)):
            every = True
            why.append("asks about every paper the filters admit")
        else:
            kind = "listing"
            why.append("asks which papers match the filters")
    elif shape in ("set", "aggregate") and not focus and not exclude:
        kind = "survey"
        topic = topic_phrase(query)
        term = _listed_term(query, names, index, stated, topic)
        # what it asks of each paper comes after the topic ("…, and how does each model the skeleton?")
        rest = query[query.find(topic) + len(topic) :] if topic in query else ""
        aspects = question_aspects(rest, []) if re.search(r"\b(?:how|what|which|where|why)\b", rest, re.I) else []
        why.append(
            f"asks for every paper that names {term}" if term else f"asks for every paper that addresses “{topic}”"
        )
    elif compared:
        kind = "comparison"
        why.append("comparison of " + ", ".join(compared))
        aspects = question_aspects(query, compared if not described else [described])
        if aspects:
            why.append("compared on " + "; ".join(aspects))
    elif shape == "summary":
        kind = "summary"
        why.append(f"asks for a summary in at most {length or SUMMARY_SENTENCES} sentences")
    if names:
        why.append("names asked about: " + ", ".join(names))
    if earlier_paper and kind != "comparison":  # asked about the later paper, not about the pair
        exclude = [*exclude, earlier_paper]
    return Plan(
        question=question_as_typed,
        kind=kind,
        followup=followup,
        query=query,
        history_query=history_query,
        discussed=discussed,
        exclude=exclude,
        focus=focus,
        every_match=every,
        filters=applied,
        compared=compared,
        described=described,
        names=names,
        topic=topic,
        term=term,
        aspects=aspects,
        max_sentences=length if length is not None else (SUMMARY_SENTENCES if kind == "summary" else None),
        answer_noun=which_noun(query),
        why=why,
    )


# -- surveys, summaries and what a question asks about each paper ----------------------------------------------
# Whether a question asks for a set of papers, a summary or one paper is the shape classifier's decision
# (assistant.shape); what follows reads the parts of such a question once its shape is known.
def _listed_term(question: str, names: list[str], index: NameIndex, stated: set[str], topic: str) -> str:
    """The name a survey lists papers by ("Which papers report results on PASCAL VOC?" -> PASCAL VOC): adjacent
    name tokens joined when the corpus writes them together; of several names, the rarest the corpus has. Only when
    the name is what the question is about: a topic of several other words ("networks in hyperbolic space instead
    of Euclidean space") is a topic, whatever names it mentions."""
    from .coverage import papers_naming, topic_words

    candidates: list[str] = []
    tokens = [
        n for n in names if not index.is_generic(n) and n.casefold() not in stated and not index.is_record_field(n)
    ]
    for a, b in zip(tokens, tokens[1:], strict=False):
        joined = re.search(rf"{re.escape(a)}[\s-]{re.escape(b)}", question)
        if joined:
            candidates.append(joined.group(0))
    candidates += tokens
    papers = list(index.papers.values())
    count = {c: len(papers_naming(c, papers, index.lower_words)) for c in candidates}
    found = [(n, -len(c), c) for c, n in count.items() if n > 0]
    if not found:
        return ""
    # a joined name ("PASCAL VOC") when the corpus mostly writes its parts together; else the rarest name, the most
    # specific ("NVIDIA T4 GPU" lists the papers naming T4, most of which do not say NVIDIA)
    parts = {c: [t for t in tokens if t in c and t != c] for c in count}
    joined = [f for f in found if parts[f[2]] and f[0] * 2 >= min(count[t] or f[0] for t in parts[f[2]])]
    single = [f for f in found if not parts[f[2]]]
    term = min(joined or single or found)[2]
    name_words = {w.casefold() for n in names for w in re.split(r"[\s-]+", n)} | {"results", "numbers", "gpu"}
    other = [w for w in topic_words(topic) if w not in name_words and not any(w in n.casefold() for n in names)]
    return term if len(other) <= 2 else ""


def topic_phrase(question: str) -> str:
    """The span of a question between its first and last topic word ("Which papers here predict the future paths of
    pedestrians in crowded scenes?" -> "predict the future paths of pedestrians in crowded scenes")."""
    from .coverage import topic_words

    words = topic_words(question)
    if not words:
        return question.strip(" ?.!")
    spans = [m for m in re.finditer(r"[A-Za-z][A-Za-z0-9]*(?:[-'][A-Za-z0-9]+)*", question)]
    picked = [m for m in spans if m.group(0).casefold() in set(words)]
    first = picked[0]
    end = re.search(r"[.?!;](?:\s|$)", question[first.end() :])  # the topic stays within its sentence
    limit = first.end() + end.start() if end else len(question)
    last = [m for m in picked if m.end() <= limit][-1]
    tail = re.split(r",?\s+and\s+(?:what|how|which|why)\b", question[first.start() : last.end()], flags=re.I)[0]
    return tail.strip(" ,;:")


_LENGTHS = {"one": 1, "a": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5, "1": 1, "2": 2, "3": 3, "4": 4}
_ASKED_LENGTH = re.compile(
    r"\b(?:in|with|using|as) (?P<n>one|a|a single|single|two|three|four|five|[1-5]) (?:short )?sentences?\b"
    r"|\b(?P<n2>one|two|three|single|[1-5])[- ]sentence\b"
    r"|(?P<tldr>\btl;?dr\b)|(?P<brief>\bbriefly\b|\bin (?:short|brief)\b|\ba short summary\b)",
    re.I,
)
SUMMARY_SENTENCES = 3  # a summary asked without a length
BRIEF_SENTENCES = 2  # "briefly", "in short"


def asked_length(question: str) -> int | None:
    """The number of sentences a question asks for ("in two sentences" 2, "one-sentence summary" 1, "tl;dr" 1,
    "briefly" 2), or None."""
    m = _ASKED_LENGTH.search(question)
    if not m:
        return None
    if m.group("tldr"):
        return 1
    if m.group("brief"):
        return BRIEF_SENTENCES
    word = (m.group("n") or m.group("n2") or "").casefold().replace("a single", "single")
    return _LENGTHS.get(word)


_ASK_WORDS = frozenset(
    {
        *("how", "what", "which", "where", "why", "when", "who", "whose", "does", "do", "did", "is", "are", "was"),
        *("were", "each", "one", "ones", "they", "them", "their", "its", "it", "both", "two", "three", "papers"),
        *("paper", "method", "methods", "approach", "approaches", "the", "a", "an", "of", "in", "on", "and", "or"),
        *("differ", "differs", "different", "difference", "differences", "compare", "compared", "comparison"),
        *("contrast", "versus", "vs", "between", "terms", "respect", "regarding", "with", "to", "from", "than"),
        *("here", "these", "those", "this", "that", "other", "another", "former", "latter", "way", "ways"),
        *("use", "uses", "using", "work", "works", "model", "models", "say", "tell", "me", "about", "there"),
        *("contribute", "contributes", "contribution", "propose", "proposes", "bring", "table", "add", "adds"),
        *("summarize", "summarise", "offer", "offers", "cover", "corpus", "collection", "can", "could", "would"),
    }
)


def question_aspects(question: str, targets: list[str]) -> list[str]:
    """What a question asks about each compared or surveyed paper, in its own words: the clause that asks (its
    last sentence with a question word), without the question words and the targets' own words, split at "and" or
    commas ("how do their necks and training recipes differ?" -> ["necks", "training recipes"]); [] when it asks
    nothing specific ("how do they differ?")."""
    sentences = [x for x in re.split(r"(?<=[.?!:])\s+", question.strip()) if x]
    asking = next(
        (x for x in reversed(sentences) if re.search(r"\b(?:how|what|which|where|why|compare|contrast)\b", x, re.I)),
        sentences[-1] if sentences else question,
    )
    target_words = {w.casefold() for t in targets for w in re.findall(r"[\w-]+", t)}
    # split at commas and semicolons, and at "and" between phrases — not inside one ("local and global features")
    parts = []
    for piece in re.split(r",\s*(?:and\s+)?|\s*;\s*", asking):
        halves = re.split(r"\s+and\s+", piece)
        # "local and global features", "spatial and temporal cues": modifiers of one noun, one aspect
        last = halves[0].split()[-1] if len(halves) == 2 and halves[0].split() else ""
        modifier = re.search(r"(?:al|ic|ive|ous|ar)$", last.casefold()) is not None
        parts += halves if len(halves) > 1 and not modifier else [piece]
    out = []
    for part in parts:
        words = [w.rstrip(".") for w in re.findall(r"[A-Za-z0-9][\w.%-]*", part)]
        kept = [w for w in words if w.casefold() not in _ASK_WORDS and w.casefold() not in target_words]
        while kept and kept[-1].casefold() in {"do", "does", "differ", "compare", "go", "get", "work"}:
            kept.pop()
        if kept and any(len(w) > 3 for w in kept):
            words = {w.casefold() for w in kept}
            # "what problem does each address", "what does each propose", "what results": the standard columns
            canonical = next((name for name, vocab in _STANDARD_ASPECTS.items() if words <= vocab), None)
            out.append(canonical or " ".join(kept))
    return list(dict.fromkeys(out))[:3]


_STANDARD_ASPECTS = {
    "Problem": frozenset(
        {"problem", "problems", "address", "addresses", "tackle", "tackles", "solve", "solves", "challenge", "issue"}
        | {"challenges", "issues", "limitation", "limitations", "motivation", "motivate", "gap", "target", "targets"}
    ),
    "Approach": frozenset({"idea", "ideas", "key", "main", "core", "mechanism", "design", "technique", "solution"}),
    "Result": frozenset({"results", "result", "performance", "gains", "gain", "improvement", "improvements"}),
}


_WHICH = re.compile(
    r"^\s*(?:which|what)\s+(?:[\w-]+\s+){0,3}?(method|paper|approach|framework|model|detector|network|benchmark"
    r"|dataset|technique|family|architecture|system|algorithm|work)\b",
    re.I,
)


def which_noun(question: str) -> str:
    """ "Which method / paper / detector …?": the noun the answer must name, or ""."""
    m = _WHICH.search(question)
    return m.group(1).lower() if m else ""


_NUMBERS = {"two": 2, "three": 3, "four": 4, "2": 2, "3": 3, "4": 4}
_COUNTED = re.compile(
    r"\b(?P<n>two|three|four|[234])\s+(?:[\w-]+\s+){0,4}?[a-z][\w-]*[a-z]s\b(?<!\bas)(?<!\bthis)",
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


def _compared_targets(query: str, names: list[str], index: NameIndex) -> tuple[list[str], str, str]:
    """(targets, description, why) of a question the classifier reads as a comparison. The separators ("vs",
    "and", "the one that …") give the spans; a span that names no paper's own method while other spans do ("what
    COCO accuracy do they report") is an aspect of the comparison, not a paper."""
    spans = comparison_targets(query)
    if spans:
        # a bare name is a target even when the corpus lacks its paper (a row that says so); a clause around names
        # no paper owns ("what COCO accuracy do they report") is what is asked of the targets
        def paper(t: str) -> bool:
            names = index.names_in(t)
            bare = len(t.split()) <= sum(len(n.split()) for n in names) + 1
            return any(index.owners(n, by_title=False) for n in names) or (bool(names) and bare)

        kept = [t for t in spans if paper(t)] if any(paper(t) for t in spans) else spans
        if len(kept) < len(spans):
            return kept, "", "read as aspects, not papers: " + "; ".join(t for t in spans if t not in kept)
        return spans, "", ""
    implicit = _implicit_targets(names, index)
    if implicit:
        return implicit, "", "names the methods of different papers: " + ", ".join(implicit)
    count, described = counted_papers(query)
    if count:
        return [f"described paper {i}" for i in range(1, count + 1)], described, f"compares {count} papers described"
    return [], "", ""


# Family names many papers share: a compared target named only by one of these is found by retrieval, not by name.
_GENERIC_NAMES = {"yolo", "vit", "cnn", "gnn", "llm", "llms", "nlp", "rl"}
LISTING_MAX = 20
EVERY_MAX = 8  # papers answered from when a question asks about every match (the prompt's budget is the limit)


class Gathered(BaseModel):
    """The papers a plan retrieved: the ranked hits and, for a comparison, each target's paper (or None)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    hits: list[Hit]
    per_target: dict[str, Hit | None] = Field(default_factory=dict)
    coverage: Coverage | None = Field(None, description="Surveys: the papers that name the term or fit the topic.")
    answerable: float | None = Field(
        None, description="Questions about one paper: the answerability model's P(the corpus answers the question)."
    )

    def picked(self) -> dict[str, str | None]:
        """Each compared target and the title of the paper picked for it (None: the corpus lacks it)."""
        return {m: h.paper.title if h else None for m, h in self.per_target.items()}


def gather(
    plan: Plan,
    retriever: Retriever,
    top_k: int,
    depth: int | None = None,
    mode: str | None = None,
    rerank: bool = True,
) -> Gathered:
    """Retrieve for a plan: the top papers, every compared target's own paper first (a named target must be named
    by its paper, else the corpus lacks it), all matching papers for a listing, and any paper that uses every name
    the question asks about (a name retrieval missed is still the question's subject)."""
    depth = depth or top_k
    filters = None if plan.filters.is_empty() else plan.filters
    if plan.kind == "listing":
        hits = retriever.search(plan.query, top_k=max(top_k, LISTING_MAX, depth), filters=filters, mode=mode)
        return Gathered(hits=[h for h in hits if h.paper.id not in plan.exclude])
    if plan.kind == "survey":
        if plan.term:
            coverage = term_coverage(retriever, plan.term, plan.query, filters, mode)
        else:
            coverage = topic_coverage(retriever, plan.topic or plan.query, filters, mode, exclude=plan.exclude)
        coverage.hits = [h for h in coverage.hits if h.paper.id not in plan.exclude]
        return Gathered(hits=list(coverage.hits), coverage=coverage)
    if plan.every_match:
        depth = max(depth, EVERY_MAX)
    if plan.kind != "comparison":
        # one candidate pool, ordered by the learned relevance model: the papers a follow-up points at and a
        # paper that uses every name the question asks about are candidates even when retrieval missed them
        pool = _search(plan, retriever, max(depth, RERANK_POOL) + len(plan.exclude), filters, mode)
        pool = [h for h in pool if h.paper.id not in plan.exclude]
        seen = {h.paper.id for h in pool}
        for pid in [*plan.focus, *_named_users(plan, retriever, filters)]:
            if pid in retriever.papers and pid not in seen and pid not in plan.exclude:
                pool.append(Hit(paper=retriever.papers[pid]))
                seen.add(pid)
        if not rerank:
            return Gathered(hits=pool[: max(depth, RERANK_POOL)])
        ranked, answerable = rank_by_relevance(plan, retriever, pool)
        return Gathered(hits=ranked[:depth], answerable=answerable)
    hits = _search(plan, retriever, depth + len(plan.exclude), filters, mode)
    if plan.exclude:  # "another paper": the discussed ones are left out, the rest ranked by how well they fit
        hits = [h for h in hits if h.paper.id not in plan.exclude]
        fit = paper_fit(retriever, PRONOUN.sub(" ", plan.query), [h.paper.id for h in hits])
        hits = sorted(hits, key=lambda h: -fit[h.paper.id])[:depth]
    per_target: dict[str, Hit | None] = {}
    chosen: dict[str, Hit] = {}
    if plan.described:  # the N papers the question (its description and what it asks) fits best, one per target
        found = retriever.search(plan.query, top_k=len(plan.compared), filters=filters, mode=mode)
        per_target = {t: (found[i] if i < len(found) else None) for i, t in enumerate(plan.compared)}
        chosen = {h.paper.id: h for h in found}
    else:
        per_target = assign_targets(plan, retriever, filters, mode)
        for hit in per_target.values():
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


TARGET_CANDIDATES = 8  # papers scored per compared target


def assign_targets(plan: Plan, retriever: Retriever, filters=None, mode=None) -> dict[str, Hit | None]:
    """Each compared target's paper, chosen by scoring: every candidate paper (the fused retrieval's top for the
    target, read with the question's background) is scored against the target's description with `paper_fit`
    (dense similarity and the description's distinctive words); a named target's candidates must use the name. The
    papers are then assigned jointly: the distinct papers with the highest total fit, so two descriptions never
    land on one paper because it shares a few words with both."""
    background = _background(plan.query)
    options: dict[str, list[tuple[Hit, float]]] = {}
    for target in plan.compared:
        names = [t for t in salient_terms(target) if t.casefold() not in _GENERIC_NAMES]
        # the question's background, without the other targets' descriptions ("one … , another …" in one sentence)
        context = background
        for other in plan.compared:
            if other != target:
                context = context.replace(other, " ")
        text = target if names or not context.strip() else f"{target}. {context}"
        found = retriever.search(text, top_k=TARGET_CANDIDATES, filters=filters, mode=mode)
        if names:
            found = [h for h in found if any(mentions(f"{h.paper.title} {h.paper.abstract}", n) for n in names)]
        ids = [h.paper.id for h in found]
        # the target's own description and the question's background (what the papers share) count alike: a short
        # description ("a quantization method") needs the background, a precise one decides by itself
        own, shared = paper_fit(retriever, target, ids), paper_fit(retriever, text, ids)
        fit = {pid: own[pid] + shared[pid] for pid in ids}
        # a paper that owns a name the target uses fits it best of all
        options[target] = [
            (
                h,
                fit.get(h.paper.id, 0.0)
                + (1.0 if names and any(retriever.name_index.owns(h.paper.id, n) for n in names) else 0.0),
            )
            for h in found
        ]
    best: tuple[float, tuple] = (-1.0, ())
    targets = list(plan.compared)

    def search(i: int, used: frozenset, total: float, picked: tuple) -> None:
        nonlocal best
        if i == len(targets):
            if total > best[0]:
                best = (total, picked)
            return
        choices = [(h, f) for h, f in options[targets[i]] if h.paper.id not in used] or [(None, 0.0)]
        for hit, f in choices:
            search(i + 1, used | ({hit.paper.id} if hit else set()), total + f, (*picked, hit))

    search(0, frozenset(), 0.0, ())
    return dict(zip(targets, best[1], strict=True)) if best[1] else dict.fromkeys(targets)


def _search(plan: Plan, retriever: Retriever, depth: int, filters, mode) -> list[Hit]:
    """The plan's search; for a follow-up, the rewritten query fused (reciprocal rank) with the question plus the
    earlier user turns, which finds the paper under discussion when the rewrite picked the wrong referent."""
    hits = retriever.search(plan.query, top_k=depth, filters=filters, mode=mode)
    if not plan.history_query or plan.history_query == plan.query:
        return hits
    other = retriever.search(plan.history_query, top_k=depth, filters=filters, mode=mode)
    score = rrf([[h.paper.id for h in run] for run in (hits, other)], retriever.settings.retrieval.rrf_k)
    by_id: dict[str, Hit] = {}
    for h in [*hits, *other]:
        by_id.setdefault(h.paper.id, h)
    return sorted(by_id.values(), key=lambda h: -score[h.paper.id])[:depth]


def _background(question: str) -> str:
    """The sentences of a question before the one that asks the comparison ("Two offline RL papers change how
    often transitions are sampled. How does …"): the topic a described target belongs to."""
    return " ".join(_clauses(question)[:-1])


def _clauses(question: str) -> list[str]:
    """A question's sentences, a colon also ending one ("Two papers here …: how does each …")."""
    return [x for x in re.split(r"(?<=[.?!:])\s+", question.strip()) if x]


RERANK_POOL = 20  # candidates the relevance model orders (the pool `assistant tune` fits it on)


def _named_users(plan: Plan, retriever: Retriever, filters) -> list[str]:
    """The few papers (at most 3) that use every name the question asks about: candidates retrieval may miss."""
    index: NameIndex = retriever.name_index
    known = [n for n in plan.names if index.papers_with(n)]
    if not known:
        return []
    users = set.intersection(*(index.papers_with(n) for n in known)) & set(retriever.papers)
    if filters is not None:
        users = {pid for pid in users if filters.matches(retriever.papers[pid])}
    return sorted(users) if len(users) <= 3 else []


def rank_by_relevance(plan: Plan, retriever: Retriever, pool: list[Hit]) -> tuple[list[Hit], float | None]:
    """The pool ordered by the relevance model's probability, which each hit carries (``hit.relevance``), and the
    answerability model's P(the corpus answers the question)."""
    from .relevance import candidate_features, load_model, question_features

    if not pool:
        return [], None
    model = load_model()
    scored = model.score(candidate_features(retriever, plan.query, pool, plan.names, plan.focus, plan.discussed))
    by_id = {h.paper.id: h for h in pool}
    out = []
    for c in scored:
        hit = by_id[c.paper_id]
        hit.relevance = c.probability
        out.append(hit)
    return out, model.answer_probability(question_features(retriever, plan.names, scored))
