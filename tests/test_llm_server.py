"""Real GGUF assembly and a real embedded llama.cpp server (slow: ~1 min on 2 cores).

One assembled GGUF (~490 MB) is shared by the whole session; one server by the module.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from assistant.config import Settings
from assistant.llm import LLM, LLMAuthError
from assistant.llm_server import EmbeddedServer, LLMStartError
from assistant.models import MODELS, ensure_gguf

pytestmark = [pytest.mark.slow, pytest.mark.integration]

NAME = "qwen2.5-coder-0.5b"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def gguf(tmp_path_factory) -> Path:
    models_dir = tmp_path_factory.mktemp("llm-models")
    t0 = time.monotonic()
    path = ensure_gguf(NAME, models_dir, progress=False)
    print(f"\nassembled {path.name} in {time.monotonic() - t0:.1f}s")
    return path


@pytest.fixture(scope="module")
def server(gguf, tmp_path_factory):
    with EmbeddedServer(gguf, alias=NAME, log_dir=tmp_path_factory.mktemp("logs"), n_ctx=4096, threads=2) as srv:
        print(f"\nserver healthy in {srv.startup_s:.1f}s")
        yield srv


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.1)
    return False


def _port_free(port: int) -> bool:
    """True if a server could listen on the port now (SO_REUSEADDR, as servers do: TIME_WAIT is fine)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
            return True
        except OSError:
            return False


def test_assembly_is_verified_and_second_call_fast(gguf):
    marker = gguf.with_name(gguf.name + ".sha256").read_text()
    assert MODELS[NAME].sha256 in marker and gguf.open("rb").read(4) == b"GGUF"
    t0 = time.monotonic()
    assert ensure_gguf(NAME, gguf.parent, progress=False) == gguf
    assert time.monotonic() - t0 < 0.5  # no re-hash of 490 MB


def test_server_listens_on_loopback_only_and_uses_gguf_template(server):
    assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
    listening = {c.laddr.ip for c in psutil.Process(server.pid).net_connections("inet") if c.status == "LISTEN"}
    assert listening == {"127.0.0.1"}
    log = server.log_path.read_text()
    assert "Using gguf chat template" in log and "Using fallback chat format" not in log


def test_env_named_like_server_settings_is_ignored(gguf, tmp_path, monkeypatch):
    # llama_cpp.server reads HOST/PORT/API_KEY/N_CTX/CONFIG_FILE from the environment.
    for var, val in {
        "HOST": "0.0.0.0",
        "PORT": "1",
        "API_KEY": "sk-env",
        "N_CTX": "64",
        "CONFIG_FILE": "/nope",
    }.items():
        monkeypatch.setenv(var, val)
    with EmbeddedServer(gguf, alias=NAME, log_dir=tmp_path, n_ctx=2048, threads=1) as srv:
        listening = {
            (c.laddr.ip, c.laddr.port) for c in psutil.Process(srv.pid).net_connections() if c.status == "LISTEN"
        }
        assert listening == {("127.0.0.1", srv.port)}
        assert re.search(r"llama_context: n_ctx\s+= 2048", srv.log_tail(None))


def test_real_streamed_chat(server):
    llm = LLM(
        base_url=server.base_url, model=NAME, api_key=server.api_key, max_retries=0, timeout_s=60, server=server
    )  # not closed: the module's server stays up
    assert llm.describe() == f"embedded llama.cpp {NAME} at {server.base_url}"
    chunks = list(
        llm.stream_chat(
            [{"role": "user", "content": "Name one primary colour. One word."}], max_tokens=16, temperature=0.0
        )
    )
    text = "".join(chunks).strip()
    assert text and "<|im_end|>" not in text and "<|im_start|>" not in text  # template applied, stop token honoured
    s = llm.last
    assert s.completion_tokens >= 1 and s.prompt_tokens and s.prompt_tokens > 5 and s.time_to_first_token_s
    assert llm.count_tokens("hello world") == 2  # the server's own tokenizer


def test_the_citation_grammar_is_enforced_by_the_real_server(server):
    """Constrained decoding must really hold: llama.cpp releases have ignored a grammar or schema silently."""
    from assistant.cite import CITED_SENTENCE, cited_grammar

    llm = LLM(base_url=server.base_url, model=NAME, api_key=server.api_key, max_retries=0, timeout_s=60, server=server)
    ask = [{"role": "user", "content": "Reply with exactly these words and nothing else: hello world, no sources"}]
    free = llm.chat(ask, max_tokens=24, temperature=0.0).strip()
    constrained = llm.chat(ask, max_tokens=64, temperature=0.0, grammar=cited_grammar(2, 3)).strip()
    whole = re.compile(rf"{CITED_SENTENCE.pattern}(?: {CITED_SENTENCE.pattern})*")
    assert not whole.fullmatch(free), free  # unconstrained, the model does what it was told: no marker
    assert whole.fullmatch(constrained), constrained  # constrained, every sentence ends "[1]." or "[2]."
    assert not re.search(r"\[(?![12]\])", constrained)  # and names only sources that exist


def test_wrong_key_is_rejected(server):
    llm = LLM(base_url=server.base_url, model=NAME, api_key="sk-wrong-key-000", max_retries=0, timeout_s=30)
    with pytest.raises(LLMAuthError, match="rejected the API key") as info:
        llm.chat([{"role": "user", "content": "hi"}], max_tokens=4)
    assert "sk-wrong-key-000" not in str(info.value)


def test_stop_frees_port(gguf, tmp_path):
    srv = EmbeddedServer(gguf, alias=NAME, log_dir=tmp_path, n_ctx=2048, threads=2).start()
    port, pid = srv.port, srv.pid
    assert not _port_free(port)
    srv.stop()
    assert not srv.is_alive() and _gone(pid) and _port_free(port)


def test_llm_restarts_a_crashed_server_once(gguf, tmp_path, caplog):
    settings = Settings(data_dir=tmp_path, llm={"context_window": 2048, "threads": 2})
    (tmp_path / "models").mkdir()
    for f in (gguf, gguf.with_name(gguf.name + ".sha256")):  # reuse the session's copy (hard link, same mtime)
        os.link(f, tmp_path / "models" / f.name)
    llm = LLM.from_settings(settings, progress=False)
    try:
        first_pid = llm.server.pid
        os.kill(first_pid, signal.SIGKILL)
        assert _wait_gone(first_pid, 5)
        answer = llm.chat([{"role": "user", "content": "Say OK."}], max_tokens=8, temperature=0.0)
        assert answer.strip() and llm.last.restarted_server
        assert llm.server.is_alive() and llm.server.pid != first_pid
        assert llm.base_url == llm.server.base_url
        assert "died with code -9; restarting it" in caplog.text
    finally:
        llm.close()
    assert not llm.server.is_alive()


_PARENT = textwrap.dedent(
    """
    import sys, time, signal
    sys.path.insert(0, {repo!r})
    from assistant.llm_server import EmbeddedServer
    srv = EmbeddedServer({gguf!r}, alias="m", log_dir={logs!r}, n_ctx=2048, threads=1).start()
    print(srv.pid, flush=True)
    if {mode!r} == "exit":
        sys.exit(0)  # atexit must stop the server
    time.sleep(120)
    """
)


@pytest.mark.parametrize("mode", ["sigkill", "sigterm", "exit"])
def test_server_dies_with_its_parent(gguf, tmp_path, mode):
    script = _PARENT.format(repo=str(REPO), gguf=str(gguf), logs=str(tmp_path), mode=mode)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert psutil.Process(child).ppid() == parent.pid
        if mode == "sigkill":
            parent.kill()  # no atexit, no handlers: only PR_SET_PDEATHSIG can help
        elif mode == "sigterm":
            parent.terminate()
        parent.wait(15)
        assert _wait_gone(child, 10), f"server {child} survived its parent ({mode})"
    finally:
        parent.kill()
        with contextlib.suppress(ProcessLookupError, UnboundLocalError):
            os.kill(child, signal.SIGKILL)


# -- start-up failures: one LLMStartError with the reason and the log tail ---------------------
def test_port_in_use(gguf, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LLMStartError, match=f"port {port} on 127.0.0.1 is already in use") as info:
            EmbeddedServer(gguf, alias=NAME, log_dir=tmp_path, n_ctx=2048, port=port).start()
    assert info.value.reason == "port_in_use" and "address already in use" in info.value.log_tail


def test_corrupt_model_file(tmp_path):
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(4096))
    with pytest.raises(LLMStartError, match="could not be loaded") as info:
        EmbeddedServer(bad, alias=NAME, log_dir=tmp_path, n_ctx=2048).start()
    assert info.value.reason == "model_file" and str(info.value.log_path) in str(info.value)


def test_out_of_memory(gguf, tmp_path):
    # A 30M-token context needs a ~370 GB KV cache: llama.cpp's allocation fails at once.
    with pytest.raises(LLMStartError, match=r"out of memory .*n_ctx=30000000.*lower llm.context_window") as info:
        EmbeddedServer(gguf, alias=NAME, log_dir=tmp_path, n_ctx=30_000_000).start()
    assert info.value.reason == "out_of_memory"


def test_startup_timeout(gguf, tmp_path):
    with pytest.raises(LLMStartError, match=r"within 0\.2s \(llm\.startup_timeout_s\)") as info:
        EmbeddedServer(gguf, alias=NAME, log_dir=tmp_path, n_ctx=2048, startup_timeout_s=0.2).start()
    assert info.value.reason == "timeout"


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs a Python without llama_cpp")
def test_missing_llama_cpp_package(gguf, tmp_path):
    if subprocess.run(["/usr/bin/python3", "-c", "import llama_cpp"], capture_output=True).returncode == 0:
        pytest.skip("/usr/bin/python3 has llama_cpp")
    with pytest.raises(LLMStartError, match=r"pip install 'llama-cpp-python\[server\]'") as info:
        EmbeddedServer(gguf, alias=NAME, log_dir=tmp_path, python="/usr/bin/python3").start()
    assert info.value.reason == "missing_package"


def test_server_outlives_the_thread_that_started_it(gguf, tmp_path):
    """PR_SET_PDEATHSIG follows the forking *thread*; request threads come and go (Gradio/anyio)."""
    import threading

    box = {}
    t = threading.Thread(
        target=lambda: box.setdefault(
            "srv", EmbeddedServer(gguf, alias=NAME, log_dir=tmp_path, n_ctx=2048, threads=1).start()
        )
    )
    t.start()
    t.join()
    try:
        time.sleep(1.0)
        assert box["srv"].is_alive()
    finally:
        box["srv"].stop()


# -- a build the CPU cannot run, a model that writes garbage: errors, never an answer path (README: CPU support) --
def test_the_installed_build_has_no_amx_kernels_and_is_native(server):
    from assistant.native import amx_compiled, cpu_flags, system_info

    info = system_info()
    assert not amx_compiled(info), info
    flags = cpu_flags().split()
    # native code generation: what this CPU has, the build uses (the speed of a plain native build)
    for flag, feature in (("avx2", "AVX2 = 1"), ("avx512f", "AVX512 = 1"), ("fma", "FMA = 1")):
        if flag in flags:
            assert feature in info, (flag, info)
    llm = LLM(base_url=server.base_url, model=NAME, api_key=server.api_key, max_retries=0, timeout_s=60, server=server)
    assert llm.chat([{"role": "user", "content": "Say OK."}], max_tokens=4, temperature=0.0).strip()


def test_the_start_checks_a_generation_not_only_the_model_list(server):
    assert "/v1/chat/completions" in server.log_tail(None)  # the start-up probe went through the server


def test_a_server_that_crashes_on_its_first_generation_is_one_clear_error(gguf, tmp_path, monkeypatch):
    from procs import faulty_llama_env

    for k, v in faulty_llama_env(tmp_path / "site", "segv").items():
        monkeypatch.setenv(k, v)
    with pytest.raises(LLMStartError) as info:
        EmbeddedServer(gguf, alias=NAME, log_dir=tmp_path, n_ctx=2048, threads=2).start()
    err = info.value
    assert err.reason == "crashed"
    line = err.summary
    assert "\n" not in line
    assert "crashed (SIGSEGV" in line and "on its first generation" in line  # what crashed
    assert "make rebuild-llama" in line and "CPU support" in line  # the fix
    assert str(err.log_path) in line  # the log


def test_a_model_that_generates_garbage_fails_the_start(gguf, tmp_path, monkeypatch):
    from procs import faulty_llama_env

    for k, v in faulty_llama_env(tmp_path / "site", "garbage").items():
        monkeypatch.setenv(k, v)
    with pytest.raises(LLMStartError, match=r"first generation is not text \('\?\?\?\?\?\?'\)") as info:
        EmbeddedServer(gguf, alias=NAME, log_dir=tmp_path, n_ctx=2048, threads=2).start()
    assert info.value.reason == "garbage"


def test_a_model_that_dies_and_cannot_restart_ends_the_answer_with_an_error(gguf, tmp_path, monkeypatch, seed_store):
    """A server that dies mid-answer is restarted; when the restarted one crashes too, the installation is broken:
    the answer ends with that error instead of quoting the evidence as if nothing were wrong."""
    from procs import faulty_llama_env, link_gguf

    from assistant.answer import Assistant
    from assistant.retrieve import Retriever

    crash_now = tmp_path / "crash-now"
    for k, v in faulty_llama_env(tmp_path / "site", "segv", when=crash_now).items():
        monkeypatch.setenv(k, v)
    settings = Settings(data_dir=tmp_path / "data", llm={"context_window": 2048, "threads": 2})
    link_gguf(gguf, settings.data_dir)
    llm = LLM.from_settings(settings, progress=False)  # starts and generates: the fault is not armed yet
    try:
        assistant = Assistant(settings, Retriever(seed_store, settings), llm)
        crash_now.touch()
        with pytest.raises(LLMStartError, match=r"crashed \(SIGSEGV"):
            assistant.ask("How does DoViT reduce the cost of semantic segmentation?")
    finally:
        llm.close()


def test_cli_ask_and_doctor_report_a_crashing_model_in_one_line(gguf, tmp_path, embedder, seed_corpus):
    from procs import BIN, build_store, clean_env, faulty_llama_env, link_gguf

    data = tmp_path / "data"
    build_store(data, seed_corpus.papers[:12], embedder)
    link_gguf(gguf, data)
    env = clean_env(ASSISTANT_DATA_DIR=str(data), **faulty_llama_env(tmp_path / "site", "segv"))
    ask = subprocess.run(
        [BIN / "assistant", "ask", "What does DoViT do?"], env=env, capture_output=True, text=True, timeout=300
    )
    said = ask.stdout + ask.stderr
    assert ask.returncode == 1, said
    assert "Traceback" not in said and "Quoted from the abstracts" not in said
    errors = [line for line in said.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "crashed (SIGSEGV" in errors[0] and "make rebuild-llama" in errors[0], said
    doctor = subprocess.run([BIN / "assistant", "doctor"], env=env, capture_output=True, text=True, timeout=300)
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert re.search(r"PROBLEM LLM: .*crashed \(SIGSEGV", doctor.stdout), doctor.stdout
    assert "ok      llama.cpp: built for this CPU without AMX" in doctor.stdout
    assert "to fix: run `make rebuild-llama`" in doctor.stdout
