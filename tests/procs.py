"""Helpers for the reliability, scale-out, security and load tests: real processes on loopback, bounded.

Every server started here binds 127.0.0.1 on a free port; every wait has a deadline; every process is
stopped by the fixture or ``finally`` that started it (its own process group, SIGTERM then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EMBEDDED = "qwen2.5-coder-0.5b"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, headers: dict | None = None, timeout: float = 2.0) -> int | None:
    """HTTP status of a GET (None when nothing answers)."""
    try:
        with _NO_PROXY.open(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def wait_until(predicate, seconds: float, what: str, interval: float = 0.1, proc: subprocess.Popen | None = None):
    """Poll ``predicate`` until truthy (returned) or ``seconds`` pass (AssertionError naming ``what``)."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g}s")
        time.sleep(interval)


def start(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """A child in its own process group, output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=REPO,
        )


def stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM the child's group, SIGKILL after ``timeout`` s; never raises for a process already gone."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGCONT, 0), (signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        if wait:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)


def shared_gguf(tmp_path_factory) -> Path:
    """The embedded model's GGUF, assembled once per test session (ensure_gguf trusts its marker after that)."""
    from assistant.models import ensure_gguf

    return ensure_gguf(EMBEDDED, tmp_path_factory.getbasetemp() / "shared-models", progress=False)


def link_gguf(gguf: Path, data_dir: Path) -> None:
    """Hard-link the assembled GGUF (and its sha256 marker) into ``data_dir/models`` for LLM.from_settings."""
    models = data_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    for f in (gguf, gguf.with_name(gguf.name + ".sha256")):
        if not (models / f.name).exists():
            try:
                os.link(f, models / f.name)
            except OSError:
                shutil.copy2(f, models / f.name)


def llama_server_args(gguf: Path, port: int, alias: str, api_key: str | None, n_ctx: int = 4096) -> list[str]:
    """``python -m llama_cpp.server`` as a user runs it, with the options the embedded server uses (llm_server.py)."""
    args = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        alias,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        "2",
        "--n_threads_batch",
        "2",
        "--logits_all",
        "false",
        "--flash_attn",
        "true",
        "--use_mlock",
        "false",
        "--interrupt_requests",
        "false",
    ]
    return args + (["--api_key", api_key] if api_key else [])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without settings that would redirect the app, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ASSISTANT_", "OPENAI_")) and k not in ("API_KEY", "HOST", "PORT")
    }
    env.update(extra)
    return env


def build_store(data_dir: Path, papers, embedder) -> None:
    """A real Chroma store in ``data_dir`` holding ``papers`` (closed again: the folder is free to copy or open)."""
    from assistant.config import Settings
    from assistant.store import PaperStore

    with PaperStore(Settings(data_dir=data_dir), embedder=embedder) as store:
        store.ingest(papers, progress=False)


def tree_digest(folder: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file, to show a folder was left untouched."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# -- a scripted OpenAI-compatible endpoint ----------------------------------------------------------------
STUB_ANSWER = ["The first source ", "describes the method ", "and its results [1]."]
# what a remote model says when it declines, whatever its sources hold (``/refuse/v1``)
STUB_REFUSAL = ["I'm sorry, but the provided sources ", "do not contain information ", "to answer this question."]


class JSONHandler(BaseHTTPRequestHandler):
    """Base of the tests' OpenAI-shaped HTTP stubs: quiet, with a JSON reply helper."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _StubHandler(JSONHandler):
    """The first path segment picks the behaviour: ``/ok/v1`` streams ``STUB_ANSWER``, ``/refuse/v1`` streams
    ``STUB_REFUSAL``; ``/500/v1`` and ``/401/v1`` fail every request and echo the caller's Authorization header (as
    a careless server would)."""

    protocol_version = "HTTP/1.1"

    def _fail(self, mode: str) -> bool:
        auth = self.headers.get("Authorization", "")
        if mode == "500":
            self._json(500, {"error": {"message": f"internal error while serving {auth}", "type": "server_error"}})
        elif mode == "401":
            self._json(401, {"error": {"message": f"Incorrect API key provided: {auth}", "code": "invalid_api_key"}})
        else:
            return False
        return True

    def do_GET(self):
        mode = self.path.strip("/").split("/")[0]
        if self._fail(mode):
            return
        self._json(200, {"object": "list", "data": [{"id": "stub", "object": "model", "owned_by": "test"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        mode = self.path.strip("/").split("/")[0]
        if self._fail(mode):
            return
        server = self.server
        with server.lock:
            server.active += 1
            server.requests += 1
            server.max_active = max(server.max_active, server.active)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for i, piece in enumerate(STUB_REFUSAL if mode == "refuse" else STUB_ANSWER):
                time.sleep(server.delay_s)
                delta = {"content": piece, **({"role": "assistant"} if i == 0 else {})}
                self._event({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            self._event({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62}})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True
        finally:
            with server.lock:
                server.active -= 1

    def _event(self, payload: dict) -> None:
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "stub", **payload}
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.flush()


class StubOpenAI:
    """A threaded stub endpoint on 127.0.0.1 (context manager); ``url(mode)`` is a base URL ending in /v1."""

    def __init__(self, delay_s: float = 0.0, port: int = 0):
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _StubHandler)
        self.server.daemon_threads = True
        self.server.delay_s = delay_s
        self.server.lock = threading.Lock()
        self.server.active = self.server.max_active = self.server.requests = 0
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, mode: str = "ok") -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/v1"

    def __enter__(self) -> StubOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


_FAULTY_LLAMA = '''\
"""Test double for a llama.cpp build the CPU cannot run (loaded as sitecustomize in the server's process)."""
import os
import signal

_mode = os.environ.get("PA_TEST_LLAMA_FAULT")
if _mode:
    import llama_cpp

    _orig = llama_cpp.Llama.create_chat_completion
    _when = os.environ.get("PA_TEST_LLAMA_FAULT_WHEN")  # a file: fault only once it exists

    def _garbage(result):
        if isinstance(result, dict):
            result["choices"][0]["message"]["content"] = "??????"
            return result
        return ({**c, "choices": [{**c["choices"][0], "delta": {"content": "??"}}]} for c in result)

    def _faulty(self, *args, **kwargs):
        if _when is None or os.path.exists(_when):
            if _mode == "segv":  # what an AMX build does on its first matrix product
                os.kill(os.getpid(), signal.SIGSEGV)
            return _garbage(_orig(self, *args, **kwargs))  # what a model corrupted in place streams
        return _orig(self, *args, **kwargs)

    llama_cpp.Llama.create_chat_completion = _faulty
'''


def faulty_llama_env(folder: Path, mode: str, when: Path | None = None) -> dict[str, str]:
    """Environment under which the embedded llama.cpp server crashes with SIGSEGV (``mode="segv"``) or generates
    "??????" (``mode="garbage"``) on every generation, or only once the file ``when`` exists. The real server
    runs; its chat completion is patched by a sitecustomize module (the AMX crash cannot be had on other CPUs)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_FAULTY_LLAMA)
    env = {"PYTHONPATH": str(folder), "PA_TEST_LLAMA_FAULT": mode}
    if when is not None:
        env["PA_TEST_LLAMA_FAULT_WHEN"] = str(when)
    return env
