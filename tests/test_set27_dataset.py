"""The issue-27 question set (evals/datasets/set27.jsonl) and the shape bank (evals/shapes.jsonl): every line
well formed, every expected title a paper of the seed corpus, every must-include string in an expected abstract,
every count recomputed from the records, and the kinds split evenly between tune and holdout."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from assistant.evaluation.runner import load_dataset
from assistant.shape import SHAPES, SHAPES_FILE

SET27 = Path(__file__).resolve().parent.parent / "evals" / "datasets" / "set27.jsonl"
KINDS = {
    "count", "author", "by_title", "false_premise", "yes_no", "ranking", "user_need", "three_way", "builds_on",
    "limitations", "trap",
}  # fmt: skip


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\\%", "%").replace("$", "").replace("\\", "")).strip().casefold()


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [json.loads(line) for line in SET27.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def papers(seed_corpus):
    return seed_corpus.papers


def test_the_runner_reads_every_line(rows):
    questions, skipped = load_dataset(SET27)
    assert skipped == [] and len(questions) == len(rows) >= 80


def test_every_kind_has_tune_and_holdout_questions(rows):
    assert {r["kind"] for r in rows} == KINDS
    per = Counter((r["kind"], r["split"]) for r in rows)
    assert all(per[(k, s)] >= 3 for k in KINDS for s in ("tune", "holdout")), per


def test_titles_and_must_include_come_from_the_records(rows, papers):
    by_title = {_norm(p.title): p for p in papers}
    problems = []
    for r in rows:
        for t in r["expected_titles"]:
            if _norm(t) not in by_title:
                problems.append(f"{r['id']}: no paper titled {t!r}")
        if r["kind"] == "count":
            continue
        abstracts = [_norm(by_title[_norm(t)].abstract) for t in r["expected_titles"] if _norm(t) in by_title]
        problems += [f"{r['id']}: {m!r}" for m in r["must_include"] if not any(_norm(m) in a for a in abstracts)]
    assert problems == []


def test_counts_agree_with_the_records(rows, papers):
    counts = [r for r in rows if r["kind"] == "count"]
    assert counts
    for r in counts:
        assert r["answer"] in r["must_include"]
        if r["expected_titles"]:  # the counted papers, listed when few: as many as the figure says
            assert len(r["expected_titles"]) == int(r["answer"]), r["id"]
    years = Counter(p.year for p in papers)
    for r in counts:
        m = re.search(r"\b(20\d\d)\b", r["question"])
        if m and "dated" in r["question"] and "how many" in r["question"].lower() and len(r["question"]) < 70:
            assert years[int(m.group(1))] == int(r["answer"]), r["id"]


def test_the_shape_bank_is_labelled_with_known_shapes_and_split():
    bank = [json.loads(line) for line in SHAPES_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert {b["shape"] for b in bank} == set(SHAPES)
    assert len({b["id"] for b in bank}) == len(bank)
    per = Counter((b["shape"], b["split"]) for b in bank)
    assert all(per[(s, "tune")] >= 40 and per[(s, "holdout")] >= 20 for s in SHAPES), per
    # the set written for this issue is labelled here, but none of holdout.jsonl is (nobody tunes on it)
    assert not any(b["id"].startswith("ho-") for b in bank)
