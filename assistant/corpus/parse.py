"""``parse_text`` / ``parse_file``: one file or uploaded content -> ``ParseResult`` (limits, decoding, layout,
reader). Never raises.
"""

from __future__ import annotations

import os
from pathlib import Path

from .decode import _blank_nul_lines, _control_ratio, _decode, _nonblank_lines
from .jsonl import _read_json, _read_jsonl
from .layouts import (
    LAYOUT_ABSTRACT_ONLY,
    LAYOUT_ARXIV_JSONL,
    LAYOUT_BINARY,
    LAYOUT_EMPTY,
    LAYOUT_JSON,
    LAYOUT_TOO_LARGE,
    LAYOUT_UNKNOWN,
    LAYOUT_UNREADABLE,
    detect_layout,
)
from .limits import DEFAULT_LIMITS, IngestLimits
from .records import ParseIssue, ParseResult, _Sink, _StopFile
from .text_layouts import _read_abstract_only, _read_text_records


def parse_text(text: str | bytes, source_name: str = "<text>", limits: IngestLimits = DEFAULT_LIMITS) -> ParseResult:
    """Parse uploaded content (text, or raw bytes which are decoded as for a file). Never raises.

    A file is refused whole (``rejected`` set, one error naming it, no records) when it holds more records than
    ``limits.max_records``, when its layout is not recognised, or when most of its records do not look like
    papers (``implausible``); otherwise every bad record is one error naming its line and the good ones are kept.
    """
    issues: list[ParseIssue] = []
    if isinstance(text, bytes | bytearray):
        too_many = _too_many_records(bytes(text), limits)
        if too_many:
            return _refused(source_name, LAYOUT_UNKNOWN, too_many)
        decoded = _decode(bytes(text), source_name, issues)
        if decoded is None:
            return ParseResult(file=source_name, layout=LAYOUT_BINARY, issues=issues)
        text = decoded
    text = text.removeprefix("\ufeff")
    if _control_ratio(text) > 0.1:
        issues.append(
            ParseIssue(
                file=source_name,
                line=None,
                level="error",
                message="binary content (control characters), not a text corpus file; skipped",
            )
        )
        return ParseResult(file=source_name, layout=LAYOUT_BINARY, issues=issues)
    sink = _Sink(source_name, limits)
    sink.issues.extend(issues)
    if "\x00" in text:
        text = _blank_nul_lines(text, sink)
    layout = LAYOUT_UNKNOWN
    try:
        layout = detect_layout(text)
        if layout == LAYOUT_EMPTY:
            sink.error(None, "empty file: no records")
        elif layout == LAYOUT_UNKNOWN:
            return _refused(
                source_name,
                layout,
                "layout not recognised: not one of the seed page layouts, arXiv JSONL or JSON (see the README, "
                "Corpus formats); no line reads as an abstract",
            )
        elif layout == LAYOUT_ARXIV_JSONL:
            _read_jsonl(text, sink)
        elif layout == LAYOUT_JSON:
            _read_json(text, sink)
        elif layout == LAYOUT_ABSTRACT_ONLY:
            _read_abstract_only(_nonblank_lines(text), sink)
        else:
            _read_text_records(_nonblank_lines(text), sink, layout)
    except _StopFile as stop:
        return _refused(source_name, layout, str(stop))
    except Exception as exc:  # a parser bug must not take the whole corpus down
        sink.error(None, f"internal parser error ({type(exc).__name__}: {exc}); records read so far are kept")
    if len(sink.implausible) * 2 > sink.judged:
        return _refused(source_name, layout, sink.mostly_implausible())
    if not sink.papers and not sink.orphans and not any(i.level == "error" for i in sink.issues):
        sink.error(None, "no records found")
    return ParseResult(
        file=source_name,
        layout=layout,
        papers=sink.papers,
        issues=sink.issues,
        raw_records=len(sink.papers) + len(sink.orphans),
        orphan_abstracts=sink.orphans,
    )


def _refused(name: str, layout: str, why: str) -> ParseResult:
    """A file refused whole: one error naming it, nothing read from it."""
    message = f"file refused: {why}; nothing was read from it"
    return ParseResult(
        file=name,
        layout=layout,
        rejected=why,
        issues=[ParseIssue(file=name, line=None, level="error", message=message)],
    )


def _too_many_records(data: bytes, limits: IngestLimits) -> str | None:
    """Refuse a file with more records than allowed before parsing it, from a count of its lines.

    JSONL holds one record per line; in the text layouts every record (and abstract-only record) has one
    abstract line, which is long, so long lines bound the records from below."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return None  # a JSON array: counted while it is read
    lines = data.split(b"\n")
    if head.startswith(b"{"):
        n, kind = sum(1 for line in lines if line.strip()), "JSON lines"
    else:
        n, kind = sum(1 for line in lines if len(line) >= 300), "abstract-length lines"
    if n > limits.max_records:
        return (
            f"it holds {n:,} {kind}, more than the {limits.max_records:,} records allowed per file "
            "(ASSISTANT_INGEST__MAX_RECORDS_PER_FILE); split it or raise the limit"
        )
    return None


def parse_file(
    path: str | os.PathLike[str], limits: IngestLimits = DEFAULT_LIMITS, name: str | None = None
) -> ParseResult:
    """Read one file, detect its layout from its content (never its name) and parse it. Never raises.

    ``name`` is how issues and sources name the file (default: ``path`` as given). A file over
    ``limits.max_file_bytes`` is refused without being read."""
    name = name or str(path)
    try:
        size = os.stat(path).st_size
        if size > limits.max_file_bytes:
            return _refused(
                name,
                LAYOUT_TOO_LARGE,
                f"it is {size / 1e6:,.1f} MB, over the {limits.max_file_bytes / 1e6:g} MB limit per file "
                "(ASSISTANT_INGEST__MAX_FILE_MB); split it or raise the limit",
            )
        data = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return ParseResult(
            file=name,
            layout=LAYOUT_UNREADABLE,
            issues=[ParseIssue(file=name, line=None, level="error", message=f"cannot read file: {reason}")],
        )
    return parse_text(data, name, limits)
