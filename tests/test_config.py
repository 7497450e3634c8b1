"""Settings: env prefix, nested groups, OPENAI_* honoured, every field documented in code and README."""

from __future__ import annotations

import os

from assistant.cli import _walk_settings
from assistant.config import REPO_ROOT, Settings


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
