"""The JSON / JSONL reader: records with the fields of the arXiv metadata snapshot or of ``Paper``."""

from __future__ import annotations

import bisect
import json
import re
from typing import Any

from ..paper import _latex_to_unicode, _snippet, _unique, clean_whitespace
from .authors import _AUTHOR_SEP_RE, _ET_AL_RE, AuthorList
from .decode import _nonblank_lines
from .meta import _parse_iso_date
from .records import _Sink

_ARXIV_ID_RE = re.compile(r"^(?:\d{4}\.\d{4,5}|[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?$")


def _split_author_string(value: str) -> AuthorList:
    """arXiv ``authors``: ``A. Smith, B. Jones and C. Doe (MIT)`` -> names (+ parenthesised affiliations)."""
    text = clean_whitespace(_latex_to_unicode(value))
    affiliations: list[str] = []

    def grab(m: re.Match[str]) -> str:
        inner = clean_whitespace(m.group(1))
        if re.search(r"[A-Za-z]{2}", inner):
            affiliations.extend(a.strip() for a in inner.split(",") if a.strip())
        return " "

    for _ in range(3):  # nested parentheses, innermost first
        text = re.sub(r"\(([^()]*)\)", grab, text)
    text = text.replace("{", "").replace("}", "")
    truncated = False
    m = _ET_AL_RE.search(text)
    if m:
        truncated, text = True, text[: m.start()]
    names = [clean_whitespace(n) for n in _AUTHOR_SEP_RE.split(text)]
    return AuthorList([n for n in names if n], truncated, _unique(affiliations))


class _FieldError(ValueError):
    """A field of a JSON record has the wrong type: the record is skipped with this message."""


def _kind(value: Any) -> str:
    """``12345`` -> ``a number (12345)``: how a wrong value is named in messages."""
    if value is None:
        return "null"
    kind = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return f"{kind.get(type(value), type(value).__name__)} ({_snippet(json.dumps(value, ensure_ascii=False), 40)})"


def _names(value: list, field: str) -> list[str]:
    """A JSON list of author names, each a string with a letter in it."""
    names = []
    for i, item in enumerate(value, start=1):
        if not isinstance(item, str) or not any(ch.isalpha() for ch in item):
            raise _FieldError(f"field {field!r} item {i} is {_kind(item)}, not a name")
        names.append(clean_whitespace(_latex_to_unicode(item)))
    return names


def _authors_from_record(obj: dict[str, Any], line: int, sink: _Sink) -> AuthorList:
    """Authors and affiliations of a JSON record; _FieldError when they are not names."""
    aff_raw = obj.get("affiliations")
    if aff_raw is None:
        aff: list[str] = []
    elif isinstance(aff_raw, list) and all(isinstance(a, str) for a in aff_raw):
        aff = [clean_whitespace(a) for a in aff_raw if a.strip()]
    else:
        raise _FieldError(f"field 'affiliations' is {_kind(aff_raw)}, expected a list of strings")
    truncated = obj.get("authors_truncated", False)
    if not isinstance(truncated, bool):
        sink.warn(line, f"field 'authors_truncated' is {_kind(truncated)}, not true/false; ignored")
        truncated = False
    parsed = obj.get("authors_parsed")
    if parsed is not None:
        if not (
            isinstance(parsed, list)
            and all(isinstance(p, list) and all(x is None or isinstance(x, str) for x in p) for p in parsed)
        ):
            raise _FieldError(f"field 'authors_parsed' is {_kind(parsed)}, expected a list of [last, first, suffix]")
        names = []
        for p in parsed:
            parts = [clean_whitespace(_latex_to_unicode(x)) if x else "" for x in p[:3]] + ["", "", ""]
            name = clean_whitespace(f"{parts[1]} {parts[0]} {parts[2]}")
            if name:
                names.append(name)
        if names:
            return AuthorList(names, truncated, aff)
    raw = obj.get("authors")
    if raw is None:
        if "authors" in obj:
            sink.warn(line, "field 'authors' is null; the record is kept without authors")
        return AuthorList([], False, aff)
    if isinstance(raw, list):
        return AuthorList(_names(raw, "authors"), truncated, aff)
    if isinstance(raw, str):
        split = _split_author_string(raw)
        bad = next((n for n in split.authors if not any(ch.isalpha() for ch in n)), None)
        if bad is not None:
            raise _FieldError(f"field 'authors' holds {bad!r}, not a name")
        return AuthorList(split.authors, split.truncated or truncated, _unique(aff + split.affiliations))
    raise _FieldError(f"field 'authors' is {_kind(raw)}, expected a list of names or one comma-separated string")


def _record_from_mapping(obj: Any, line: int, sink: _Sink) -> None:
    try:
        _record_from_mapping_unchecked(obj, line, sink)
    except _FieldError as exc:
        sink.error(line, f"{exc}; record skipped")
    except (TypeError, ValueError, AttributeError) as exc:  # odd field types must cost one record, not the file
        sink.error(line, f"unusable record ({type(exc).__name__}: {_snippet(str(exc), 120)})")


def _text_field(obj: dict[str, Any], key: str) -> str | None:
    """A string field, None when absent; _FieldError when null or not a string."""
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise _FieldError(f"field {key!r} is {_kind(value)}, expected a string")
    return value


def _categories(obj: dict[str, Any]) -> list[str]:
    cats: list[str] = []
    one = obj.get("category")
    if one is not None:
        if not isinstance(one, str):
            raise _FieldError(f"field 'category' is {_kind(one)}, expected a string")
        cats.append(one.strip())
    many = obj.get("categories")
    if many is not None:
        if isinstance(many, str):
            cats.extend(many.split())
        elif isinstance(many, list) and all(isinstance(c, str) for c in many):
            cats.extend(c.strip() for c in many)
        else:
            raise _FieldError(f"field 'categories' is {_kind(many)}, expected a string or a list of strings")
    return _unique(c for c in cats if c)


def _optional(obj: dict[str, Any], key: str, types: tuple[type, ...], line: int, sink: _Sink) -> Any:
    """An optional metadata field of the given types; any other value is reported and ignored."""
    value = obj.get(key)
    if value is None or (isinstance(value, types) and not (isinstance(value, bool) and bool not in types)):
        return value
    sink.warn(line, f"field {key!r} is {_kind(value)}; ignored")
    return None


def _record_from_mapping_unchecked(obj: Any, line: int, sink: _Sink) -> None:
    if not isinstance(obj, dict):
        sink.error(line, f"expected a JSON object, got {type(obj).__name__}")
        return
    raw_title = _text_field(obj, "title")
    raw_abstract = _text_field(obj, "abstract")
    if raw_abstract is None:
        raw_abstract = _text_field(obj, "summary")
    title = clean_whitespace(raw_title or "")
    abstract = clean_whitespace(raw_abstract or "")
    if not title:
        if abstract:
            sink.orphan(abstract, line)
        else:
            sink.error(line, "record has neither title nor abstract")
        return
    authors = _authors_from_record(obj, line, sink)
    cats = _categories(obj)
    date, year, year_missing = None, None, False
    for key in ("date", "update_date", "published"):
        value = _optional(obj, key, (str,), line, sink)
        if value:
            date, year, year_missing = _parse_iso_date(value)
            if date or year:
                break
            sink.warn(line, f"unreadable {key} {value!r} ignored")
    given_year = _optional(obj, "year", (int,), line, sink)
    if year is None and given_year is not None:
        year = given_year
    arxiv_id = _optional(obj, "arxiv_id", (str,), line, sink)
    given_id = _optional(obj, "id", (str,), line, sink)
    if not arxiv_id and given_id and _ARXIV_ID_RE.match(given_id.strip()):
        arxiv_id = given_id.strip()
    score = obj.get("score")
    if isinstance(score, str):
        try:
            score = float(score)
            sink.warn(line, f"field 'score' is a string ({obj['score']!r}); read as the number {score:g}")
        except ValueError:
            sink.warn(line, f"non-numeric score {score!r} ignored")
            score = None
    else:
        score = _optional(obj, "score", (int, float), line, sink)
    has_code = obj.get("has_code", False)
    if isinstance(has_code, str) and has_code.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        flag = has_code.strip().lower() in ("true", "1", "yes")
        sink.warn(line, f"field 'has_code' is a string ({has_code!r}); read as {str(flag).lower()}")
        has_code = flag
    elif not isinstance(has_code, bool):
        if has_code is not None:
            sink.warn(line, f"field 'has_code' is {_kind(has_code)}, not true/false; ignored")
        has_code = False
    paper = sink.add(
        line,
        title,
        abstract,
        authors=authors.authors,
        truncated=authors.truncated,
        affiliations=authors.affiliations,
        category=cats[0] if cats else None,
        date=date,
        year=year,
        year_missing=year_missing,
        has_code=has_code,
        score=float(score) if score is not None else None,
        arxiv_id=arxiv_id or None,
    )
    if paper is not None:
        paper.categories = cats
        paper.alt_titles = _unique(t for t in (obj.get("alt_titles") or []) if isinstance(t, str) and t.strip())


def _read_jsonl(text: str, sink: _Sink) -> None:
    for ln, line in _nonblank_lines(text):
        try:
            obj = json.loads(line)
        except ValueError as exc:
            sink.error(ln, f"invalid JSON line: {exc}")
            continue
        _record_from_mapping(obj, ln, sink)


def _read_json(text: str, sink: _Sink) -> None:
    """A JSON array of records (each with its own line number), ``{"papers": [...]}`` or one record."""
    text = text.lstrip("\ufeff")
    decoder = json.JSONDecoder()
    line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]

    def line_of(pos: int) -> int:
        return bisect.bisect_right(line_starts, pos)

    start = len(text) - len(text.lstrip())
    if text[start : start + 1] != "[":
        try:
            obj = json.loads(text)
        except ValueError as exc:
            sink.error(getattr(exc, "lineno", None), f"invalid JSON: {exc}")
            return
        if isinstance(obj, dict) and isinstance(obj.get("papers"), list):
            for rec in obj["papers"]:
                _record_from_mapping(rec, line_of(start), sink)
        else:
            _record_from_mapping(obj, line_of(start), sink)
        return
    pos = start + 1
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            sink.error(line_of(pos), "JSON array is not closed (truncated file?)")
            return
        if text[pos] == "]":
            rest = text[pos + 1 :].strip()
            if rest:
                sink.warn(line_of(pos + 1), "text after the end of the JSON array ignored")
            return
        try:
            obj, end = decoder.raw_decode(text, pos)
        except ValueError as exc:
            sink.error(getattr(exc, "lineno", line_of(pos)), f"invalid JSON: {exc}; rest of the file skipped")
            return
        _record_from_mapping(obj, line_of(pos), sink)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] != "]":
            sink.error(line_of(pos), "expected ',' or ']' in the JSON array; rest of the file skipped")
            return
