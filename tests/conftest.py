"""Shared fixtures: settings on temporary folders, one embedder and one seed store per session."""

from __future__ import annotations

import pytest

from assistant.config import SEEDS_DIR, Settings, get_settings


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    """Settings whose data dir is a fresh temporary folder (also exported for CLI calls)."""
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def embedder():
    from assistant.embed import Embedder

    return Embedder(Settings())


@pytest.fixture(scope="session")
def seed_corpus():
    from assistant.corpus import load_corpus

    return load_corpus([SEEDS_DIR])


@pytest.fixture(scope="session")
def seed_store(tmp_path_factory, embedder, seed_corpus):
    """A real Chroma store holding the whole seed corpus, shared read-only by the session's tests."""
    from assistant.store import PaperStore

    settings = Settings(data_dir=tmp_path_factory.mktemp("seed-store"))
    store = PaperStore(settings, embedder=embedder).open()
    store.ingest(seed_corpus.papers, progress=False)
    yield store
    store.close()
