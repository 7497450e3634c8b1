"""The dev question set (evals/datasets/dev.jsonl): format rules, and agreement with the seed corpus.

The format checks read only the JSONL file. The corpus checks load the seed pages through the
project's own parser (``assistant.corpus.load_corpus``) and check that every expected title is a
real paper and every ``must_include`` string really occurs in an expected paper's abstract.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

DATASETS = Path(__file__).resolve().parent.parent / "evals" / "datasets"
DEV, HOLDOUT = DATASETS / "dev.jsonl", DATASETS / "holdout.jsonl"

FIELDS = {"id", "type", "question", "history", "expected_titles", "must_include", "split"}
SPLITS = {"tune", "holdout"}
TYPES = {"factoid", "comparative", "metadata", "unanswerable", "followup"}
ROLES = {"user", "assistant"}
MIN_TOTAL = 60
MIN_PER_TYPE = {"factoid": 15, "comparative": 10, "metadata": 10, "unanswerable": 10, "followup": 6}
MAX_MUST_INCLUDE_WORDS = 4


def _norm(text: str) -> str:
    """Whitespace- and case-normalised form used to compare titles and search abstracts."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def _fail_if(problems: list[str]) -> None:
    if problems:
        pytest.fail(f"{len(problems)} problem(s):\n" + "\n".join(problems))


@pytest.fixture(scope="module", params=[DEV, HOLDOUT], ids=["dev", "holdout"])
def dataset(request) -> Path:
    assert request.param.is_file(), f"missing {request.param}"
    return request.param


@pytest.fixture(scope="module")
def lines(dataset: Path) -> list[str]:
    return dataset.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def rows(lines: list[str]) -> list[dict]:
    parsed = []
    for number, line in enumerate(lines, start=1):
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError as exc:
            pytest.fail(f"line {number} is not valid JSON: {exc}")
    return parsed


@pytest.fixture(scope="module")
def corpus_index() -> dict[str, list[str]]:
    """Normalised title -> abstracts of the corpus papers with that title."""
    from assistant.config import SEEDS_DIR
    from assistant.corpus import load_corpus

    papers = load_corpus([SEEDS_DIR]).papers
    assert papers, f"load_corpus found no papers in {SEEDS_DIR}"
    index: dict[str, list[str]] = {}
    for paper in papers:
        index.setdefault(_norm(paper.title), []).append(paper.abstract)
    return index


# --- format ---------------------------------------------------------------------------------------


def test_every_line_is_a_json_object_with_exactly_the_fields(lines: list[str], rows: list[dict]) -> None:
    problems = []
    for number, (line, row) in enumerate(zip(lines, rows, strict=True), start=1):
        if not line.strip():
            problems.append(f"line {number}: blank line")
        elif not isinstance(row, dict):
            problems.append(f"line {number}: not a JSON object")
        elif set(row) != FIELDS:
            extra, missing = sorted(set(row) - FIELDS), sorted(FIELDS - set(row))
            problems.append(f"line {number}: extra fields {extra}, missing fields {missing}")
    _fail_if(problems)


def test_field_values_have_valid_types(rows: list[dict]) -> None:
    problems = []
    for row in rows:
        rid = row.get("id")
        if not isinstance(rid, str) or not rid.strip():
            problems.append(f"{rid!r}: id must be a non-empty string")
        if row.get("type") not in TYPES:
            problems.append(f"{rid}: type {row.get('type')!r} not in {sorted(TYPES)}")
        if not isinstance(row.get("question"), str) or not row["question"].strip():
            problems.append(f"{rid}: question must be a non-empty string")
        history = row.get("history")
        if not isinstance(history, list):
            problems.append(f"{rid}: history must be a list")
        else:
            for turn in history:
                if (
                    not isinstance(turn, dict)
                    or set(turn) != {"role", "content"}
                    or turn["role"] not in ROLES
                    or not isinstance(turn["content"], str)
                    or not turn["content"].strip()
                ):
                    problems.append(f"{rid}: bad history message {turn!r}")
        for field in ("expected_titles", "must_include"):
            values = row.get(field)
            if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
                problems.append(f"{rid}: {field} must be a list of non-empty strings")
            elif len({_norm(v) for v in values}) != len(values):
                problems.append(f"{rid}: {field} has duplicates")
        for needle in row.get("must_include") or []:
            if isinstance(needle, str) and len(needle.split()) > MAX_MUST_INCLUDE_WORDS:
                problems.append(f"{rid}: must_include {needle!r} is longer than {MAX_MUST_INCLUDE_WORDS} words")
    _fail_if(problems)


def test_ids_are_unique(rows: list[dict]) -> None:
    duplicates = [rid for rid, n in Counter(row["id"] for row in rows).items() if n > 1]
    assert not duplicates, f"duplicate ids: {duplicates}"


def test_every_question_belongs_to_a_split(dataset: Path, rows: list[dict]) -> None:
    splits = Counter(row.get("split") for row in rows)
    assert set(splits) <= SPLITS, f"unknown splits: {set(splits) - SPLITS}"
    if dataset == HOLDOUT:
        assert set(splits) == {"holdout"}
    else:  # both parts hold every type, so each part's per-type figures mean something
        for part in SPLITS:
            assert {r["type"] for r in rows if r["split"] == part} == TYPES, part


def test_no_question_is_in_two_sets() -> None:
    questions = [json.loads(line)["question"] for path in (DEV, HOLDOUT) for line in path.read_text().splitlines()]
    assert len(questions) == len(set(questions))


def test_enough_questions_of_every_type(dataset: Path, rows: list[dict]) -> None:
    if dataset != DEV:
        pytest.skip("the size floor is the dev set's")
    assert len(rows) >= MIN_TOTAL, f"only {len(rows)} questions, need at least {MIN_TOTAL}"
    counts = Counter(row["type"] for row in rows)
    short = {t: (counts[t], n) for t, n in MIN_PER_TYPE.items() if counts[t] < n}
    assert not short, f"too few questions (have, need) per type: {short}"


def test_unanswerable_questions_expect_nothing(rows: list[dict]) -> None:
    problems = [
        f"{row['id']}: unanswerable but expects {row['expected_titles']} / {row['must_include']}"
        for row in rows
        if row["type"] == "unanswerable" and (row["expected_titles"] or row["must_include"])
    ]
    _fail_if(problems)


def test_answerable_questions_expect_papers(rows: list[dict]) -> None:
    problems = []
    for row in rows:
        n = len(row["expected_titles"])
        if row["type"] != "unanswerable" and n == 0:
            problems.append(f"{row['id']}: {row['type']} question with no expected titles")
        if row["type"] == "comparative" and n < 2:
            problems.append(f"{row['id']}: comparative question needs at least 2 expected titles, has {n}")
    _fail_if(problems)


def test_history_only_on_followups_and_well_formed(rows: list[dict]) -> None:
    problems = []
    for row in rows:
        history = row["history"]
        if row["type"] != "followup":
            if history:
                problems.append(f"{row['id']}: only follow-ups carry a history")
            continue
        if not history:
            problems.append(f"{row['id']}: follow-up with an empty history")
            continue
        roles = [turn["role"] for turn in history]
        expected = ["user", "assistant"] * (len(roles) // 2 + 1)
        if roles != expected[: len(roles)] or roles[-1] != "assistant":
            problems.append(f"{row['id']}: history must alternate user/assistant and end with assistant: {roles}")
    _fail_if(problems)


# --- agreement with the corpus ------------------------------------------------------------------


def test_expected_titles_exist_in_corpus(rows: list[dict], corpus_index: dict[str, list[str]]) -> None:
    problems = [
        f"{row['id']}: no corpus paper titled {title!r}"
        for row in rows
        for title in row["expected_titles"]
        if _norm(title) not in corpus_index
    ]
    _fail_if(problems)


def _latex_free(text: str) -> str:
    """As the must-include metric reads an abstract: 39.9\\% is 39.9%, no $ or backslashes."""
    return text.replace("\\%", "%").replace("$", "").replace("\\", "")


def test_must_include_occurs_in_an_expected_abstract(rows: list[dict], corpus_index: dict[str, list[str]]) -> None:
    problems = []
    for row in rows:
        abstracts = [
            _norm(_latex_free(a)) for title in row["expected_titles"] for a in corpus_index.get(_norm(title), [])
        ]
        for needle in row["must_include"]:
            if not any(_norm(needle) in abstract for abstract in abstracts):
                problems.append(f"{row['id']}: {needle!r} occurs in no expected paper's abstract")
    _fail_if(problems)
