"""``load_corpus``: files or folders -> unique papers (records of one paper merged by the rule in
``assistant.paper``), abstract-only records attached, everything that went wrong reported.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..paper import MergeNote, Paper, PaperIndex, SourceRef, _snippet, attach_abstract, merge_papers
from .layouts import SUPPORTED_SUFFIXES
from .limits import DEFAULT_LIMITS, IngestLimits
from .parse import parse_file
from .records import CorpusReport, ParseIssue


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
                        code="unmatched_orphan",
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
