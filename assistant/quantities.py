"""Quantities a question asks for ("how many GPU hours", "how long", "what AP") and whether a text states them.

The judge refuses a question whose asked quantity no sentence of its subject paper reports; evidence selection
prefers sentences that report it; the answer step adds the reporting sentence when the reply leaves it out.
"""

from __future__ import annotations

import re

from .text import plain_math, split_sentences

NUMERIC_QUESTION = re.compile(
    r"\b(?:how (?:much|many|fast|large|big|long|well|often)|what (?:\w+ ){0,2}(?:accuracy|speed|score|rate|ap|map"
    r"|miou|fps|latency|speedup|speed-up|error|perplexity|recall|precision|f1|size|number)|by how|\d)",
    re.I,
)
_MARKER = re.compile(r"\[\d{1,3}(?:\s*[,;]\s*\d{1,3})*\]")
_HOW = re.compile(r"\bhow\s+(many|much|long)\b\s*([^?.,;:]*)", re.I)
_STOP_PHRASE = re.compile(
    r"\b(?:does|do|did|is|are|was|were|can|could|will|would|has|have|had|and|or|in|on|for|of|to|with|compared|than"
    r"|it|they|this|that|the|a|an)\b",
    re.I,
)
_NOT_HEADS = {"more", "less", "fewer", "additional", "extra", "further", "total", "overall", "times", "faster"}
_TIME_UNITS = re.compile(
    r"\b\d[\d.,]*\s*(?:gpu[- ])?(?:hours?|hrs?|h|days?|minutes?|mins?|seconds?|s|ms|weeks?|months?)\b"
    r"|\b\d[\d.,]*\s*(?:gpu[- ])?(?:hours?|days?)\b",
    re.I,
)
# "how much computation" is answered by FLOPs and cost figures, not by the word itself.
_SYNONYMS = {
    "computation": ("comput", "flop", "mac", "cost", "calculation"),
    "compute": ("comput", "flop", "mac", "cost", "calculation"),
    "time": ("time", "hour", "day", "second", "minute", "latency", "speed"),
    "parameter": ("parameter", "param"),
    "param": ("parameter", "param"),
}
# a number in digits, or a count spelled out ("six re-ID datasets", "three benchmarks")
_NUMBER = re.compile(r"\d|\b(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozens?|hundreds?)\b", re.I)


def quantity_heads(question: str) -> list[tuple[str, str]]:
    """(how-word, head noun) pairs: ("many", "hours") for "how many GPU hours", ("long", "") for "how long"."""
    out = []
    for m in _HOW.finditer(question):
        how, rest = m.group(1).lower(), m.group(2)
        if how == "long":
            out.append(("long", ""))
            continue
        phrase = _STOP_PHRASE.split(rest, maxsplit=1)[0]
        words = [w for w in re.findall(r"[A-Za-z][\w-]*", phrase) if w.lower() not in _NOT_HEADS]
        words = [w for w in words if not re.search(r"(?:ed|ing|ly)$", w.lower())]  # adjectives, participles
        if words:
            out.append((how, words[-1].lower()))
    return out


def _stem(word: str) -> str:
    word = word.lower()
    for suffix in ("ies", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def paper_reports_quantity(sentences: list[str], how: str, head: str) -> bool:
    """Whether an abstract can answer "how many <head>" / "how long": a sentence gives the quantity, or the abstract
    uses the asked word (or, for "how long", a time unit or "time") at all and gives numbers somewhere."""
    if any(reports_quantity(s, how, head) for s in sentences):
        return True
    text = plain_math(" ".join(sentences)).lower()
    if not _NUMBER.search(text):
        return False
    if how == "long":
        return re.search(r"\b(?:hours?|days?|minutes?|seconds?|weeks?|epochs?|time)\b", text) is not None
    stems = _SYNONYMS.get(_stem(head), (_stem(head)[:6],))
    return any(st in text for st in stems)


def reports_quantity(sentence: str, how: str, head: str) -> bool:
    """Whether a sentence gives the quantity asked for: a time with its unit for "how long", else a number
    beside the asked word ("hours", "parameters", or for "computation" a FLOPs or cost figure)."""
    text = plain_math(sentence).lower()
    if how == "long":
        return _TIME_UNITS.search(text) is not None
    stems = _SYNONYMS.get(_stem(head), (_stem(head)[:6],))
    return _NUMBER.search(text) is not None and any(st in text for st in stems)


def asked_quantities(question: str) -> list[tuple[str, str]]:
    """The quantities a question asks for, as (how-word, head noun): [("many", "hours")] for "how many GPU
    hours"; ("what", "") for a question that asks for a figure without naming its unit ("what AP …")."""
    heads = quantity_heads(question)
    if (not heads and NUMERIC_QUESTION.search(question)) or _WHAT_FIGURE.search(question):
        heads.append(("what", ""))
    return heads


_WHAT_FIGURE = re.compile(
    r"\bwhat (?:\w+ ){0,3}(?:accuracy|score|ap|map|miou|fps|latency|speedup|speed-up|error|perplexity|recall"
    r"|precision|f1|rate|gain|improvement|reduction)\b",
    re.I,
)
_STANDALONE_NUMBER = re.compile(r"(?<![\w.\-])\d+(?:[.,]\d+)*")


def new_numbers(text: str, question: str) -> set[str]:
    """Numbers a text states that the question does not (D4RL's 4 or ResNet-101's 101 are not numbers here)."""
    asked = set(_STANDALONE_NUMBER.findall(plain_math(question)))
    return set(_STANDALONE_NUMBER.findall(plain_math(_MARKER.sub("", text)))) - asked


def answers_quantity(text: str, question: str, how: str, head: str) -> bool:
    """Whether an answer states the asked quantity (a number the question does not give, beside the asked word)."""
    if not new_numbers(text, question):
        return False
    if how == "what" or not head:
        return how != "long" or _TIME_UNITS.search(plain_math(text).lower()) is not None
    return any(reports_quantity(s, how, head) and new_numbers(s, question) for s in split_sentences(text))
