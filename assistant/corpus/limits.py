"""Ingest limits and plausibility: does a record look like a paper?"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, NamedTuple


class IngestLimits(NamedTuple):
    """Limits checked before a file is parsed (size, records) and before a record is kept (abstract length).

    Defaults are those of ``assistant.config.IngestSettings``; ``from_settings`` reads the configured ones."""

    max_file_bytes: int = 64_000_000
    max_records: int = 50_000
    max_abstract_chars: int = 5_000
    pipe_timeout_s: float = 10.0  # a pipe (FIFO, ``<(...)``) that sends nothing for this long is refused

    @classmethod
    def from_settings(cls, ingest: Any) -> IngestLimits:
        return cls(
            int(ingest.max_file_mb * 1_000_000),
            ingest.max_records_per_file,
            ingest.max_abstract_chars,
            ingest.pipe_timeout_s,
        )


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
