"""Seed and user corpus files -> paper records.

INTERFACE CONTRACT (other modules rely on these names; keep them):

- ``Paper``: one paper record (pydantic model, defined in ``assistant.paper``; re-exported here).
- ``ParseIssue``: an error or warning tied to a file and line.
- ``ParseResult``: what reading one file gives: papers, issues, layout name.
- ``parse_file(path) -> ParseResult``: detect the layout from content, parse.
- ``load_corpus(paths) -> CorpusReport``: files or folders -> merged unique papers.
- ``normalise_title(title) -> str`` and ``paper_id(title) -> str`` (``assistant.paper``; re-exported here).

Also public: ``parse_text(text, source_name) -> ParseResult`` (uploaded content),
``detect_layout(text) -> str``, ``split_title_authors(line) -> TitleSplit | None``,
``parse_author_list(text) -> AuthorList | None``, ``CorpusReport`` and the ``LAYOUT_*`` names.

Where things live (this ``__init__`` only re-exports; each module imports only the ones listed before it,
none imports the package, and ``assistant.paper`` imports nothing from it):

- ``assistant.paper``: the ``Paper`` record and its text keys (``normalise_title``, ``paper_id``,
  ``normalise_abstract``), the one "same paper" rule (``identity_keys``, ``same_paper``, ``PaperIndex``,
  ``same_person``) and the one merge (``merge_papers``, ``attach_abstract``, ``MergeNote``), shared by corpus
  loading, the store's ingest and uploads.
- ``limits``: ``IngestLimits`` and the plausibility checks (``implausible``): does a record look like a paper?
- ``authors``: author lists (``parse_author_list``) and the glued title+authors split (``split_title_authors``).
- ``meta``: category / date lines (``parse_meta_line``) and the dates of JSON records.
- ``records``: ``ParseIssue``, ``ParseResult``, ``CorpusReport`` and the sink a reader fills with records.
- ``decode``: bytes -> text (UTF-8, UTF-16, binary refused), control characters, NUL bytes, lines.
- ``layouts``: the ``LAYOUT_*`` names and ``detect_layout``.
- ``text_layouts``: the readers of the text layouts.
- ``jsonl``: the JSON / JSONL reader.
- ``parse``: ``parse_text`` / ``parse_file`` (limits, decoding, layout, reader).
- ``load``: ``iter_corpus_files`` and ``load_corpus`` (records of one paper merged, abstract-only records attached).

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

from ..paper import (
    MergeConflict,
    Merged,
    MergeNote,
    Paper,
    PaperIndex,
    SourceRef,
    attach_abstract,
    clean_whitespace,
    format_author_list,
    identity_keys,
    merge_papers,
    normalise_abstract,
    normalise_title,
    paper_id,
    same_paper,
    same_person,
)
from .authors import AuthorList, TitleSplit, parse_author_list, split_title_authors
from .layouts import (
    LAYOUT_ABSTRACT_ONLY,
    LAYOUT_ARXIV_JSONL,
    LAYOUT_AUTHOR_PROFILE,
    LAYOUT_BINARY,
    LAYOUT_CATEGORY_DATE,
    LAYOUT_EMPTY,
    LAYOUT_JSON,
    LAYOUT_RANKED,
    LAYOUT_TOO_LARGE,
    LAYOUT_TRENDING,
    LAYOUT_UNKNOWN,
    LAYOUT_UNREADABLE,
    detect_layout,
)
from .limits import DEFAULT_LIMITS, IngestLimits, implausible, implausible_abstract, implausible_title, text_profile
from .load import iter_corpus_files, load_corpus
from .meta import Meta, parse_meta_line
from .parse import parse_file, parse_text
from .records import CorpusReport, ParseIssue, ParseResult

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
