"""Small text helpers shared by chunking, citation checking and prompt building."""

from __future__ import annotations

import re

# Abbreviations after which a period does not end a sentence.
_ABBREV = {
    "e.g",
    "i.e",
    "et al",
    "etc",
    "vs",
    "fig",
    "figs",
    "eq",
    "eqs",
    "ref",
    "refs",
    "sec",
    "no",
    "approx",
    "cf",
    "resp",
    "dr",
    "mr",
    "ms",
    "prof",
    "st",
    "inc",
    "ltd",
    "al",
    "viz",
}
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9$\\])")
_WORD = re.compile(r"[A-Za-z0-9]+(?:[-'][A-Za-z0-9]+)*")


def split_sentences(text: str) -> list[str]:
    """Split an abstract into sentences, keeping abbreviations, decimals and initials intact."""
    text = " ".join(text.split())
    if not text:
        return []
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.start()
        candidate = text[start:end].rstrip()
        tail = candidate.rstrip(".!?\"')]").rsplit(" ", 1)[-1].lower()
        # "e.g." / "et al." / single initials ("S. Du") do not end sentences.
        if tail in _ABBREV or tail.endswith(("e.g", "i.e")) or (len(tail) == 1 and tail.isalpha()):
            continue
        sentences.append(candidate)
        start = match.end()
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def words(text: str) -> list[str]:
    """Lower-cased word tokens (hyphenated words kept whole)."""
    return [w.lower() for w in _WORD.findall(text)]


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def author_list(authors: list[str], truncated: bool = False, n: int = 3) -> str:
    """The first n authors, "et al." when there are more (or the record's list was cut); "" for none."""
    return ", ".join(authors[:n]) + (" et al." if authors and (truncated or len(authors) > n) else "")
