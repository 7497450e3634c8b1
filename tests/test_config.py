"""Settings: env prefix, nested groups, OPENAI_* honoured, every field documented in code and README."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from assistant.cli import _walk_settings, app
from assistant.config import REPO_ROOT, Settings, get_settings


def test_env_prefix_nested_and_openai_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ASSISTANT_RETRIEVAL__TOP_K", "7")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-PLANTED-123")
    s = Settings()
    assert s.data_dir == tmp_path and s.retrieval.top_k == 7
    assert s.llm.base_url == "http://127.0.0.1:9/v1"
    assert s.llm.api_key.get_secret_value() == "sk-test-PLANTED-123"
    assert "PLANTED" not in repr(s) and "PLANTED" not in str(s.model_dump())
    monkeypatch.setenv("ASSISTANT_LLM__BASE_URL", "http://127.0.0.1:10/v1")
    assert Settings().llm.base_url == "http://127.0.0.1:10/v1"  # the explicit setting wins


def test_offline_defaults_are_set():
    for var in ("HF_HUB_OFFLINE", "ANONYMIZED_TELEMETRY", "GRADIO_ANALYTICS_ENABLED"):
        assert var in os.environ
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_every_setting_is_described_and_in_the_readme():
    readme = (REPO_ROOT / "README.md").read_text()
    for env, _value, description in _walk_settings(Settings()):
        assert description, f"{env} has no description"
        assert f"`{env}`" in readme, f"{env} is not documented in README.md"


# -- invalid settings: one line naming the variable, the value and what is allowed (issue 23, item 11) --------------
@pytest.mark.parametrize(
    ("var", "value", "allowed"),
    [
        ("ASSISTANT_RETRIEVAL__TOP_K", "-1", "allowed is a whole number from 1 to 50"),
        ("ASSISTANT_RETRIEVAL__TOP_K", "abc", "allowed is a whole number from 1 to 50"),
        ("ASSISTANT_LLM__TIMEOUT_S", "0", "allowed is a number, above 0 and at most 3,600"),
        ("ASSISTANT_LLM__TEMPERATURE", "nan", "allowed is a number from 0 to 2"),
        ("ASSISTANT_RETRIEVAL__MIN_BM25", "inf", "allowed is a number, at least 0"),
        ("ASSISTANT_RETRIEVAL__MODE", "fast", "allowed is one of hybrid, dense, bm25"),
        ("ASSISTANT_LOG_LEVEL", "loud", "allowed is one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        (
            "ASSISTANT_LLM",
            "{not json",
            "allowed is a JSON object of its fields, or set them one by one (ASSISTANT_LLM__FIELD)",
        ),
    ],
)
def test_an_invalid_setting_is_one_line_naming_the_variable_value_and_what_is_allowed(
    monkeypatch, tmp_path, var, value, allowed
):
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv(var, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["papers"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert not isinstance(result.exception, ValidationError) and "Traceback" not in result.output
    assert result.output.splitlines() == [f"error: invalid setting {var}={value!r}: {allowed}"], result.output
    assert not (tmp_path / "nowhere").exists()  # refused before anything was opened or created


def test_a_long_invalid_value_is_cut_and_two_invalid_settings_are_two_lines(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ASSISTANT_RETRIEVAL__MODE", "x" * 100_000)
    monkeypatch.setenv("ASSISTANT_LLM__MAX_TOKENS", "1\n2")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["settings"])
    finally:
        get_settings.cache_clear()
    lines = result.output.splitlines()
    assert result.exit_code == 1 and len(lines) == 2, result.output
    assert (
        lines[0] == "error: invalid setting ASSISTANT_LLM__MAX_TOKENS='1 2': allowed is a whole number from 16 to 8,192"
    )
    assert lines[1].startswith("error: invalid setting ASSISTANT_RETRIEVAL__MODE='xxx") and len(lines[1]) < 300


def test_numeric_settings_have_bounds_and_refuse_nan():
    """Every number a user sets has a lower bound (and the ones that size work an upper one too); NaN and infinity
    pass no bound check on their own, so the groups refuse them."""
    for env, info in _numeric_fields(Settings):
        bounds = {k for m in info.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
        assert bounds & {"ge", "gt"}, f"{env} has no lower bound"
    for group, field in (("retrieval", "min_relevance"), ("retrieval", "dense_weight"), ("llm", "timeout_s")):
        for bad in ("nan", "inf", "-inf"):
            with pytest.raises(ValidationError, match="finite number|greater than|less than"):
                Settings(**{group: {field: bad}})


def _numeric_fields(model, prefix="ASSISTANT_"):
    from pydantic import BaseModel

    for name, info in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            yield from _numeric_fields(info.annotation, env + "__")
        elif info.annotation in (int, float):
            yield env, info


def test_data_dir_that_is_a_regular_file_is_one_line(monkeypatch, tmp_path):
    """A regular file as the data folder: said at once, not "run ingest first" and then "File exists" (item 12)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(blocker))
    for args in (["papers"], ["ingest", "-q"], ["doctor", "--no-llm"]):
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(app, args)
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 1, result.output
        assert result.output.splitlines() == [
            f"error: invalid setting ASSISTANT_DATA_DIR={str(blocker)!r}: it is a file, not a folder: point it at a "
            "folder (created if missing)"
        ], result.output
    assert blocker.read_text() == "not a folder"
