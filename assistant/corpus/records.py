"""What reading gives (``ParseIssue``, ``ParseResult``, ``CorpusReport``) and the sink a reader fills: it cleans
each record, keeps it as a ``Paper`` or an abstract-only record, or rejects it, and stops a file refused whole.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..paper import MergeNote, Paper, SourceRef, _snippet, _unique, clean_whitespace, normalise_title, paper_id
from .limits import DEFAULT_LIMITS, IngestLimits, implausible, implausible_abstract
from .meta import Meta


class ParseIssue(BaseModel):
    """An error (a record or the file was rejected) or a warning (something was guessed or skipped)."""

    file: str
    line: int | None = None
    level: Literal["error", "warning"]
    message: str
    code: Literal["unmatched_orphan"] | None = Field(
        None,
        description="What a caller may react to: unmatched_orphan = an abstract-only record no paper read with it "
        "matches (the store may still hold its paper, so the CLI and the web app judge it again there).",
    )

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
    content: bytes | None = Field(
        None,
        exclude=True,
        repr=False,
        description="The bytes read, kept only for a source that cannot be read twice (a pipe): the copy of an added "
        "file is made from them.",
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
# The sink of one reader
# --------------------------------------------------------------------------------------------------------------


def _strip_controls(text: str) -> str:
    """``text`` without control characters (NUL, BEL, terminal escapes...); whitespace controls become spaces.

    They would reach the terminal (``assistant papers``), the prompt and the UI; none belongs in a record."""
    if text.isprintable():
        return text
    return "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch) != "Cc")


def _has_controls(text: str) -> bool:
    return not text.isprintable() and any(unicodedata.category(ch) == "Cc" and not ch.isspace() for ch in text)


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
