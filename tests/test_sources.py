"""Every ingest source is read through the same byte limit (issue 23, item 2), with real devices, FIFOs and a
shell's process substitution: a character device is refused unread, a FIFO nobody writes to is refused after
``ASSISTANT_INGEST__PIPE_TIMEOUT_S``, a pipe that sends more than ``ASSISTANT_INGEST__MAX_FILE_MB`` is refused once
it has, and a pipe that sends a corpus file is ingested (and kept, for ``ingest --rebuild``). Each refusal is one
line naming the source and saying which; the other sources of the call are still ingested and nothing stored is
lost.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from procs import BIN

from assistant.config import SEEDS_DIR, Settings
from assistant.corpus import load_corpus, parse_file
from assistant.corpus.limits import IngestLimits
from assistant.store import PaperStore, added_files

RECORDS = [
    {
        "id": "2301.00001",
        "title": "Quokka Attention for Long Documents",
        "authors": "Ada Lovelace, Alan Turing",
        "abstract": "We introduce Quokka Attention, a sparse attention pattern inspired by marsupial foraging. It "
        "reduces the memory of long-document transformers by 73% while keeping perplexity within 0.2 points.",
        "categories": "cs.CL",
        "update_date": "2023-01-02",
    },
    {
        "id": "2301.00002",
        "title": "Wombat Pooling for Graph Networks",
        "authors": "Grace Hopper",
        "abstract": "We propose Wombat Pooling, a hierarchical pooling operator for graph neural networks that keeps "
        "the nodes with the largest spectral energy, and report gains on five molecular property benchmarks.",
        "categories": "cs.LG",
        "update_date": "2023-01-03",
    },
]
TEXT = "".join(json.dumps(r) + "\n" for r in RECORDS).encode()
DEVICES = [d for d in ("/dev/zero", "/dev/urandom", "/dev/null") if os.path.exists(d)]


def _refusal(result) -> str:
    (issue,) = result.issues
    assert issue.level == "error" and "\n" not in issue.message and not result.papers
    return issue.message


@pytest.mark.parametrize("device", DEVICES)
def test_character_devices_are_refused_unread(device):
    t0 = time.monotonic()
    r = parse_file(device)
    assert time.monotonic() - t0 < 1.0  # not read: /dev/zero and /dev/urandom never end
    assert _refusal(r) == (
        "file refused: it is a character device (like /dev/zero, /dev/urandom or a terminal: it never ends), not a "
        "corpus file; nothing was read from it"
    )


def test_a_fifo_nobody_writes_to_is_refused_after_the_pipe_timeout(tmp_path):
    fifo = tmp_path / "papers.jsonl"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    r = parse_file(fifo, IngestLimits(pipe_timeout_s=1.0))
    waited = time.monotonic() - t0
    assert 1.0 <= waited < 4.0, waited
    assert _refusal(r) == (
        "file refused: it is a pipe (a FIFO or <(...)) that sent no data within 1 s "
        "(ASSISTANT_INGEST__PIPE_TIMEOUT_S); nothing was read from it"
    )


def _writer(fifo: Path, chunks: list[bytes], pause_s: float = 0.0, then_hold_s: float = 0.0) -> threading.Thread:
    """A writer thread: opens the FIFO, writes the chunks (pausing between them), holds it open, closes it."""

    def run() -> None:
        with open(fifo, "wb", buffering=0) as fh:
            for chunk in chunks:
                fh.write(chunk)
                time.sleep(pause_s)
            time.sleep(then_hold_s)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_a_fifo_that_sends_a_corpus_file_is_read_and_its_bytes_kept(tmp_path):
    fifo = tmp_path / "papers.jsonl"
    os.mkfifo(fifo)
    # the writer comes late (within the timeout) and sends in pieces, as a slow producer does
    threading.Timer(0.5, lambda: _writer(fifo, [TEXT[:100], TEXT[100:]], pause_s=0.3)).start()
    r = parse_file(fifo, IngestLimits(pipe_timeout_s=3.0))
    assert [p.title for p in r.papers] == [rec["title"] for rec in RECORDS] and not r.issues
    assert r.content == TEXT  # a pipe cannot be read twice: the copy for `ingest --rebuild` is made from these


def test_a_fifo_that_stalls_or_floods_is_refused_saying_which(tmp_path):
    stall = tmp_path / "stall.jsonl"
    os.mkfifo(stall)
    w = _writer(stall, [TEXT[:120]], then_hold_s=3.0)  # sends a little, then keeps the pipe open and silent
    r = parse_file(stall, IngestLimits(pipe_timeout_s=1.0))
    assert _refusal(r) == (
        "file refused: it is a pipe (a FIFO or <(...)) that stopped sending after 120 bytes and stayed silent for "
        "1 s (ASSISTANT_INGEST__PIPE_TIMEOUT_S); nothing was read from it"
    )
    w.join(5)

    flood = tmp_path / "flood.jsonl"
    os.mkfifo(flood)
    stop = threading.Event()

    def endless() -> None:
        with open(flood, "wb") as fh:
            try:
                while not stop.is_set():
                    fh.write(TEXT * 100)
            except BrokenPipeError:  # the reader stopped reading: what a refusing reader does
                pass

    t = threading.Thread(target=endless, daemon=True)
    t.start()
    r = parse_file(flood, IngestLimits(max_file_bytes=2_000_000, pipe_timeout_s=5.0))
    stop.set()
    assert _refusal(r) == (
        "file refused: it is a pipe that sent more than 2 MB, over the 2 MB limit per file "
        "(ASSISTANT_INGEST__MAX_FILE_MB); split it or raise the limit; nothing was read from it"
    )
    t.join(5)


def _cli_env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "OPENAI_"))}
    env.update(ASSISTANT_DATA_DIR=str(data), PYTHONPATH=os.pathsep.join(sys.path), **extra)
    return env


@pytest.mark.slow
@pytest.mark.integration
def test_cli_ingest_of_devices_fifos_and_process_substitution_in_one_line_each(tmp_path):
    """The real CLI in bash: ``<(...)`` is a pipe like any other; devices and a silent FIFO cost one line each,
    and the good sources of the same call are ingested."""
    if shutil.which("bash") is None:
        pytest.skip("bash is needed for <(...)")
    data = tmp_path / "data"
    good = tmp_path / "good.jsonl"
    good.write_bytes(TEXT)
    silent = tmp_path / "silent.jsonl"
    os.mkfifo(silent)
    seed = SEEDS_DIR / "000_20bba863e7f451be.txt"
    script = (
        f'"{BIN / "assistant"}" ingest -q <(cat "{good}") /dev/zero /dev/urandom "{silent}" '
        '<(head -c 3000000 /dev/zero) <(yes "{}") '
        f'<(cat "{seed}")'
    )
    t0 = time.monotonic()
    r = subprocess.run(
        ["bash", "-c", script],
        env=_cli_env(data, ASSISTANT_INGEST__PIPE_TIMEOUT_S="1", ASSISTANT_INGEST__MAX_FILE_MB="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    took = time.monotonic() - t0
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out
    assert r.returncode == 2, out  # some sources were refused: exit code 2, as for any bad file
    errors = [line for line in out.splitlines() if line.startswith("error ")]
    assert len(errors) == 5, out
    assert sum("it is a character device" in e for e in errors) == 2
    assert any(
        e.startswith(f"error {silent}: file refused: it is a pipe") and "sent no data within 1 s" in e for e in errors
    )
    assert sum("it is a pipe that sent more than 1 MB, over the 1 MB limit" in e for e in errors) == 2
    print(f"\ningest of 7 sources (2 devices, a silent FIFO, 2 flooding pipes, 2 good pipes): {took:.1f}s")

    with PaperStore(Settings(data_dir=data), read_only=True) as store:
        titles = {p.title for p in store.papers()}
    want = {rec["title"] for rec in RECORDS} | {p.title for p in load_corpus([seed]).papers}
    assert titles == want  # both pipes that sent a corpus file were ingested, nothing else
    kept = {Path(path).read_bytes() for path, _name in added_files(Settings(data_dir=data))}
    assert TEXT in kept  # the copy for `ingest --rebuild` holds what the pipe sent, not an empty re-read


def test_bounded_read_of_a_huge_pipe_keeps_memory_flat():
    """A pipe is refused once it has sent the limit: memory grows by about the limit, not by what it sends."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    proc = subprocess.Popen(["head", "-c", "400000000", "/dev/zero"], stdout=subprocess.PIPE)
    try:
        r = parse_file(f"/dev/fd/{proc.stdout.fileno()}", IngestLimits(max_file_bytes=8_000_000))
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert "over the 8 MB limit per file" in _refusal(r)
    assert grown_mb < 100, grown_mb
