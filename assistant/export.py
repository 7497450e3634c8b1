"""Answers and chats to take away: Markdown with references and quoted evidence, and BibTeX of the cited papers.

Markdown: each answer's text with its ``[n]`` markers, then one numbered reference list, each reference with the
evidence sentences the answers cited it for, quoted. In a chat the markers are renumbered so that a paper has one
number throughout (answer 1's ``[2]`` and answer 3's ``[1]`` are the same reference when they cite the same paper);
a marker that cites nothing is dropped, so every marker points at a reference and every reference is cited.

BibTeX: one ``@misc`` entry per cited paper, in the order of the references, with ``eprint``/``archivePrefix``/
``url`` when the paper's arXiv id is known (`Paper.arxiv_id`); keys like ``liu2023dynamic``, unique in the file.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .answer import Answer
from .chats import Chat, ChatTurn
from .cite import MARKER
from .paper import Paper
from .text import author_list, plain_math

FORMATS = ("markdown", "bibtex", "json")


@dataclass
class Reference:
    number: int
    paper_id: str
    title: str
    authors: list[str]
    authors_truncated: bool
    year: int | None
    arxiv_id: str | None = None
    category: str | None = None
    evidence: list[tuple[str, int]] = field(default_factory=list)  # (sentence, answer number), in citation order


@dataclass
class _Numbering:
    """The references of some turns and, per turn, its answer's source number -> reference number."""

    references: list[Reference] = field(default_factory=list)
    per_turn: list[dict[int, int]] = field(default_factory=list)


def _number(turns: Sequence[ChatTurn], papers: Mapping[str, Paper]) -> _Numbering:
    out = _Numbering()
    by_paper: dict[str, Reference] = {}
    for no, turn in enumerate(turns, start=1):
        local: dict[int, int] = {}
        out.per_turn.append(local)
        answer = turn.answer
        if turn.kind != "answer" or answer is None:
            continue
        cites = {c.n: c for c in answer.citations}
        # in the order the reader meets them: markers in the text, then any citation the text does not mark
        order = [int(x) for m in MARKER.finditer(answer.text) for x in re.split(r"\s*[,;]\s*", m.group(1))]
        order += [c.n for c in answer.citations]
        for n in dict.fromkeys(order):
            c = cites.get(n)
            if c is None:
                continue  # a marker the checker did not keep as a citation: dropped from the text below
            ref = by_paper.get(c.paper_id)
            if ref is None:
                p = papers.get(c.paper_id)
                ref = Reference(
                    number=len(out.references) + 1,
                    paper_id=c.paper_id,
                    title=p.title if p else c.title,
                    authors=list(p.authors if p else c.authors),
                    authors_truncated=bool(p and p.authors_truncated),
                    year=p.year if p else c.year,
                    arxiv_id=p.arxiv_id if p else None,
                    category=p.category if p else None,
                )
                by_paper[c.paper_id] = ref
                out.references.append(ref)
            local[n] = ref.number
            quote = " ".join(c.evidence.split())
            if quote and all(q != quote for q, _ in ref.evidence):
                ref.evidence.append((quote, no))
    return out


def renumber(text: str, mapping: Mapping[int, int]) -> str:
    """``[n]`` markers (also ``[1, 3]``) through ``mapping``; numbers it lacks are dropped, and a marker left with
    none is removed with the space before it."""

    def one(m: re.Match) -> str:
        kept = [mapping[int(x)] for x in re.split(r"\s*[,;]\s*", m.group(2)) if int(x) in mapping]
        kept = list(dict.fromkeys(kept))
        return f"{m.group(1)}[{', '.join(str(n) for n in kept)}]" if kept else ""

    return re.sub(r"([ \t]*)" + MARKER.pattern, one, text).strip()


# what Markdown would read as syntax inside a line: brackets (a "[12]" in an abstract is not a marker), emphasis
# (an underscore only at a word's edge: Gold_YOLO stays as it is), code, HTML
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>]|(?<!\w)_|_(?!\w))")


def md_escape(text: str) -> str:
    """Text from a paper or a user, on one line, shown literally in Markdown; inline LaTeX as Unicode."""
    return _MD_SPECIAL.sub(r"\\\1", plain_math(" ".join(str(text).split())))


def _body(text: str) -> str:
    # the answer text is Markdown already (tables, "> " quotes) but never HTML: no tag of it may render
    return text.replace("<", "&lt;")


def _turn_markdown(turn: ChatTurn, mapping: Mapping[int, int]) -> list[str]:
    answer = turn.answer
    if turn.kind == "notice":
        return [f"*Not answered: {md_escape(turn.text)}*"]
    if turn.kind == "stopped" or answer is None:
        partial = _body(turn.text.strip())
        return [*([partial] if partial else []), "*(stopped before the answer was complete)*"]
    lines = [_body(renumber(answer.text, mapping)) or "*(no text)*"]
    if answer.refused and answer.possibly_related:
        lines.append("Closest papers in the corpus (they do not answer it):\n")
        lines[-1] += "\n".join(f"- {md_escape(t)}" for t in answer.possibly_related)
    if answer.not_found and not answer.refused:
        lines.append("Not found in the corpus: " + ", ".join(md_escape(x) for x in answer.not_found) + ".")
    if answer.error:
        lines.append(f"*The answer is incomplete: the language model failed ({md_escape(answer.error)}).*")
    searched = []
    if answer.standalone_query.strip() and answer.standalone_query.strip() != answer.question.strip():
        searched.append(f"searched as “{md_escape(answer.standalone_query)}”")
    if answer.filters_applied and answer.filters_applied != "none":
        searched.append(f"filters: {md_escape(answer.filters_applied)}")
    if searched:
        lines.append("*" + " · ".join(searched) + "*")
    return lines


def _reference_markdown(ref: Reference, chat: bool) -> list[str]:
    authors = author_list(ref.authors, ref.authors_truncated, n=6) or "unknown authors"
    where = f" arXiv:{ref.arxiv_id}." if ref.arxiv_id else ""
    lines = [f"{ref.number}. {md_escape(authors)} ({ref.year or 'n.d.'}). *{md_escape(ref.title)}*.{where}"]
    for quote, answer_no in ref.evidence:
        lines.append(f"   > “{md_escape(quote)}”" + (f" (answer {answer_no})" if chat else ""))
    return lines


def _markdown(turns: Sequence[ChatTurn], papers: Mapping[str, Paper], title: str, chat: bool) -> str:
    numbering = _number(turns, papers)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    asked = f"{len(turns)} question{'s' if len(turns) != 1 else ''}"
    about = f"*Exported from paper-assistant on {stamp}" + (f" · {asked}*" if chat else "*")
    out = [f"# {md_escape(title)}", "", about]
    for no, (turn, mapping) in enumerate(zip(turns, numbering.per_turn, strict=True), start=1):
        out.append("")
        if chat:
            out += [f"## {no}. {md_escape(turn.question)}", ""]
        out.append("\n\n".join(_turn_markdown(turn, mapping)))
    out += ["", "## References", ""]
    if not numbering.references:
        out.append("*No paper was cited.*")
    for ref in numbering.references:
        out += _reference_markdown(ref, chat)
    return "\n".join(out).rstrip() + "\n"


def answer_markdown(answer: Answer, papers: Mapping[str, Paper] | None = None) -> str:
    """One answer as Markdown: the question as the title, the text with its markers, the references."""
    return _markdown([ChatTurn(question=answer.question, answer=answer)], papers or {}, answer.question, chat=False)


def chat_markdown(chat: Chat | Sequence[ChatTurn], papers: Mapping[str, Paper] | None = None) -> str:
    """A whole chat: each question and its answer (or why it has none), then one reference list."""
    turns = chat.turns if isinstance(chat, Chat) else list(chat)
    title = (chat.title if isinstance(chat, Chat) else "") or (turns[0].question if turns else "Chat")
    return _markdown(turns, papers or {}, f"Chat: {title}", chat=True)


# -- BibTeX ------------------------------------------------------------------------------------------------------
_STOP = {"a", "an", "the", "on", "of", "for", "in", "to", "and", "with", "via", "towards", "toward", "is", "are"}


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", folded.lower())


def bib_key(ref: Reference) -> str:
    """``<first author's last name><year><first word of the title>``, ASCII letters and digits only."""
    first = ref.authors[0] if ref.authors else ""
    name = first.split(",")[0] if "," in first else (first.split() or [""])[-1]
    words = [_ascii(w) for w in re.split(r"[\s:\-–—/]+", ref.title)]
    word = next((w for w in words if w and w not in _STOP and not w.isdigit()), "") or "paper"
    return f"{_ascii(name) or 'anon'}{ref.year or 'nd'}{word[:20]}"


def _unique(key: str, used: set[str]) -> str:
    """``key``, or the first of ``keyb`` … ``keyz``, ``key27`` … not in ``used`` (two papers, one key)."""
    candidates = [key, *(key + chr(c) for c in range(ord("b"), ord("z") + 1))]
    for candidate in candidates:
        if candidate not in used:
            return candidate
    n = len(candidates)
    while f"{key}{n}" in used:
        n += 1
    return f"{key}{n}"


def bib_value(text: str) -> str:
    """A field value safe inside BibTeX braces and LaTeX: LaTeX math ($…$) and commands kept, the characters LaTeX
    reads as syntax outside math escaped, braces kept only when balanced (BibTeX counts them, escaped or not)."""
    text = " ".join(str(text).split())
    depth, balanced = 0, True
    for ch in text:
        depth += (ch == "{") - (ch == "}")
        balanced &= depth >= 0
    if not balanced or depth:
        text = text.replace("{", "").replace("}", "")
    parts = re.split(r"(\$[^$]*\$)", text) if text.count("$") % 2 == 0 else [text.replace("$", r"\$")]
    out = []
    for part in parts:
        if part.startswith("$") and part.endswith("$") and len(part) > 1:
            out.append(part)
            continue
        part = re.sub(r"(?<!\\)([&%#_])", r"\\\1", part)
        part = part.replace("~", r"\textasciitilde{}").replace("^", r"\textasciicircum{}")
        out.append(part)
    return "".join(out)


def _entry(ref: Reference, key: str) -> str:
    authors = " and ".join(bib_value(a) for a in ref.authors) or "Unknown"
    if ref.authors_truncated:
        authors += " and others"
    fields = [("title", "{" + bib_value(ref.title) + "}"), ("author", authors)]
    if ref.year:
        fields.append(("year", str(ref.year)))
    if ref.arxiv_id:
        fields += [("eprint", bib_value(ref.arxiv_id)), ("archivePrefix", "arXiv")]
        if ref.category and "." in ref.category:
            fields.append(("primaryClass", bib_value(ref.category)))
        fields.append(("url", f"https://arxiv.org/abs/{bib_value(ref.arxiv_id)}"))
    body = ",\n".join(f"  {name:<13} = {{{value}}}" for name, value in fields)
    return f"@misc{{{key},\n{body},\n}}"


def _bibtex(turns: Sequence[ChatTurn], papers: Mapping[str, Paper]) -> str:
    used: set[str] = set()
    entries = []
    for ref in _number(turns, papers).references:
        key = _unique(bib_key(ref), used)
        used.add(key)
        entries.append(_entry(ref, key))
    header = "% Exported from paper-assistant: the papers the answers cite"
    return "\n\n".join([header, *entries]) + "\n" if entries else header + " (none was cited)\n"


def answer_bibtex(answer: Answer, papers: Mapping[str, Paper] | None = None) -> str:
    return _bibtex([ChatTurn(question=answer.question, answer=answer)], papers or {})


def chat_bibtex(chat: Chat | Sequence[ChatTurn], papers: Mapping[str, Paper] | None = None) -> str:
    return _bibtex(chat.turns if isinstance(chat, Chat) else list(chat), papers or {})


def file_stem(text: str, limit: int = 48) -> str:
    """A file name from a question or a title: lower-case ASCII words joined by '-'."""
    words = re.findall(r"[a-z0-9]+", unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower())
    stem = ""
    for w in words:
        if len(stem) + len(w) + 1 > limit:
            break
        stem = f"{stem}-{w}" if stem else w
    return stem or "chat"
