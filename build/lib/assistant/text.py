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


# -- inline LaTeX of abstracts -------------------------------------------------------------------------------------
INLINE_MATH = re.compile(r"\$(?!\s)([^$\n]{0,58}[^$\s\\])\$")  # no space inside the dollars: "$5 and $6" is money
_SYMBOLS = {
    "sim": "∼",
    "times": "×",
    "approx": "≈",
    "le": "≤",
    "leq": "≤",
    "ge": "≥",
    "geq": "≥",
    "pm": "±",
    "cdot": "·",
    "to": "→",
    "rightarrow": "→",
    "leftarrow": "←",
    "infty": "∞",
    "ell": "ℓ",
    "%": "%",
    "_": "_",
    "&amp;": "&amp;",
}
MATH_COMMAND = re.compile(r"\\([A-Za-z]+|%|_|&amp;)")
_GREEK = dict(
    zip(
        [
            "alpha",
            "beta",
            "gamma",
            "delta",
            "epsilon",
            "zeta",
            "eta",
            "theta",
            "iota",
            "kappa",
            "lambda",
            "mu",
            "nu",
            "xi",
            "pi",
            "rho",
            "sigma",
            "tau",
            "upsilon",
            "phi",
            "chi",
            "psi",
            "omega",
            "Gamma",
            "Delta",
            "Theta",
            "Lambda",
            "Xi",
            "Pi",
            "Sigma",
            "Phi",
            "Psi",
            "Omega",
        ],
        "αβγδεζηθικλμνξπρστυφχψωΓΔΘΛΞΠΣΦΨΩ",
        strict=True,
    )
)
_FONT = re.compile(r"\\(?:emph|textbf|textit|texttt|mathrm|mathbf|text)\{([^{}]*)\}")


def math_symbol(m: re.Match) -> str:
    """The Unicode character of a LaTeX command match (\\times -> ×, \\alpha -> α); unknown ones lose the slash."""
    name = m.group(1)
    return _SYMBOLS.get(name) or _GREEK.get(name) or name


def plain_math(text: str) -> str:
    """An abstract sentence with its common inline LaTeX as plain Unicode ($1.68\\times$ -> 1.68×, 40\\% -> 40%,
    \\emph{Kangaroo} -> Kangaroo): what a model reads and copies best."""

    def math(m: re.Match) -> str:
        inner = MATH_COMMAND.sub(math_symbol, m.group(1))
        inner = re.sub(r"\^\{([^{}]*)\}|\^(\w)", lambda g: "^" + (g.group(1) or g.group(2)), inner)
        inner = re.sub(r"_\{([^{}]*)\}|_(\w)", lambda g: "_" + (g.group(1) or g.group(2)), inner)
        return inner.replace("{", "").replace("}", "").replace("\\", "")

    text = _FONT.sub(r"\1", text)
    text = INLINE_MATH.sub(math, text)
    return re.sub(r"\\(%|_|&)", r"\1", text)
