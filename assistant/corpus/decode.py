"""Reading bytes: bytes -> text (UTF-8, UTF-16, binary refused), control characters and NUL bytes, lines."""

from __future__ import annotations

import re
import unicodedata

from .records import ParseIssue, _Sink

_LINE_SPLIT_RE = re.compile(r"\r\n|\r|\n")
_MAX_LINE_WARNINGS = 20


def _decode(data: bytes, name: str, issues: list[ParseIssue]) -> str | None:
    """Bytes -> text; None (with an error issue) when the content is binary."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            issues.append(ParseIssue(file=name, line=None, level="error", message=f"invalid UTF-16 text: {exc}"))
            return None
    if data.startswith(_BINARY_MAGIC) or _byte_control_ratio(data) > 0.1:
        line = data[: data.index(b"\x00")].count(b"\n") + 1 if b"\x00" in data else None
        issues.append(
            ParseIssue(
                file=name,
                line=line,
                level="error",
                message="binary content (control characters, NUL bytes), not a text corpus file; file skipped",
            )
        )
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8-sig", errors="replace")
    if text.count("\ufffd") > max(8, len(text) // 20):
        issues.append(
            ParseIssue(
                file=name,
                line=None,
                level="error",
                message="not UTF-8 text (mostly undecodable bytes, looks binary); file skipped",
            )
        )
        return None
    bad = []
    for ln, raw in enumerate(data.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            if not (ln == 1 and raw.startswith(b"\xef\xbb\xbf")):
                bad.append(ln)
    for ln in bad[:_MAX_LINE_WARNINGS]:
        issues.append(
            ParseIssue(file=name, line=ln, level="warning", message="invalid UTF-8 bytes replaced with U+FFFD")
        )
    if len(bad) > _MAX_LINE_WARNINGS:
        issues.append(
            ParseIssue(file=name, line=None, level="warning", message=f"invalid UTF-8 bytes on {len(bad)} lines in all")
        )
    return text


# Formats that may hold readable text but are never corpus files (an uncompressed zip holds its text verbatim)
_BINARY_MAGIC = (
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ",
    b"7z\xbc\xaf",
    b"%PDF",
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"\x7fELF",
    b"SQLite format 3",
    b"\x93NUMPY",
    b"\x80\x02",
    b"\x80\x03",
    b"\x80\x04",
    b"\x80\x05",
)
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f\v") + b"\x7f"


def _byte_control_ratio(data: bytes) -> float:
    """Share of control bytes in the first 64 kB: text files have next to none, binary formats many."""
    sample = data[:65536]
    if not sample:
        return 0.0
    return (len(sample) - len(sample.translate(None, _CONTROL_BYTES))) / len(sample)


def _blank_nul_lines(text: str, sink: _Sink) -> str:
    """A line holding a NUL byte is one bad line: reported and blanked, the rest of the file is read."""
    lines = _LINE_SPLIT_RE.split(text)
    for i, line in enumerate(lines):
        if "\x00" in line:
            sink.error(i + 1, "NUL byte in the line (binary data?); line skipped")
            lines[i] = ""
    return "\n".join(lines)


def _control_ratio(text: str) -> float:
    sample = text[:8192]
    if not sample:
        return 0.0
    ctrl = sum(1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f\v")
    return ctrl / len(sample)


def _nonblank_lines(text: str) -> list[tuple[int, str]]:
    out = []
    for ln, raw in enumerate(_LINE_SPLIT_RE.split(text), start=1):
        s = raw.strip().lstrip("\ufeff\u200b").strip()
        if s:
            out.append((ln, s))
    return out
