"""Readers of the text layouts (category_date, abstract_only, author_profile, ranked_list, trending)."""

from __future__ import annotations

import re

from ..paper import _snippet
from .authors import parse_author_list, split_title_authors
from .layouts import (
    LAYOUT_AUTHOR_PROFILE,
    LAYOUT_CATEGORY_DATE,
    LAYOUT_RANKED,
    LAYOUT_TRENDING,
    LAYOUT_UNKNOWN,
    _abstract_prefixed,
    _is_author_line,
    _is_glued_title,
    _looks_like_abstract,
)
from .meta import Meta, parse_meta_line
from .records import _Sink

_TRENDING_BOILERPLATE_RE = re.compile(
    r"^(?:get trending papers\b.*|subscribe|trending papers|trending|sign in|log in|sign up)\W*$", re.IGNORECASE
)
_SUBSCRIBE_GLUE_RE = re.compile(r"^Subscribe(?=[A-Z0-9])")


def _read_abstract_only(lines: list[tuple[int, str]], sink: _Sink) -> None:
    for ln, text in lines:
        body = _abstract_prefixed(text)
        if body is not None:
            sink.orphan(body, ln)
        elif _looks_like_abstract(text):
            sink.warn(ln, "line without 'Abstract:' prefix read as an abstract-only record")
            sink.orphan(text, ln)
        else:
            sink.warn(ln, f"unexpected line in an abstract-only file skipped: {_snippet(text)!r}")


def _read_text_records(lines: list[tuple[int, str]], sink: _Sink, layout: str) -> None:
    """One state machine for the text layouts: ``[meta] title [authors] abstract`` records.

    - category_date / ranked_list: the title line is glued to the authors and is split;
    - author_profile: header lines up to the first category/date line are skipped; authors have their line;
    - trending: leading page boilerplate is skipped; titles are plain.
    """
    n = len(lines)
    i = 0
    if layout == LAYOUT_AUTHOR_PROFILE:
        while i < n and parse_meta_line(lines[i][1]) is None:
            i += 1
        if i == n:
            i = 0
    elif layout == LAYOUT_TRENDING:
        while i < n and not (
            i + 1 < n and _looks_like_abstract(lines[i + 1][1]) and not _looks_like_abstract(lines[i][1])
        ):
            if not _TRENDING_BOILERPLATE_RE.match(lines[i][1]) and not _looks_like_abstract(lines[i][1]):
                sink.warn(lines[i][0], f"line before the first record skipped: {_snippet(lines[i][1])!r}")
            elif _looks_like_abstract(lines[i][1]):
                sink.warn(lines[i][0], "abstract without a title kept as an abstract-only record")
                sink.orphan(lines[i][1], lines[i][0])
            i += 1
    split_glued = layout in (LAYOUT_CATEGORY_DATE, LAYOUT_RANKED, LAYOUT_UNKNOWN)
    pending: tuple[int, Meta] | None = None

    def is_next_title(j: int) -> bool:
        """Is line j (where an abstract is expected) rather the start of the next record?"""
        t = lines[j][1]
        if parse_meta_line(t) is not None:
            return True
        if _looks_like_abstract(t) or _abstract_prefixed(t) is not None:
            return False
        return j + 1 < n and (_looks_like_abstract(lines[j + 1][1]) or _is_author_line(lines[j + 1][1], True))

    while i < n:
        ln, text = lines[i]
        meta = parse_meta_line(text)
        if meta is not None:
            if pending is not None:
                sink.warn(pending[0], "category/date line not followed by a record; ignored")
            if meta.problem:
                sink.warn(ln, meta.problem)
            pending = (ln, meta)
            i += 1
            continue
        body = _abstract_prefixed(text)
        if body is not None or (_looks_like_abstract(text) and not _is_glued_title(text)):
            if body is None:
                sink.warn(ln, "abstract without a title kept as an abstract-only record")
            if pending is not None:
                sink.warn(pending[0], "category/date line not followed by a title; ignored")
            sink.orphan(body if body is not None else text, ln)
            pending = None
            i += 1
            continue
        start = pending[0] if pending else ln
        rec_meta = pending[1] if pending else None
        pending = None
        if layout == LAYOUT_TRENDING:
            text = _SUBSCRIBE_GLUE_RE.sub("", text)
        title, authors, truncated, affiliations = text, [], False, []
        j = i + 1
        if layout == LAYOUT_AUTHOR_PROFILE and j < n and _is_author_line(lines[j][1]):
            parsed = parse_author_list(lines[j][1])
            assert parsed is not None
            authors, truncated, affiliations = parsed
            j += 1
        elif split_glued or layout == LAYOUT_AUTHOR_PROFILE:
            split = split_title_authors(text)
            if split is not None:
                title, authors, truncated, affiliations, strict = split
                if not strict:
                    sink.warn(ln, f"unusual author names; split title/authors as {title!r} / {authors!r}")
            elif j < n and _is_author_line(lines[j][1], require_list_marker=True):
                parsed = parse_author_list(lines[j][1])
                assert parsed is not None
                authors, truncated, affiliations = parsed
                j += 1
            else:
                sink.warn(ln, "could not find the author list; the whole line is kept as the title")
        if j >= n:
            sink.error(start, f"record {_snippet(title)!r} (title line {ln}) has no abstract: the file ends after it")
            i = j
            continue
        if is_next_title(j):
            sink.error(start, f"record {_snippet(title)!r} (title line {ln}) has no abstract; skipped")
            i = j
            continue
        abstract = lines[j][1]
        prefixed = _abstract_prefixed(abstract)
        if layout == LAYOUT_UNKNOWN and prefixed is None and not _looks_like_abstract(abstract):
            # unrecognised text (code, notes, a CSV...) must not become papers: without a known layout,
            # only a record whose abstract reads like one (300+ characters or 40+ words) is kept
            sink.error(
                start,
                f"record {_snippet(title)!r} (title line {ln}): {_snippet(abstract)!r} is too "
                "short for an abstract in a file of unknown layout; skipped",
            )
            i = j + 1
            continue
        sink.add(
            start,
            title,
            prefixed if prefixed is not None else abstract,
            authors=authors,
            truncated=truncated,
            affiliations=affiliations,
            meta=rec_meta,
        )
        i = j + 1
    if pending is not None:
        sink.error(pending[0], "category/date line at the end of the file without a record (truncated file?)")
