"""Category / date lines (``41.3CVNov 18, 2022``) and the dates of JSON records."""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any, NamedTuple

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
