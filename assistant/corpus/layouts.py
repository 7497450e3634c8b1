"""The layout names and ``detect_layout``: which layout a text is in, from its content (never a file name)."""

from __future__ import annotations

import json

from ..paper import _ABSTRACT_PREFIX_RE, _AFFIL_SEP
from .authors import _ET_AL_RE, parse_author_list, split_title_authors
from .decode import _nonblank_lines
from .meta import parse_meta_line

LAYOUT_CATEGORY_DATE = "category_date"
LAYOUT_ABSTRACT_ONLY = "abstract_only"
LAYOUT_AUTHOR_PROFILE = "author_profile"
LAYOUT_RANKED = "ranked_list"
LAYOUT_TRENDING = "trending"
LAYOUT_ARXIV_JSONL = "arxiv_jsonl"
LAYOUT_JSON = "json"
LAYOUT_EMPTY = "empty"
LAYOUT_BINARY = "binary"
LAYOUT_UNREADABLE = "unreadable"
LAYOUT_UNKNOWN = "unknown"
LAYOUT_TOO_LARGE = "too_large"

SUPPORTED_SUFFIXES = frozenset({".txt", ".jsonl", ".json", ""})


def _looks_like_abstract(text: str) -> bool:
    return len(text) >= 300 or len(text.split()) >= 40


def _is_author_line(text: str, require_list_marker: bool = False) -> bool:
    if len(text) > 1000 or _looks_like_abstract(text) and len(text) > 600:
        return False
    if require_list_marker and not ("," in text or _AFFIL_SEP in text or _ET_AL_RE.search(text)):
        return False
    return parse_author_list(text) is not None


def _is_glued_title(text: str) -> bool:
    """A line that is a title glued to a (strictly parsed) author list, however long the list."""
    split = split_title_authors(text)
    return split is not None and split.strict and not _looks_like_abstract(split.title)


def _abstract_prefixed(text: str) -> str | None:
    m = _ABSTRACT_PREFIX_RE.match(text)
    return text[m.end() :] if m else None


def detect_layout(text: str) -> str:
    """Name the layout of ``text`` from its content (see the module docstring for the names)."""
    lines = _nonblank_lines(text)
    if not lines:
        return LAYOUT_EMPTY
    first = lines[0][1]
    if first.startswith("["):
        return LAYOUT_JSON
    if first.startswith("{"):
        if len(lines) > 1:
            try:
                json.loads(text)
                return LAYOUT_JSON  # one pretty-printed object
            except ValueError:
                pass
        return LAYOUT_ARXIV_JSONL
    sample = [t for _, t in lines[:5000]]
    n = len(sample)
    if sum(1 for t in sample if _abstract_prefixed(t) is not None) * 2 >= n:
        return LAYOUT_ABSTRACT_ONLY
    metas = [parse_meta_line(t) for t in sample]
    n_meta = sum(1 for m in metas if m)
    n_auth = sum(1 for t in sample if _is_author_line(t, require_list_marker=True))
    if n_meta and n_auth * 2 >= n_meta:
        return LAYOUT_AUTHOR_PROFILE
    glued = [
        s
        for t, m in zip(sample, metas, strict=True)
        if not m and not _looks_like_abstract(t) and (s := split_title_authors(t)) is not None and s.strict
    ]
    records_guess = max(1, (n - n_meta) // 2)
    if glued and len(glued) * 2 >= records_guess:
        ranked = any(m and m.score is not None for m in metas) or any(s.affiliations for s in glued)
        return LAYOUT_RANKED if ranked else LAYOUT_CATEGORY_DATE
    if any(_looks_like_abstract(t) for t in sample):
        return LAYOUT_TRENDING
    return LAYOUT_UNKNOWN
