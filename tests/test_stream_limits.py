"""Stream limits (issue 23, item 5): ``llm.timeout_s`` bounds the whole answer, first token and last, and the client
stops reading at ``max_tokens``, for a remote endpoint and the embedded server alike.

Before: a server sending one token every 5 s with a 10 s timeout was still streaming after 150 s (the timeout was
per read), a flooding server got 104,399 chunks (2.7 MB) read despite max_tokens 256, and two questions in the web
app against a stalled server never finished. The stub endpoint here is a real HTTP server on 127.0.0.1; the first
path segment of its base URL picks what it does.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import ThreadingHTTPServer

import pytest
from procs import BIN, JSONHandler, build_store, clean_env

from assistant.config import SEEDS_DIR, Settings
from assistant.llm import LLM, LLMUnavailable

MSGS = [{"role": "user", "content": "Tell me about DoViT."}]
QUESTION = "How does DoViT reduce the cost of semantic segmentation?"
DOVIT = "Dynamic Token-Pass Transformers for Semantic Segmentation"


class _Misbehaving(JSONHandler):
    """``/trickle/v1``: one token every ``delay_s`` for ever; ``/stall/v1``: the stream's headers, then nothing;
    ``/silent/v1``: not even headers; ``/flood/v1``: tokens as fast as it can write, ignoring max_tokens;
    ``/empty/v1``: chunks without text, as fast; ``/ok/v1``: a short cited answer; ``/flaky/v1``: HTTP 503 on every
    other request, else the short answer. Every handler ends when the client goes away or the server closes."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self._json(200, {"object": "list", "data": [{"id": "stub", "object": "model", "owned_by": "test"}]})

    def do_POST(self):
        server = self.server
        self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        mode = self.path.strip("/").split("/")[0]
        with server.lock:
            server.requests[mode] = n = server.requests.get(mode, 0) + 1
        if mode == "flaky" and n % 2:  # every other request fails: one retry gets the answer
            self._json(503, {"error": {"message": "overloaded, try again"}})
            return
        if mode == "silent":
            server.closing.wait(60)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        sent = 0
        try:
            if mode == "stall":
                server.closing.wait(60)
            elif mode == "trickle":
                while not server.closing.wait(server.delay_s) and sent < 1000:
                    self._token(f"word{sent} ")
                    sent += 1
            elif mode in ("flood", "empty"):
                while not server.closing.is_set() and sent < 2_000_000:
                    if mode == "flood":
                        self._token("flood ")
                    else:  # chunks without text, for ever
                        self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": None}]})
                    sent += 1
            else:
                for piece in ("DoViT stops easy tokens early ", "and saves computation [1]."):
                    self._token(piece)
                self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading and closed the stream: what the limits are for
        finally:
            with server.lock:
                server.sent[mode] = server.sent.get(mode, 0) + sent
                server.ended.append((mode, time.monotonic()))

    def _token(self, text: str) -> None:
        self._event({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})

    def _event(self, payload: dict) -> None:
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "stub", **payload}
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.flush()


@pytest.fixture(scope="module")
def stub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    server.daemon_threads = True
    server.lock = threading.Lock()
    server.closing = threading.Event()
    server.delay_s = 1.0
    server.requests, server.sent, server.ended = {}, {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = lambda mode: f"http://127.0.0.1:{server.server_address[1]}/{mode}/v1"
    yield server
    server.closing.set()
    server.shutdown()
    server.server_close()


def remote(url: str, **kw) -> LLM:
    # max_retries=1: what a remote endpoint gets from LLM.from_settings (the retry must fit in the same bound)
    return LLM(base_url=url, model="stub", **{"timeout_s": 3.0, "max_retries": 1, "max_tokens": 256, **kw})


def test_a_server_that_trickles_tokens_is_cut_off_at_the_timeout(stub):
    llm = remote(stub.url("trickle"))
    got: list[str] = []
    t0 = time.monotonic()
    with pytest.raises(LLMUnavailable) as info:
        for text in llm.stream_chat(MSGS):
            got.append(text)
    waited = time.monotonic() - t0
    llm.close()
    print(f"\ntrickling server (a token a second, timeout 3 s): cut off after {waited:.2f} s, {len(got)} tokens")
    assert 3.0 <= waited < 3.8  # the whole answer, not each read (before: for ever)
    assert got and got[0] == "word0 "  # what arrived in time was shown
    url = stub.url("trickle").removesuffix("/")
    assert str(info.value) == (
        f"the answer from {url} took longer than 3s (llm.timeout_s); it was cut off after {len(got)} tokens"
    )


@pytest.mark.parametrize("mode", ["stall", "silent"])
def test_a_stalled_server_is_an_error_at_the_timeout_retry_included(stub, mode):
    llm = remote(stub.url(mode))
    t0 = time.monotonic()
    with pytest.raises(LLMUnavailable) as info:
        llm.chat(MSGS)
    waited = time.monotonic() - t0
    llm.close()
    assert 3.0 <= waited < 3.8, waited  # before: the timeout per read, then a retry (about twice as long)
    assert str(info.value) == f"no answer from {stub.url(mode)} within 3s (llm.timeout_s)"
    time.sleep(1.0)  # the reading thread's own read timeout has passed: it gave up without a second request
    assert stub.requests[mode] == 1


def test_a_retry_happens_within_the_deadline(stub):
    llm = remote(stub.url("flaky"))
    t0 = time.monotonic()
    assert llm.chat(MSGS) == "DoViT stops easy tokens early and saves computation [1]."
    assert stub.requests["flaky"] == 2 and time.monotonic() - t0 < 3
    llm.close()


def test_a_flooding_server_is_read_up_to_max_tokens_then_the_stream_is_closed(stub):
    llm = remote(stub.url("flood"))
    t0 = time.monotonic()
    got = list(llm.stream_chat(MSGS, max_tokens=32))
    read_s = time.monotonic() - t0
    assert got == ["flood "] * 32 and llm.last.finish_reason == "length"
    # the client closed the connection: the server's next writes fail and its handler ends
    deadline = time.monotonic() + 10
    while not any(mode == "flood" for mode, _ in stub.ended) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(mode == "flood" for mode, _ in stub.ended), "the flooding server was never cut off"
    sent = stub.sent["flood"]
    print(f"\nflooding server: 32 tokens read in {read_s:.2f} s; it wrote {sent} chunks until the socket closed")
    assert sent < 2_000_000  # stopped by the closed connection, not by its own cap
    llm.close()


def test_a_server_flooding_chunks_without_text_is_cut_off_too(stub):
    llm = remote(stub.url("empty"))
    t0 = time.monotonic()
    assert llm.chat(MSGS, max_tokens=32) == "" and llm.last.finish_reason == "length"
    assert time.monotonic() - t0 < 2
    llm.close()


def test_a_huge_single_delta_is_not_taken_as_an_answer(stub, monkeypatch):
    """A server that puts megabytes in one chunk: the reader stops at the text a max_tokens answer can have."""
    from assistant import llm as llm_module

    chunks = []

    class _Delta:
        def __init__(self, text):
            self.content = text

    class _Choice:
        def __init__(self, text):
            self.delta, self.finish_reason = _Delta(text), None

    class _Chunk:
        def __init__(self, text):
            self.choices, self.usage = [_Choice(text)], None

    class _Stream:
        def __enter__(self):
            return iter([_Chunk("short "), _Chunk("x" * 3_000_000), _Chunk("never read")])

        def __exit__(self, *exc):
            chunks.append("closed")

    reader = llm_module._StreamReader(_Stream, max_tokens=16)
    deadline = time.monotonic() + 5
    items = [reader.next(deadline) for _ in range(2)]
    assert items[0][0] == "chunk" and items[1] == ("limit", None)
    time.sleep(0.1)
    assert chunks == ["closed"]


def test_a_normal_answer_is_untouched(stub):
    llm = remote(stub.url("ok"))
    assert llm.chat(MSGS) == "DoViT stops easy tokens early and saves computation [1]."
    assert llm.last.finish_reason == "stop" and llm.last.total_s < 3
    llm.close()


# -- through the CLI, the web app and the embedded server -------------------------------------------------------
@pytest.fixture(scope="module")
def small_store(tmp_path_factory, embedder):
    from assistant.corpus import load_corpus

    data = tmp_path_factory.mktemp("limits") / "data"
    build_store(data, load_corpus([SEEDS_DIR / "000_20bba863e7f451be.txt"]).papers, embedder)
    return data


@pytest.mark.slow
@pytest.mark.integration
def test_cli_ask_against_a_trickling_server_ends_at_the_timeout_with_one_error_line(stub, small_store):
    env = clean_env(
        ASSISTANT_DATA_DIR=str(small_store),
        OPENAI_BASE_URL=stub.url("trickle"),
        ASSISTANT_LLM__MODEL="stub",
        ASSISTANT_LLM__TIMEOUT_S="4",
    )
    t0 = time.monotonic()
    run = subprocess.run([BIN / "assistant", "ask", QUESTION], env=env, capture_output=True, text=True, timeout=120)
    said = run.stdout + run.stderr
    assert run.returncode == 3 and "Traceback" not in said, said  # 3: answered with an error (incomplete)
    errors = [line for line in said.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "took longer than 4s (llm.timeout_s)" in errors[0], said
    assert errors[0].endswith("(answer incomplete)") and f"{DOVIT}" in said  # the evidence, quoted and cited
    print(f"\nCLI ask against a trickling server, timeout 4 s: {time.monotonic() - t0:.1f} s including start-up")


@pytest.mark.slow
@pytest.mark.integration
def test_two_questions_in_the_web_app_against_a_server_that_never_finishes_both_end(stub, small_store, embedder):
    """The server sends a token a second for ever (alive, never done): before, both questions streamed for ever."""
    pytest.importorskip("gradio")
    from gradio_client import Client
    from test_ui import free_port

    from assistant.answer import Assistant
    from assistant.retrieve import Retriever
    from assistant.store import PaperStore
    from assistant.ui.app import create_app, launch_kwargs

    settings = Settings(data_dir=small_store, llm={"base_url": stub.url("trickle"), "model": "stub", "timeout_s": 3})
    store = PaperStore(settings, embedder=embedder).open()
    llm = remote(stub.url("trickle"))
    demo, _backend = create_app(settings, Assistant(settings, Retriever(store, settings), llm))
    port = free_port()
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs("127.0.0.1", port, False, None, settings))
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        t0 = time.monotonic()
        # the second with author=[] (an API client's empty multiselect): no filter, before it was the author "[]"
        jobs = [client.submit(QUESTION, "any", "any", "any", author, 3, api_name="/ask") for author in (None, [])]
        finals = [job.result(timeout=60) for job in jobs]
        waited = time.monotonic() - t0
        print(f"\nweb app, two questions against a trickling server (timeout 3 s): both answered in {waited:.1f} s")
        cut = f"the answer from {stub.url('trickle')} took longer than 3s (llm.timeout_s); it was cut off after "
        for _chat, _sources, _which, answer in finals:
            assert answer["incomplete"] and answer["error"].startswith(cut), answer
            assert answer["filters_applied"] == "none" and not answer["refused"]
            assert DOVIT in [c["title"] for c in answer["citations"]]  # the evidence, quoted
        assert waited < 20
    finally:
        demo.close()
        llm.close()
        store.close()


@pytest.mark.slow
@pytest.mark.integration
def test_the_embedded_server_is_bounded_by_the_same_timeout_and_token_limit(tmp_path_factory):
    from procs import shared_gguf

    from assistant.llm_server import EmbeddedServer

    gguf = shared_gguf(tmp_path_factory)
    logs = tmp_path_factory.mktemp("embedded-logs")
    with EmbeddedServer(gguf, alias="qwen", log_dir=logs, n_ctx=2048, threads=2) as server:
        count = [{"role": "user", "content": "Count from 1 to 500, one number per line."}]
        llm = LLM(base_url=server.base_url, model=server.alias, api_key=server.api_key, max_retries=0, server=server)
        got = list(llm.stream_chat(count, max_tokens=24, temperature=0.0))
        assert 0 < len(got) <= 24 and llm.last.completion_tokens <= 24
        t0 = time.monotonic()
        assert llm.chat([{"role": "user", "content": "Say OK."}], max_tokens=4, temperature=0.0).strip()
        fresh = time.monotonic() - t0  # a short answer on this machine now (a loaded machine is slower)
        slow = LLM(
            base_url=server.base_url,
            model=server.alias,
            api_key=server.api_key,
            max_retries=0,
            timeout_s=2.0,
            server=server,
        )
        got, t0 = [], time.monotonic()
        with pytest.raises(
            LLMUnavailable, match=r"took longer than 2s \(llm.timeout_s\); it was cut off after \d+ tokens"
        ):
            for text in slow.stream_chat(count, max_tokens=2000, temperature=0.0):
                got.append(text)
        waited = time.monotonic() - t0
        print(f"\nembedded server, 2000 tokens asked with timeout 2 s: cut off after {waited:.2f} s, {len(got)} tokens")
        assert got and 2.0 <= waited < 2.8
        # the server is free again at once: the next answer is not queued behind the abandoned one
        t0 = time.monotonic()
        assert llm.chat([{"role": "user", "content": "Say OK."}], max_tokens=4, temperature=0.0).strip()
        # queued behind the abandoned 2,000 tokens it would take a minute or more
        assert time.monotonic() - t0 < 2 * fresh + 5
