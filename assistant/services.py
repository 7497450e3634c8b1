"""Wiring: the one place that opens the store, builds the retriever and reaches the LLM from a `Settings`.

The CLI, the web app, the evals and the bench all start here; no other module constructs a `PaperStore`, a
`Retriever`, an `LLM` or an `Assistant` from settings. Each function cleans up what it opened if a later step
fails, so a caller never holds half a service.
"""

from __future__ import annotations

import logging

from .answer import Assistant
from .config import Settings
from .embed import Embedder
from .llm import LLM
from .retrieve import Retriever
from .store import PaperStore

log = logging.getLogger(__name__)


def open_store(settings: Settings, *, read_only: bool | None = None, embedder: Embedder | None = None) -> PaperStore:
    """The paper store, opened (the caller closes it; ``store.recovered`` says if an interrupted ingest was
    rolled back). ``read_only=None``: the store's own default (see `PaperStore`)."""
    return PaperStore(settings, embedder=embedder, read_only=read_only).open()


def open_index(settings: Settings, *, read_only: bool | None = None, warm: bool = True) -> Retriever:
    """The store and its retriever; ``warm`` loads the embedding model and builds the keyword index now, not on
    the first question. Close with ``retriever.close()``."""
    store = open_store(settings, read_only=read_only)
    try:
        return index_on(store, warm=warm)
    except BaseException:
        store.close()
        raise


def index_on(store: PaperStore, *, warm: bool = True) -> Retriever:
    """The retriever over a store already open (say, one just ingested into); closing it closes the store."""
    retriever = Retriever(store, store.settings)
    if warm:
        retriever.warm_up()
    log.info("store: %s (%d papers)", store.describe(), len(retriever.papers))
    return retriever


def start_llm(settings: Settings, *, progress: bool = False) -> LLM:
    """The configured LLM: the embedded llama.cpp server (started) or the OpenAI-compatible endpoint (checked)."""
    return LLM.from_settings(settings, progress=progress)


def assistant_on(retriever: Retriever, llm=None, settings: Settings | None = None) -> Assistant:
    """An assistant over an open index; ``llm=None`` for one that plans and retrieves without a model;
    ``settings`` to answer with other answer settings over the same index (the comparison scripts)."""
    return Assistant(settings or retriever.settings, retriever, llm)


def open_assistant(settings: Settings, *, progress: bool = False) -> Assistant:
    """Store, retriever and the started (or reached) LLM as one assistant. Close with ``assistant.close()``."""
    retriever = open_index(settings)
    try:
        llm = start_llm(settings, progress=progress)
    except BaseException:
        retriever.close()
        raise
    log.info("embedder: %s", retriever.store.embedder.describe())
    return assistant_on(retriever, llm)
