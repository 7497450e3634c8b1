"""Seed and user corpus files -> paper records.

INTERFACE CONTRACT (other modules rely on these names; keep them):

- ``Paper``: one paper record (pydantic model, fields below).
- ``ParseIssue``: an error or warning tied to a file and line.
- ``ParseResult``: what reading one file gives: papers, issues, layout name.
- ``parse_file(path) -> ParseResult``: detect the layout from content, parse.
- ``load_corpus(paths) -> CorpusReport``: files or folders -> merged unique papers.
- ``normalise_title(title) -> str`` and ``paper_id(title) -> str``.

Also public: ``parse_text(text, source_name) -> ParseResult`` (uploaded content),
``detect_layout(text) -> str``, ``split_title_authors(line) -> TitleSplit | None``,
``parse_author_list(text) -> AuthorList | None``, ``CorpusReport`` and the ``LAYOUT_*`` names.

Layouts are recognised by content, never by file name:

- ``category_date``: ``CVAug 3, 2023`` / ``CLFeb 4`` / ``LGMay 13Code`` line, then one line where the title
  runs straight into the authors (``...SegmentationYuang Liu, Qiang Zhou et al.``), then the abstract.
- ``abstract_only``: ``Abstract:...`` lines without titles. They are never papers on their own: ``load_corpus``
  merges each into the titled paper with the same abstract and reports the ones that match nothing.
- ``author_profile``: a header (h-index, citations, ...), then blank-line separated blocks of
  category/date line, title, authors line (optionally ``· affiliation``), abstract.
- ``ranked_list``: glued ``title+authors · affiliation, affiliation`` line then abstract; some records are
  preceded by ``41.3CVNov 18, 2022`` (score, category, date).
- ``trending``: page header lines, ``Subscribe`` glued to the first title, then title / abstract pairs.
- ``arxiv_jsonl`` / ``json``: records with the fields of the public arXiv metadata snapshot (``id``, ``title``,
  ``authors``, ``abstract``, ``categories``, ``update_date``, ``authors_parsed``) or of ``Paper`` itself.

Splitting a glued ``title+authors`` line: candidate split points are positions where an uppercase letter
follows a non-space character; the rest of the line must parse as a complete author list (comma separated
names of 2-4 capitalised tokens, initials, hyphenated parts, lowercase particles, optional ``et al.`` and
``· affiliations``). The earliest valid point wins. Because a name token may not contain a lowercase-to-
uppercase glue (``ImagesRuyi``), any point earlier than the true one fails, so the earliest valid point is
the true one. If no strict split exists, a looser name grammar (1-6 tokens, all-caps surnames) is tried and
a warning is issued.

Parsing never raises on bad content: problems become ``ParseIssue`` s naming the file and the 1-based line,
and every valid record of the file is still returned.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import hashlib
import html
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

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


# --------------------------------------------------------------------------------------------------------------
# Public result types
# --------------------------------------------------------------------------------------------------------------

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

SUPPORTED_SUFFIXES = frozenset({".txt", ".jsonl", ".json", ""})


class ParseIssue(BaseModel):
    """An error (a record or the file was rejected) or a warning (something was guessed or skipped)."""

    file: str
    line: int | None = None
    level: Literal["error", "warning"]
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.level}: {self.message}"


class ParseResult(BaseModel):
    """What reading one file gives."""

    file: str
    layout: str
    papers: list[Paper] = Field(default_factory=list)
    issues: list[ParseIssue] = Field(default_factory=list)
    raw_records: int = Field(0, description="Valid records read (papers + abstract-only records), before merging.")
    orphan_abstracts: list[tuple[str, SourceRef]] = Field(
        default_factory=list, description="Abstract-only records (abstract, where); merged by load_corpus."
    )

    @property
    def errors(self) -> list[ParseIssue]:
        return [i for i in self.issues if i.level == "error"]

    @property
    def warnings(self) -> list[ParseIssue]:
        return [i for i in self.issues if i.level == "warning"]


class CorpusReport(BaseModel):
    """Files or folders -> unique papers, with everything that went wrong on the way."""

    papers: list[Paper] = Field(default_factory=list, description="Unique papers, sorted by id.")
    results: list[ParseResult] = Field(default_factory=list)
    issues: list[ParseIssue] = Field(default_factory=list)
    per_file: dict[str, int] = Field(default_factory=dict, description="Raw records per file.")
    unmatched_abstracts: list[SourceRef] = Field(default_factory=list)
    merged: int = Field(0, description="Raw records folded into another record (duplicates + abstract-only).")
    merged_by_title: int = 0
    merged_by_abstract: int = 0
    abstracts_matched_exact: int = 0
    abstracts_matched_prefix: int = 0

    @property
    def errors(self) -> list[ParseIssue]:
        return [i for i in self.issues if i.level == "error"]


# --------------------------------------------------------------------------------------------------------------
# Normalisation and ids
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


# --------------------------------------------------------------------------------------------------------------
# Author lists and the glued title+authors split
# --------------------------------------------------------------------------------------------------------------

_PARTICLES = frozenset("van de von der den da di du le la del della des dos das ter ten zu bin".split(_SPACE))
_CAP_PREFIXES = ("Mac", "Mc", "Le", "La", "De", "Di", "Da", "Du", "Van", "Von")  # LeCun, McDonald, DiCaprio
_APOSTROPHES = "'\u2019"
_ET_AL_RE = re.compile(r"\s*,?\s*\bet\.?\s+al(?:\.|ii|ia)?\.?\s*$", re.IGNORECASE)
_AUTHOR_SEP_RE = re.compile(r"\s*,\s*(?:and\s+|&\s*)?|\s+and\s+|\s*&\s*|\s*;\s*")
_AFFIL_SEP = "\u00b7"  # the middle dot in "Authors · affiliation, affiliation"


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


def format_author_list(authors: Iterable[str], truncated: bool = False, affiliations: Iterable[str] = ()) -> str:
    """Inverse of ``parse_author_list`` for the canonical ``A, B et al. · x, y`` form."""
    text = ", ".join(authors) + (" et al." if truncated else "")
    affs = list(affiliations)
    return f"{text} {_AFFIL_SEP} {', '.join(affs)}" if affs else text


def _glue_points(line: str) -> Iterator[int]:
    for i in range(1, len(line)):
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


# --------------------------------------------------------------------------------------------------------------
# Category / date lines
# --------------------------------------------------------------------------------------------------------------

_MONTHS = {
    m: i
    for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)
}
_META_RE = re.compile(
    r"^(?P<score>\d{1,4}(?:\.\d+)?)?"
    r"(?P<cat>(?:[a-z]{2,10}(?:-[a-z]{2,4})?\.)?[A-Z]{2,4})\s?"
    r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]{0,6}\.?\s+"
    r"(?P<day>\d{1,2})(?:,?\s+(?P<year>\d{4}))?"
    r"\s*(?P<code>Code)?$"
)


class Meta(NamedTuple):
    category: str
    date: str | None
    year: int | None
    year_missing: bool
    has_code: bool
    score: float | None
    problem: str | None  # an impossible date, reported as a warning


def parse_meta_line(line: str) -> Meta | None:
    """``41.3CVNov 18, 2022`` / ``CLFeb 4`` / ``LGMay 13Code`` -> Meta, else None."""
    m = _META_RE.match(line.strip())
    if not m:
        return None
    month = _MONTHS[m.group("mon").lower()]
    day = int(m.group("day"))
    year = int(m.group("year")) if m.group("year") else None
    problem = None
    date: str | None
    try:
        _dt.date(year if year is not None else 2000, month, day)  # 2000: leap year, so --02-29 is fine
        date = f"{year:04d}-{month:02d}-{day:02d}" if year is not None else f"--{month:02d}-{day:02d}"
    except ValueError:
        date, problem = None, f"impossible date {m.group('mon')} {day}" + (f", {year}" if year else "")
    score = float(m.group("score")) if m.group("score") else None
    return Meta(
        m.group("cat"),
        date,
        year if date else None,
        date is not None and year is None,
        bool(m.group("code")),
        score,
        problem,
    )


def _parse_iso_date(value: Any) -> tuple[str | None, int | None, bool]:
    """``2023-08-03`` / ``2023-08-03T..`` / ``--08-03`` / ``2023`` -> (date, year, year_missing)."""
    if value is None:
        return None, None, False
    s = str(value).strip()
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})", s)
    if m:
        try:
            _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            return m.group(0), int(m.group(1)), False
        except ValueError:
            return None, None, False
    m = re.fullmatch(r"--(\d{2})-(\d{2})", s)
    if m:
        try:
            _dt.date(2000, int(m.group(1)), int(m.group(2)))
            return s, None, True
        except ValueError:
            return None, None, False
    m = re.fullmatch(r"(\d{4})(?:-(\d{2}))?", s)
    if m:
        return None, int(m.group(1)), False
    return None, None, False


# --------------------------------------------------------------------------------------------------------------
# Reading bytes
# --------------------------------------------------------------------------------------------------------------

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
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        issues.append(
            ParseIssue(
                file=name,
                line=line,
                level="error",
                message="binary content (NUL bytes), not a text corpus file; file skipped",
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


# --------------------------------------------------------------------------------------------------------------
# Layout detection
# --------------------------------------------------------------------------------------------------------------

_TRENDING_BOILERPLATE_RE = re.compile(
    r"^(?:get trending papers\b.*|subscribe|trending papers|trending|sign in|log in|sign up)\W*$", re.IGNORECASE
)
_SUBSCRIBE_GLUE_RE = re.compile(r"^Subscribe(?=[A-Z0-9])")


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


# --------------------------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------------------------


def _strip_controls(text: str) -> str:
    """``text`` without control characters (NUL, BEL, terminal escapes...); whitespace controls become spaces.

    They would reach the terminal (``assistant papers``), the prompt and the UI; none belongs in a record."""
    if text.isprintable():
        return text
    return "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch) != "Cc")


def _has_controls(text: str) -> bool:
    return not text.isprintable() and any(unicodedata.category(ch) == "Cc" and not ch.isspace() for ch in text)


def _snippet(text: str, n: int = 60) -> str:
    text = clean_whitespace(text)
    return text if len(text) <= n else text[: n - 1] + "\u2026"


class _Sink:
    """Collects the output of one reader."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.papers: list[Paper] = []
        self.orphans: list[tuple[str, SourceRef]] = []
        self.issues: list[ParseIssue] = []

    def error(self, line: int | None, message: str) -> None:
        self.issues.append(ParseIssue(file=self.name, line=line, level="error", message=message))

    def warn(self, line: int | None, message: str) -> None:
        self.issues.append(ParseIssue(file=self.name, line=line, level="warning", message=message))

    def orphan(self, abstract: str, line: int) -> None:
        abstract = clean_whitespace(_strip_controls(abstract))
        if abstract:
            self.orphans.append((abstract, SourceRef(file=self.name, line=line)))
        else:
            self.warn(line, "empty abstract-only record skipped")

    def add(
        self,
        line: int,
        title: str,
        abstract: str,
        *,
        authors: list[str] | None = None,
        truncated: bool = False,
        affiliations: list[str] | None = None,
        meta: Meta | None = None,
        **extra: Any,
    ) -> Paper | None:
        if any(_has_controls(x) for x in (title, abstract, *(authors or []), *(affiliations or []))):
            self.warn(line, "control characters removed from the record")
            authors = [a for a in (_strip_controls(x).strip() for x in authors or []) if a]
            affiliations = [a for a in (_strip_controls(x).strip() for x in affiliations or []) if a]
        title, abstract = clean_whitespace(_strip_controls(title)), clean_whitespace(_strip_controls(abstract))
        if not title or not normalise_title(title):
            if abstract:
                self.warn(line, "record has an abstract but no title; kept as an abstract-only record")
                self.orphan(abstract, line)
            else:
                self.error(line, "record has neither title nor abstract")
            return None
        if not abstract:
            self.error(line, f"record {_snippet(title)!r} has no abstract; skipped")
            return None
        fields: dict[str, Any] = {}
        if meta is not None:
            fields = dict(
                category=meta.category,
                date=meta.date,
                year=meta.year,
                year_missing=meta.year_missing,
                has_code=meta.has_code,
                score=meta.score,
            )
        fields.update({k: v for k, v in extra.items() if v is not None})
        paper = Paper(
            id=paper_id(title),
            title=title,
            authors=list(authors or []),
            authors_truncated=truncated,
            affiliations=_unique(affiliations or []),
            abstract=abstract,
            sources=[SourceRef(file=self.name, line=line)],
            **fields,
        )
        self.papers.append(paper)
        return paper


def _unique(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = item.casefold()
        if item and key not in seen:
            seen.add(key)
            out.append(item)
    return out


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


# ---- JSON / JSONL ----------------------------------------------------------------------------------------------

_ARXIV_ID_RE = re.compile(r"^(?:\d{4}\.\d{4,5}|[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?$")


def _split_author_string(value: str) -> AuthorList:
    """arXiv ``authors``: ``A. Smith, B. Jones and C. Doe (MIT)`` -> names (+ parenthesised affiliations)."""
    text = clean_whitespace(_latex_to_unicode(value))
    affiliations: list[str] = []

    def grab(m: re.Match[str]) -> str:
        inner = clean_whitespace(m.group(1))
        if re.search(r"[A-Za-z]{2}", inner):
            affiliations.extend(a.strip() for a in inner.split(",") if a.strip())
        return " "

    for _ in range(3):  # nested parentheses, innermost first
        text = re.sub(r"\(([^()]*)\)", grab, text)
    text = text.replace("{", "").replace("}", "")
    truncated = False
    m = _ET_AL_RE.search(text)
    if m:
        truncated, text = True, text[: m.start()]
    names = [clean_whitespace(n) for n in _AUTHOR_SEP_RE.split(text)]
    return AuthorList([n for n in names if n], truncated, _unique(affiliations))


def _authors_from_record(obj: dict[str, Any]) -> AuthorList:
    parsed = obj.get("authors_parsed")
    aff: list[str] = [str(a) for a in obj.get("affiliations") or [] if a]
    if isinstance(parsed, list) and parsed and all(isinstance(p, list | tuple) for p in parsed):
        names = []
        for p in parsed:
            parts = [clean_whitespace(_latex_to_unicode(str(x))) if x else "" for x in p[:3]] + ["", "", ""]
            last, first, suffix = parts[0], parts[1], parts[2]
            name = clean_whitespace(f"{first} {last} {suffix}")
            if name:
                names.append(name)
        if names:
            return AuthorList(names, bool(obj.get("authors_truncated")), aff)
    raw = obj.get("authors")
    if isinstance(raw, list):
        names = [clean_whitespace(str(a)) for a in raw if str(a).strip()]
        return AuthorList(names, bool(obj.get("authors_truncated")), aff)
    if isinstance(raw, str):
        split = _split_author_string(raw)
        return AuthorList(
            split.authors, split.truncated or bool(obj.get("authors_truncated")), _unique(aff + split.affiliations)
        )
    return AuthorList([], False, aff)


def _record_from_mapping(obj: Any, line: int, sink: _Sink) -> None:
    try:
        _record_from_mapping_unchecked(obj, line, sink)
    except (TypeError, ValueError, AttributeError) as exc:  # odd field types must cost one record, not the file
        sink.error(line, f"unusable record ({type(exc).__name__}: {_snippet(str(exc), 120)})")


def _record_from_mapping_unchecked(obj: Any, line: int, sink: _Sink) -> None:
    if not isinstance(obj, dict):
        sink.error(line, f"expected a JSON object, got {type(obj).__name__}")
        return
    for key in ("title", "abstract", "summary"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            sink.error(line, f"field {key!r} is not a string; record skipped")
            return
    title = clean_whitespace(obj.get("title") or "")
    abstract = clean_whitespace(obj.get("abstract") or obj.get("summary") or "")
    if not title:
        if abstract:
            sink.orphan(abstract, line)
        else:
            sink.error(line, "record has neither title nor abstract")
        return
    authors = _authors_from_record(obj)
    category = obj.get("category")
    if not category and isinstance(obj.get("categories"), str | list):
        cats = obj["categories"].split() if isinstance(obj["categories"], str) else obj["categories"]
        category = cats[0] if cats else None
    date, year, year_missing = None, None, False
    for key in ("date", "update_date", "published"):
        if obj.get(key):
            date, year, year_missing = _parse_iso_date(obj[key])
            if date or year:
                break
            sink.warn(line, f"unreadable {key} {obj[key]!r} ignored")
    if year is None and isinstance(obj.get("year"), int):
        year = obj["year"]
    arxiv_id = obj.get("arxiv_id")
    if not arxiv_id and isinstance(obj.get("id"), str) and _ARXIV_ID_RE.match(obj["id"].strip()):
        arxiv_id = obj["id"].strip()
    score = obj.get("score")
    try:
        score = float(score) if score is not None else None
    except (TypeError, ValueError):
        sink.warn(line, f"non-numeric score {score!r} ignored")
        score = None
    sink.add(
        line,
        title,
        abstract,
        authors=authors.authors,
        truncated=authors.truncated,
        affiliations=authors.affiliations,
        category=str(category) if category else None,
        date=date,
        year=year,
        year_missing=year_missing,
        has_code=obj.get("has_code") is True or str(obj.get("has_code")).lower() in ("true", "1", "yes"),
        score=score,
        arxiv_id=str(arxiv_id) if arxiv_id else None,
    )


def _read_jsonl(text: str, sink: _Sink) -> None:
    for ln, line in _nonblank_lines(text):
        try:
            obj = json.loads(line)
        except ValueError as exc:
            sink.error(ln, f"invalid JSON line: {exc}")
            continue
        _record_from_mapping(obj, ln, sink)


def _read_json(text: str, sink: _Sink) -> None:
    """A JSON array of records (each with its own line number), ``{"papers": [...]}`` or one record."""
    text = text.lstrip("\ufeff")
    decoder = json.JSONDecoder()
    line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]

    def line_of(pos: int) -> int:
        return bisect.bisect_right(line_starts, pos)

    start = len(text) - len(text.lstrip())
    if text[start : start + 1] != "[":
        try:
            obj = json.loads(text)
        except ValueError as exc:
            sink.error(getattr(exc, "lineno", None), f"invalid JSON: {exc}")
            return
        if isinstance(obj, dict) and isinstance(obj.get("papers"), list):
            for rec in obj["papers"]:
                _record_from_mapping(rec, line_of(start), sink)
        else:
            _record_from_mapping(obj, line_of(start), sink)
        return
    pos = start + 1
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            sink.error(line_of(pos), "JSON array is not closed (truncated file?)")
            return
        if text[pos] == "]":
            rest = text[pos + 1 :].strip()
            if rest:
                sink.warn(line_of(pos + 1), "text after the end of the JSON array ignored")
            return
        try:
            obj, end = decoder.raw_decode(text, pos)
        except ValueError as exc:
            sink.error(getattr(exc, "lineno", line_of(pos)), f"invalid JSON: {exc}; rest of the file skipped")
            return
        _record_from_mapping(obj, line_of(pos), sink)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] != "]":
            sink.error(line_of(pos), "expected ',' or ']' in the JSON array; rest of the file skipped")
            return


# --------------------------------------------------------------------------------------------------------------
# parse_text / parse_file
# --------------------------------------------------------------------------------------------------------------


def parse_text(text: str | bytes, source_name: str = "<text>") -> ParseResult:
    """Parse uploaded content (text, or raw bytes which are decoded as for a file). Never raises."""
    issues: list[ParseIssue] = []
    if isinstance(text, bytes | bytearray):
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
    sink = _Sink(source_name)
    sink.issues.extend(issues)
    layout = LAYOUT_UNKNOWN
    try:
        layout = detect_layout(text)
        if layout == LAYOUT_EMPTY:
            sink.error(None, "empty file: no records")
        elif layout == LAYOUT_ARXIV_JSONL:
            _read_jsonl(text, sink)
        elif layout == LAYOUT_JSON:
            _read_json(text, sink)
        elif layout == LAYOUT_ABSTRACT_ONLY:
            _read_abstract_only(_nonblank_lines(text), sink)
        else:
            if layout == LAYOUT_UNKNOWN:
                sink.warn(None, "layout not recognised; reading it as [meta] title+authors / abstract records")
            _read_text_records(_nonblank_lines(text), sink, layout)
    except Exception as exc:  # a parser bug must not take the whole corpus down
        sink.error(None, f"internal parser error ({type(exc).__name__}: {exc}); records read so far are kept")
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


def parse_file(path: str | os.PathLike[str]) -> ParseResult:
    """Read one file, detect its layout from its content (never its name) and parse it. Never raises."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return ParseResult(
            file=name,
            layout=LAYOUT_UNREADABLE,
            issues=[ParseIssue(file=name, line=None, level="error", message=f"cannot read file: {reason}")],
        )
    return parse_text(data, name)


# --------------------------------------------------------------------------------------------------------------
# load_corpus: files/folders -> merged unique papers
# --------------------------------------------------------------------------------------------------------------

_ABSTRACT_PREFIX_MATCH = 200  # chars of normalised abstract that identify it despite later differences
_ABSTRACT_MIN_TRUNCATION = 80  # a shorter abstract may be a truncation of a longer one if at least this long
_ABSTRACT_MIN_KEY = 40  # shorter abstracts never merge papers on their own


def iter_corpus_files(paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[str]:
    """Files given, plus supported files under folders given (recursively, sorted, hidden entries skipped)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out: list[str] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        try:
            key = os.path.realpath(p)
        except (OSError, ValueError):
            key = p
        if key not in seen:
            seen.add(key)
            out.append(p)

    for given in paths:
        p = Path(given)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if not f.startswith(".") and Path(f).suffix.lower() in SUPPORTED_SUFFIXES:
                        add(os.path.join(root, f))
        else:
            add(str(given))
    return out


class _DSU:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra  # the earliest record stays the root
        return True


def _strip_ellipsis(key: str) -> str:
    return _TRAILING_ELLIPSIS_RE.sub("", key)


def _merge_group(records: list[Paper]) -> Paper:
    """Unite the fields of duplicate records (``records`` in reading order)."""
    first = records[0]
    best_authors = max(records, key=lambda p: (len(p.authors), not p.authors_truncated))
    dated = [p for p in records if p.date]
    with_year = [p for p in dated if p.year is not None and not p.year_missing]
    date_src = with_year[0] if with_year else (dated[0] if dated else None)
    year = date_src.year if date_src else next((p.year for p in records if p.year is not None), None)
    abstract = first.abstract
    key = _strip_ellipsis(normalise_abstract(abstract))
    for p in records[1:]:  # a later copy that merely continues a truncated abstract wins
        other = normalise_abstract(p.abstract)
        if len(other) > len(key) and other.startswith(key):
            abstract, key = p.abstract, _strip_ellipsis(other)
    sources: list[SourceRef] = []
    for p in records:
        for s in p.sources:
            if s not in sources:
                sources.append(s)
    return Paper(
        id=paper_id(first.title),
        title=first.title,
        authors=list(best_authors.authors),
        authors_truncated=best_authors.authors_truncated,
        date=date_src.date if date_src else None,
        year=year,
        year_missing=date_src.year_missing if date_src else False,
        category=next((p.category for p in records if p.category), None),
        affiliations=_unique(a for p in records for a in p.affiliations),
        has_code=any(p.has_code for p in records),
        score=next((p.score for p in records if p.score is not None), None),
        abstract=abstract,
        sources=sources,
        arxiv_id=next((p.arxiv_id for p in records if p.arxiv_id), None),
    )


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def load_corpus(paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> CorpusReport:
    """Parse files/folders and merge duplicates into unique papers.

    Duplicates (same normalised title, or same normalised abstract) are united field by field; abstract-only
    records are attached to the paper with the same abstract (exact, else the same first 200 normalised
    characters, else one being a truncation of the other); the ones matching nothing are reported.
    """
    results = [parse_file(f) for f in iter_corpus_files(paths)]
    issues = [i for r in results for i in r.issues]
    records = [p for r in results for p in r.papers]

    dsu = _DSU(len(records))
    by_title: dict[str, int] = {}
    by_abstract: dict[str, int] = {}
    merged_title = merged_abstract = 0
    for idx, p in enumerate(records):
        tkey = normalise_title(p.title)
        akey = normalise_abstract(p.abstract)
        if tkey in by_title:
            merged_title += dsu.union(by_title[tkey], idx)
        else:
            by_title[tkey] = idx
        if len(akey) >= _ABSTRACT_MIN_KEY:
            if akey in by_abstract:
                merged_abstract += dsu.union(by_abstract[akey], idx)
            else:
                by_abstract[akey] = idx
    groups: dict[int, list[Paper]] = {}
    for idx, p in enumerate(records):
        groups.setdefault(dsu.find(idx), []).append(p)
    merged_papers = {root: _merge_group(members) for root, members in groups.items()}

    # Abstract-only records -> the paper with the same abstract.
    exact: dict[str, int] = {}
    by_head: dict[str, list[tuple[str, int]]] = {}
    for idx, p in enumerate(records):
        root = dsu.find(idx)
        key = normalise_abstract(p.abstract)
        exact.setdefault(key, root)
        by_head.setdefault(key[:_ABSTRACT_MIN_TRUNCATION], []).append((_strip_ellipsis(key), root))
    unmatched: list[SourceRef] = []
    n_exact = n_prefix = 0
    extra_sources: dict[int, list[SourceRef]] = {}
    for r in results:
        for abstract, ref in r.orphan_abstracts:
            key = normalise_abstract(abstract)
            root = exact.get(key)
            if root is not None:
                n_exact += 1
            else:
                okey = _strip_ellipsis(key)
                best, best_len = None, 0
                for pkey, proot in by_head.get(okey[:_ABSTRACT_MIN_TRUNCATION], []):
                    cp = _common_prefix_len(okey, pkey)
                    truncation = cp == min(len(okey), len(pkey)) and cp >= _ABSTRACT_MIN_TRUNCATION
                    if (cp >= _ABSTRACT_PREFIX_MATCH or truncation) and cp > best_len:
                        best, best_len = proot, cp
                root = best
                if root is not None:
                    n_prefix += 1
            if root is None:
                unmatched.append(ref)
                issues.append(
                    ParseIssue(
                        file=ref.file,
                        line=ref.line,
                        level="warning",
                        message=f"abstract-only record matches no titled paper; skipped ({_snippet(abstract)!r})",
                    )
                )
                continue
            extra_sources.setdefault(root, []).append(ref)
            paper = merged_papers[root]
            pkey = _strip_ellipsis(normalise_abstract(paper.abstract))
            if len(key) > len(pkey) and key.startswith(pkey):  # the titled copy was truncated
                paper.abstract = clean_whitespace(_ABSTRACT_PREFIX_RE.sub("", abstract))
    for root, refs in extra_sources.items():
        paper = merged_papers[root]
        paper.sources = paper.sources + [s for s in refs if s not in paper.sources]

    papers = sorted(merged_papers.values(), key=lambda p: (p.id, p.sources[0].file, p.sources[0].line))
    raw_total = sum(r.raw_records for r in results)
    return CorpusReport(
        papers=papers,
        results=results,
        issues=issues,
        per_file={r.file: r.raw_records for r in results},
        unmatched_abstracts=unmatched,
        merged=raw_total - len(papers) - len(unmatched),
        merged_by_title=merged_title,
        merged_by_abstract=merged_abstract,
        abstracts_matched_exact=n_exact,
        abstracts_matched_prefix=n_prefix,
    )


__all__ = [
    "LAYOUT_ABSTRACT_ONLY",
    "LAYOUT_ARXIV_JSONL",
    "LAYOUT_AUTHOR_PROFILE",
    "LAYOUT_BINARY",
    "LAYOUT_CATEGORY_DATE",
    "LAYOUT_EMPTY",
    "LAYOUT_JSON",
    "LAYOUT_RANKED",
    "LAYOUT_TRENDING",
    "LAYOUT_UNKNOWN",
    "LAYOUT_UNREADABLE",
    "AuthorList",
    "CorpusReport",
    "Meta",
    "Paper",
    "ParseIssue",
    "ParseResult",
    "SourceRef",
    "TitleSplit",
    "clean_whitespace",
    "detect_layout",
    "format_author_list",
    "iter_corpus_files",
    "load_corpus",
    "normalise_abstract",
    "normalise_title",
    "paper_id",
    "parse_author_list",
    "parse_file",
    "parse_meta_line",
    "parse_text",
    "split_title_authors",
]


def merge_papers(stored: Paper, incoming: Paper) -> Paper:
    """Unite a stored record with a newly read one (same paper), as load_corpus does across files."""
    return _merge_group([stored, incoming])
