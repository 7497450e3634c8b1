"""The paper record and the one rule for "the same paper": ``Paper`` with its text keys (``normalise_title``,
``paper_id``), ``identity_keys`` / ``same_paper`` / ``PaperIndex`` (the same normalised title or abstract; an
abstract-only record joins the paper whose abstract it matches) and the one merge, ``merge_papers`` /
``attach_abstract``. Corpus loading (``assistant.corpus.load_corpus``), the store's ingest and uploads in the web
app all use it, so records are one paper, and are merged, the same way everywhere.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from pydantic import BaseModel, Field


class SourceRef(BaseModel):
    """Where a record (or part of it) was read: file path as given, 1-based line."""

    file: str
    line: int


class Paper(BaseModel):
    id: str = Field(description="Stable id derived from the normalised title.")
    title: str
    authors: list[str] = Field(default_factory=list)
    authors_truncated: bool = Field(False, description="The listing ended the authors with 'et al.'")
    date: str | None = Field(None, description="ISO date 'YYYY-MM-DD', or '--MM-DD' when the year is missing.")
    year: int | None = None
    year_missing: bool = Field(False, description="A date was given without a year.")
    category: str | None = Field(None, description="arXiv-style category code such as 'CV' or 'cs.CV'.")
    affiliations: list[str] = Field(default_factory=list)
    has_code: bool = False
    score: float | None = None
    abstract: str
    sources: list[SourceRef] = Field(default_factory=list)
    arxiv_id: str | None = Field(None, description="arXiv identifier when the source gave one (JSON/JSONL).")
    alt_titles: list[str] = Field(
        default_factory=list, description="Other titles the paper was read under (kept when records merge)."
    )
    categories: list[str] = Field(
        default_factory=list, description="Every category code read for the paper; the first is ``category``."
    )


class MergeConflict(BaseModel):
    """Two records of one paper disagree on a field: what was kept and what the other record said."""

    field: str
    kept: str
    other: str

    def __str__(self) -> str:
        return f"{self.field} {self.kept!r} vs {self.other!r}"


class MergeNote(BaseModel):
    """A record merged into a paper (by title, abstract, or as an abstract-only record) whose fields conflict."""

    paper_id: str
    title: str
    source: SourceRef | None = Field(None, description="The record merged in.")
    into: SourceRef | None = Field(None, description="The first record of the paper it was merged into.")
    matched_by: str
    conflicts: list[MergeConflict] = Field(default_factory=list)

    def __str__(self) -> str:
        def where(ref: SourceRef | None) -> str:
            return f"{ref.file}:{ref.line}" if ref else "the store"

        fixes = {
            "title": "the other title is kept as an alternative title",
            "authors": "both author lists are kept, the first in its order and with its first author",
            "category": "both categories are kept",
        }
        parts = [f"{c} ({fixes.get(c.field, 'the first is kept')})" for c in self.conflicts]
        return (
            f"{where(self.source)} merged into {_snippet(self.title, 70)!r} ({where(self.into)}, "
            f"same {self.matched_by}): " + "; ".join(parts)
        )


# --------------------------------------------------------------------------------------------------------------
# Text keys: normalisation and ids
# --------------------------------------------------------------------------------------------------------------


_SPACE = " "
_GREEK = dict(
    zip(
        "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho varsigma sigma tau "
        "upsilon phi chi psi omega".split(_SPACE),
        "\u03b1\u03b2\u03b3\u03b4\u03b5\u03b6\u03b7\u03b8\u03b9\u03ba\u03bb\u03bc\u03bd\u03be\u03bf\u03c0\u03c1"
        "\u03c2\u03c3\u03c4\u03c5\u03c6\u03c7\u03c8\u03c9",
        strict=True,
    )
) | {"varepsilon": "\u03b5", "vartheta": "\u03b8", "varphi": "\u03c6", "varrho": "\u03c1"}
_LATEX_ACCENTS = dict(
    zip("'`^\"~=.uvHck", "\u0301\u0300\u0302\u0308\u0303\u0304\u0307\u0306\u030c\u030b\u0327\u0328", strict=True)
)
_LATEX_ACCENT_RE = re.compile(r"\\([`'^\"~=.]|[uvHck](?=[\s{]))\s*(?:\{\s*([A-Za-z])\s*\}|([A-Za-z]))")
_LATEX_GREEK_RE = re.compile(r"\\(" + "|".join(sorted(_GREEK, key=len, reverse=True)) + r")(?![A-Za-z])")
_LATEX_CMD_RE = re.compile(r"\\[A-Za-z]+\*?|\\.")
_HTML_TAG_RE = re.compile(r"</?[A-Za-z][^<>]*>")
_WS_RE = re.compile(r"\s+")


def _latex_to_unicode(text: str) -> str:
    """``Poincar\\'e`` -> ``Poincaré``, ``\\alpha`` -> ``α`` (only the simple, unambiguous cases)."""

    def accent(m: re.Match[str]) -> str:
        letter = m.group(2) or m.group(3)
        return unicodedata.normalize("NFC", letter + _LATEX_ACCENTS[m.group(1)])

    text = _LATEX_ACCENT_RE.sub(accent, text)
    return _LATEX_GREEK_RE.sub(lambda m: _GREEK[m.group(1)], text)


def clean_whitespace(text: str) -> str:
    """Collapse every run of whitespace (newlines included) to one space and strip."""
    return _WS_RE.sub(" ", text).strip()


def normalise_title(title: str) -> str:
    """Comparison key for titles: NFKC, casefold, no LaTeX/markup/punctuation/diacritics, single spaces."""
    s = unicodedata.normalize("NFKC", title or "")
    s = html.unescape(s)
    s = _HTML_TAG_RE.sub(" ", s)
    s = _latex_to_unicode(s)
    s = _LATEX_CMD_RE.sub(" ", s)
    # Math/markup glue characters vanish (``ViT$^3$`` == ``ViT³`` == ``ViT3``), apostrophes too (``Bird's``).
    s = re.sub(r"[$^_{}'\u2019`]", "", s)
    s = s.casefold()
    s = "".join(ch for ch in unicodedata.normalize("NFKD", s) if not unicodedata.combining(ch))
    s = "".join(ch if ch.isalnum() else " " for ch in s)
    return clean_whitespace(unicodedata.normalize("NFC", s))


def paper_id(title: str) -> str:
    """Stable id: first 16 hex digits of the SHA-1 of the normalised title."""
    key = normalise_title(title) or clean_whitespace(title or "")
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


_ABSTRACT_PREFIX_RE = re.compile(r"^\s*abstract\s*:\s*", re.IGNORECASE)
_TRAILING_ELLIPSIS_RE = re.compile(r"\s*(?:\.\.\.|\u2026)\s*$")


def normalise_abstract(abstract: str) -> str:
    """Comparison key for abstracts: NFKC, no ``Abstract:`` prefix, single spaces, casefold."""
    s = unicodedata.normalize("NFKC", abstract or "")
    s = _ABSTRACT_PREFIX_RE.sub("", s)
    return clean_whitespace(s).casefold()


def _snippet(text: str, n: int = 60) -> str:
    text = clean_whitespace(text)
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _unique(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = item.casefold()
        if item and key not in seen:
            seen.add(key)
            out.append(item)
    return out


# --------------------------------------------------------------------------------------------------------------
# How an author list is written (``assistant.corpus.authors`` parses it)
# --------------------------------------------------------------------------------------------------------------


_AFFIL_SEP = "\u00b7"  # the middle dot in "Authors · affiliation, affiliation"


def format_author_list(authors: Iterable[str], truncated: bool = False, affiliations: Iterable[str] = ()) -> str:
    """Inverse of ``parse_author_list`` for the canonical ``A, B et al. · x, y`` form."""
    text = ", ".join(authors) + (" et al." if truncated else "")
    affs = list(affiliations)
    return f"{text} {_AFFIL_SEP} {', '.join(affs)}" if affs else text


# --------------------------------------------------------------------------------------------------------------
# The one "same paper" rule and the one merge rule (used by load_corpus, the store's ingest and uploads)
# --------------------------------------------------------------------------------------------------------------


_ABSTRACT_PREFIX_MATCH = 200  # chars of normalised abstract that identify it despite later differences
_ABSTRACT_MIN_TRUNCATION = 80  # a shorter abstract may be a truncation of a longer one if at least this long
_ABSTRACT_MIN_KEY = 40  # shorter abstracts never merge papers on their own


def _strip_ellipsis(key: str) -> str:
    return _TRAILING_ELLIPSIS_RE.sub("", key)


def identity_keys(paper: Paper) -> list[str]:
    """What identifies a paper: each of its normalised titles (title and alternative titles) and its normalised
    abstract (when 40 characters or more). Two records are one paper when they share a key."""
    keys = [f"t:{k}" for k in _unique(normalise_title(t) for t in [paper.title, *paper.alt_titles]) if k]
    abstract = normalise_abstract(paper.abstract)
    if len(abstract) >= _ABSTRACT_MIN_KEY:
        keys.append(f"a:{abstract}")
    return keys


def same_paper(a: Paper, b: Paper) -> str | None:
    """``"title"`` or ``"abstract"`` when ``a`` and ``b`` are records of one paper (``identity_keys``), else None."""
    shared = set(identity_keys(a)) & set(identity_keys(b))
    if not shared:
        return None
    return "title" if any(k.startswith("t:") for k in shared) else "abstract"


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PaperIndex:
    """Finds which known paper a record belongs to, by ``identity_keys``; and which paper an abstract-only record
    belongs to: the same normalised abstract, else the same first 200 characters, else one abstract a truncation
    (80+ characters) of the other. Owners are whatever the caller files papers under (a list index, a paper id)."""

    def __init__(self) -> None:
        self._by_key: dict[str, Any] = {}
        self._heads: dict[str, list[tuple[str, Any]]] = {}

    def add(self, paper: Paper, owner: Any) -> None:
        for key in identity_keys(paper):
            self._by_key.setdefault(key, owner)
        exact = normalise_abstract(paper.abstract)
        self._by_key.setdefault(f"x:{exact}", owner)
        head = _strip_ellipsis(exact)
        self._heads.setdefault(head[:_ABSTRACT_MIN_TRUNCATION], []).append((head, owner))

    def matches(self, paper: Paper) -> list[tuple[Any, str]]:
        """Every known owner sharing a key with ``paper``, with ``"title"`` or ``"abstract"``; titles first."""
        out: list[tuple[Any, str]] = []
        for key in identity_keys(paper):
            owner = self._by_key.get(key)
            if owner is not None and all(owner != o for o, _ in out):
                out.append((owner, "title" if key.startswith("t:") else "abstract"))
        return out

    def find(self, paper: Paper) -> tuple[Any, str] | None:
        found = self.matches(paper)
        return found[0] if found else None

    def find_abstract(self, abstract: str) -> tuple[Any, str] | None:
        """The owner of the paper an abstract-only record belongs to, with ``"exact"`` or ``"prefix"``."""
        key = normalise_abstract(abstract)
        owner = self._by_key.get(f"x:{key}")
        if owner is not None:
            return owner, "exact"
        okey = _strip_ellipsis(key)
        best, best_len = None, 0
        for pkey, powner in self._heads.get(okey[:_ABSTRACT_MIN_TRUNCATION], []):
            cp = _common_prefix_len(okey, pkey)
            truncation = cp == min(len(okey), len(pkey)) and cp >= _ABSTRACT_MIN_TRUNCATION
            if (cp >= _ABSTRACT_PREFIX_MATCH or truncation) and cp > best_len:
                best, best_len = powner, cp
        return (best, "prefix") if best is not None else None


def _name_key(name: str) -> list[str]:
    s = "".join(ch for ch in unicodedata.normalize("NFKD", name.casefold()) if not unicodedata.combining(ch))
    return "".join(ch if ch.isalpha() else " " for ch in s).split()


def same_person(a: str, b: str) -> bool:
    """``Kai Han`` is ``K. Han`` and ``kai han``, not ``Kun Han``: initials only match a written-out name."""
    ka, kb = _name_key(a), _name_key(b)
    if ka == kb:
        return True
    if not ka or not kb or ka[-1] != kb[-1] or len(ka) != len(kb):
        return False
    given_a, given_b = ka[:-1], kb[:-1]
    abbreviated = all(len(t) == 1 for t in given_a) or all(len(t) == 1 for t in given_b)
    return abbreviated and [t[0] for t in given_a] == [t[0] for t in given_b]


def _covers(big: list[str], small: list[str]) -> bool:
    return all(any(same_person(s, b) for b in big) for s in small)


def _unite_authors(a: Paper, b: Paper) -> tuple[list[str], bool, bool]:
    """(authors, truncated, conflict) of record ``a`` (stored, or read first) merged with record ``b``.

    ``a`` keeps its order and its first author whatever ``b`` says: a record that only shares a title must not take
    over authorship. Names only ``b`` gives are added after ``a``'s, so a complete list that continues a truncated
    one (``A, B et al.`` then ``A, B, C, D``) still reads ``A, B, C, D``. The lists conflict when neither covers the
    other as its ``et al.`` allows, or when their first authors differ."""
    x, y, xt, yt = a.authors, b.authors, a.authors_truncated, b.authors_truncated
    if not y:
        return list(x), xt, False
    if not x:
        return list(y), yt, False
    if xt and not yt:
        ok = _covers(y, x)
    elif yt and not xt:
        ok = _covers(x, y)
    elif xt and yt:
        ok = _covers(x, y) or _covers(y, x)
    else:
        ok = _covers(x, y) and _covers(y, x)
    ok = ok and same_person(x[0], y[0])
    united = list(x) + [n for n in y if not any(same_person(n, m) for m in x)]
    # 'et al.' stays unless a complete list that agrees with the other was given: a conflicting "complete" list
    # does not prove the merged one complete
    return united, (xt and yt) if ok else (xt or yt), not ok


def _category_key(code: str) -> str:
    """``cs.CV`` and ``CV`` are one category (the seed pages drop the archive prefix)."""
    return code.rsplit(".", 1)[-1].casefold()


def _where_they_differ(kept: str, other: str) -> dict[str, str]:
    """Snippets of two texts from a little before their first difference (they often share a long opening)."""
    start = max(0, _common_prefix_len(kept, other) - 20)
    cut = start > 0
    return {
        "kept": ("…" if cut else "") + _snippet(kept[start:]),
        "other": ("…" if cut else "") + _snippet(other[start:]),
    }


def _merge_two(acc: Paper, rec: Paper) -> tuple[Paper, list[MergeConflict]]:
    conflicts: list[MergeConflict] = []
    titles = [acc.title, *acc.alt_titles]
    known = {normalise_title(t) for t in titles}
    alt = list(acc.alt_titles)
    if normalise_title(rec.title) not in known:
        conflicts.append(MergeConflict(field="title", kept=acc.title, other=rec.title))
    for t in [rec.title, *rec.alt_titles]:
        k = normalise_title(t)
        if k and k not in known:
            known.add(k)
            alt.append(t)

    authors, truncated, author_conflict = _unite_authors(acc, rec)
    if author_conflict:
        conflicts.append(
            MergeConflict(
                field="authors",
                kept=format_author_list(acc.authors, acc.authors_truncated),
                other=format_author_list(rec.authors, rec.authors_truncated),
            )
        )

    cats = _unique_by([c for c in [acc.category, *acc.categories] if c], _category_key)
    theirs = _unique_by([c for c in [rec.category, *rec.categories] if c], _category_key)
    new_cats = [c for c in theirs if _category_key(c) not in {_category_key(k) for k in cats}]
    if cats and theirs and len(new_cats) == len(theirs):
        # no category in common: the records disagree (one listing more categories than the other does not)
        conflicts.append(MergeConflict(field="category", kept=", ".join(cats), other=", ".join(new_cats)))
    categories = cats + new_cats

    abstract = acc.abstract
    ka = _strip_ellipsis(normalise_abstract(acc.abstract))
    kb = normalise_abstract(rec.abstract)
    if len(kb) > len(ka) and kb.startswith(ka):  # the new copy continues a truncated abstract
        abstract = rec.abstract
    elif not ka.startswith(_strip_ellipsis(kb)):
        conflicts.append(MergeConflict(field="abstract", **_where_they_differ(acc.abstract, rec.abstract)))

    real_year = [p for p in (acc, rec) if p.date and p.year is not None and not p.year_missing]
    dated = [p for p in (acc, rec) if p.date]
    date_src = real_year[0] if real_year else (dated[0] if dated else None)
    year = date_src.year if date_src else (acc.year if acc.year is not None else rec.year)
    if acc.year is not None and rec.year is not None and acc.year != rec.year:
        conflicts.append(
            MergeConflict(field="year", kept=str(year), other=str(rec.year if year == acc.year else acc.year))
        )
    if acc.arxiv_id and rec.arxiv_id and acc.arxiv_id.split("v")[0] != rec.arxiv_id.split("v")[0]:
        conflicts.append(MergeConflict(field="arxiv_id", kept=acc.arxiv_id, other=rec.arxiv_id))

    sources = list(acc.sources) + [s for s in rec.sources if s not in acc.sources]
    merged = Paper(
        id=paper_id(acc.title),
        title=acc.title,
        authors=authors,
        authors_truncated=truncated,
        date=date_src.date if date_src else None,
        year=year,
        year_missing=date_src.year_missing if date_src else False,
        category=categories[0] if categories else None,
        affiliations=_unique([*acc.affiliations, *rec.affiliations]),
        has_code=acc.has_code or rec.has_code,
        score=acc.score if acc.score is not None else rec.score,
        abstract=abstract,
        sources=sources,
        arxiv_id=acc.arxiv_id or rec.arxiv_id,
        alt_titles=alt,
        categories=categories,
    )
    return merged, conflicts


def _unique_by(items: Iterable[str], key: Callable[[str], str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


class Merged(NamedTuple):
    paper: Paper
    notes: list[MergeNote]  # one per record merged in whose fields conflicted


def merge_papers(records: Iterable[Paper], matched_by: str = "title or abstract") -> Merged:
    """Unite records of one paper (in reading order; the first keeps its title, its id, its author order and its first
    author: the store merges a new record into the stored paper, so a record cannot take a paper over).

    Authors (a later record's new names after the first's), categories, affiliations, alternative titles and
    sources are united; a later copy that continues a truncated abstract replaces it; the first known date, score
    and arXiv id are kept; code is there if any copy says so. Each record whose title, authors, categories,
    abstract, year or arXiv id disagree with what came before gives a ``MergeNote``."""
    records = list(records)
    acc = records[0]
    notes: list[MergeNote] = []
    for rec in records[1:]:
        seen_before = bool(rec.sources) and all(s in acc.sources for s in rec.sources)
        acc, conflicts = _merge_two(acc, rec)
        if conflicts and not seen_before:  # a record merged before (an ingest run again) is not news
            notes.append(
                MergeNote(
                    paper_id=acc.id,
                    title=acc.title,
                    source=rec.sources[0] if rec.sources else None,
                    into=acc.sources[0] if acc.sources else None,
                    matched_by=same_paper(records[0], rec) or matched_by,
                    conflicts=conflicts,
                )
            )
    return Merged(acc, notes)


def attach_abstract(paper: Paper, abstract: str, ref: SourceRef) -> Merged:
    """An abstract-only record joined to its paper: one more source, and the longer abstract when it continues
    the paper's (truncated) one; an abstract that differs beyond that is a conflict (the paper's is kept)."""
    text = clean_whitespace(_ABSTRACT_PREFIX_RE.sub("", abstract))
    key = normalise_abstract(text)
    pkey = _strip_ellipsis(normalise_abstract(paper.abstract))
    update: dict[str, Any] = {"sources": paper.sources + ([ref] if ref not in paper.sources else [])}
    notes = []
    if len(key) > len(pkey) and key.startswith(pkey):
        update["abstract"] = text
    elif not pkey.startswith(_strip_ellipsis(key)):
        notes.append(
            MergeNote(
                paper_id=paper.id,
                title=paper.title,
                source=ref,
                into=paper.sources[0] if paper.sources else None,
                matched_by="abstract opening (abstract-only record)",
                conflicts=[MergeConflict(field="abstract", **_where_they_differ(paper.abstract, text))],
            )
        )
    return Merged(paper.model_copy(update=update), notes)
