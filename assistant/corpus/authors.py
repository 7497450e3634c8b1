"""Author lists and the glued title+authors split (see the package docstring for the grammar)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import NamedTuple

from ..paper import _AFFIL_SEP, _SPACE, clean_whitespace

_PARTICLES = frozenset("van de von der den da di du le la del della des dos das ter ten zu bin".split(_SPACE))
_CAP_PREFIXES = ("Mac", "Mc", "Le", "La", "De", "Di", "Da", "Du", "Van", "Von")  # LeCun, McDonald, DiCaprio
_APOSTROPHES = "'\u2019"
_ET_AL_RE = re.compile(r"\s*,?\s*\bet\.?\s+al(?:\.|ii|ia)?\.?\s*$", re.IGNORECASE)
_AUTHOR_SEP_RE = re.compile(r"\s*,\s*(?:and\s+|&\s*)?|\s+and\s+|\s*&\s*|\s*;\s*")


class AuthorList(NamedTuple):
    authors: list[str]
    truncated: bool
    affiliations: list[str]


class TitleSplit(NamedTuple):
    title: str
    authors: list[str]
    truncated: bool
    affiliations: list[str]
    strict: bool  # False when only the loose name grammar accepted it (a warning is due)


def _is_lower_run(s: str) -> bool:
    return bool(s) and all((ch.isalpha() and not ch.isupper()) or unicodedata.combining(ch) for ch in s)


def _is_cap_part(s: str) -> bool:
    """``Kai``, ``Émile``; a lone capital is allowed (``O`` in ``O'Brien``)."""
    if not s or not (s[0].isalpha() and s[0].isupper()):
        return False
    rest = s[1:]
    return rest == "" or _is_lower_run(rest)


def _is_cap_word(tok: str) -> bool:
    """A capitalised name word: ``Kai``, ``Sheng-Lan``, ``Hui-ling``, ``O'Brien``, ``LeCun``, ``McDonald``."""
    for pos, part in enumerate(tok.split("-")):
        subparts = re.split(f"[{_APOSTROPHES}]", part)
        for spos, sub in enumerate(subparts):
            if pos == 0 and spos == 0:
                ok = _is_cap_part(sub) and (len(sub) > 1 or len(subparts) > 1)
                if not ok:
                    ok = any(
                        sub.startswith(p) and _is_cap_part(sub[len(p) :]) and len(sub) > len(p) + 1
                        for p in _CAP_PREFIXES
                    )
            else:
                ok = _is_cap_part(sub) or _is_lower_run(sub)
            if not ok:
                return False
    return True


def _is_initial(tok: str) -> bool:
    """``S.``, ``J.R.``, ``J.-P.``"""
    return bool(re.fullmatch(r"(?:[^\W\d_]\.-?)+", tok)) and all(ch.isupper() for ch in tok if ch.isalpha())


def _is_caps_word(tok: str) -> bool:
    """An all-caps surname (``LIU``), accepted by the loose grammar only."""
    letters = tok.replace("-", "")
    return len(letters) >= 2 and letters.isalpha() and letters.isupper()


def _is_name(name: str, strict: bool) -> bool:
    toks = name.split()
    if not toks:
        return False
    core = 0
    for tok in toks:
        if tok in _PARTICLES:
            continue
        if _is_cap_word(tok) or _is_initial(tok) or (not strict and _is_caps_word(tok)):
            core += 1
        else:
            return False
    last = toks[-1]
    if last in _PARTICLES or _is_initial(last):
        return False
    if toks[0] in _PARTICLES and strict:
        return False
    lo, hi = (2, 4) if strict else (1, 6)
    return lo <= core <= hi and len(toks) <= hi + 2


def parse_author_list(text: str, strict: bool = True) -> AuthorList | None:
    """Parse ``Kai Han, Yunhe Wang et al. · pku, thu`` completely, or return None.

    ``strict`` asks for 2-4 capitalised tokens per name; the loose grammar accepts 1-6 tokens and all-caps
    surnames. Affiliations are the comma separated items after `` · ``.
    """
    text = text.strip()
    if not text or len(text) > 2000:
        return None
    affiliations: list[str] = []
    if _AFFIL_SEP in text:
        text, _, aff = text.partition(_AFFIL_SEP)
        text = text.rstrip()
        affiliations = [clean_whitespace(a) for a in aff.split(",")]
        if not text or any(not a for a in affiliations):
            return None
    truncated = False
    m = _ET_AL_RE.search(text)
    if m:
        truncated = True
        text = text[: m.start()]
    names = [clean_whitespace(n) for n in _AUTHOR_SEP_RE.split(text)]
    if not names or any(not _is_name(n, strict) for n in names):
        return None
    return AuthorList(names, truncated, affiliations)


_NAME_LIST_CHARS = frozenset(" .,-;&" + _APOSTROPHES)


def _glue_points(line: str) -> Iterator[int]:
    # An author list holds only letters and a few separators before its `` · affiliations``: a point left of any
    # other character cannot start one, so only points after the last such character are tried (random text
    # would otherwise cost a full author-list parse per capital letter).
    names_end = line.find(_AFFIL_SEP)
    names_end = len(line) if names_end < 0 else names_end
    first = 1
    for j in range(names_end - 1, 0, -1):
        ch = line[j]
        if not (ch.isalpha() or ch in _NAME_LIST_CHARS or ch.isspace() or unicodedata.combining(ch)):
            first = j + 1
            break
    for i in range(first, len(line)):
        ch = line[i]
        if ch.isalpha() and ch.isupper() and not line[i - 1].isspace():
            yield i


def split_title_authors(line: str) -> TitleSplit | None:
    """Split ``Dynamic Token-Pass Transformers for Semantic SegmentationYuang Liu, Qiang Zhou et al.``.

    Returns the earliest split point whose suffix is a complete author list (strict grammar first, then the
    loose one), or None when nothing fits.
    """
    line = line.strip()
    for strict in (True, False):
        for i in _glue_points(line):
            parsed = parse_author_list(line[i:], strict=strict)
            if parsed is not None and line[:i].strip():
                return TitleSplit(line[:i].rstrip(), parsed.authors, parsed.truncated, parsed.affiliations, strict)
    return None
