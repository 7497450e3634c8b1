"""The two scale-out paths with real processes: a Chroma server (`chroma run`) and a remote OpenAI-compatible
LLM (`python -m llama_cpp.server`, started here as a user would start vLLM), configured only through the
environment a user would set: ASSISTANT_STORE__CHROMA_URL, OPENAI_BASE_URL, OPENAI_API_KEY, ASSISTANT_LLM__MODEL.

The seeds go into the Chroma server through the real ingest code (chunking, diffing, writes over HTTP); the
vectors of identical chunk texts are reused from the session's seed store instead of being computed again
(~35 s of CPU), so any difference in the results comes from the store, not from the embedding.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from procs import (
    BIN,
    StubOpenAI,
    clean_env,
    free_port,
    http_status,
    llama_server_args,
    shared_gguf,
    start,
    stop,
    wait_until,
)

from assistant.answer import Assistant
from assistant.config import SEEDS_DIR, get_settings
from assistant.filters import Filters
from assistant.llm import LLM, LLMAuthError, LLMModelNotFound
from assistant.retrieve import Retriever
from assistant.store import PaperStore, chunk_texts

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DOVIT = "Dynamic Token-Pass Transformers for Semantic Segmentation"
QUESTION = "How much computation does DoViT save in semantic segmentation?"
ALIAS = "qwen-remote"
KEY = "sk-remote-PLANTED-4711"


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    proc = start(
        [str(BIN / "chroma"), "run", "--path", str(folder / "db"), "--host", "127.0.0.1", "--port", str(port)],
        folder / "chroma.log",
        env=clean_env(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_status(f"{url}/api/v2/heartbeat") == 200, 60, "chroma run heartbeat", proc=proc)
        yield url
    finally:
        stop(proc)


class RemoteLLM:
    """`python -m llama_cpp.server` on a fixed loopback port with an API key, started and killed on demand."""

    def __init__(self, gguf: Path, log: Path):
        self.gguf, self.log, self.port = gguf, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = start(llama_server_args(self.gguf, self.port, ALIAS, KEY), self.log, env=clean_env())
        auth = {"Authorization": f"Bearer {KEY}"}
        wait_until(lambda: http_status(f"{self.url}/models", auth) == 200, 120, "llama_cpp.server", proc=self.proc)

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        stop(self.proc)


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    server = RemoteLLM(shared_gguf(tmp_path_factory), tmp_path_factory.mktemp("remote-llm") / "server.log")
    try:
        yield server  # not started yet: the first test finds it unreachable
    finally:
        server.stop()


@pytest.fixture(scope="module")
def user_env(chroma_url, remote, tmp_path_factory):
    """The environment a user sets to use both servers (and a data folder of its own for caches)."""
    env = {
        "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("client-data")),
        "ASSISTANT_STORE__CHROMA_URL": chroma_url,
        "OPENAI_BASE_URL": remote.url,
        "OPENAI_API_KEY": KEY,
        "ASSISTANT_LLM__MODEL": ALIAS,
        "ASSISTANT_LLM__TIMEOUT_S": "120",
        "ASSISTANT_LLM__MAX_TOKENS": "96",
        "ASSISTANT_LLM__TEMPERATURE": "0",
        "ASSISTANT_RETRIEVAL__TOP_K": "3",  # a shorter prompt: the answers only need to be real, not thorough
    }
    with pytest.MonkeyPatch.context() as mp:
        for var in list(os.environ):
            if var.startswith(("ASSISTANT_", "OPENAI_")):
                mp.delenv(var)
        for k, v in env.items():
            mp.setenv(k, v)
        get_settings.cache_clear()
        yield env
    get_settings.cache_clear()


class ReusedVectors:
    """The session embedder, answering ``embed_texts`` from the seed store's vectors for identical texts."""

    def __init__(self, embedder, seed_store):
        got = seed_store.collection.get(include=["documents", "metadatas", "embeddings"])
        pairs = zip(chunk_texts(got), got["embeddings"], strict=True)
        self._vectors = {doc: [float(x) for x in vec] for doc, vec in pairs}
        self._inner = embedder
        self.computed = 0

    def embed_texts(self, texts: list[str]) -> list[list[float]]:
        missing = [t for t in texts if t not in self._vectors]
        if missing:
            self.computed += len(missing)
            self._vectors.update(zip(missing, self._inner.embed_texts(missing), strict=True))
        return [self._vectors[t] for t in texts]

    def __getattr__(self, name):
        return getattr(self._inner, name)


@pytest.fixture(scope="module")
def http_store(user_env, embedder, seed_store, seed_corpus):
    settings = get_settings()
    assert settings.store.chroma_url == user_env["ASSISTANT_STORE__CHROMA_URL"]
    vectors = ReusedVectors(embedder, seed_store)
    store = PaperStore(settings, embedder=vectors).open()
    report = store.ingest(seed_corpus.papers, progress=False)
    assert (report.added, report.updated, report.unchanged) == (len(seed_corpus.papers), 0, 0)
    assert vectors.computed == 0  # every chunk text matched one the seed store embedded
    yield store
    store.close()


QUERIES = [
    ("How does DoViT reduce the cost of semantic segmentation?", None),
    ("Compare Gold-YOLO and DAMO-YOLO", None),
    ("knowledge distillation with multiple teachers", Filters(year_from=2021, year_to=2023)),
    ("offline reinforcement learning", Filters(authors=["Yang Yue"])),
    ("object detection", Filters(category="CV")),
    ("a recipe for sourdough bread", None),
]


def test_chroma_server_holds_the_seeds_and_answers_retrieval_like_the_embedded_store(
    http_store, seed_store, user_env, tmp_path
):
    assert http_store.describe().startswith(f"Chroma server {user_env['ASSISTANT_STORE__CHROMA_URL']}")
    assert http_store.count_chunks() == seed_store.count_chunks()
    assert {p.id: p for p in http_store.papers()} == {p.id: p for p in seed_store.papers()}
    served, local = Retriever(http_store, http_store.settings), Retriever(seed_store, seed_store.settings)
    for query, filters in QUERIES:
        got, want = served.search(query, top_k=5, filters=filters), local.search(query, top_k=5, filters=filters)
        assert [h.paper.id for h in got] == [h.paper.id for h in want], query
        assert [round(h.dense, 3) for h in got] == [round(h.dense, 3) for h in want], query
        assert [h.bm25 for h in got] == [h.bm25 for h in want], query

    # another process shares the same server at the same time (a local folder would be locked): nothing new
    result = subprocess.run(
        [str(BIN / "assistant"), "ingest", "-q", str(SEEDS_DIR / "000_20bba863e7f451be.txt")],
        env={**os.environ, "ASSISTANT_DATA_DIR": str(tmp_path / "other")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"store: Chroma server {user_env['ASSISTANT_STORE__CHROMA_URL']}" in result.stderr
    # files 1, parsed 16, added 0, updated 0, unchanged 16
    assert re.search(r"│\s*1\s*│\s*16\s*│\s*0\s*│\s*0\s*│\s*16\s*│", result.stderr), result.stderr
    assert http_store.count_chunks() == seed_store.count_chunks()


@pytest.fixture(scope="module")
def assistant(http_store, user_env, remote):
    llm = LLM.from_settings(get_settings(), progress=False)  # the server is not up yet: not judged at start
    try:
        yield Assistant(get_settings(), Retriever(http_store, http_store.settings), llm)
    finally:
        llm.close()


def test_remote_llm_unreachable_at_start_then_answers_through_openai_base_url(assistant, remote):
    assert assistant.llm.describe() == f"remote {remote.url} model {ALIAS}"
    t0 = time.monotonic()
    a = assistant.ask(QUESTION)
    assert time.monotonic() - t0 < 15
    assert a.incomplete and a.error.startswith(f"cannot reach the LLM at {remote.url}: ")
    remote.start()  # the server comes (back) up: the next question works, no restart of the app needed
    b = assistant.ask(QUESTION)
    assert b.error is None and not b.refused and b.model == f"remote {remote.url} model {ALIAS}"
    assert DOVIT in [c.title for c in b.citations] and b.prompt_tokens > 100


def test_wrong_key_wrong_model_and_failing_server_each_give_a_clear_message(assistant, remote, caplog):
    base = get_settings()
    wrong_key = base.model_copy(update={"llm": base.llm.model_copy(update={"api_key": "sk-wrong-SECRET-999"})})
    with pytest.raises(LLMAuthError) as info:
        LLM.from_settings(wrong_key)
    assert str(info.value) == (
        f"the server at {remote.url} rejected the API key (HTTP 401); check llm.api_key / OPENAI_API_KEY"
    )

    # llama.cpp's server answers an unknown model with its default one: caught at start, not silently used
    typo = base.model_copy(update={"llm": base.llm.model_copy(update={"model": "qwen-typo"})})
    with pytest.raises(LLMModelNotFound) as info:
        LLM.from_settings(typo)
    assert str(info.value) == (
        f"the server at {remote.url} does not serve model 'qwen-typo' (it serves: {ALIAS}); "
        "set llm.model / ASSISTANT_LLM__MODEL to one of them"
    )

    with StubOpenAI() as stub:
        failing = base.model_copy(update={"llm": base.llm.model_copy(update={"base_url": stub.url("500")})})
        with LLM.from_settings(failing) as llm:
            t0 = time.monotonic()
            a = Assistant(failing, assistant.retriever, llm).ask(QUESTION)
            assert time.monotonic() - t0 < 15
    assert a.incomplete and a.error.startswith(f"the server at {stub.url('500')} failed (HTTP 500): ")
    assert "Bearer ***" in a.error  # the server echoed the key; the message does not
    for text in (a.error, caplog.text, a.model_dump_json()):
        assert KEY not in text and "sk-wrong-SECRET-999" not in text


def test_remote_server_dies_mid_answer_then_the_next_question_works_once_it_is_back(assistant, remote):
    streamed, answer = "", None
    for event in assistant.stream(QUESTION):
        if event.kind == "token":
            if not streamed:
                remote.signal(signal.SIGKILL)
                remote.proc.wait(10)
            streamed += event.data
        elif event.kind == "answer":
            answer = event.data
    assert streamed and answer.incomplete and answer.reply == streamed and answer.path == "extractive"
    assert "Quoted from the abstracts" in answer.text and DOVIT in [c.title for c in answer.citations]
    assert answer.error.startswith(f"cannot reach the LLM at {remote.url}: ")
    remote.start()
    b = assistant.ask(QUESTION)
    assert b.error is None and DOVIT in [c.title for c in b.citations]


def test_hung_remote_server_gives_an_error_within_the_documented_bound(assistant, remote):
    s = get_settings()
    short = s.model_copy(update={"llm": s.llm.model_copy(update={"timeout_s": 4.0, "max_tokens": 16})})
    remote.signal(signal.SIGSTOP)
    try:
        with LLM.from_settings(short) as llm:  # the model check gives up quietly on a silent server
            t0 = time.monotonic()
            a = Assistant(short, assistant.retriever, llm).ask(QUESTION)
            waited = time.monotonic() - t0
    finally:
        remote.signal(signal.SIGCONT)
    assert a.incomplete and a.error == f"no answer from {remote.url} within 4s (llm.timeout_s)"
    print(f"\nhung remote server: error after {waited:.1f}s (llm.timeout_s=4 bounds the answer, its retry included)")
    assert waited < 4 + 3  # the whole answer's bound (its one retry happens within it) + retrieval
    b = assistant.ask(QUESTION)
    assert b.error is None and DOVIT in [c.title for c in b.citations]
