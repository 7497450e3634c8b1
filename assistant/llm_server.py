"""The embedded llama.cpp server: ``python -m llama_cpp.server`` as a managed child process.

``EmbeddedServer`` listens on 127.0.0.1 only, on a free port, with a random per-run API
key (so other local users cannot borrow it), logs to ``data_dir/logs/llm-server.log`` (the
user's log folder when the data folder is read-only) and is stopped by ``stop()``, at
interpreter exit, on SIGTERM/SIGINT, and by the kernel when the parent dies abruptly
(``PR_SET_PDEATHSIG``). Start-up failures raise one
``LLMStartError`` whose message says why and quotes the end of the server log.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import http.client
import importlib.util
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from assistant.llm_errors import LLMStartError
from assistant.native import CPU_SUPPORT

if TYPE_CHECKING:
    from assistant.config import Settings

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # HTTP_PROXY must not see loopback
LOG_NAME = "llm-server.log"
_LOG_ROTATE_BYTES = 5 << 20
_TAIL_LINES = 25

_KEY_ENV = "ASSISTANT_LLM_SERVER_KEY"
# The start-up generation check: a fixed question, a few tokens at temperature 0 (about 0.3 s on 2 cores).
PROBE_PROMPT = "Reply with one word: OK."
PROBE_TOKENS = 4

# Runs in the child before the server. 1) Ask the kernel to SIGTERM us when the parent goes
# away (even on SIGKILL); bail out if it already did between fork and prctl. 2) The server's
# settings are pydantic BaseSettings: any env var named like a setting (API_KEY, N_CTX, HOST
# and PORT, which even override --host/--port, CONFIG_FILE ...) would leak in, so drop them and
# pass our key as API_KEY (env, not argv: argv is world-readable in /proc).
_BOOTSTRAP = f"""\
import ctypes, os, runpy, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (AttributeError, OSError):
    pass  # not Linux: atexit/signal handlers in the parent still stop us
if os.getppid() != int(sys.argv[1]):
    sys.exit("assistant: parent process exited during start-up")
from llama_cpp.server.settings import ModelSettings, ServerSettings
names = {{*ModelSettings.model_fields, *ServerSettings.model_fields, "config_file"}}
for name in [k for k in os.environ if k.lower() in names]:
    del os.environ[name]
os.environ["API_KEY"] = os.environ.pop("{_KEY_ENV}")
sys.argv = ["llama_cpp.server", *sys.argv[2:]]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""

# (reason, regex over the log tail, explanation). First match wins.
_FAILURES = [
    (
        "missing_package",
        r"No module named '?(llama_cpp|uvicorn|fastapi|sse_starlette|starlette_context|pydantic_settings)",
        "the llama.cpp server package is not installed for {python}: pip install 'llama-cpp-python[server]'",
    ),
    (
        "port_in_use",
        r"address already in use|Errno 98|error while attempting to bind",
        "port {port} on 127.0.0.1 is already in use",
    ),
    (
        "out_of_memory",
        r"out of memory|insufficient memory|failed to allocate|bad_alloc|MemoryError|Cannot allocate memory",
        "out of memory loading {model} with n_ctx={n_ctx}; lower llm.context_window or free RAM",
    ),
    (
        "model_file",
        r"failed to load model|error loading model|gguf_init_from_file|invalid magic|Model path does not exist",
        "the model file {model} could not be loaded (corrupt or not a GGUF); "
        "delete it and its .sha256 marker to re-assemble",
    ),
]


def free_port() -> int:
    """A port the kernel says is free on 127.0.0.1 (a race is possible; start() retries once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_package_missing() -> str | None:
    """Name of the first missing module the server needs in this interpreter, else None."""
    for mod in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(mod) is None:
            return mod
    return None


def _child_env(api_key: str) -> dict[str, str]:
    """Our environment plus the server's key (the child's bootstrap scrubs setting-like names)."""
    return {**os.environ, _KEY_ENV: api_key, "PYTHONUNBUFFERED": "1"}  # unbuffered: lines survive a crash


# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits. Request threads
# (Gradio/anyio workers) come and go, so every child is forked from this one long-lived thread.
_spawner: concurrent.futures.ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def _spawn(args: list[str], **kw) -> subprocess.Popen:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-spawner")
    return _spawner.submit(subprocess.Popen, args, **kw).result()


class EmbeddedServer:
    """A llama.cpp OpenAI-compatible server child process on 127.0.0.1 (context manager)."""

    def __init__(
        self,
        model_path: Path | str,
        *,
        alias: str,
        log_dir: Path | str,
        n_ctx: int = 8192,
        threads: int | None = None,
        startup_timeout_s: float = 120.0,
        port: int | None = None,
        flash_attn: bool = True,
        prompt_cache: bool = False,
        python: str = sys.executable,
        extra_args: list[str] | None = None,
    ):
        self.model_path = Path(model_path)
        self.alias = alias
        self.log_path = Path(log_dir) / LOG_NAME
        self.n_ctx = n_ctx
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.startup_timeout_s = startup_timeout_s
        self.flash_attn = flash_attn
        self.prompt_cache = prompt_cache
        self.python = python
        self.extra_args = list(extra_args or [])
        self._fixed_port = port
        self.port: int | None = port
        self.api_key = SecretStr(secrets.token_urlsafe(24))
        self.startup_s: float | None = None  # seconds from spawn to healthy, last start
        self._proc: subprocess.Popen | None = None
        self._log_file = None
        self._log_offset = 0
        self._lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings: Settings, model_path: Path | str, **kw) -> EmbeddedServer:
        llm = settings.llm
        return cls(
            model_path,
            alias=llm.model or llm.embedded_model,
            log_dir=settings.logs_dir,  # <data dir>/logs, elsewhere when the data folder is read-only
            n_ctx=llm.context_window,
            threads=llm.threads,
            startup_timeout_s=llm.startup_timeout_s,
            **kw,
        )

    # -- public API -------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("EmbeddedServer not started")
        return f"http://{HOST}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_alive(self, grace_s: float = 0.0) -> bool:
        """True while the child process runs (no HTTP request: it would queue behind a generation).

        ``grace_s`` > 0 waits that long for a dying process to finish exiting: its threads can
        outlive the main one by a moment, keeping the socket open (clients see a reset).
        """
        if self._proc is None:
            return False
        if grace_s > 0:
            try:
                self._proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                return True
        return self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def start(self) -> EmbeddedServer:
        """Spawn the server and wait until ``GET /v1/models`` answers; LLMStartError otherwise."""
        with self._lock:
            if self.is_alive():
                return self
            self._preflight()
            try:
                self._start_once()
            except LLMStartError as e:
                # The free port can be taken between probing and binding: one retry on a new port.
                if e.reason != "port_in_use" or self._fixed_port is not None:
                    raise
                log.warning("port %s was taken during start-up; retrying on another port", self.port)
                self._start_once()
            _register(self)
            return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server (its whole process group), SIGKILL after ``timeout`` s."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait(5)
                log.info("stopped embedded LLM server pid %s", proc.pid)
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            _unregister(self)

    def restart(self) -> EmbeddedServer:
        """Stop (if needed) and start again; the port may change, so re-read ``base_url``."""
        with self._lock:
            self.stop()
            return self.start()

    def log_tail(self, lines: int | None = _TAIL_LINES) -> str:
        """The last ``lines`` lines (None: all) this run wrote to the server log."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return text if lines is None else "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid} {self.base_url}" if self.is_alive() else "stopped"
        return f"EmbeddedServer({self.alias!r}, {self.model_path.name}, {state})"

    # -- internals --------------------------------------------------------------------
    def _preflight(self) -> None:
        if self.python == sys.executable and (mod := server_package_missing()):
            raise LLMStartError(
                f"cannot start the embedded LLM: module {mod!r} is missing in {sys.executable}; "
                "install it with: pip install 'llama-cpp-python[server]'",
                reason="missing_package",
            )
        try:
            with open(self.model_path, "rb") as f:
                magic = f.read(4)
        except OSError as e:
            raise LLMStartError(
                f"cannot start the embedded LLM: model file {self.model_path} is missing ({e.strerror})",
                reason="model_file",
            ) from None
        if magic != b"GGUF":
            raise LLMStartError(
                f"cannot start the embedded LLM: {self.model_path} is not a GGUF file (corrupt?); "
                "delete it and its .sha256 marker to re-assemble",
                reason="model_file",
            )

    def _args(self) -> list[str]:
        args = {
            "--model": str(self.model_path),
            "--model_alias": self.alias,
            "--host": HOST,
            "--port": str(self.port),
            "--n_ctx": str(self.n_ctx),
            "--n_threads": str(self.threads),
            "--n_threads_batch": str(self.threads),
            # Default True makes llama-cpp-python copy logits for every prompt token into a
            # numpy array (n_ctx x 151k vocab): measured +5.5 s on a 1.8k-token prompt.
            "--logits_all": "false",
            "--flash_attn": str(self.flash_attn).lower(),  # measured ~+20% prompt speed on CPU
            # mlock of the whole model fails (warning) or pins RAM, depending on ulimit: neither helps.
            "--use_mlock": "false",
            # Default True cuts off a running stream whenever any other request (even GET /v1/models)
            # arrives; we want requests queued instead.
            "--interrupt_requests": "false",
            # The single KV slot always reuses the longest common prefix with the previous prompt.
            # --cache additionally snapshots state per prompt (costly save after each answer).
            "--cache": str(self.prompt_cache).lower(),
            "--verbose": "true",  # load errors and per-request timings go to the log
        }
        # No --chat_format: llama-cpp-python then uses the GGUF's tokenizer.chat_template
        # (the log says "Using gguf chat template").
        return [x for kv in args.items() for x in kv] + self.extra_args

    def _open_log(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.log_path.exists() and self.log_path.stat().st_size > _LOG_ROTATE_BYTES:
            os.replace(self.log_path, self.log_path.with_suffix(".log.1"))
        f = open(self.log_path, "ab")  # noqa: SIM115 - stays open as the child's stdout until stop()
        self._log_offset = f.tell()
        return f

    def _start_once(self) -> None:
        if self._fixed_port is None:
            self.port = free_port()
        self._log_file = self._open_log()
        args = self._args()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        header = f"\n=== {stamp} starting: {self.python} -m llama_cpp.server {' '.join(args)}\n"
        self._log_file.write(header.encode())
        self._log_file.flush()
        t0 = time.monotonic()
        try:
            self._proc = _spawn(
                [self.python, "-c", _BOOTSTRAP, str(os.getpid()), *args],
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=_child_env(self.api_key.get_secret_value()),
                start_new_session=True,  # terminal Ctrl-C goes to us; we decide when it stops
                close_fds=True,
            )
        except OSError as e:
            raise LLMStartError(
                f"cannot start the embedded LLM: {e}", reason="exited", log_path=self.log_path
            ) from None
        log.info("starting embedded LLM server pid %s on %s (log: %s)", self._proc.pid, self.base_url, self.log_path)
        try:
            self._wait_healthy(t0)
            self._probe_generation(t0)
        except BaseException:
            self.stop(timeout=3)
            raise
        self.startup_s = time.monotonic() - t0
        log.info("embedded LLM server healthy and generating in %.1fs", self.startup_s)

    def _wait_healthy(self, t0: float) -> None:
        deadline = t0 + self.startup_timeout_s
        req = urllib.request.Request(
            f"{self.base_url}/models", headers={"Authorization": f"Bearer {self.api_key.get_secret_value()}"}
        )
        while True:
            rc = self._proc.poll()
            if rc is not None:
                raise self._failure(rc)
            try:
                with _NO_PROXY.open(req, timeout=2) as resp:
                    ids = [m.get("id") for m in json.load(resp).get("data", [])]
                if self.alias in ids:  # and not some other server that grabbed the port
                    return
            except (OSError, ValueError):
                pass  # not listening yet: the model loads before uvicorn binds
            if time.monotonic() > deadline:
                tail = self.log_tail()
                raise LLMStartError(
                    f"the embedded LLM server did not become healthy within {self.startup_timeout_s:g}s "
                    "(llm.startup_timeout_s)",
                    reason="timeout",
                    log_tail=tail,
                    log_path=self.log_path,
                )
            time.sleep(0.1)

    def _probe_generation(self, t0: float) -> None:
        """Prove the server can generate, not only list its models: one short chat at temperature 0.

        A llama.cpp build the CPU cannot run loads the model and answers ``/v1/models``, then dies with a signal on
        its first matrix product (AMX: see `assistant.native`); a corrupt model streams "??????". Either is a broken
        installation, reported here in one line, not an answer path for the pipeline to paper over."""
        body = json.dumps(
            {
                "model": self.alias,
                "messages": [{"role": "user", "content": PROBE_PROMPT}],
                "max_tokens": PROBE_TOKENS,
                "temperature": 0.0,
            }
        ).encode()
        req = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=body,
            headers={
                "Authorization": f"Bearer {self.api_key.get_secret_value()}",
                "Content-Type": "application/json",
            },
        )
        timeout = max(30.0, t0 + self.startup_timeout_s - time.monotonic())
        try:
            with _NO_PROXY.open(req, timeout=timeout) as resp:
                reply = json.load(resp)["choices"][0]["message"]["content"] or ""
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            rc = self._proc.wait(2) if self._proc.poll() is None and _is_disconnect(exc) else self._proc.poll()
            if rc is not None:
                raise self._failure(rc, first_generation=True) from None
            raise LLMStartError(
                f"cannot start the embedded LLM: its first generation failed ({type(exc).__name__}: {exc})",
                "probe_failed",
                self.log_tail(),
                self.log_path,
            ) from None
        if not re.search(r"[A-Za-z]", reply):
            raise LLMStartError(
                f"cannot start the embedded LLM: its first generation is not text ({reply[:40]!r}); the model file "
                f"{self.model_path} may be corrupt: delete it and its .sha256 marker to re-assemble",
                "garbage",
                self.log_tail(),
                self.log_path,
            )

    def _failure(self, rc: int, first_generation: bool = False) -> LLMStartError:
        time.sleep(0.1)  # let the last lines reach the file
        run_log, tail = self.log_tail(None), self.log_tail()
        fields = {"python": self.python, "port": self.port, "model": self.model_path, "n_ctx": self.n_ctx}
        for reason, pattern, text in _FAILURES:
            # The whole run: llama.cpp's cause often sits above a long Python traceback.
            if m := re.search(f".*(?:{pattern}).*", run_log, re.IGNORECASE):
                message = f"cannot start the embedded LLM: {text.format(**fields)} (log: {m.group(0).strip()[:200]})"
                return LLMStartError(message, reason, tail, self.log_path)
        if rc < 0 and rc != -signal.SIGKILL:  # SIGSEGV, SIGILL, SIGBUS…: the native code cannot run on this CPU
            when = "on its first generation" if first_generation else "while loading the model"
            return LLMStartError(
                f"the embedded llama.cpp server crashed ({_signal_name(rc)}) {when}: this llama.cpp build cannot run "
                f"on this CPU; rebuild it with `make rebuild-llama` ({CPU_SUPPORT}); log: {self.log_path}",
                "crashed",
                tail,
                self.log_path,
            )
        if rc == -signal.SIGKILL:  # the kernel OOM killer leaves no log line
            return LLMStartError(
                "cannot start the embedded LLM: the server was killed (SIGKILL), most likely out of memory; "
                "lower llm.context_window or free RAM",
                "out_of_memory",
                tail,
                self.log_path,
            )
        return LLMStartError(
            f"cannot start the embedded LLM: the server exited with code {rc} during start-up",
            "exited",
            tail,
            self.log_path,
        )


def _signal_name(rc: int) -> str:
    try:
        return f"{signal.Signals(-rc).name}, code {rc}"
    except ValueError:
        return f"signal {-rc}"


def _is_disconnect(exc: BaseException) -> bool:
    """The server closed the connection without a reply (it may be dying)."""
    return isinstance(exc, (ConnectionError, http.client.RemoteDisconnected, urllib.error.URLError))


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # own session/group: also reaches any helper it forked
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


# -- process-wide clean-up: atexit + SIGTERM/SIGINT ------------------------------------
_live: set[EmbeddedServer] = set()
_atexit_installed = _signals_installed = False


def _register(server: EmbeddedServer) -> None:
    global _atexit_installed, _signals_installed
    _live.add(server)
    if not _atexit_installed:
        _atexit_installed = True
        atexit.register(stop_all)
    if not _signals_installed and threading.current_thread() is threading.main_thread():  # else ValueError
        _signals_installed = True
        for sig in (signal.SIGTERM, signal.SIGINT):
            _chain_signal(sig)


def _unregister(server: EmbeddedServer) -> None:
    _live.discard(server)


def stop_all() -> None:
    """Stop every running EmbeddedServer of this process."""
    for server in list(_live):
        try:
            server.stop(timeout=5)
        except Exception:  # clean-up must not mask the original exit
            log.exception("stopping %r", server)


def _chain_signal(sig: int) -> None:
    previous = signal.getsignal(sig)

    def handler(signum, frame):
        stop_all()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            # Default action of SIGTERM is to die without clean-up; exit "normally" instead.
            raise SystemExit(128 + signum)

    signal.signal(sig, handler)
