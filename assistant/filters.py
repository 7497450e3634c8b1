"""Search filters on every record field a researcher asks by, and how a question states them.

`Filters` holds the constraints (years, a date range, category, authors and first author, affiliation, has-code),
matches papers against them, turns them into a Chroma `where` clause, says which papers lack a filtered field and,
when nothing matches, which values come closest. `filters_from_question()` reads them from a question; the planner
(`plan.py`) is its only caller in the pipeline, the CLI and the UI build `Filters` from their controls.
"""

from __future__ import annotations

import calendar
import datetime as dt
import difflib
import re
from collections import Counter

from pydantic import BaseModel, Field

from .paper import Paper

MAX_NAME_CHARS = 200  # longest author or affiliation a filter may name (the seeds' longest author name: 19 characters)

# arXiv category codes and the names users ask by ("computer vision", "computation and language"). The code is the
# part after the archive ("cs.CV" -> "CV"); stored categories are compared on that part.
CATEGORY_NAMES: dict[str, tuple[str, ...]] = {
    "CV": ("computer vision", "computer vision and pattern recognition", "vision"),
    "CL": ("computation and language", "natural language processing", "nlp", "computational linguistics"),
    "LG": ("machine learning",),
    "AI": ("artificial intelligence",),
    "CR": ("cryptography and security", "security", "cryptography"),
    "RO": ("robotics",),
    "IR": ("information retrieval",),
    "NE": ("neural and evolutionary computing",),
    "MA": ("multiagent systems", "multi-agent systems"),
    "HC": ("human-computer interaction",),
    "SD": ("sound",),
    "AS": ("audio and speech processing",),
    "IV": ("image and video processing",),
    "DC": ("distributed, parallel, and cluster computing", "distributed computing"),
    "DB": ("databases",),
    "SE": ("software engineering",),
    "GR": ("graphics",),
    "MM": ("multimedia",),
    "PL": ("programming languages",),
    "DS": ("data structures and algorithms",),
    "CY": ("computers and society",),
    "IT": ("information theory",),
    "SI": ("social and information networks",),
    "ML": ("statistical machine learning", "machine learning (statistics)"),
}

# Affiliations: the ranked-list layout stores short codes ("tsinghua"); users ask by name ("Tsinghua University").
# A filter holds the code; a paper matches when one of its affiliations is the code or contains one of the names.
# Add a row here to teach the assistant a new institution (tests/test_filters.py checks the table's shape).
AFFILIATIONS: dict[str, tuple[str, ...]] = {
    "tsinghua": ("Tsinghua University", "Tsinghua"),
    "pku": ("Peking University", "PKU"),
    "gatech": ("Georgia Institute of Technology", "Georgia Tech"),
    "tencent-ai": ("Tencent AI Lab", "Tencent AI", "Tencent"),
    "mit": ("Massachusetts Institute of Technology", "MIT"),
    "stanford": ("Stanford University", "Stanford"),
    "berkeley": ("University of California, Berkeley", "UC Berkeley", "Berkeley"),
    "cmu": ("Carnegie Mellon University", "Carnegie Mellon", "CMU"),
    "google": ("Google Research", "Google DeepMind", "Google"),
    "deepmind": ("DeepMind",),
    "microsoft": ("Microsoft Research", "Microsoft", "MSR"),
    "meta": ("Meta AI", "FAIR", "Facebook AI Research", "Meta"),
    "nvidia": ("NVIDIA",),
    "openai": ("OpenAI",),
    "alibaba": ("Alibaba Group", "Alibaba", "DAMO Academy"),
    "baidu": ("Baidu",),
    "bytedance": ("ByteDance",),
    "huawei": ("Huawei Noah's Ark Lab", "Huawei"),
    "sjtu": ("Shanghai Jiao Tong University", "SJTU"),
    "zju": ("Zhejiang University", "ZJU"),
    "ustc": ("University of Science and Technology of China", "USTC"),
    "fudan": ("Fudan University", "Fudan"),
    "nus": ("National University of Singapore", "NUS"),
    "ntu": ("Nanyang Technological University", "NTU"),
    "oxford": ("University of Oxford", "Oxford"),
    "cambridge": ("University of Cambridge", "Cambridge"),
    "eth": ("ETH Zurich", "ETH Zürich", "ETH"),
    "epfl": ("EPFL",),
    "toronto": ("University of Toronto",),
    "mila": ("Mila",),
}


def category_code(text: str) -> str | None:
    """The category code for "cs.CV", "CV", "computer vision" or "machine learning (LG)"; None if unknown."""
    t = text.strip()
    if m := re.search(r"\(\s*(?:[a-z-]+\.)?([A-Za-z]{2})\s*\)", t):  # "machine learning (LG)"
        t = m.group(1)
    if m := re.fullmatch(r"(?:[a-z-]+\.)?([A-Za-z]{2})", t):
        code = m.group(1).upper()
        return code if code in CATEGORY_NAMES or m.group(1).isupper() else None
    low = t.casefold()
    return next((code for code, names in CATEGORY_NAMES.items() if low in names), None)


def affiliation_code(text: str) -> str | None:
    """The alias table's code for an institution name or code ("Peking University", "pku"), else None."""
    low = text.strip().casefold()
    for code, names in AFFILIATIONS.items():
        if low == code or any(low == n.casefold() for n in names):
            return code
    return None


def _affiliation_matches(wanted: str, affiliation: str) -> bool:
    code = affiliation_code(wanted) or wanted.casefold()
    have = affiliation.casefold()
    if have == code:
        return True
    names = AFFILIATIONS.get(code, (code,))
    return any(re.search(rf"(?<!\w){re.escape(n.casefold())}(?!\w)", have) for n in names)


def _month_name(date: str) -> str:
    y, m = int(date[:4]), int(date[5:7])
    return f"{calendar.month_name[m]} {y}"


def _full_date(paper: Paper) -> str | None:
    """The paper's 'YYYY-MM-DD' date, or None when it has none (or no year)."""
    d = paper.date
    return d if d and len(d) == 10 and d[:4].isdigit() else None


class Filters(BaseModel):
    year_from: int | None = Field(None, description="Earliest year, inclusive.")
    year_to: int | None = Field(None, description="Latest year, inclusive.")
    date_from: str | None = Field(None, description="Earliest date 'YYYY-MM-DD', inclusive (papers need a full date).")
    date_to: str | None = Field(None, description="Latest date 'YYYY-MM-DD', inclusive (papers need a full date).")
    category: str | None = Field(None, description="Category code such as CV (matches cs.CV too).")
    authors: list[str] = Field(default_factory=list, description="Author name substrings; all must be co-authors.")
    first_author: str | None = Field(None, description="Substring of the first author's name.")
    affiliation: str | None = Field(None, description="Affiliation code from the alias table, or a name substring.")
    has_code: bool | None = Field(None, description="True: only papers that link their code.")

    @classmethod
    def from_options(
        cls,
        year_from: int | None = None,
        year_to: int | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        category: str | None = None,
        authors: list[str] | None = None,
        first_author: str | None = None,
        affiliation: str | None = None,
        has_code: bool | None = None,
    ) -> Filters:
        """Filters from the CLI's options or the UI's controls, as a user types them: dates as 2024-03-15,
        2024-03 or "March 2024"; a category by code or name; an affiliation by code or name. ValueError with a
        readable message for a value that cannot be read, or an impossible combination."""
        code = None
        if category and category.strip():
            code = category_code(category)
            if code is None:
                known = ", ".join(f"{c} ({n[0]})" for c, n in list(CATEGORY_NAMES.items())[:6])
                raise ValueError(f"unknown category {_shown(category)}; use a code or name such as {known}")
        affiliation = (affiliation or "").strip() or None
        f = cls(
            year_from=year_from,
            year_to=year_to,
            date_from=_date_bound(date_from, end=False),
            date_to=_date_bound(date_to, end=True),
            category=code,
            authors=[a.strip() for a in authors or [] if a.strip()],
            first_author=(first_author or "").strip() or None,
            affiliation=affiliation and (affiliation_code(affiliation) or affiliation),
            has_code=has_code or None,
        )
        f.validate()
        return f

    def is_empty(self) -> bool:
        return not (
            self.year_from
            or self.year_to
            or self.date_from
            or self.date_to
            or self.category
            or self.authors
            or self.first_author
            or self.affiliation
            or self.has_code
        )

    def merged(self, other: Filters | None) -> Filters:
        """These filters with every field ``other`` sets replaced by its value (the controls win over the text)."""
        if other is None:
            return self
        return Filters(**{**self.model_dump(), **other.model_dump(exclude_defaults=True)})

    def validate(self) -> None:
        """Raise ValueError with a readable message for impossible combinations."""
        if self.year_from and self.year_to and self.year_from > self.year_to:
            raise ValueError(f"year range {self.year_from}–{self.year_to} is empty: the start is after the end")
        for y in (self.year_from, self.year_to):
            if y is not None and not 1900 <= y <= 2100:
                raise ValueError(f"year {y} is out of range (1900–2100)")
        for d in (self.date_from, self.date_to):
            if d is not None and not re.fullmatch(r"(19|20)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])", d):
                raise ValueError(f"date {d!r} is not a date YYYY-MM-DD")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"date range {self.date_from}–{self.date_to} is empty: the start is after the end")
        if (self.date_from or self.date_to) and (self.year_from or self.year_to):
            low, high = self.year_from or 1900, self.year_to or 2100
            first, last = int((self.date_from or "1900")[:4]), int((self.date_to or "2100")[:4])
            if last < low or first > high:
                raise ValueError(f"the dates ({self._date_text()}) lie outside the years {low}–{high}")
        named = [*self.authors, *([self.first_author] if self.first_author is not None else [])]
        if any(not a.strip() for a in named):
            raise ValueError("author filter is empty")
        if self.affiliation is not None and not self.affiliation.strip():
            raise ValueError("affiliation filter is empty")
        # no name is that long; a pasted blob would otherwise be echoed whole in every message that names the filter
        for what, value in [*(("author", a) for a in named), ("affiliation", self.affiliation or "")]:
            if len(value) > MAX_NAME_CHARS:
                raise ValueError(f"the {what} filter is {len(value):,} characters long; the limit is {MAX_NAME_CHARS}")

    # -- description ------------------------------------------------------------------------------------------
    def _date_text(self) -> str:
        a, b = self.date_from, self.date_to
        if a and b and a[:7] == b[:7] and a.endswith("-01") and b[8:] == f"{_last_day(b):02d}":
            return _month_name(a)
        return f"dated {a or '…'} to {b or '…'}" if a and b else f"dated from {a}" if a else f"dated until {b}"

    def describe(self) -> str:
        parts = []
        if self.year_from or self.year_to:
            if self.year_from == self.year_to:
                parts.append(f"year {self.year_from}")
            else:
                parts.append(f"years {self.year_from or '…'}–{self.year_to or '…'}")
        if self.date_from or self.date_to:
            parts.append(self._date_text())
        if self.category:
            parts.append(f"category {self.category}")
        if self.authors:
            parts.append("author ~ " + " & ".join(self.authors))
        if self.first_author:
            parts.append(f"first author ~ {self.first_author}")
        if self.affiliation:
            names = AFFILIATIONS.get(self.affiliation)
            parts.append(f"affiliation {names[0] if names else self.affiliation}")
        if self.has_code:
            parts.append("with code")
        return ", ".join(parts) or "none"

    # -- matching ---------------------------------------------------------------------------------------------
    def _category_ok(self, category: str | None) -> bool:
        if not self.category:
            return True
        want = self.category.casefold()
        have = (category or "").casefold()
        return have == want or have.split(".")[-1] == want.split(".")[-1]

    def matches_author(self, paper: Paper) -> bool:
        names = [a.casefold() for a in paper.authors]
        if not all(any(want.casefold() in a for a in names) for want in self.authors):
            return False
        return not self.first_author or bool(names) and self.first_author.casefold() in names[0]

    def matches(self, paper: Paper) -> bool:
        return all(ok for _, ok in self._clauses(paper))

    def _clauses(self, paper: Paper) -> list[tuple[str, bool]]:
        """(field, matched) for every field this filter constrains."""
        out: list[tuple[str, bool]] = []
        if self.year_from or self.year_to:
            out.append(("year", _within(paper.year, self.year_from, self.year_to)))
        if self.date_from or self.date_to:
            out.append(("date", _within(_full_date(paper), self.date_from, self.date_to)))
        if self.category:
            out.append(("category", any(self._category_ok(c) for c in (paper.categories or [paper.category]))))
        if self.authors or self.first_author:
            out.append(("author", self.matches_author(paper)))
        if self.affiliation:
            out.append(("affiliation", any(_affiliation_matches(self.affiliation, a) for a in paper.affiliations)))
        if self.has_code:
            out.append(("code", paper.has_code))
        return out

    def chroma_where(self, papers: list[Paper]) -> dict | None:
        """A Chroma `where` clause. Years are metadata clauses; the other fields (substrings, aliases, dates,
        secondary categories) are resolved to paper ids, so the store applies every filter in its query."""
        clauses: list[dict] = []
        if self.year_from:
            clauses.append({"year": {"$gte": self.year_from}})
        if self.year_to:
            clauses.append({"year": {"$lte": self.year_to}})
            if not self.year_from:
                clauses.append({"year": {"$gt": 0}})  # 0 = unknown year
        rest = self.model_copy(update={"year_from": None, "year_to": None})
        if not rest.is_empty():
            ids = sorted(p.id for p in papers if rest.matches(p))
            clauses.append({"paper_id": {"$in": ids or ["<none>"]}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    # -- what the user is told --------------------------------------------------------------------------------
    def lacking(self, papers: list[Paper]) -> dict[str, int]:
        """How many papers have no value at all for a filtered field (and so cannot match it)."""
        missing = {
            "year": lambda p: p.year is None,
            "date": lambda p: _full_date(p) is None,
            "category": lambda p: not p.category,
            "author": lambda p: not p.authors,
            "affiliation": lambda p: not p.affiliations,
        }
        fields = {name for name, _ in self._clauses(_BLANK)}
        counts = {f: sum(1 for p in papers if missing[f](p)) for f in missing if f in fields}
        return {f: n for f, n in counts.items() if n}

    def lacking_note(self, papers: list[Paper]) -> str:
        """One sentence on the papers a filter could not judge ("233 of 310 papers have no category …")."""
        parts = [f"{n} have no {f}" for f, n in self.lacking(papers).items()]
        if not parts:
            return ""
        return f"Of the {len(papers)} papers in the corpus, " + " and ".join(parts) + "; the filter leaves them out."

    def explain_empty(self, papers: list[Paper]) -> str:
        """Why no paper matches, with the closest values the corpus has ("no author 'Yuang Lu'; did you mean
        Yuang Liu?"), or "" when some paper matches."""
        if any(self.matches(p) for p in papers):
            return ""
        for clause in self._single_clauses():
            if not any(clause.matches(p) for p in papers):
                return f"No paper in the corpus matches {clause.describe()}{clause._closest(papers)}."
        alone = "; ".join(f"{c.describe()}: {sum(c.matches(p) for p in papers)}" for c in self._single_clauses())
        return f"No paper in the corpus matches all of {self.describe()} (papers matching each alone: {alone})."

    def _single_clauses(self) -> list[Filters]:
        fields = [
            ("year_from", "year_to"),
            ("date_from", "date_to"),
            ("category",),
            ("authors", "first_author"),
            ("affiliation",),
            ("has_code",),
        ]
        out = []
        for group in fields:
            one = Filters(**{f: getattr(self, f) for f in group})
            if not one.is_empty():
                out.append(one)
        return out

    def _closest(self, papers: list[Paper]) -> str:
        if self.authors or self.first_author:
            known = sorted({a for p in papers for a in p.authors})
            wanted = [*self.authors, *([self.first_author] if self.first_author else [])]
            near = [m for w in wanted for m in difflib.get_close_matches(w, known, n=2, cutoff=0.7)]
            return f"; did you mean {' or '.join(dict.fromkeys(near))}?" if near else ""
        if self.category:
            have = Counter(c.split(".")[-1] for p in papers for c in (p.categories or [p.category]) if c)
            return "; categories in the corpus: " + ", ".join(f"{c} ({n})" for c, n in have.most_common(8))
        if self.affiliation:
            have = Counter(a for p in papers for a in p.affiliations)
            return "; affiliations in the corpus: " + ", ".join(f"{a} ({n})" for a, n in have.most_common(8))
        if self.date_from or self.date_to:
            dates = sorted({d for p in papers if (d := _full_date(p))})
            target = self.date_from or self.date_to or ""
            near = sorted(dates, key=lambda d: abs(_days(d) - _days(target)))[:3]
            return f"; the nearest dates are {', '.join(sorted(near))}" if near else "; no paper has a full date"
        if self.year_from or self.year_to:
            years = Counter(p.year for p in papers if p.year)
            return "; years in the corpus: " + ", ".join(f"{y} ({n})" for y, n in sorted(years.items()))
        return ""


_BLANK = Paper(id="", title="", abstract="")  # a paper with no fields: ``_clauses`` of it names the filtered fields


def _date_bound(text: str | None, end: bool) -> str | None:
    """'YYYY-MM-DD' from 2024-03-15, 2024-03, 2024 or "March 2024" (the first or last day of the span)."""
    if text is None or not text.strip():
        return None
    t = text.strip()
    if re.fullmatch(r"\d{4}-\d\d-\d\d", t):
        try:
            dt.date.fromisoformat(t)
        except ValueError:  # 2023-02-30, 2023-13-01: the shape of a date, but no day of the calendar
            raise ValueError(f"date {_shown(text)} does not exist: {_month_days(t)}") from None
        return t
    if m := re.fullmatch(r"(\d{4})-(\d\d?)", t):
        y, mo = int(m.group(1)), int(m.group(2))
        if not 1 <= mo <= 12:
            raise ValueError(f"date {text!r} has no month {mo}")
        return f"{y}-{mo:02d}-{calendar.monthrange(y, mo)[1]:02d}" if end else f"{y}-{mo:02d}-01"
    if re.fullmatch(r"\d{4}", t):
        return f"{t}-12-31" if end else f"{t}-01-01"
    span = _span(t)
    if span is None:
        raise ValueError(f"date {_shown(text)} is not a date: use 2024-03-15, 2024-03, 2024 or 'March 2024'")
    return span[1] if end else span[0]


def _shown(text: str) -> str:
    """A value the user typed, quoted, at most 40 characters."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _month_days(date: str) -> str:
    y, mo = int(date[:4]), int(date[5:7])
    if not 1 <= mo <= 12:
        return f"there is no month {mo}"
    return f"{calendar.month_name[mo]} {y} has {calendar.monthrange(y, mo)[1]} days"


def _within(value, low, high) -> bool:
    return value is not None and (not low or value >= low) and (not high or value <= high)


def _days(date: str) -> int:
    return dt.date.fromisoformat(date).toordinal()


def _last_day(date: str) -> int:
    return calendar.monthrange(int(date[:4]), int(date[5:7]))[1]


# -- reading filters from a question ----------------------------------------------------------------------------
_YEAR = r"(19\d\d|20\d\d)"
_MONTHS = {m.casefold(): i for i, m in enumerate(calendar.month_name) if m} | {
    m.casefold(): i for i, m in enumerate(calendar.month_abbr) if m
}
_MONTH = r"(" + "|".join(sorted((m for m in _MONTHS), key=len, reverse=True)) + r")\.?"
_PART = r"(early|mid|late|the first half of|the second half of|the start of|the end of|q[1-4])[- ]?"
_PARTS = {
    "early": (1, 4),
    "mid": (6, 8),
    "late": (9, 12),
    "the first half of": (1, 6),
    "the second half of": (7, 12),
    "the start of": (1, 3),
    "the end of": (10, 12),
    "q1": (1, 3),
    "q2": (4, 6),
    "q3": (7, 9),
    "q4": (10, 12),
}
_POINT = rf"(?:{_MONTH}\s+{_YEAR}|{_PART}{_YEAR})"


def _span(text: str) -> tuple[str, str] | None:
    """('YYYY-MM-01', 'YYYY-MM-last') for "March 2024", "mid-2023", "Q1 2024"."""
    m = re.fullmatch(rf"{_MONTH}\s+{_YEAR}", text, re.I)
    if m:
        y, mo = int(m.group(2)), _MONTHS[m.group(1).casefold()]
        return f"{y}-{mo:02d}-01", f"{y}-{mo:02d}-{calendar.monthrange(y, mo)[1]:02d}"
    m = re.fullmatch(rf"{_PART}{_YEAR}", text, re.I)
    if m:
        y = int(m.group(2))
        a, b = _PARTS[m.group(1).casefold()]
        return f"{y}-{a:02d}-01", f"{y}-{b:02d}-{calendar.monthrange(y, b)[1]:02d}"
    return None


_DATE_PATTERNS: list[tuple[re.Pattern, str]] = [
    (re.compile(rf"\bbetween ({_POINT}) and ({_POINT})", re.I), "between"),
    (re.compile(rf"\bfrom ({_POINT}) (?:to|through|until) ({_POINT})", re.I), "between"),
    (re.compile(rf"\b(?:since|after|starting (?:in|from)) ({_POINT})", re.I), "since"),
    (re.compile(rf"\b(?:before|until|prior to|up to) ({_POINT})", re.I), "before"),
    (re.compile(rf"({_POINT})", re.I), "in"),
]
_YEAR_PATTERNS: list[tuple[re.Pattern, str]] = [
    (re.compile(rf"\bbetween {_YEAR} and {_YEAR}\b", re.I), "between"),
    (re.compile(rf"\bfrom {_YEAR} (?:to|through|until|-|–) {_YEAR}\b", re.I), "between"),
    (re.compile(rf"\b{_YEAR}\s*[-–]\s*{_YEAR}\b"), "between"),
    (re.compile(rf"\b(?:since|after|starting (?:in|from)) {_YEAR}\b", re.I), "since"),
    (re.compile(rf"\b(?:before|until|prior to) {_YEAR}\b", re.I), "before"),
    (
        re.compile(rf"\b(?:in|from|of|during|dated|posted in|published in|released in|appeared in) {_YEAR}\b", re.I),
        "in",
    ),
    (re.compile(rf"\b{_YEAR} (?:papers?|work|articles?)\b", re.I), "in"),
]
_CATEGORY_CODE = re.compile(r"\b(?:cs|stat|eess|math)\.([A-Z]{2})\b|\bcategory\s+([A-Z]{2})\b|\(([A-Z]{2})\)")
_CATEGORY_CUE = re.compile(r"\bcategor(?:y|ies|ized|ised)\b|\blisted (?:in|under)\b|\barxiv\b", re.I)
_HAS_CODE = re.compile(
    r"\b(?:with|have|has|having|release[sd]?|provide[sd]?|share[sd]?|link(?:s|ed)?(?: to)?)"
    r" (?:public |open[- ]source |their |its |the )?(?:source )?code\b"
    r"(?!\s*(?:generation|models?|completion|llms?|tasks?|synthesis|search|review|snippets?|data|benchmarks?))"
    r"|\bcode (?:is |was )?(?:available|released|public)\b",
    re.I,
)
_AUTHOR_CUE = r"(?:by|from|of|authors?|wrote|written by|co-?authored by|with)"
_FIRST_AUTHOR = (
    r"{n}\s+as\s+(?:the\s+|their\s+|its\s+)?first\s+author|first[- ]author(?:ed)?\s*(?:is|was|by|:)?\s*{n}"
    r"|{n}\s+(?:is|was)\s+(?:the\s+)?first\s+author|led\s+by\s+{n}"
)
_PERSON = r"[A-Z][a-z]+(?:[- ][A-Z][a-z]+){1,2}"
_UNKNOWN_AUTHOR = re.compile(rf"\b(?:(?:co-?)?authored|written|papers?|works?) by ({_PERSON})\b")


def filter_words(f: Filters) -> set[str]:
    """Casefolded words a question uses to state these filters (months, "mid-2023", "cs.CV", "Peking",
    author names): the planner does not take them for names of methods."""
    words: set[str] = set()
    if f.date_from or f.date_to or f.year_from or f.year_to:
        words |= set(_MONTHS) | {p.split()[-1] for p in _PARTS}
    if f.category:
        words |= {f.category.casefold(), *(f"{a}.{f.category}".casefold() for a in ("cs", "stat", "eess", "math"))}
        words |= {w for n in CATEGORY_NAMES.get(f.category, ()) for w in n.casefold().split()}
    if f.affiliation:
        words |= {f.affiliation} | {w for n in AFFILIATIONS.get(f.affiliation, ()) for w in n.casefold().split()}
    for name in [*f.authors, *([f.first_author] if f.first_author else [])]:
        words |= set(name.casefold().split())
    return words


def filters_from_question(question: str, papers: list[Paper]) -> Filters:
    """The constraints a question states: "papers from March 2024", "since mid-2023", "by Yuang Liu and Jing
    Liu", "with Yang Yue as first author", "in computer vision (cs.CV)", "Tsinghua-affiliated", "with code"."""
    f = Filters()
    _read_dates(question, f)
    _read_category(question, f)
    _read_authors(question, papers, f)
    _read_affiliation(question, f)
    if _HAS_CODE.search(question):
        f.has_code = True
    return f


def _read_dates(question: str, f: Filters) -> None:
    for pattern, kind in _DATE_PATTERNS:
        m = pattern.search(question)
        if not m:
            continue
        points = [s for g in m.groups() if g and (s := _span(g))]
        if not points:
            continue
        if kind == "between":
            f.date_from, f.date_to = points[0][0], points[-1][1]
        elif kind == "since":
            f.date_from = points[0][0] if not m.group(0).lower().startswith("after") else _next_day(points[0][1])
        elif kind == "before":
            strict = m.group(0).lower().startswith(("before", "prior"))
            f.date_to = _previous_day(points[0][0]) if strict else points[0][1]
        else:
            f.date_from, f.date_to = points[0]
        return
    for pattern, kind in _YEAR_PATTERNS:
        m = pattern.search(question)
        if not m:
            continue
        years = [int(g) for g in m.groups() if g]
        if kind == "between":
            f.year_from, f.year_to = min(years), max(years)
        elif kind == "since":
            f.year_from = years[0] + (1 if m.group(0).lower().startswith("after") else 0)
        elif kind == "before":
            f.year_to = years[0] - (0 if m.group(0).lower().startswith("until") else 1)
        else:
            f.year_from = f.year_to = years[0]
        return


def _next_day(date: str) -> str:
    return (dt.date.fromisoformat(date) + dt.timedelta(days=1)).isoformat()


def _previous_day(date: str) -> str:
    return (dt.date.fromisoformat(date) - dt.timedelta(days=1)).isoformat()


def _read_category(question: str, f: Filters) -> None:
    cue = _CATEGORY_CUE.search(question) is not None
    low = question.casefold()
    for m in _CATEGORY_CODE.finditer(question):
        code = next(g for g in m.groups() if g)
        named = any(low[: m.start()].rstrip().endswith(n) for n in CATEGORY_NAMES.get(code, ()))
        if m.group(1) or m.group(2) or (code in CATEGORY_NAMES and (cue or named)):
            f.category = code  # "cs.CV", "category CV", "(LG)" after its name or with a word about categories
            return
    if not cue:
        return  # "machine learning" in a question is a topic unless the question speaks of categories
    best = None
    for code, names in CATEGORY_NAMES.items():
        for name in names:
            if re.search(rf"\b{re.escape(name)}\b", low) and (best is None or len(name) > best[1]):
                best = (code, len(name))
    if best:
        f.category = best[0]
    elif m := re.search(r"\b(?:categor(?:y|ized as|ised as)|listed (?:in|under))\s+([A-Z]{2})\b", question):
        f.category = m.group(1)


def _read_authors(question: str, papers: list[Paper], f: Filters) -> None:
    lowered = question.casefold()
    cue = re.search(rf"\b{_AUTHOR_CUE}\b|\b(?:papers?|work|publish\w*|co-?authored|authored|wrote)\b", lowered)
    if not cue:
        return
    found: list[str] = []
    taken = lowered
    for name in sorted({a for p in papers for a in p.authors}, key=len, reverse=True):
        n = name.casefold()
        if len(n) > 4 and re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", taken):
            found.append(name)
            taken = taken.replace(n, " ")  # "Yang Yue" must not also match inside a longer name already taken
    for name in found:
        if re.search(_FIRST_AUTHOR.format(n=re.escape(name.casefold())), lowered):
            f.first_author = name
    f.authors = sorted((n for n in found if n != f.first_author), key=lambda n: lowered.find(n.casefold()))
    if not found:
        # a person's name after "papers by" that no paper has: kept, so the user is told the closest names
        m = _UNKNOWN_AUTHOR.search(question)
        if m and affiliation_code(m.group(1)) is None:
            f.authors = [m.group(1)]


_AFFILIATION_CUE = (
    r"(?:affiliated with|affiliation|researchers? (?:at|from)|authors? (?:at|from)|\bfrom|\bat|\bby)\s+(?:the\s+)?{n}"
    r"|{n}[-\s]+(?:affiliated|researchers|authors|team|lab|group|papers?)"
)


def _read_affiliation(question: str, f: Filters) -> None:
    """An institution named with a word that makes it an affiliation ("Tsinghua-affiliated", "from Peking
    University", "list pku as an affiliation"): "Oxford" or "Cambridge" alone may be a dataset's name."""
    anywhere = re.search(r"\baffiliat", question, re.I) is not None
    best = None
    for code, names in AFFILIATIONS.items():
        for name in (*names, code):
            # short acronyms (MIT, NUS) only in capitals, so a word like "mit" is not an institution
            flags = 0 if len(name) <= 4 and name.isupper() else re.I
            n = rf"(?<![\w-]){re.escape(name)}(?!\w)"
            cued = anywhere or re.search(_AFFILIATION_CUE.format(n=n), question, flags)
            found = cued and re.search(n, question, flags)
            if found and (best is None or len(name) > best[1]):
                best = (code, len(name))
    if best:
        f.affiliation = best[0]
