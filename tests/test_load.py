"""Ten concurrent users of a real `assistant ui` process, over loopback with gradio_client.

Each client asks three questions about its own method: one direct question, then two follow-ups whose "it" /
"its" must be resolved from that client's own conversation. Everyone gets an answer (waiting in the queue when
the model slots are busy), nobody gets an error, and the app's memory and threads come back to their baseline
once the load is over. Throughput and p95 latency are printed (run with -s to see them).

The model is a scripted OpenAI-compatible endpoint that streams a cited sentence in ~1 s, so the figures
measure the app (Gradio queue, sessions, retrieval, citation checking) rather than the 2 CPU cores; set
ASSISTANT_LOAD_REAL_LLM=1 to run the same load against the embedded llama.cpp model instead (slow: one slot).
"""

from __future__ import annotations

import os
import statistics
import threading
import time

import psutil
import pytest
from gradio_client import Client
from gradio_client.utils import Status
from procs import (
    BIN,
    StubOpenAI,
    build_store,
    clean_env,
    free_port,
    http_status,
    link_gguf,
    shared_gguf,
    start,
    stop,
    wait_until,
)

from assistant.config import SEEDS_DIR
from assistant.corpus import load_corpus

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CLIENTS, QUESTIONS = 10, 3
REAL_LLM = os.environ.get("ASSISTANT_LOAD_REAL_LLM") == "1"
ANSWER_TIMEOUT_S = 1800 if REAL_LLM else 120
METHODS = ["DoViT", "ES-MVSNet", "Nested-TNT", "LMSeg", "GoAT-X", "DMT", "Nebula-I", "ERNIE 5.0"]


def script(method: str) -> list[str]:
    return [f"What does {method} propose?", "What results does it report?", "What are its limitations?"]


@pytest.fixture(scope="module")
def app(tmp_path_factory, embedder):
    folder = tmp_path_factory.mktemp("load")
    data = folder / "data"
    build_store(data, load_corpus([SEEDS_DIR / "000_20bba863e7f451be.txt"]).papers, embedder)
    port = free_port()
    with StubOpenAI(delay_s=0.3) as stub:
        # Every question goes to the model: the load is about the app, not the refusal thresholds (calibrated on
        # the whole seed corpus; on 16 papers short questions can fall under them).
        env = clean_env(
            ASSISTANT_DATA_DIR=str(data),
            GRADIO_TEMP_DIR=str(folder / "gradio-tmp"),
            ASSISTANT_RETRIEVAL__MIN_RELEVANCE="-1",
        )
        if REAL_LLM:
            link_gguf(shared_gguf(tmp_path_factory), data)
            env.update(ASSISTANT_LLM__MAX_TOKENS="96", ASSISTANT_LLM__TEMPERATURE="0")
        else:
            env.update(OPENAI_BASE_URL=stub.url("ok"), ASSISTANT_LLM__MODEL="stub")
        proc = start([str(BIN / "assistant"), "ui", "--port", str(port)], folder / "ui.log", env=env)
        url = f"http://127.0.0.1:{port}/"
        try:
            wait_until(lambda: http_status(url) == 200, 120, "assistant ui", proc=proc)
            yield {"url": url, "proc": psutil.Process(proc.pid), "stub": stub}
        finally:
            stop(proc)


def client(url: str) -> Client:
    return Client(url, verbose=False, download_files=False)


def ask(c: Client, question: str, record: dict) -> tuple:
    """Submit to /ask, poll its status (queue rank) until done; returns the final outputs."""
    t0 = time.monotonic()
    job = c.submit(question, "any", "any", "any", None, 5, api_name="/ask")
    deadline = t0 + ANSWER_TIMEOUT_S
    while not job.done():
        status = job.status()
        if status.code == Status.IN_QUEUE and status.rank is not None:
            record["max_rank"] = max(record.get("max_rank", 0), status.rank + 1)
        assert time.monotonic() < deadline, f"no answer to {question!r} within {ANSWER_TIMEOUT_S}s"
        time.sleep(0.05)
    outputs = job.result(timeout=10)
    record.setdefault("latencies", []).append(time.monotonic() - t0)
    return outputs


def converse(url: str, method: str, record: dict) -> None:
    try:
        c = client(url)
        for question in script(method):
            chat, _sources, _which, answer = ask(c, question, record)
            record.setdefault("answers", []).append(answer)
            record["chat"] = chat
    except BaseException as exc:  # reported by the main thread
        record["error"] = repr(exc)


def run_load(url: str) -> tuple[list[dict], float]:
    records = [{"method": METHODS[i % len(METHODS)]} for i in range(CLIENTS)]
    threads = [threading.Thread(target=converse, args=(url, r["method"], r), daemon=True) for r in records]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, t0 + ANSWER_TIMEOUT_S * QUESTIONS - time.monotonic()))
    wall = time.monotonic() - t0
    assert not any(t.is_alive() for t in threads), "some clients did not finish in time"
    return records, wall


def snapshot(proc: psutil.Process) -> dict:
    """The app process's memory and threads (+ its children's memory: the embedded llama.cpp server, if any)."""
    children = proc.children(recursive=True)
    return {
        "rss_mb": proc.memory_info().rss / 2**20,
        "children_mb": sum(p.memory_info().rss for p in children) / 2**20,
        "threads": proc.num_threads(),
    }


def settle(proc: psutil.Process, seconds: float = 4.0) -> dict:
    """The process's footprint once request threads have wound down (the lowest of a few samples)."""
    samples = []
    for _ in range(int(seconds / 0.5)):
        samples.append(snapshot(proc))
        time.sleep(0.5)
    return {k: min(s[k] for s in samples) for k in samples[0]}


def test_ten_concurrent_clients_each_get_their_own_answers(app):
    url, proc = app["url"], app["proc"]
    warm = client(url)  # the first question loads what every later one reuses
    *_, answer = ask(warm, "What does DoViT propose?", {})
    assert answer["error"] is None, answer["error"]

    idle = settle(proc)
    if not REAL_LLM:  # a first round: the app reaches its steady state (Gradio and pipeline caches, thread pools)
        run_load(url)
    baseline = settle(proc)
    records, wall = run_load(url)
    after = settle(proc)

    errors = {r["method"]: r["error"] for r in records if "error" in r}
    assert not errors
    latencies = sorted(x for r in records for x in r["latencies"])
    assert len(latencies) == CLIENTS * QUESTIONS
    queued = [r.get("max_rank", 0) for r in records]
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
    print(
        f"\nload: {CLIENTS} clients x {QUESTIONS} questions in {wall:.1f}s = {len(latencies) / wall:.2f} answers/s; "
        f"latency median {statistics.median(latencies):.2f}s, p95 {p95:.2f}s, max {latencies[-1]:.2f}s; "
        f"highest queue position seen {max(queued)}; model calls served at once (max) {app['stub'].server.max_active}"
        f"\napp memory: after one question {idle['rss_mb']:.0f} MB / {idle['threads']} threads, "
        f"baseline {baseline['rss_mb']:.0f} MB / {baseline['threads']} threads, "
        f"after the load {after['rss_mb']:.0f} MB / {after['threads']} threads "
        f"(children: {baseline['children_mb']:.0f} -> {after['children_mb']:.0f} MB)"
    )
    for r in records:
        method, answers, chat = r["method"], r["answers"], r["chat"]
        # an answer for everyone: cited, or (the real model may decide so) the refusal sentence; never an error
        assert all(a is not None and a["error"] is None for a in answers), (method, answers)
        assert all(a["citations"] or (REAL_LLM and a["refused"]) for a in answers), (method, answers)
        # the follow-ups were resolved from this client's conversation, not another one's
        for a in answers[1:]:
            assert method in a["standalone_query"], (method, a["standalone_query"])
        assert len(chat) == 2 * QUESTIONS  # its own three turns only
        assert method in str(chat[0]["content"])
    if not REAL_LLM:
        assert app["stub"].server.max_active <= 4  # the queue holds the rest: 4 model slots for a remote model
        assert max(queued) >= 1  # someone waited with a visible queue position
    assert after["rss_mb"] - baseline["rss_mb"] < 40  # memory is back to its baseline (no per-session leak)
    assert after["threads"] < baseline["threads"] + 10  # pools may grow a little; a thread per answer would be 30
