"""``parse_text`` / ``parse_file``: one file or uploaded content -> ``ParseResult`` (limits, decoding, layout,
reader). Never raises.
"""

from __future__ import annotations

import os
import select
import stat

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


class _Unreadable(Exception):
    """A source refused before (or while) reading it: ``why`` says what it is."""

    def __init__(self, layout: str, why: str) -> None:
        super().__init__(why)
        self.layout, self.why = layout, why


_READ_CHUNK = 1 << 20


def _over_limit(what: str, limits: IngestLimits) -> _Unreadable:
    return _Unreadable(
        LAYOUT_TOO_LARGE,
        f"{what}, over the {limits.max_file_bytes / 1e6:g} MB limit per file (ASSISTANT_INGEST__MAX_FILE_MB); "
        "split it or raise the limit",
    )


def read_source(path: str | os.PathLike[str], limits: IngestLimits = DEFAULT_LIMITS) -> tuple[bytes, bool]:
    """The bytes of one corpus source and whether it is a regular file, never more than ``limits.max_file_bytes``.

    Every source goes through the same limit: a regular file is refused by its size before it is read and read
    at most one byte past the limit (it may grow, and files under /proc report size 0); a pipe (a FIFO, a shell's
    ``<(...)``) is read until its writer closes it, refused once it has sent more than the limit, or when it sends
    nothing for ``limits.pipe_timeout_s`` (a FIFO nobody writes to would otherwise hang the ingest for good).
    Character devices (``/dev/zero``, ``/dev/urandom``, a terminal), block devices and sockets are refused unread:
    they never end, or are no file. Raises ``_Unreadable`` (refused) or ``OSError`` (cannot be read)."""
    st = os.stat(path)
    kind = _special_kind(st.st_mode)
    if kind:
        raise _Unreadable(LAYOUT_UNREADABLE, f"it is {kind}, not a corpus file")
    if stat.S_ISREG(st.st_mode) and st.st_size > limits.max_file_bytes:
        raise _over_limit(f"it is {st.st_size / 1e6:,.1f} MB", limits)
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait, for ever, for a writer to appear
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)  # what was opened (the path may have been replaced since the stat above)
        kind = _special_kind(st.st_mode)
        if kind:
            raise _Unreadable(LAYOUT_UNREADABLE, f"it is {kind}, not a corpus file")
        if stat.S_ISFIFO(st.st_mode):
            return _read_pipe(fd, limits), False
        parts, total = [], 0
        while chunk := os.read(fd, min(_READ_CHUNK, limits.max_file_bytes + 1 - total)):
            parts.append(chunk)
            total += len(chunk)
            if total > limits.max_file_bytes:
                raise _over_limit("it grew while it was read", limits)
        return b"".join(parts), stat.S_ISREG(st.st_mode)
    finally:
        os.close(fd)


def _special_kind(mode: int) -> str | None:
    if stat.S_ISCHR(mode):
        return "a character device (like /dev/zero, /dev/urandom or a terminal: it never ends)"
    if stat.S_ISBLK(mode):
        return "a block device (a disk)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return None


def _read_pipe(fd: int, limits: IngestLimits) -> bytes:
    """Read a pipe opened non-blocking until its writer closes it, within the byte limit and the idle timeout."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    wait_ms = max(1, int(limits.pipe_timeout_s * 1000))
    parts, total = [], 0
    while True:
        # A FIFO nobody has opened for writing yet is not readable (no POLLHUP either) until one writes or closes.
        if not poller.poll(wait_ms):
            silent = f"{limits.pipe_timeout_s:g} s (ASSISTANT_INGEST__PIPE_TIMEOUT_S)"
            raise _Unreadable(
                LAYOUT_UNREADABLE,
                f"it is a pipe (a FIFO or <(...)) that stopped sending after {total:,} bytes and stayed silent "
                f"for {silent}"
                if total
                else f"it is a pipe (a FIFO or <(...)) that sent no data within {silent}",
            )
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except BlockingIOError:  # woken without data (another reader took it): wait again
            continue
        if not chunk:  # the writer closed its end
            return b"".join(parts)
        parts.append(chunk)
        total += len(chunk)
        if total > limits.max_file_bytes:
            raise _over_limit(f"it is a pipe that sent more than {limits.max_file_bytes / 1e6:g} MB", limits)


def parse_file(
    path: str | os.PathLike[str], limits: IngestLimits = DEFAULT_LIMITS, name: str | None = None
) -> ParseResult:
    """Read one file, detect its layout from its content (never its name) and parse it. Never raises.

    ``name`` is how issues and sources name the file (default: ``path`` as given). The file is read through
    ``read_source``: over ``limits.max_file_bytes`` (by its size, or by what a pipe sent), a device, or a pipe
    that sends nothing, is refused with one error saying which. What a pipe sent is kept in ``content`` (it cannot
    be read twice)."""
    name = name or str(path)
    try:
        data, regular = read_source(path, limits)
    except _Unreadable as exc:
        return _refused(name, exc.layout, exc.why)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return ParseResult(
            file=name,
            layout=LAYOUT_UNREADABLE,
            issues=[ParseIssue(file=name, line=None, level="error", message=f"cannot read file: {reason}")],
        )
    result = parse_text(data, name, limits)
    if not regular:
        result.content = data
    return result
