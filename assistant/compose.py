"""Composition: the findings an answer shows (per-paper rows, a comparison table, a survey or listing), the
extractive floor, and the clean-up of the model's prose. Everything here is decided by the pipeline from the
abstracts; `answer` orchestrates and calls these, it does not compose.

*Findings* are the common shape of every kind: one row per paper, each with the cells the question asks for
(the aspects of a comparison, the contribution of a surveyed paper, the sentence that names a listed term). A
cell is a clause of that paper's abstract, chosen by scoring it against the aspect, trimmed to the clause, LaTeX
rendered as text — or "not stated in the abstract". A new kind of question is a new renderer of findings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, Field

from .cite import MARKER, content_words
from .evidence import Evidence, Sentence
from .names import PROPOSAL_CUE, mentions, method_name, salient_terms
from .paper import Paper
from .text import author_list, plain_math

NOT_STATED = "not stated in the abstract"
CELL_WORDS = 40  # a cell longer than this is cut at a word, with "…"


# -- text as shown -------------------------------------------------------------------------------------------------
def display(text: str, words: int | None = None) -> str:
    """An abstract's text as a person reads it: inline LaTeX rendered (``$83.6\\%$`` -> 83.6%, ``~`` a space,
    ``\\emph{X}`` -> X), whitespace collapsed, table pipes escaped, cut at ``words`` words."""
    text = plain_math(text).replace("~", " ")
    text = re.sub(r"\\(?:[A-Za-z]+)\{([^{}]*)\}", r"\1", text)  # other one-argument commands: their argument
    parts = text.replace("|", "/").split()
    if words is not None and len(parts) > words:
        return " ".join(parts[:words]) + " …"
    return " ".join(parts)


_CLAUSE_SPLIT = re.compile(r";\s+|,\s+(?=(?:while|whereas|which|but|and then|thereby|so that)\b)|:\s+(?=[a-z])")


# a cell reads on its own: the connective that tied the sentence to the one before it goes ("However, we find …")
_LEAD = re.compile(
    r"^(?:however|moreover|furthermore|additionally|in addition|therefore|thus|hence|besides|specifically|"
    r"in particular|consequently|to this end|in this (?:paper|work|study)|here|finally|meanwhile),\s+",
    re.I,
)


def clause_for(sentence: str, words: set[str]) -> str:
    """The clause of a sentence that holds most of ``words`` (the aspect asked about): a long sentence is cut at
    ";", ", while", ", which" …; a short one (or one without such a break) stays whole. A leading connective
    ("However,", "To this end,") is dropped."""
    return _standalone(_clause(sentence, words))


def _clause(sentence: str, words: set[str]) -> str:
    if len(sentence.split()) <= 30:
        return sentence
    parts = [p for p in _CLAUSE_SPLIT.split(sentence) if len(p.split()) >= 4]
    if len(parts) < 2:
        return sentence
    scored = [(len(words & _stems(p)), -i, p) for i, p in enumerate(parts)]
    best = max(scored)
    return best[2] if best[0] > 0 else sentence


def _standalone(clause: str) -> str:
    trimmed = _LEAD.sub("", clause.strip())
    return trimmed[:1].upper() + trimmed[1:] if trimmed else clause


def _stems(text: str) -> set[str]:
    """Content words, also by their hyphen parts ("return-based" counts as "return" too)."""
    return content_words(text) | content_words(text.replace("-", " "))


# -- findings ------------------------------------------------------------------------------------------------------
class Cell(BaseModel):
    """One cell: the sentence of the paper's abstract it comes from (None: nothing fits) and the clause shown."""

    aspect: str
    index: int | None = None
    text: str = NOT_STATED


class Row(BaseModel):
    """One paper's findings: its source number, the name it goes by, its usable sentences and its cells."""

    n: int
    paper_id: str
    label: str
    sentences: list[str]
    cells: list[Cell] = Field(default_factory=list)

    def indexes(self) -> list[int]:
        return sorted({c.index for c in self.cells if c.index is not None})

    def cell(self, aspect: str) -> Cell | None:
        return next((c for c in self.cells if c.aspect == aspect), None)


class Findings(BaseModel):
    """What the pipeline found for a question before any model writes: rows (one per paper), their columns, and
    the lead line of a survey or listing ("4 of the 310 abstracts name nuScenes:")."""

    kind: str
    columns: list[str] = Field(default_factory=list)
    rows: list[Row] = Field(default_factory=list)
    lead: str = ""
    more: str = ""  # what the rows leave out ("showing the 8 that fit best of 11")

    def sentences(self) -> list[tuple[int, str, int, str]]:
        """(source n, paper id, sentence index, sentence) of every cell shown: the evidence the findings rest on."""
        out = []
        for row in self.rows:
            for i in row.indexes():
                out.append((row.n, row.paper_id, i, row.sentences[i]))
        return out


def row_label(target: str, paper: Paper | None) -> str:
    """A row's name: the target when it is a name (DoViT), else the paper's method name or short title — never a
    pronoun or a clause of the question."""
    if salient_terms(target) and len(target.split()) <= 4:
        return target
    if paper is not None:
        name = method_name(paper)
        if name:
            return name
        return display(paper.title.split(":")[0], 8)
    return display(target, 8)


# sentence shapes an abstract follows: the problem (background), the proposal, the results
_PROBLEM = re.compile(
    r"\b(however|challeng|problem|suffer|limit|costly|expensive|difficult|bottleneck|remain|issue)", re.I
)
_RESULT = re.compile(r"\b(achiev|outperform|attain|improv|reduc|surpass|gain|boost|exceed|speed)", re.I)
_NOVEL = re.compile(r"\b(?:novel|new|propos\w*|present\w*|introduc\w*)\b", re.I)
_CODE = re.compile(
    r"\b(?:code|models?|implementation) (?:is|are|will be) (?:publicly )?(?:available|released)\b|https?://", re.I
)
DEFAULT_ASPECTS = ("Problem", "Approach", "Result")


def result_signal(sentence: str) -> float:
    """How much a sentence reads like a reported result: numbers, percentages, result verbs."""
    return len(re.findall(r"\d+(?:\.\d+)?", sentence)) + 2 * sentence.count("%") + 3 * bool(_RESULT.search(sentence))


def proposal_index(sents: list[str], scores: list[float], name: str | None) -> tuple[int, int]:
    """(the sentence that says what the paper proposes — the proposal that names its method first —, the first
    proposal sentence: where the method's description starts; before it stand the background and the problem)."""
    named = [bool(name and mentions(x, name)) for x in sents]
    proposals = [i for i, x in enumerate(sents) if PROPOSAL_CUE.search(x) or (named[i] and _NOVEL.search(x))]
    proposes = max(proposals, key=lambda i: named[i] + scores[i]) if proposals else min(1, len(sents) - 1)
    return proposes, min(proposals, default=proposes)


ASPECT_COSINE = 0.35  # a sentence this close to an asked aspect (sentence embeddings) answers it without sharing a word


def aspect_cells(
    sents: list[str],
    scores_by_aspect: dict[str, list[float]],
    name: str | None,
    base_scores: list[float],
    cosines: dict[str, list[float]] | None = None,
    context: str = "",
) -> list[Cell]:
    """The cells of one paper. Default aspects (the question asks nothing specific): the problem, what it proposes,
    the result that fits the question best. Asked aspects: for each, the sentence after the paper's first proposal
    (the method's description, never the background) that scores best against the aspect and the question, among
    those that share a word with the aspect or are close to it in meaning (``cosines``: sentence-embedding
    similarity to the aspect), cut to its clause; "not stated in the abstract" when no sentence does. ``context``
    (the words the question describes this paper with: "the return-based rebalancing approach") counts with the
    aspect."""
    proposes, start = proposal_index(sents, base_scores, name)
    usable = [i for i in range(len(sents)) if not _CODE.search(sents[i])]
    cells = []
    for aspect, scores in scores_by_aspect.items():
        if aspect == "Problem":
            i = next((i for i in usable if _PROBLEM.search(sents[i]) and i <= proposes), 0 if proposes > 0 else None)
        elif aspect == "Approach":
            i = proposes
        elif aspect == "Result":
            results = [i for i in usable if i != proposes and result_signal(sents[i]) > 0]
            i = max(reversed(results), key=lambda j: base_scores[j] + min(result_signal(sents[j]), 6), default=None)
        else:
            words = _stems(aspect) | (_stems(context) - _stems(" ".join(sents[:start])) if context else set())
            close = (cosines or {}).get(aspect) or [0.0] * len(sents)
            after = [i for i in usable if i >= start or (name and mentions(sents[i], name))]
            fitting = [i for i in after if words & _stems(sents[i]) or close[i] >= ASPECT_COSINE]
            i = max(fitting, key=lambda j: scores[j] + 0.5 * base_scores[j] + close[j], default=None)
        if i is None:
            cells.append(Cell(aspect=aspect))
            continue
        shown = _standalone(sents[i]) if aspect in DEFAULT_ASPECTS else clause_for(sents[i], _stems(aspect))
        cells.append(Cell(aspect=aspect, index=i, text=display(shown, CELL_WORDS)))
    return cells


def render_table(findings: Findings) -> str:
    """A markdown table: one cited row per paper, one column per aspect, each cell a clause of its abstract."""
    head = ["Method", *(c[:1].upper() + c[1:] for c in findings.columns)]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in findings.rows:
        if row.n == 0:  # a target the corpus lacks
            out.append(f"| {row.label} | not found in the corpus |" + " – |" * (len(head) - 2))
            continue
        cells = [row.cell(c) for c in findings.columns]
        texts = [c.text if c is not None else NOT_STATED for c in cells]
        out.append(f"| {row.label} [{row.n}] | " + " | ".join(texts) + f" [{row.n}] |")
    return "\n".join(out)


def render_list(findings: Findings, papers: dict[str, Paper]) -> str:
    """A survey or listing: the lead line, then one cited line per paper ("- Name — “clause” [n]")."""
    lines = [findings.lead]
    for row in findings.rows:
        paper = papers.get(row.paper_id)
        title = paper.title if paper is not None else row.label
        name = f"{row.label}: " if row.label and row.label.casefold() not in title.casefold() else ""
        cell = row.cells[0] if row.cells else Cell(aspect="")
        when = f" ({paper.year})" if paper is not None and paper.year else ""
        lines.append(f"- {name}{display(title)}{when} — “{cell.text}” [{row.n}]")
    if findings.more:
        lines.append(findings.more)
    return "\n".join(lines)


# -- the extractive floor ------------------------------------------------------------------------------------------
def floor_sentences(evidence: Evidence, kind: str, compared: int, count: int) -> list[Sentence]:
    """The sentences the extractive floor quotes: the best ones overall (at most two per paper), or for a
    comparison each compared paper's best; in abstract order within a paper."""
    ranked = [s for s in evidence.ranked() if s.score > 0] or evidence.ranked()
    if kind == "comparison":
        per: dict[int, list[Sentence]] = {}
        for s in ranked:
            per.setdefault(s.n, []).append(s)
        picked = [x for n in sorted(per)[: max(2, compared)] for x in per[n][:1]]
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


def quote(s: Sentence) -> str:
    return f"> “{display(s.text)}” [{s.n}]"


# -- the model's prose ---------------------------------------------------------------------------------------------
# What a small model copies from a source's header into its prose: "(Liu et al., 2023)", "(unknown authors, n.d.)",
# or the record's fields chained as the header lists them ("dated 2025-11-12; category CL; code available"). A single
# field in a sentence ("posted under category CL") is an answer, not a copy, and stays.
_FIELD = r"(?:dated (?:19|20)\d\d(?:-\d\d){0,2}|category [A-Z]{2,4}|affiliations [\w ,.-]{2,60}?|code available)"
_HEADER_COPY = re.compile(
    r"\s*\([^()]{0,80}?(?:et al\.|unknown authors|n\.d\.)[^()]{0,40}?\)"
    r"|\s*\bunknown authors\b[,;]?|\s*\bn\.d\.[,;]?"
    rf"|[,;]?\s*\b{_FIELD}(?:\s*;\s*{_FIELD})+",
    re.I,
)
_LIST_ITEM = re.compile(r"^(\s*)(\d+)[.)]\s+")


def clean_prose(text: str, max_sentences: int | None = None) -> str:
    """The model's checked reply as shown: no source header copied into it, LaTeX rendered, numbered lists
    renumbered after the checks dropped items (a lead-in left with nothing after it goes too), and at most
    ``max_sentences`` prose sentences when the question asked for a length."""
    text = _HEADER_COPY.sub("", text)
    text = re.sub(r"\s+([.,;:])", r"\1", plain_math(text)).replace("~", " ")
    lines = text.splitlines()
    out: list[str] = []
    number = 0
    for k, line in enumerate(lines):
        m = _LIST_ITEM.match(line)
        if m:
            number += 1
            line = f"{m.group(1)}{number}. " + line[m.end() :]
        elif line.strip():
            number = 0
            if line.rstrip().endswith(":") and not any(x.strip() for x in lines[k + 1 :]):
                continue  # "… include:" with every item dropped
        out.append(line)
    text = "\n".join(out).strip()
    if max_sentences:
        text = _first_sentences(text, max_sentences)
    return text


def _first_sentences(text: str, n: int) -> str:
    """The first ``n`` sentences of prose (each keeps its markers); list items and quotes count as sentences."""
    spans = re.findall(r".+?[.!?](?:\s*\[\d[\d,; ]*\])*(?=\s|$)|.+$", text.replace("\n", " \n "))
    kept, count = [], 0
    for span in spans:
        if count >= n:
            break
        kept.append(span)
        if len(MARKER.sub("", span).split()) >= 3:
            count += 1
    return re.sub(r"[ \t]+\n[ \t]*", "\n", "".join(kept)).strip()


def source_details(authors: Sequence[str], truncated: bool, year, facts: str) -> str:
    """A source's details as the prompt lists them after its title: only the fields the record has (no "unknown
    authors", no "n.d." for a model to copy)."""
    parts = [x for x in (author_list(list(authors), truncated), str(year) if year else "") if x]
    meta = ", ".join(parts) + (f"; {facts}" if facts and parts else facts)
    return f" ({meta})" if meta else ""
