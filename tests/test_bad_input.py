"""Smaller cases of bad input (issue 23, item 12), each one line and refused before anything is loaded: a question
of emoji only, an impossible calendar date, a 100,000-character author, a negative --limit, and a list where the web
app's API expects one value (``author=[]``). A data folder that is a regular file is in test_config.py; --limit on a
real store and markup in messages are in test_terminal_text.py."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from assistant.answer import QuestionError, validate_question
from assistant.cli import app
from assistant.config import get_settings
from assistant.filters import Filters


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """The real CLI (typer's runner) on a data folder that does not exist: a command that got as far as opening
    the store would say "there is no paper store" instead of the message expected, and would create nothing."""
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    nowhere = tmp_path / "nowhere"
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(nowhere))
    get_settings.cache_clear()

    def run(*args: str) -> list[str]:
        t0 = time.monotonic()
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert "Traceback" not in result.output and time.monotonic() - t0 < 10
        return result.output.splitlines()

    yield run
    get_settings.cache_clear()
    assert not nowhere.exists()


def test_a_question_of_emoji_or_punctuation_only_has_no_words(cli):
    said = "error: The question has no words: type a question about the papers in words."
    assert cli("ask", "👍🔥🎉") == [said]  # before: "“👍🔥🎉” only states a filter"
    assert cli("ask", "?!… 🤔 ---") == [said]
    assert cli("ask", "--explain", "🎉") == [said]
    with pytest.raises(QuestionError) as info:
        validate_question("🙂 🙃", 4000)
    assert info.value.reason == "no_words"
    # a word in any script, or a number, is a word
    assert validate_question("什么是 DoViT？", 4000) == "什么是 DoViT？" and validate_question("2023 🎉", 4000)


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--date-from", "2023-02-30", "date '2023-02-30' does not exist: February 2023 has 28 days"),
        ("--date-to", "2024-02-30", "date '2024-02-30' does not exist: February 2024 has 29 days"),
        ("--date-from", "2023-13-01", "date '2023-13-01' does not exist: there is no month 13"),
        ("--date-to", "2023-04-31", "date '2023-04-31' does not exist: April 2023 has 30 days"),
    ],
)
def test_a_date_that_is_not_in_the_calendar_is_refused(cli, option, value, said):
    assert cli("papers", option, value) == [f"error: {said}"]
    assert cli("ask", option, value, "What is DoViT?") == [f"error: {said}"]


def test_the_last_day_of_a_month_is_a_date():
    f = Filters.from_options(date_from="2024-02-29", date_to="2024-04-30")
    assert (f.date_from, f.date_to) == ("2024-02-29", "2024-04-30")


def test_a_100k_character_author_is_refused_without_being_echoed(cli):
    blob = "Liu" * 33_334
    for args in (["papers", "--author", blob], ["ask", "--author", blob, "What is DoViT?"]):
        lines = cli(*args)
        assert lines == ["error: the author filter is 100,002 characters long; the limit is 200"]
    lines = cli("papers", "--first-author", "x" * 201)
    assert lines == ["error: the author filter is 201 characters long; the limit is 200"]
    lines = cli("papers", "--affiliation", "y" * 5000)
    assert lines == ["error: the affiliation filter is 5,000 characters long; the limit is 200"]
    assert Filters.from_options(authors=["a" * 200]).authors == ["a" * 200]  # the limit itself is allowed


def test_an_unknown_category_is_quoted_short(cli):
    lines = cli("papers", "--category", "z" * 10_000)
    assert len(lines) == 1 and lines[0].startswith("error: unknown category 'zzz") and len(lines[0]) < 300


def test_a_negative_or_zero_limit_is_refused(cli):
    assert cli("papers", "--limit", "-5") == ["error: --limit must be 1 or more (got -5)"]
    assert cli("papers", "--limit", "0") == ["error: --limit must be 1 or more (got 0)"]


def test_the_web_apps_filter_parser_reads_lists_from_api_clients():
    pytest.importorskip("gradio")
    from assistant.ui.app import parse_filters

    assert parse_filters("any", "any", "any", []) is None  # before: the author "[]"
    assert parse_filters([], [], [], [], [], [], [], [], False) is None
    f = parse_filters("2021", None, ["CV"], ["Yuang Liu", " Qiang Zhou "], first_author=["Yuang Liu"])
    assert f.year_from == 2021 and f.category == "CV" and f.authors == ["Yuang Liu", "Qiang Zhou"]
    assert f.first_author == "Yuang Liu"
    assert parse_filters(None, None, None, "Yuang Liu; Qiang Zhou").authors == ["Yuang Liu", "Qiang Zhou"]
    with pytest.raises(ValueError, match="give one value, not a list of 2"):
        parse_filters(None, None, ["CV", "CL"], None)
