"""Citation checking: markers are verified against the sources, never trusted.

- a marker ``[n]`` pointing at no source is removed;
- an answer sentence without a marker that one source clearly supports gets that source attached;
- every citation carries the abstract sentence that best supports it (its evidence).

Support is lexical (content-word and number overlap): transparent, fast and good
enough to tell which of five abstracts a sentence came from.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .text import split_sentences

MARKER = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
_TOKEN = re.compile(r"\d+(?:\.\d+)?%?|[a-z][a-z0-9\-]+")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "by",
        "from",
        "as",
        "at",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "their",
        "they",
        "them",
        "we",
        "our",
        "us",
        "you",
        "your",
        "he",
        "she",
        "his",
        "her",
        "which",
        "who",
        "whom",
        "what",
        "when",
        "where",
        "why",
        "how",
        "than",
        "then",
        "there",
        "here",
        "also",
        "can",
        "could",
        "may",
        "might",
        "will",
        "would",
        "should",
        "such",
        "into",
        "over",
        "under",
        "between",
        "both",
        "each",
        "other",
        "more",
        "most",
        "less",
        "least",
        "very",
        "not",
        "no",
        "nor",
        "only",
        "same",
        "so",
        "too",
        "using",
        "use",
        "used",
        "based",
        "via",
        "about",
        "across",
        "after",
        "before",
        "while",
        "during",
        "does",
        "do",
        "did",
        "has",
        "have",
        "had",
        "new",
        "paper",
        "propose",
        "proposed",
        "approach",
        "method",
        "methods",
        "model",
        "models",
        "show",
        "shows",
        "results",
        "result",
        "achieve",
        "achieves",
        "achieved",
        "work",
        "present",
        "introduce",
        "introduces",
    ]
)
CLEAR_SUPPORT = 0.5  # share of a sentence's content words found in one abstract sentence
CLEAR_MARGIN = 0.15  # ... and this much more than in any other source


def content_words(text: str) -> set[str]:
    out = set()
    for tok in _TOKEN.findall(text.lower()):
        if tok in STOPWORDS or len(tok) < 2:
            continue
        out.add(tok[:-1] if tok.endswith("s") and len(tok) > 4 and not tok[0].isdigit() else tok)
    return out


@dataclass
class SourceText:
    """What a citation check needs to know about one numbered source."""

    n: int
    paper_id: str
    abstract: str
    title: str = ""
    _sentences: list[tuple[str, set[str]]] = field(default_factory=list, repr=False)

    def sentences(self) -> list[tuple[str, set[str]]]:
        if not self._sentences:
            sents = split_sentences(self.abstract) or [self.abstract]
            self._sentences = [(s, content_words(s)) for s in sents]
            if self.title:
                self._sentences.append((self.title, content_words(self.title)))
        return self._sentences

    def support(self, claim: str) -> tuple[float, str]:
        """(share of the claim's content words found in the best sentence, that sentence)."""
        words = content_words(claim)
        if not words:
            return 0.0, ""
        best, best_sent = 0.0, ""
        all_words: set[str] = set()
        for sent, sw in self.sentences():
            all_words |= sw
            score = len(words & sw) / len(words)
            if score > best:
                best, best_sent = score, sent
        # a claim may paraphrase two sentences of one abstract: count the whole abstract, lightly
        whole = len(words & all_words) / len(words)
        score = max(best, 0.8 * whole)
        if best_sent == self.title and self.title:
            best_sent = next((s for s, _ in self.sentences()), best_sent)
        return score, best_sent


@dataclass
class CheckedCitation:
    n: int
    paper_id: str
    evidence: str
    support: float
    attached: bool = False  # added post hoc, not written by the model


@dataclass
class CheckResult:
    text: str
    citations: list[CheckedCitation]
    removed_markers: list[int]
    attached: int

    @property
    def repaired(self) -> bool:
        return bool(self.removed_markers or self.attached)


def _is_item(line: str) -> bool:
    """A markdown list item ("- …", "* …", "1. …")."""
    return line.startswith(("-", "*")) or re.match(r"^\d+\.", line) is not None


def units(text: str) -> list[str]:
    """Answer units to check, whitespace kept (they join back into the text): table rows, list items and quoted
    lines ("> …") per line, prose per sentence."""
    units: list[str] = []
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith(("|", ">")) or _is_item(stripped):
            units.append(line)
        else:
            units.extend(_sentence_spans(line))
    return units


_SENT_END = re.compile(r"[.!?](?:\s*\[\d[\d,; ]*\])*(?:\s+|$)")


def _sentence_spans(line: str) -> list[str]:
    """Split a prose line into sentences, each keeping its trailing markers ("… [1]." or "…. [1]") and spaces."""
    spans, start = [], 0
    for m in _SENT_END.finditer(line):
        spans.append(line[start : m.end()])
        start = m.end()
    if start < len(line):
        spans.append(line[start:])
    return spans


def check_citations(answer: str, sources: list[SourceText]) -> CheckResult:
    by_n = {s.n: s for s in sources}
    removed: list[int] = []
    cited: dict[int, CheckedCitation] = {}
    attached = 0
    out_units: list[str] = []
    answer = re.sub(r"\s*\[(?:n|N|\d+-\d+|source|citation)\]", "", answer)  # placeholders the model copied
    for unit in units(answer):
        numbers: list[int] = []

        def keep_valid(m: re.Match, numbers: list[int] = numbers) -> str:
            valid = []
            for raw in re.split(r"[,;]", m.group(1)):
                n = int(raw.strip())
                if n in by_n:
                    valid.append(n)
                else:
                    removed.append(n)
            numbers.extend(valid)
            return "".join(f"[{n}]" for n in dict.fromkeys(valid))

        fixed = MARKER.sub(keep_valid, unit)
        claim = MARKER.sub("", fixed)
        written = list(numbers)
        if not numbers and len(content_words(claim)) >= 3:
            scored = sorted(((s.support(claim)[0], s.n) for s in sources), reverse=True)
            if (
                scored
                and scored[0][0] >= CLEAR_SUPPORT
                and (len(scored) == 1 or scored[0][0] - scored[1][0] >= CLEAR_MARGIN)
            ):
                n = scored[0][1]
                numbers.append(n)
                attached += 1
                fixed = _append_marker(fixed, n)
                if n not in cited:
                    score, evidence = by_n[n].support(claim)
                    cited[n] = CheckedCitation(n, by_n[n].paper_id, evidence, score, attached=True)
        for n in written:
            score, evidence = by_n[n].support(claim) if claim.strip() else (0.0, "")
            prev = cited.get(n)
            if prev is None or (score > prev.support and not prev.attached):
                cited[n] = CheckedCitation(n, by_n[n].paper_id, evidence or _first_sentence(by_n[n]), score)
            elif prev.attached:
                prev.attached = False  # the model cited it too
        out_units.append(fixed)
    text = "".join(out_units)
    text = re.sub(r"[ \t]+([.!?,;:])(?=\s|$)", r"\1", text)  # space left where a bad marker was removed
    text = re.sub(r"(?<=\S)[ \t]{2,}", " ", text)
    text = re.sub(r"[ \t]+\n", "\n", text).strip()
    order = [int(m) for m in re.findall(r"\[(\d+)\]", text)]
    citations = [cited[n] for n in dict.fromkeys(order) if n in cited]
    return CheckResult(text=text, citations=citations, removed_markers=removed, attached=attached)


def drop_uncited(text: str) -> tuple[str, list[str]]:
    """Remove prose sentences and list items that carry no [n] after `check_citations` (nothing supports them).

    Rule 2 of the system prompt made checkable: what no source supports is not shown, so neither is text a
    planted instruction made the model write. Table rows, headings and lead-ins ("In short:") are kept."""
    dropped: list[str] = []
    lines = []
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped or stripped.startswith(("|", "#")) or stripped.endswith(":"):
            lines.append(line)
            continue
        kept = []
        for span in [line] if _is_item(stripped) else _sentence_spans(line):
            if MARKER.search(span) or not content_words(MARKER.sub("", span)):
                kept.append(span)
            else:
                dropped.append(span.strip())
        if kept:
            lines.append("".join(kept).rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip(), dropped


def _first_sentence(source: SourceText) -> str:
    sents = source.sentences()
    return sents[0][0] if sents else ""


def _append_marker(unit: str, n: int) -> str:
    """Put [n] before the unit's final punctuation (or at the end of a table row)."""
    stripped = unit.rstrip()
    tail = unit[len(stripped) :]
    if stripped.endswith("|"):
        return stripped[:-1].rstrip() + f" [{n}] |" + tail
    m = re.search(r"([.!?])$", stripped)
    if m:
        return stripped[:-1] + f" [{n}]" + m.group(1) + tail
    return stripped + f" [{n}]" + tail


def cited_grammar(n_sources: int, max_sentences: int = 6) -> str:
    """A GBNF grammar for replies in which every sentence ends with a valid source marker ("… 39.9% AP [1].").

    Used for constrained decoding on the embedded llama.cpp server: a sentence ends with its marker next to the
    period, on either side ("… [1]." or "…. [1]"), a period elsewhere only sits inside a number (39.9), and a marker
    can only name a source that exists. Both sides are allowed because a small model that has written the period
    and is refused the marker after it runs on in digits ("Paris.000,000,…" until the token limit)."""
    sources = " | ".join(f'"{n}"' for n in range(1, max(1, n_sources) + 1))
    return "\n".join(
        [
            f'root ::= sentence (" " sentence){{0,{max(0, max_sentences - 1)}}}',
            'sentence ::= [A-Z0-9] char* (cite "." | "." cite)',
            'char ::= [^\\[\\]\\n.] | "." [0-9]',
            'cite ::= " [" src "]" ("[" src "]")?',
            f"src ::= {sources}",
        ]
    )


CITED_SENTENCE = re.compile(r"[A-Z0-9](?:[^\[\]\n.]|\.[0-9])*(?: \[\d+\](?:\[\d+\])?\.|\. \[\d+\](?:\[\d+\])?)")


def cited_clauses(unit: str) -> list[tuple[str, list[int]]]:
    """The claims of one answer unit with the sources each cites.

    A sentence with its markers at the end is one claim citing them all; a sentence that cites different sources
    in different places ("Gold-YOLO fuses features globally [1], while DAMO-YOLO searches its backbone [2].") is one
    claim per clause, each checked against its own markers. Words after the last marker join the last clause."""
    clauses: list[tuple[str, list[int]]] = []
    pos = 0
    for m in MARKER.finditer(unit):
        claim = unit[pos : m.start()]
        numbers = [int(n) for n in re.split(r"\s*[,;]\s*", m.group(1))]
        if content_words(claim) or not clauses:
            clauses.append((claim, numbers))
        else:  # "[1][2]": adjacent markers cite for the same clause
            clauses[-1][1].extend(numbers)
        pos = m.end()
    tail = unit[pos:]
    if clauses and content_words(tail):
        claim, numbers = clauses[-1]
        clauses[-1] = (claim + tail, numbers)
    return [(c.strip(" ,;|"), list(dict.fromkeys(n))) for c, n in clauses]


# -- facts a claim states: its numbers, its names, its negation -------------------------------------------------
# Word overlap lets "It reduces FLOPs by 99.9% on ImageNet [1]" pass against "reduces FLOPs by 40%-60% on
# Cityscapes": most words match. The facts that make a claim true or false are checked by themselves: every
# number and every name it states must occur in the evidence it cites, and a negation the evidence does not carry
# ("does not use self-attention at all") makes it unsupported.
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_NEGATION = re.compile(r"\b(?:not|no|never|none|neither|nor|cannot|without|lacks?|fails?\s+to)\b|n't\b", re.I)
_SMALL = {"1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven", "8": "eight",
          "9": "nine", "10": "ten"}  # fmt: skip


def _numbers(text: str) -> set[str]:
    """The numbers a text states, as written digits (1,000 and 1000 alike; 40.0 and 40 alike)."""
    out = set()
    for raw in _NUMBER.findall(text):
        value = raw.replace(",", "")
        if "." in value:
            value = value.rstrip("0").rstrip(".")
        out.add(value)
    return out


def unsupported_fact(claim: str, evidence: str, names: Callable[[str], list[str]] | None = None) -> str:
    """Why a claim states something its evidence does not ("" when every fact holds): a number the evidence does
    not state (a small one may be spelled out: 2 = two), a name (dataset, benchmark, method) it does not name, or a
    negation where the evidence's best sentence has none. ``evidence`` is the cited sources' text (title
    included); ``names`` finds the names in a text (the corpus's `NameIndex.names_in`)."""
    from .text import plain_math

    plain = plain_math(evidence)
    claim = MARKER.sub("", claim)
    said = _numbers(plain)
    words = set(re.findall(r"[a-z]+", plain.casefold()))
    for number in _numbers(plain_math(claim)):
        if number not in said and _SMALL.get(number) not in words:
            return f"the number {number} is not in the cited evidence"
    if names is not None:
        from .coverage import term_pattern  # the one rule for "a text names X" (spacing and hyphens as written)

        for name in names(claim):
            if not term_pattern(name, case_sensitive=False).search(plain):
                return f"{name} is not named in the cited evidence"
    if _NEGATION.search(claim):
        source = SourceText(0, "", evidence)
        # each clause that negates, against the evidence sentence that best supports that clause (a title such as
        # "… without Re-Tuning" supports its own "without")
        for clause in re.split(r"\s+[—–]\s+|[;,:]\s+|\s+(?:while|whereas|but)\s+", claim):
            if _NEGATION.search(clause) and not _NEGATION.search(source.support(clause)[1] or ""):
                return "the cited evidence states no such negation"
    return ""
