"""The read-only data folder promise (issue 23, item 8), with a real read-only bind mount and a real process
without root's capabilities (file modes apply to it as to any user; this machine's Python lives under /root, so a
real non-root account cannot run it): ``ask`` with the embedded model, ``papers`` and ``doctor`` work, ``ingest``
says which part cannot be written, the folder is left untouched and no copy of the store stays in the temporary
folder after a run, not even after a run that was killed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from procs import BIN, build_store, link_gguf, shared_gguf, tree_digest

from assistant.config import SEEDS_DIR
from assistant.corpus import load_corpus

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SEED_FILE = SEEDS_DIR / "000_20bba863e7f451be.txt"  # 16 papers, DoViT among them
QUESTION = "How does DoViT reduce the cost of semantic segmentation?"
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NOBODY = 65534


@pytest.fixture(scope="module")
def template(tmp_path_factory, embedder) -> Path:
    data = tmp_path_factory.mktemp("ro-template") / "data"
    build_store(data, load_corpus([SEED_FILE]).papers, embedder)
    (data / "store.lock").unlink(missing_ok=True)
    return data


def _titles() -> set[str]:
    return {p.title for p in load_corpus([SEED_FILE]).papers}


def run(args: list[str], data: Path, tmp: Path, home: Path, *, prefix: list[str] = (), **env: str):
    """The real CLI in a process of its own, with its own temporary folder (to count the copies left there)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "OPENAI_"))}
    full.update(
        ASSISTANT_DATA_DIR=str(data),
        TMPDIR=str(tmp),
        HOME=str(home),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        PYTHONPATH=os.pathsep.join(sys.path),
        **env,
    )
    r = subprocess.run([*prefix, str(BIN / "assistant"), *args], env=full, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out
    assert len([line for line in out.splitlines() if line.startswith("error:")]) <= 1, out
    return r, out


def copies(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.glob("paper-assistant-readonly-*"))


@pytest.fixture
def mounted(template, tmp_path):
    """A copy of the store, with the embedded model linked in, behind a real read-only bind mount."""
    if not (ROOT and shutil.which("mount")):
        pytest.skip("a read-only bind mount needs root and mount(8)")
    src = Path(shutil.copytree(template, tmp_path / "src"))
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True).returncode != 0:
        pytest.skip("mount --bind is not permitted here")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True).returncode != 0:
            pytest.skip("a read-only remount is not permitted here")
        yield src, ro
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_ask_papers_and_doctor_on_a_read_only_mount_write_nothing_and_leave_no_copy(
    mounted, tmp_path, tmp_path_factory
):
    src, ro = mounted
    subprocess.run(["mount", "-o", "remount,rw,bind", str(ro)], check=True)  # link the model in first
    link_gguf(shared_gguf(tmp_path_factory), ro)
    subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
    before = tree_digest(src)
    tmp, home = tmp_path / "tmp", tmp_path / "home"
    tmp.mkdir()
    home.mkdir()

    r, out = run(["papers", "--json"], ro, tmp, home)
    assert r.returncode == 0, out
    assert {json.loads(line)["title"] for line in r.stdout.splitlines()} == _titles()
    assert copies(tmp) == []
    r, out = run(["doctor", "--no-llm"], ro, tmp, home)
    assert r.returncode == 0 and "the store is healthy" in out, out
    assert copies(tmp) == []
    # the embedded model writes its log in the user's log folder, not in <data>/logs
    r, out = run(["ask", QUESTION], ro, tmp, home, ASSISTANT_LLM__MAX_TOKENS="48", ASSISTANT_LLM__THREADS="2")
    assert r.returncode == 0, out
    assert "Dynamic Token-Pass Transformers for Semantic Segmentation" in r.stdout and "error:" not in out, out
    logs = list((home / ".local" / "state").rglob("llm-server.log"))
    assert len(logs) == 1 and logs[0].stat().st_size > 0, logs
    assert copies(tmp) == []
    r, out = run(["ingest", "-q", str(SEED_FILE)], ro, tmp, home)
    assert r.returncode == 1 and f"The store folder {ro} is read-only (a read-only file system)" in out, out
    assert tree_digest(src) == before  # nothing written, nothing lost


def _drop_caps() -> list[str]:
    """A prefix that runs a command as root without any capability: file modes then apply as to any user."""
    if not (ROOT and shutil.which("setpriv")):
        pytest.skip("needs root and setpriv(1) to run a process without root's capabilities")
    probe = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr.decode().strip()}")
    return ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]


@pytest.mark.parametrize("whose", ["the folder", "its files only"])
def test_another_users_store_is_read_from_a_copy_and_ingest_names_the_part_it_cannot_write(template, tmp_path, whose):
    prefix = _drop_caps()
    data = Path(shutil.copytree(template, tmp_path / "data"))
    for p in [data, *data.rglob("*")]:
        os.chown(p, NOBODY, NOBODY)  # another user's store; modes stay 755/644: readable, not writable
    if whose == "its files only":
        os.chown(data, 0, 0)  # the folder is ours, the store inside it is not (the lock file is not either)
        (data / "store.lock").write_text("")
        os.chown(data / "store.lock", NOBODY, NOBODY)
    before = tree_digest(data)
    tmp, home = tmp_path / "tmp", tmp_path / "home"
    tmp.mkdir()
    home.mkdir()
    # a copy a killed run left behind (its process has ended) is swept by the next run that makes one
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp / f"paper-assistant-readonly-{dead.pid}-0-x1y2z3"
    (stale / "chroma").mkdir(parents=True)

    r, out = run(["papers", "--json"], data, tmp, home, prefix=prefix)
    assert r.returncode == 0, out
    assert {json.loads(line)["title"] for line in r.stdout.splitlines()} == _titles()
    assert copies(tmp) == []  # its own copy removed, and the stale one swept
    r, out = run(["doctor", "--no-llm"], data, tmp, home, prefix=prefix)
    assert r.returncode == 0 and "the store is healthy" in out and "ingest --rebuild" not in out, out
    assert copies(tmp) == []
    r, out = run(["ingest", "-q", str(SEED_FILE)], data, tmp, home, prefix=prefix)
    denied = data if whose == "the folder" else data / "store.lock"
    assert r.returncode == 1, out
    assert f"error: permission denied: {denied} cannot be written by this user" in out, out
    assert f"make {data} writable for this user" in out and "read-only file system" not in out
    assert tree_digest(data) == before
