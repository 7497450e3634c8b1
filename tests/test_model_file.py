"""A GGUF corrupted in place with its timestamp restored (issue 23, item 6): its marker (sha256, size, mtime) still
matches, so `ensure_gguf` trusts it; before, the server streamed "??????" for minutes and `doctor` said healthy.
Now the content is hashed at every start of the embedded server (beside the server's own start) and by `doctor`
(with or without --no-llm), and each says so in one line.

The corrupt file is a copy of the session's assembled model (the shared one is never touched) with 16 MB of random
bytes written into its tensor data, the way a bad disk or a stray write would leave it, and its old mtime restored.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest
from procs import BIN, build_store, clean_env, link_gguf, shared_gguf

from assistant import models
from assistant.config import SEEDS_DIR, Settings
from assistant.corpus import load_corpus
from assistant.llm import LLM
from assistant.llm_errors import LLMStartError

pytestmark = [pytest.mark.slow, pytest.mark.integration]

NAME = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return shared_gguf(tmp_path_factory)


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory, embedder, gguf):
    """A data folder with a small store and a copy of the model corrupted in place, mtime restored."""
    data = tmp_path_factory.mktemp("corrupt-model") / "data"
    build_store(data, load_corpus([SEEDS_DIR / "000_20bba863e7f451be.txt"]).papers[:6], embedder)
    (data / "models").mkdir()
    copy = data / "models" / gguf.name
    shutil.copy2(gguf, copy)  # a copy, not a link: the shared model stays intact
    shutil.copy2(gguf.with_name(gguf.name + ".sha256"), copy.with_name(copy.name + ".sha256"))
    st = copy.stat()
    with open(copy, "r+b") as f:
        f.seek(st.st_size // 2)
        f.write(os.urandom(16 << 20))
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert copy.stat().st_size == st.st_size and copy.stat().st_mtime_ns == st.st_mtime_ns
    return data, copy


def run(args: list[str], data, timeout: float = 300) -> tuple[int, str, float]:
    env = clean_env(ASSISTANT_DATA_DIR=str(data))
    t0 = time.monotonic()
    done = subprocess.run([str(BIN / "assistant"), *args], env=env, capture_output=True, text=True, timeout=timeout)
    said = done.stdout + done.stderr
    assert "Traceback" not in said, said
    return done.returncode, said, time.monotonic() - t0


def test_the_marker_still_matches_but_the_content_check_does_not(corrupt, gguf, monkeypatch):
    data, copy = corrupt
    hashed = []
    real_hash = models._hash_file
    monkeypatch.setattr(models, "_hash_file", lambda *a, **k: hashed.append(a[0]) or real_hash(*a, **k))
    assert models.ensure_gguf(NAME, data / "models", progress=False) == copy
    assert hashed == []  # size and mtime match the marker: the quick check alone is fooled
    said = models.verify_gguf(NAME, copy)
    assert said and said.startswith(f"the model file {copy} is corrupt: its sha256 is ") and "\n" not in said
    assert models.verify_gguf(NAME, gguf) is None


def test_doctor_reports_the_corrupt_model_in_one_line_with_or_without_the_llm(corrupt):
    data, copy = corrupt
    for args in (["doctor", "--no-llm"], ["doctor"]):
        code, said, took = run(args, data)
        assert code == 1, said
        about = [line for line in said.splitlines() if "is corrupt" in line]
        assert len(about) == 1, said
        assert about[0].startswith(f"PROBLEM model file: the model file {copy} is corrupt: its sha256 is ")
        assert f"to fix: run `rm {copy}`" in said
        assert "the store is healthy" not in said
        if args == ["doctor"]:  # the server is not started on a file known to be corrupt
            assert "PROBLEM LLM: not started: its model file failed the check above" in said
        print(f"\n{' '.join(args)} on a corrupt model: {took:.1f} s")


def test_doctor_verifies_an_intact_model_by_content(tmp_path, embedder, gguf):
    data = tmp_path / "data"
    build_store(data, load_corpus([SEEDS_DIR / "000_20bba863e7f451be.txt"]).papers[:3], embedder)
    link_gguf(gguf, data)
    code, said, _ = run(["doctor", "--no-llm"], data)
    assert code == 0, said
    line = next(line for line in said.splitlines() if "model file" in line)
    assert re.fullmatch(r"ok      model file: .*\.gguf: sha256 verified \(491 MB in \d+\.\d s\)", line), line
    print(f"\n{line}")


def test_ask_at_start_up_reports_the_corrupt_model_in_one_line(corrupt):
    data, copy = corrupt
    code, said, took = run(["ask", "How does DoViT reduce the cost of semantic segmentation?"], data)
    assert code == 1, said
    errors = [line for line in said.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, said
    assert errors[0].startswith(f"error: the model file {copy} is corrupt: its sha256 is "), errors
    assert errors[0].endswith(f"delete it (rm {copy}): the next start assembles it again from the installed packages")
    assert "Quoted from the abstracts" not in said  # a broken model is an error, never answered around
    print(f"\nask on a corrupt model: one error line after {took:.1f} s")


def test_the_start_verifies_in_the_background_and_costs_no_extra_time(tmp_path, gguf, monkeypatch):
    """An intact model: LLM.from_settings hashes it beside the server's start (one core, about half a second)."""
    import assistant.llm as llm_module

    data = tmp_path / "data"
    link_gguf(gguf, data)
    settings = Settings(data_dir=data, llm={"context_window": 2048, "threads": 2})
    hashed: list[float] = []
    real = models.verify_gguf

    def timed(*a, **k):
        t0 = time.monotonic()
        try:
            return real(*a, **k)
        finally:
            hashed.append(time.monotonic() - t0)

    monkeypatch.setattr(llm_module, "verify_gguf", timed)
    t0 = time.monotonic()
    llm = LLM.from_settings(settings, progress=False)
    started = time.monotonic() - t0
    try:
        assert hashed and llm.chat([{"role": "user", "content": "Say OK."}], max_tokens=4, temperature=0.0).strip()
    finally:
        llm.close()
    print(f"\nembedded start {started:.1f} s, of which the content hash ran beside it for {hashed[0]:.2f} s")
    assert hashed[0] < started


def test_a_start_that_fails_on_a_corrupt_file_names_the_file_not_the_symptom(corrupt):
    """The corrupt copy makes the first generation garbage; the start's error is the hash's, in one line."""
    data, copy = corrupt
    settings = Settings(data_dir=data, llm={"context_window": 2048, "threads": 2})
    with pytest.raises(LLMStartError) as info:
        LLM.from_settings(settings, progress=False).close()
    assert info.value.reason == "model_file"
    assert "\n" not in info.value.summary and f"the model file {copy} is corrupt" in info.value.summary
