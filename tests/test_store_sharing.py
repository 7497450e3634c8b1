"""A store shared by processes never loses a live ingest (issue 23, items 1 and 10), with a real `chroma run` server
on 127.0.0.1, a real Chroma folder and the real CLI in processes of its own.

- Server mode: an ingest holds a lease on the server (assistant/lease.py). Another process that meets it says so
  in one line and changes nothing, even when the writer has been silent (stopped) for longer than the lease
  timeout: on the same machine only the end of its process proves it gone. A writer killed halfway is rolled back
  by the next command, to the last file it committed; a writer on another machine is judged by its heartbeat, and
  once its lease has been broken it stops at its next write instead of writing over the rollback.
- A Chroma server killed in the middle of a question, or down, is one line (no httpx traceback); `doctor` says
  the server is not answering, or that an ingest (pid N) is running, and never prescribes `ingest --rebuild`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from procs import BIN, JSONHandler, StubOpenAI, clean_env, free_port, http_status, start, stop, wait_until

from assistant.config import SEEDS_DIR, Settings
from assistant.corpus import load_corpus
from assistant.store import JOURNAL, PaperStore

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TIMEOUT_S = 2.0  # ASSISTANT_STORE__LEASE_TIMEOUT_S in these tests (60 s by default)
DOVIT = "Dynamic Token-Pass Transformers for Semantic Segmentation"

# The real CLI with test knobs: 4 chunks per embedding batch and per write, and a gate: before its n-th embedding
# batch the writer waits until the file GATE holds a number >= n (writing n to WAITING), so that the test decides
# how far it gets and acts between two writes, as a slow embedding would let it. FAKE_HOST makes the writer look like
# a process on another machine (its pid cannot be checked from here).
_GATED = textwrap.dedent(
    """
    import os, sys, time
    import assistant.lease as lease
    import assistant.store as store
    from assistant.embed import Embedder
    store.ADD_BATCH = store.WRITE_BATCH = 4
    embed = Embedder.embed_texts
    gate, waiting, n = os.environ["GATE"], os.environ["WAITING"], [0]

    def gated(self, texts):
        n[0] += 1
        with open(waiting, "w") as fh:
            fh.write(str(n[0]))
        while int(open(gate).read() or 0) < n[0]:
            time.sleep(0.05)
        return embed(self, texts)

    Embedder.embed_texts = gated
    if os.environ.get("FAKE_HOST"):
        lease._machine = lambda: {"host": os.environ["FAKE_HOST"], "boot": "another-boot", "pidns": "pid:[1]"}
    from assistant.cli import main
    sys.argv = ["assistant", "ingest", "-q", *sys.argv[1:]]
    main()
    """
)


class Writer:
    """A gated ingest (``_GATED``) in a process of its own."""

    def __init__(self, env: Env, paths: list[Path], who: str = "writer", **extra: str):
        folder = env.tmp / f"{who}-gate"
        folder.mkdir(parents=True, exist_ok=True)
        self.gate, self.waiting, self.allowed = folder / "gate", folder / "waiting", 0
        self.gate.write_text("0")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _GATED, *map(str, paths)],
            env=env.env(who, GATE=str(self.gate), WAITING=str(self.waiting), **extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def _waits_at(self) -> int:
        try:
            return int(self.waiting.read_text() or 0)
        except (OSError, ValueError):
            return 0

    def step_until(self, done, what: str) -> None:
        """Let the writer embed and write one batch at a time until ``done()``; it then waits at the next one."""
        wait_until(
            lambda: self._waits_at() == self.allowed + 1, 300, f"{what}: the writer at its gate", 0.05, self.proc
        )
        while not done():
            self.allowed += 1
            self.gate.write_text(str(self.allowed))
            wait_until(lambda: self._waits_at() == self.allowed + 1, 120, what, 0.05, self.proc)

    def step(self) -> None:
        """Let exactly one more batch be embedded and written."""
        done = self.allowed + 1
        self.step_until(lambda: self.allowed >= done, "one more batch")

    def signal(self, sig: int) -> None:
        os.killpg(self.pid, sig)

    def finish(self) -> tuple[int, str]:
        """Open the gate for good and wait for the end."""
        self.gate.write_text("1000000")
        out, _ = self.proc.communicate(timeout=600)
        return self.proc.returncode, out

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait()


def start_chroma(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = start(
        [str(BIN / "chroma"), "run", "--path", str(folder / "db"), "--host", "127.0.0.1", "--port", str(port)],
        folder / "chroma.log",
        env=clean_env(),
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_status(f"{url}/api/v2/heartbeat") == 200, 60, "chroma run heartbeat", proc=proc)
    return proc, url


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory):
    proc, url = start_chroma(tmp_path_factory.mktemp("chroma-server"))
    try:
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    """Three arXiv-style JSONL files of 12 distinct seed papers each."""
    folder = tmp_path_factory.mktemp("corpus")
    papers = sorted(load_corpus([SEEDS_DIR]).papers, key=lambda p: p.id)[:36]
    out = []
    for n in range(3):
        path = folder / f"part{n + 1}.jsonl"
        rows = [
            {"id": f"2401.{n}{i:04d}", "title": p.title, "authors": ", ".join(p.authors), "abstract": p.abstract}
            for i, p in enumerate(papers[12 * n : 12 * n + 12])
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        out.append(path)
    return out


def titles_of(*paths: Path) -> set[str]:
    return {p.title for p in load_corpus(list(paths)).papers}


class Env:
    """The environment of one test's processes: one server collection, one data folder per process."""

    def __init__(self, tmp: Path, url: str | None, collection: str, **extra: str):
        self.tmp, self.url, self.collection = tmp, url, collection
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "OPENAI_"))}
        base.update(
            PYTHONPATH=os.pathsep.join(sys.path),
            ASSISTANT_STORE__COLLECTION=collection,
            ASSISTANT_STORE__LEASE_TIMEOUT_S=str(TIMEOUT_S),
            **extra,
        )
        if url:
            base["ASSISTANT_STORE__CHROMA_URL"] = url
        self.base = base

    def env(self, who: str, **extra: str) -> dict[str, str]:
        return {**self.base, "ASSISTANT_DATA_DIR": str(self.tmp / who), **extra}

    def cli(self, *args: str, who: str = "reader", **extra: str) -> tuple[int, str]:
        r = subprocess.run(
            [str(BIN / "assistant"), *args],
            env=self.env(who, **extra),
            capture_output=True,
            text=True,
            timeout=600,
        )
        out = r.stdout + r.stderr
        assert "Traceback" not in out and "httpx" not in out, out
        assert len([line for line in out.splitlines() if line.startswith("error:")]) <= 1, out
        return r.returncode, out

    def store(self) -> PaperStore:
        settings = Settings(
            data_dir=self.tmp / "check",
            store={"chroma_url": self.url, "collection": self.collection, "lease_timeout_s": TIMEOUT_S},
        )
        return PaperStore(settings, read_only=False)


def _server(url: str, collection: str):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    host, port = url.removeprefix("http://").split(":")
    client = chromadb.HttpClient(host=host, port=int(port), settings=ChromaSettings(anonymized_telemetry=False))
    return client.get_or_create_collection(collection), client.get_or_create_collection(f"{collection}-lease")


def journal_file(url: str, collection: str) -> str | None:
    """The file whose unit is being written, as the journal on the server names it."""
    _, lease = _server(url, collection)
    got = lease.get(ids=["journal"], include=["metadatas"])
    return got["metadatas"][0]["file"] if got["ids"] else None


def chunk_count(url: str, collection: str) -> int:
    return _server(url, collection)[0].count()


def check_complete(env: Env, want: set[str]) -> None:
    """The store holds exactly ``want``, every paper with all its chunks, no chunk twice."""
    with env.store() as store:
        state = store._state()
        ids = store.collection.get(include=[])["ids"]
        papers = {p.title for p in store.papers()}
    assert papers == want
    assert all(e["chunks"] == set(range(e["n_chunks"])) and e.get("paper_json") for e in state.values())
    assert len(ids) == len(set(ids))


def test_a_live_ingest_is_never_rolled_back_and_a_killed_ones_half_file_is(chroma_url, files, tmp_path):
    env = Env(tmp_path, chroma_url, "live")
    f1, f2, f3 = files
    writer = Writer(env, files)
    try:
        # the first file committed, the second half written: the writer waits for its next embedding batch
        writer.step_until(lambda: journal_file(chroma_url, "live") == str(f2), "f2 started")
        writer.step()  # one batch of it written; the writer waits for its next embedding batch
        count = chunk_count(chroma_url, "live")
        code, out = env.cli("papers", "--json")
        assert code == 1, out
        assert f"error: an ingest (pid {writer.pid}) is running on the Chroma server at {chroma_url}: ingest of " in out
        assert "(its process is running); run this again when it has finished (nothing was changed)" in out
        code, out = env.cli("doctor", "--no-llm")
        assert code == 1 and f"an ingest (pid {writer.pid}) is running" in out, out
        assert "ingest --rebuild" not in out and "doctor --fix" not in out

        # silent (stopped) for longer than the lease timeout: on this machine its process proves it alive
        writer.signal(signal.SIGSTOP)
        time.sleep(2 * TIMEOUT_S + 1)
        code, out = env.cli("papers", "--json")
        assert code == 1 and f"an ingest (pid {writer.pid}) is running" in out and "its process is running" in out
        writer.signal(signal.SIGCONT)
        assert chunk_count(chroma_url, "live") == count  # nothing of the live ingest was removed

        writer.step_until(lambda: journal_file(chroma_url, "live") == str(f3), "f3 started")
        writer.step()  # one batch of it written; the writer waits for its next embedding batch
        writer.signal(signal.SIGKILL)
        writer.proc.wait(10)
    finally:
        writer.kill()
    assert chunk_count(chroma_url, "live") > 24  # the half third file is in Chroma until rolled back

    code, out = env.cli("doctor", "--no-llm")
    assert code == 1 and f"the ingest of {f1}, {f2} and 1 more files by pid {writer.pid} was cut short" in out, out
    assert f"its process (pid {writer.pid}) has ended" in out and "to fix: run `assistant doctor --fix`" in out
    code, out = env.cli("papers", "--json")
    assert code == 0, out
    assert f"note: an interrupted ingest of {f3} was rolled back: none of its records is stored" in out
    listed = {json.loads(line)["title"] for line in out.splitlines() if line.startswith("{")}
    assert listed == titles_of(f1, f2)  # the two files the killed writer committed, none of the third
    check_complete(env, titles_of(f1, f2))

    code, out = env.cli("ingest", "-q", *map(str, files), who="rerun")
    assert code == 0, out
    check_complete(env, titles_of(*files))
    assert journal_file(chroma_url, "live") is None


def test_a_writer_on_another_machine_is_judged_by_its_heartbeat_and_stops_once_its_lease_is_broken(
    chroma_url, files, tmp_path
):
    env = Env(tmp_path, chroma_url, "remote")
    f1, f2, _ = files
    writer = Writer(env, files, FAKE_HOST="node-b")
    try:
        writer.step_until(lambda: journal_file(chroma_url, "remote") == str(f2), "f2 started")
        writer.step()  # one batch of it written; the writer waits for its next embedding batch
        code, out = env.cli("papers", "--json")
        assert code == 1 and f"an ingest (pid {writer.pid} on node-b) is running" in out, out
        assert "its last heartbeat was" in out

        writer.signal(signal.SIGSTOP)  # another machine's writer goes silent: only its heartbeat tells
        time.sleep(TIMEOUT_S + 1.5)
        code, out = env.cli("papers", "--json")
        assert code == 0, out
        assert f"note: an interrupted ingest of {f2} was rolled back" in out
        assert {json.loads(line)["title"] for line in out.splitlines() if line.startswith("{")} == titles_of(f1)
        writer.signal(signal.SIGCONT)  # it was only stopped: it must not write over the rollback
        code, out = writer.finish()
    finally:
        writer.kill()
    assert code == 1, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in out, out
    assert errors[0].startswith(f"error: the ingest of {f2} stopped: its lease on the Chroma server was ")
    assert f"after a silence longer than {TIMEOUT_S:g} s" in errors[0]
    check_complete(env, titles_of(f1))


class _GatedModels(JSONHandler):
    """An OpenAI-compatible stub whose model list first runs the server's ``on_models`` (once)."""

    def do_GET(self):
        hook, self.server.on_models = self.server.on_models, None
        if hook:
            hook()
        self._json(200, {"object": "list", "data": [{"id": "stub", "object": "model", "owned_by": "test"}]})


def test_a_chroma_server_killed_mid_question_or_down_is_one_line_and_doctor_says_so(files, tmp_path, embedder):
    proc, url = start_chroma(tmp_path / "server")
    try:
        with PaperStore(Settings(data_dir=tmp_path / "seed", store={"chroma_url": url}), embedder=embedder) as store:
            store.ingest(load_corpus([SEEDS_DIR / "000_20bba863e7f451be.txt"]).papers, progress=False)
        env = Env(tmp_path, url, "papers", ASSISTANT_LLM__MODEL="stub")

        # ask: the store is open and its papers read when the server dies, before the question's search
        gate = ThreadingHTTPServer(("127.0.0.1", 0), _GatedModels)
        gate.on_models = lambda: stop(proc)
        threading.Thread(target=gate.serve_forever, daemon=True).start()
        try:
            base = f"http://127.0.0.1:{gate.server_address[1]}/v1"
            code, out = env.cli("ask", "What is DoViT?", ASSISTANT_LLM__BASE_URL=base)
        finally:
            gate.shutdown()
        assert proc.poll() is not None  # it was killed mid-question
        assert code == 1, out
        (line,) = [x for x in out.splitlines() if x.startswith("error:")]
        assert line.startswith(f"error: the Chroma server at {url} is not answering (ConnectError: ")
        assert line.endswith("or point ASSISTANT_STORE__CHROMA_URL at one that runs; nothing was changed")

        # chat: one question answered, the server killed, the next one is one line and the chat goes on
        proc, url = start_chroma(tmp_path / "server")  # the same store again, on a new port
        env = Env(tmp_path, url, "papers", ASSISTANT_LLM__MODEL="stub")
        with StubOpenAI() as stub:
            chat = subprocess.Popen(
                [str(BIN / "assistant"), "chat"],
                env=env.env("chat", ASSISTANT_LLM__BASE_URL=stub.url("ok")),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            seen: list[str] = []
            threading.Thread(target=lambda: seen.extend(iter(chat.stdout.readline, "")), daemon=True).start()
            try:
                chat.stdin.write("What is DoViT?\n")
                chat.stdin.flush()
                wait_until(lambda: any("references:" in x for x in seen), 300, "first answer", 0.2, chat)
                stop(proc)
                chat.stdin.write("How does DoViT reduce computation?\n")
                chat.stdin.flush()
                wait_until(lambda: any(x.startswith("error:") for x in seen), 120, "second question", 0.2, chat)
                chat.stdin.write("/quit\n")
                chat.stdin.flush()
                chat.wait(60)
            finally:
                stop(chat)
        out = "".join(seen)
        assert chat.returncode == 0 and "Traceback" not in out and "httpx" not in out, out
        (line,) = [x for x in out.splitlines() if x.startswith("error:")]
        assert line.startswith(f"error: the Chroma server at {url} is not answering")

        # the server down: every command says so in one line; doctor prescribes nothing destructive
        code, out = env.cli("doctor", "--no-llm")
        assert code == 1 and f"PROBLEM open: the Chroma server at {url} is not answering" in out, out
        assert "ingest --rebuild" not in out and "to fix: do what the problem above says" in out
        for args in (["papers"], ["ingest", "-q", str(files[0])]):
            code, out = env.cli(*args)
            assert code == 1 and f"error: the Chroma server at {url} is not answering" in out, out
    finally:
        stop(proc)


def test_doctor_ask_and_papers_during_a_live_local_ingest_name_it_and_it_completes(files, tmp_path):
    env = Env(tmp_path, None, "papers")
    f1, f2, _ = files
    data = tmp_path / "writer"
    writer = Writer(env, [f1, f2])
    try:
        writer.step_until(lambda: (data / JOURNAL).exists() and (data / "chroma").is_dir(), "in f1")
        code, out = env.cli("doctor", "--no-llm", who="writer")
        assert code == 1, out
        assert f"PROBLEM store: an ingest (pid {writer.pid}) is running (ingest of {f1}, {f2})" in out
        assert "--rebuild" not in out and "doctor --fix" not in out
        for args in (["papers"], ["ask", "What is DoViT?"]):
            code, out = env.cli(*args, who="writer", ASSISTANT_LLM__BASE_URL="http://127.0.0.1:9/v1")
            assert code == 1, out
            assert f"is in use by pid {writer.pid}: an ingest is running (ingest of {f1}, {f2})" in out, out
        code, out = writer.finish()
    finally:
        writer.kill()
    assert code == 0, out
    code, out = env.cli("doctor", "--no-llm", who="writer")
    assert code == 0 and "the store is healthy" in out, out
    code, out = env.cli("papers", "--json", who="writer")
    assert {json.loads(line)["title"] for line in out.splitlines() if line.startswith("{")} == titles_of(f1, f2)


def test_a_lease_whose_process_ended_or_whose_pid_was_reused_is_judged_dead():
    from assistant import lease

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    holder = {**lease.identity("ingest of big.jsonl"), "pid": child.pid, "pstart": lease.process_start(child.pid) or ""}
    wait_until(lambda: lease.process_start(child.pid) is None, 10, "the child to exit")  # not yet reaped: a zombie
    assert lease.judge(holder, timeout_s=60)[0] is False
    child.wait()
    assert lease.judge(holder, timeout_s=60) == (False, f"its process (pid {child.pid}) has ended")
    me = lease.identity("ingest of big.jsonl")
    assert lease.judge(me, timeout_s=60) == (True, "its process is running")
    assert lease.judge({**me, "pstart": "1"}, timeout_s=60)[0] is False  # the pid now belongs to another process
