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
from collections.abc import Callable, Iterable, Iterator
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
    alt_titles: list[str] = Field(
        default_factory=list, description="Other titles the paper was read under (kept when records merge)."
    )
    categories: list[str] = Field(
        default_factory=list, description="Every category code read for the paper; the first is ``category``."
    )


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
LAYOUT_TOO_LARGE = "too_large"

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
    rejected: str | None = Field(None, description="Why the whole file was refused (then it gives no record).")

    @property
    def errors(self) -> list[ParseIssue]:
        return [i for i in self.issues if i.level == "error"]

    @property
    def warnings(self) -> list[ParseIssue]:
        return [i for i in self.issues if i.level == "warning"]


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
            "authors": "both author lists are kept",
            "category": "both categories are kept",
        }
        parts = [f"{c} ({fixes.get(c.field, 'the first is kept')})" for c in self.conflicts]
        return (
            f"{where(self.source)} merged into {_snippet(self.title, 70)!r} ({where(self.into)}, "
            f"same {self.matched_by}): " + "; ".join(parts)
        )


class CorpusReport(BaseModel):
    """Files or folders -> unique papers, with everything that went wrong on the way."""

    papers: list[Paper] = Field(default_factory=list, description="Unique papers, sorted by id.")
    results: list[ParseResult] = Field(default_factory=list)
    issues: list[ParseIssue] = Field(default_factory=list)
    per_file: dict[str, int] = Field(default_factory=dict, description="Raw records per file.")
    unmatched_abstracts: list[SourceRef] = Field(default_factory=list)
    unmatched_orphans: list[tuple[str, SourceRef]] = Field(
        default_factory=list, description="Abstract-only records matching no paper read (the store may hold it)."
    )
    merges: list[MergeNote] = Field(default_factory=list, description="Merges whose records disagreed on a field.")
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
# Limits and plausibility: does a record look like a paper?
# --------------------------------------------------------------------------------------------------------------


class IngestLimits(NamedTuple):
    """Limits checked before a file is parsed (size, records) and before a record is kept (abstract length).

    Defaults are those of ``assistant.config.IngestSettings``; ``from_settings`` reads the configured ones."""

    max_file_bytes: int = 64_000_000
    max_records: int = 50_000
    max_abstract_chars: int = 5_000

    @classmethod
    def from_settings(cls, ingest: Any) -> IngestLimits:
        return cls(int(ingest.max_file_mb * 1_000_000), ingest.max_records_per_file, ingest.max_abstract_chars)


DEFAULT_LIMITS = IngestLimits()

# Measured on the 322 seed records (titles / abstracts; min-max over all records):
#   title: 13-140 characters, 0.79-1.00 letters among non-space characters;
#   abstract: 835-1,919 characters, 0.92-0.99 letters among non-space characters, words of 5.4-7.7 characters
#   on average, 34-42 % vowels (a e i o u) among Latin letters, at most 7.8 % of words with a lower-to-upper
#   case change inside (``DoViT``).
# The limits below leave room for real arXiv records (LaTeX-heavy abstracts, short withdrawal notices, other
# languages) and reject random text: uniformly random letters have 19 % vowels, random case changes inside most
# words, and long runs without spaces.
TITLE_MAX_CHARS = 500
TITLE_MIN_LETTER_SHARE = 0.5
ABSTRACT_MIN_CHARS = 10
ABSTRACT_MIN_LETTER_SHARE = 0.5
ABSTRACT_MAX_MEAN_WORD = 15.0
VOWEL_SHARE_RANGE = (0.25, 0.60)
VOWEL_MIN_LETTERS = 60  # fewer Latin letters give too noisy a share to judge
MAX_CASE_CHANGE_SHARE = 0.30
CASE_MIN_WORDS = 10


# Letters of scripts written without spaces between words (kana, CJK, Hangul, Thai, Lao, Myanmar, Khmer)
_UNSPACED_RE = re.compile(
    "[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\U00020000-\U0002ffff]"
)
_LETTER_RUN_RE = re.compile(r"[^\W\d_]{2,}")  # the "words" measured: runs of 2+ letters
_ASCII_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _case_change(word: str) -> bool:
    """A lowercase letter followed by an uppercase one (``DoViT``, ``IdHbHSuhwc``)."""
    if word.islower() or word.isupper():  # most words: no need to look letter by letter
        return False
    return any(a.islower() and b.isupper() for a, b in zip(word, word[1:], strict=False))


def text_profile(text: str) -> dict[str, float]:
    """The measures the plausibility checks use (also for measuring a corpus: see ``implausible``)."""
    tokens = text.split()
    nonspace = sum(map(len, tokens))
    letters = sum(map(str.isalpha, text))
    if text.isascii():
        latin = letters
        vowels = sum(map(text.count, "aeiouAEIOU"))
    else:  # Latin letters with their accents taken off (é -> e): French or Czech count their vowels too
        base = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
        latin = sum(map(base.count, _ASCII_LETTERS))
        vowels = sum(map(base.count, "aeiouAEIOU"))
    words = _LETTER_RUN_RE.findall(text)
    unspaced = len(_UNSPACED_RE.findall(text))
    return {
        "chars": len(text),
        "letters": letters,
        "letter_share": letters / nonspace if nonspace else 0.0,
        "unspaced_share": unspaced / letters if letters else 0.0,
        "latin_letters": latin,
        "vowel_share": vowels / latin if latin else 0.0,
        "words": len(words),
        "mean_word": nonspace / len(tokens) if tokens else 0.0,
        "case_change_share": sum(map(_case_change, words)) / len(words) if words else 0.0,
    }


def implausible_title(title: str) -> str | None:
    """Why ``title`` is not a paper title (see ``implausible``), or None."""
    t = text_profile(title)
    if t["chars"] > TITLE_MAX_CHARS:
        return f"the title is {t['chars']:,} characters long (limit {TITLE_MAX_CHARS})"
    if t["letters"] < 2 or t["letter_share"] < TITLE_MIN_LETTER_SHARE:
        return f"the title is not words ({t['letter_share']:.0%} letters)"
    return None


def implausible_abstract(abstract: str, max_chars: int = DEFAULT_LIMITS.max_abstract_chars) -> str | None:
    """Why ``abstract`` is not an abstract (see ``implausible``), or None."""
    n = len(abstract)
    if n > max_chars:
        return (
            f"the abstract is {n:,} characters long, over the limit of {max_chars:,} "
            "(ASSISTANT_INGEST__MAX_ABSTRACT_CHARS)"
        )
    a = text_profile(abstract)
    if n < ABSTRACT_MIN_CHARS or a["letters"] < 5:
        return f"the abstract is too short to be one ({n} characters)"
    if a["letter_share"] < ABSTRACT_MIN_LETTER_SHARE:
        return f"the abstract is mostly not letters ({a['letter_share']:.0%} letters; seed abstracts: 92-99%)"
    if a["unspaced_share"] >= 0.5:  # CJK and the like: no words to measure
        return None
    if a["mean_word"] > ABSTRACT_MAX_MEAN_WORD:
        return f"the abstract does not read as text: its words average {a['mean_word']:.0f} characters (seeds: 5-8)"
    if a["words"] >= CASE_MIN_WORDS and a["case_change_share"] > MAX_CASE_CHANGE_SHARE:
        return (
            f"the abstract does not read as text: {a['case_change_share']:.0%} of its words change case inside "
            "(seeds: at most 8%)"
        )
    lo, hi = VOWEL_SHARE_RANGE
    if a["latin_letters"] >= VOWEL_MIN_LETTERS and not lo <= a["vowel_share"] <= hi:
        return f"the abstract does not read as text: {a['vowel_share']:.0%} of its letters are vowels (seeds: 34-42%)"
    return None


def implausible(title: str, abstract: str, max_abstract_chars: int = DEFAULT_LIMITS.max_abstract_chars) -> str | None:
    """Why a record does not look like a paper, or None when it does.

    A title must be words: at least 2 letters, at least half of its non-space characters letters, at most 500
    characters. An abstract must be text in a natural language: 10 characters up to ``max_abstract_chars``, at
    least half letters and, in scripts written with spaces, words of at most 15 characters on average, at most
    30 % of words (runs of 2+ letters) with a case change inside and 25-60 % vowels among its Latin letters (when
    it has 60 or more).
    The figures measured on the seeds stand next to the limits above.
    """
    return implausible_title(title) or implausible_abstract(abstract, max_abstract_chars)


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


class _StopFile(Exception):
    """Raised by a reader's sink to stop reading a file that is refused whole (the message says why)."""


# A file is refused whole when more than half of its records do not look like papers; reading stops early once
# 50 records have been judged and more than 80 % of them failed (a 50 MB file of random text is not read to the end).
_EARLY_REJECT_RECORDS = 50
_EARLY_REJECT_SHARE = 0.8


class _Sink:
    """Collects the output of one reader."""

    def __init__(self, name: str, limits: IngestLimits = DEFAULT_LIMITS) -> None:
        self.name = name
        self.limits = limits
        self.papers: list[Paper] = []
        self.orphans: list[tuple[str, SourceRef]] = []
        self.issues: list[ParseIssue] = []
        self.implausible: list[tuple[int, str]] = []  # (line, why) of records that do not look like papers

    def error(self, line: int | None, message: str) -> None:
        self.issues.append(ParseIssue(file=self.name, line=line, level="error", message=message))

    def warn(self, line: int | None, message: str) -> None:
        self.issues.append(ParseIssue(file=self.name, line=line, level="warning", message=message))

    @property
    def judged(self) -> int:
        return len(self.papers) + len(self.orphans) + len(self.implausible)

    def _count(self) -> None:
        """Stop reading at the record limit, or when most records so far do not look like papers."""
        if self.judged > self.limits.max_records:
            raise _StopFile(
                f"holds more than {self.limits.max_records:,} records, the limit per file "
                "(ASSISTANT_INGEST__MAX_RECORDS_PER_FILE); split it or raise the limit"
            )
        bad = len(self.implausible)
        if bad >= _EARLY_REJECT_RECORDS and bad > _EARLY_REJECT_SHARE * self.judged:
            raise _StopFile(self.mostly_implausible())

    def mostly_implausible(self) -> str:
        line, why = self.implausible[0]
        return (
            f"{len(self.implausible):,} of the {self.judged:,} records read do not look like papers "
            f"(the first, line {line}: {why})"
        )

    def reject(self, line: int, what: str, why: str) -> None:
        self.error(line, f"{what} does not look like a paper: {why}; skipped")
        self.implausible.append((line, why))
        self._count()

    def orphan(self, abstract: str, line: int) -> None:
        abstract = clean_whitespace(_strip_controls(abstract))
        if not abstract:
            self.warn(line, "empty abstract-only record skipped")
            return
        why = implausible_abstract(abstract, self.limits.max_abstract_chars)
        if why:
            self.reject(line, f"abstract-only record {_snippet(abstract)!r}", why)
            return
        self.orphans.append((abstract, SourceRef(file=self.name, line=line)))
        self._count()

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
        why = implausible(title, abstract, self.limits.max_abstract_chars)
        if why:
            self.reject(line, f"record {_snippet(title)!r}", why)
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
        if paper.category and not paper.categories:
            paper.categories = [paper.category]
        self.papers.append(paper)
        self._count()
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


class _FieldError(ValueError):
    """A field of a JSON record has the wrong type: the record is skipped with this message."""


def _kind(value: Any) -> str:
    """``12345`` -> ``a number (12345)``: how a wrong value is named in messages."""
    if value is None:
        return "null"
    kind = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return f"{kind.get(type(value), type(value).__name__)} ({_snippet(json.dumps(value, ensure_ascii=False), 40)})"


def _names(value: list, field: str) -> list[str]:
    """A JSON list of author names, each a string with a letter in it."""
    names = []
    for i, item in enumerate(value, start=1):
        if not isinstance(item, str) or not any(ch.isalpha() for ch in item):
            raise _FieldError(f"field {field!r} item {i} is {_kind(item)}, not a name")
        names.append(clean_whitespace(_latex_to_unicode(item)))
    return names


def _authors_from_record(obj: dict[str, Any], line: int, sink: _Sink) -> AuthorList:
    """Authors and affiliations of a JSON record; _FieldError when they are not names."""
    aff_raw = obj.get("affiliations")
    if aff_raw is None:
        aff: list[str] = []
    elif isinstance(aff_raw, list) and all(isinstance(a, str) for a in aff_raw):
        aff = [clean_whitespace(a) for a in aff_raw if a.strip()]
    else:
        raise _FieldError(f"field 'affiliations' is {_kind(aff_raw)}, expected a list of strings")
    truncated = obj.get("authors_truncated", False)
    if not isinstance(truncated, bool):
        sink.warn(line, f"field 'authors_truncated' is {_kind(truncated)}, not true/false; ignored")
        truncated = False
    parsed = obj.get("authors_parsed")
    if parsed is not None:
        if not (
            isinstance(parsed, list)
            and all(isinstance(p, list) and all(x is None or isinstance(x, str) for x in p) for p in parsed)
        ):
            raise _FieldError(f"field 'authors_parsed' is {_kind(parsed)}, expected a list of [last, first, suffix]")
        names = []
        for p in parsed:
            parts = [clean_whitespace(_latex_to_unicode(x)) if x else "" for x in p[:3]] + ["", "", ""]
            name = clean_whitespace(f"{parts[1]} {parts[0]} {parts[2]}")
            if name:
                names.append(name)
        if names:
            return AuthorList(names, truncated, aff)
    raw = obj.get("authors")
    if raw is None:
        if "authors" in obj:
            sink.warn(line, "field 'authors' is null; the record is kept without authors")
        return AuthorList([], False, aff)
    if isinstance(raw, list):
        return AuthorList(_names(raw, "authors"), truncated, aff)
    if isinstance(raw, str):
        split = _split_author_string(raw)
        bad = next((n for n in split.authors if not any(ch.isalpha() for ch in n)), None)
        if bad is not None:
            raise _FieldError(f"field 'authors' holds {bad!r}, not a name")
        return AuthorList(split.authors, split.truncated or truncated, _unique(aff + split.affiliations))
    raise _FieldError(f"field 'authors' is {_kind(raw)}, expected a list of names or one comma-separated string")


def _record_from_mapping(obj: Any, line: int, sink: _Sink) -> None:
    try:
        _record_from_mapping_unchecked(obj, line, sink)
    except _FieldError as exc:
        sink.error(line, f"{exc}; record skipped")
    except (TypeError, ValueError, AttributeError) as exc:  # odd field types must cost one record, not the file
        sink.error(line, f"unusable record ({type(exc).__name__}: {_snippet(str(exc), 120)})")


def _text_field(obj: dict[str, Any], key: str) -> str | None:
    """A string field, None when absent; _FieldError when null or not a string."""
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise _FieldError(f"field {key!r} is {_kind(value)}, expected a string")
    return value


def _categories(obj: dict[str, Any]) -> list[str]:
    cats: list[str] = []
    one = obj.get("category")
    if one is not None:
        if not isinstance(one, str):
            raise _FieldError(f"field 'category' is {_kind(one)}, expected a string")
        cats.append(one.strip())
    many = obj.get("categories")
    if many is not None:
        if isinstance(many, str):
            cats.extend(many.split())
        elif isinstance(many, list) and all(isinstance(c, str) for c in many):
            cats.extend(c.strip() for c in many)
        else:
            raise _FieldError(f"field 'categories' is {_kind(many)}, expected a string or a list of strings")
    return _unique(c for c in cats if c)


def _optional(obj: dict[str, Any], key: str, types: tuple[type, ...], line: int, sink: _Sink) -> Any:
    """An optional metadata field of the given types; any other value is reported and ignored."""
    value = obj.get(key)
    if value is None or (isinstance(value, types) and not (isinstance(value, bool) and bool not in types)):
        return value
    sink.warn(line, f"field {key!r} is {_kind(value)}; ignored")
    return None


def _record_from_mapping_unchecked(obj: Any, line: int, sink: _Sink) -> None:
    if not isinstance(obj, dict):
        sink.error(line, f"expected a JSON object, got {type(obj).__name__}")
        return
    raw_title = _text_field(obj, "title")
    raw_abstract = _text_field(obj, "abstract")
    if raw_abstract is None:
        raw_abstract = _text_field(obj, "summary")
    title = clean_whitespace(raw_title or "")
    abstract = clean_whitespace(raw_abstract or "")
    if not title:
        if abstract:
            sink.orphan(abstract, line)
        else:
            sink.error(line, "record has neither title nor abstract")
        return
    authors = _authors_from_record(obj, line, sink)
    cats = _categories(obj)
    date, year, year_missing = None, None, False
    for key in ("date", "update_date", "published"):
        value = _optional(obj, key, (str,), line, sink)
        if value:
            date, year, year_missing = _parse_iso_date(value)
            if date or year:
                break
            sink.warn(line, f"unreadable {key} {value!r} ignored")
    given_year = _optional(obj, "year", (int,), line, sink)
    if year is None and given_year is not None:
        year = given_year
    arxiv_id = _optional(obj, "arxiv_id", (str,), line, sink)
    given_id = _optional(obj, "id", (str,), line, sink)
    if not arxiv_id and given_id and _ARXIV_ID_RE.match(given_id.strip()):
        arxiv_id = given_id.strip()
    score = obj.get("score")
    if isinstance(score, str):
        try:
            score = float(score)
            sink.warn(line, f"field 'score' is a string ({obj['score']!r}); read as the number {score:g}")
        except ValueError:
            sink.warn(line, f"non-numeric score {score!r} ignored")
            score = None
    else:
        score = _optional(obj, "score", (int, float), line, sink)
    has_code = obj.get("has_code", False)
    if isinstance(has_code, str) and has_code.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        flag = has_code.strip().lower() in ("true", "1", "yes")
        sink.warn(line, f"field 'has_code' is a string ({has_code!r}); read as {str(flag).lower()}")
        has_code = flag
    elif not isinstance(has_code, bool):
        if has_code is not None:
            sink.warn(line, f"field 'has_code' is {_kind(has_code)}, not true/false; ignored")
        has_code = False
    paper = sink.add(
        line,
        title,
        abstract,
        authors=authors.authors,
        truncated=authors.truncated,
        affiliations=authors.affiliations,
        category=cats[0] if cats else None,
        date=date,
        year=year,
        year_missing=year_missing,
        has_code=has_code,
        score=float(score) if score is not None else None,
        arxiv_id=arxiv_id or None,
    )
    if paper is not None:
        paper.categories = cats
        paper.alt_titles = _unique(t for t in (obj.get("alt_titles") or []) if isinstance(t, str) and t.strip())


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
    """(authors, truncated, conflict): a complete list covers a truncated one (``et al.``) that it extends."""
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
    base, other = (y, x) if (xt and not yt) or (xt == yt and len(y) > len(x)) else (x, y)
    united = list(base) + [n for n in other if not any(same_person(n, m) for m in base)]
    # still 'et al.' only when no record gave a complete list
    return united, xt and yt, not ok


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
    """Unite records of one paper (in reading order; the first keeps its title and id).

    Authors, categories, affiliations, alternative titles and sources are united; a later copy that continues a
    truncated abstract replaces it; the first known date, score and arXiv id are kept; code is there if any copy
    says so. Each record whose title, authors, categories, abstract, year or arXiv id disagree with what came
    before gives a ``MergeNote``."""
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


def load_corpus(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    limits: IngestLimits = DEFAULT_LIMITS,
    names: dict[str, str] | None = None,
) -> CorpusReport:
    """Parse files/folders and merge records of one paper (``identity_keys``) into unique papers.

    Records sharing a title or abstract are united by ``merge_papers``; abstract-only records are attached to
    their paper (``PaperIndex.find_abstract``) and the ones matching nothing are reported. ``names`` maps a file
    path to the name its issues and sources carry (uploads, kept copies)."""
    names = names or {}
    results = [parse_file(f, limits, names.get(f)) for f in iter_corpus_files(paths)]
    issues = [i for r in results for i in r.issues]
    records = [p for r in results for p in r.papers]

    dsu = _DSU(len(records))
    index = PaperIndex()
    merged_title = merged_abstract = 0
    for idx, p in enumerate(records):
        for owner, kind in index.matches(p):
            if dsu.union(owner, idx):
                if kind == "title":
                    merged_title += 1
                else:
                    merged_abstract += 1
        index.add(p, idx)
    groups: dict[int, list[Paper]] = {}
    for idx, p in enumerate(records):
        groups.setdefault(dsu.find(idx), []).append(p)
    notes: list[MergeNote] = []
    merged_papers: dict[int, Paper] = {}
    for root, members in groups.items():
        merged_papers[root], group_notes = merge_papers(members)
        notes.extend(group_notes)

    # Abstract-only records -> the paper with the same abstract.
    unmatched: list[tuple[str, SourceRef]] = []
    n_exact = n_prefix = 0
    for r in results:
        for abstract, ref in r.orphan_abstracts:
            found = index.find_abstract(abstract)
            if found is None:
                unmatched.append((abstract, ref))
                issues.append(
                    ParseIssue(
                        file=ref.file,
                        line=ref.line,
                        level="warning",
                        message=f"abstract-only record matches no titled paper; skipped ({_snippet(abstract)!r})",
                    )
                )
                continue
            owner, how = found
            n_exact += how == "exact"
            n_prefix += how == "prefix"
            root = dsu.find(owner)
            merged_papers[root], attach_notes = attach_abstract(merged_papers[root], abstract, ref)
            notes.extend(attach_notes)

    papers = sorted(merged_papers.values(), key=lambda p: (p.id, p.sources[0].file, p.sources[0].line))
    raw_total = sum(r.raw_records for r in results)
    return CorpusReport(
        papers=papers,
        results=results,
        issues=issues,
        per_file={r.file: r.raw_records for r in results},
        unmatched_abstracts=[ref for _, ref in unmatched],
        unmatched_orphans=unmatched,
        merged=raw_total - len(papers) - len(unmatched),
        merged_by_title=merged_title,
        merged_by_abstract=merged_abstract,
        abstracts_matched_exact=n_exact,
        abstracts_matched_prefix=n_prefix,
        merges=notes,
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
    "LAYOUT_TOO_LARGE",
    "LAYOUT_UNKNOWN",
    "LAYOUT_UNREADABLE",
    "AuthorList",
    "CorpusReport",
    "DEFAULT_LIMITS",
    "IngestLimits",
    "MergeConflict",
    "MergeNote",
    "Merged",
    "Meta",
    "Paper",
    "PaperIndex",
    "ParseIssue",
    "ParseResult",
    "SourceRef",
    "TitleSplit",
    "attach_abstract",
    "clean_whitespace",
    "detect_layout",
    "format_author_list",
    "identity_keys",
    "implausible",
    "implausible_abstract",
    "implausible_title",
    "iter_corpus_files",
    "load_corpus",
    "merge_papers",
    "normalise_abstract",
    "normalise_title",
    "paper_id",
    "parse_author_list",
    "parse_file",
    "parse_meta_line",
    "parse_text",
    "same_paper",
    "same_person",
    "split_title_authors",
    "text_profile",
]
