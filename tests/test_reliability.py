"""Faults and bad input, with real processes: a missing, read-only or busy store folder, an ingest killed
halfway, an embedded LLM server that hangs or dies mid-answer, and bad questions and corpus files.

One small store (the 16 papers of one seed page, DoViT among them) is built once for the module; tests that
change a store work on a copy. One embedded llama.cpp server serves the module's two LLM fault tests.
Already covered elsewhere (not repeated here): the lock message with a fake holder (test_store), bad files in
ingest (test_store, test_corpus), empty and huge questions in the pipeline (test_answer) and the UI (test_ui),
one auto-restart of a server killed between questions (test_llm_server), HTTP error translation (test_llm).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import unicodedata
from pathlib import Path

import pytest
from fakes import FakeLLM
from procs import BIN, StubOpenAI, build_store, free_port, link_gguf, shared_gguf, tree_digest, wait_until
from typer.testing import CliRunner

from assistant.answer import Assistant, QuestionError
from assistant.cli import app
from assistant.config import SEEDS_DIR, Settings, get_settings
from assistant.corpus import load_corpus
from assistant.filters import Filters
from assistant.llm import LLM
from assistant.retrieve import Retriever
from assistant.store import PaperStore, chunk_paper

pytestmark = pytest.mark.slow  # module fixtures build a real store; real processes are marked integration

SEED_FILE = SEEDS_DIR / "000_20bba863e7f451be.txt"  # 16 papers in the category+date layout
DOVIT = "Dynamic Token-Pass Transformers for Semantic Segmentation"
QUESTION = "How much computation does DoViT save in semantic segmentation?"


@pytest.fixture(scope="module")
def seed_papers():
    return load_corpus([SEED_FILE]).papers


@pytest.fixture(scope="module")
def template(tmp_path_factory, embedder, seed_papers) -> Path:
    """A closed data folder holding the 16 papers: copy it, never change it."""
    data = tmp_path_factory.mktemp("template") / "data"
    build_store(data, seed_papers, embedder)
    return data


def copy_store(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, ignore=shutil.ignore_patterns("store.lock"))
    return dest


@pytest.fixture(scope="module")
def store(template, tmp_path_factory, embedder):
    """The module's open store (a copy of the template), for the pipeline tests."""
    data = copy_store(template, tmp_path_factory.mktemp("store") / "data")
    with PaperStore(Settings(data_dir=data), embedder=embedder) as opened:
        yield opened


@pytest.fixture(scope="module")
def retriever(store):
    return Retriever(store, store.settings)


@pytest.fixture
def cli_env(monkeypatch):
    """Point the CLI (get_settings) at a data folder, with no stray ASSISTANT_/OPENAI_ settings."""
    for var in list(os.environ):
        if var.startswith(("ASSISTANT_", "OPENAI_")):
            monkeypatch.delenv(var)

    def use(data_dir: Path, **env: str) -> None:
        monkeypatch.setenv("ASSISTANT_DATA_DIR", str(data_dir))
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()

    yield use
    get_settings.cache_clear()


def run_cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


# -- the store folder: missing, read-only, held by another process, ingest killed halfway ---------------------
def test_missing_store_folder_says_what_to_do_and_creates_nothing(tmp_path, cli_env):
    nowhere = tmp_path / "nowhere"
    cli_env(nowhere, ASSISTANT_LLM__BASE_URL="http://127.0.0.1:9/v1", ASSISTANT_LLM__MODEL="m")
    for args in (["papers"], ["ask", QUESTION]):
        r = run_cli(*args)
        assert r.exit_code == 1
        assert f"there is no paper store in {nowhere} yet: run `assistant ingest` first" in r.output
    assert not nowhere.exists()  # reading never creates an empty store

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cli_env(blocker / "data")
    r = run_cli("ingest", "-q", str(SEED_FILE))
    assert r.exit_code == 1
    assert "Cannot create the data folder" in r.output and "Point ASSISTANT_DATA_DIR at a folder" in r.output

    empty = tmp_path / "empty"
    PaperStore(Settings(data_dir=empty)).open().close()
    cli_env(empty)
    r = run_cli("papers")
    assert r.exit_code == 0 and "the store is empty: run `assistant ingest` first" in r.output


@pytest.fixture
def read_only_copy(template, tmp_path, monkeypatch):
    """A copy of the store behind a real read-only bind mount (root + CAP_SYS_ADMIN); elsewhere the read-only
    check is simulated through ``os.access`` (root ignores file modes, so chmod cannot make it read-only)."""
    src = copy_store(template, tmp_path / "src")
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = False
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount"):
        ok = subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True).returncode == 0
        if ok:
            mounted = True
            ok = subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True).returncode == 0
    if not mounted or not ok:
        if mounted:
            subprocess.run(["umount", str(ro)], check=False)
        mounted = False
        ro.rmdir()
        ro = src
        real_access = os.access
        monkeypatch.setattr(
            os,
            "access",
            lambda p, mode, **kw: False if mode & os.W_OK and Path(p) == src else real_access(p, mode, **kw),
        )
    try:
        yield src, ro, mounted
    finally:
        if mounted and os.path.ismount(ro):
            subprocess.run(["umount", str(ro)], check=False)


@pytest.mark.integration
def test_read_only_store_folder_is_read_by_reading_commands_refused_by_writing_ones_and_left_intact(
    read_only_copy, cli_env, embedder
):
    src, ro, mounted = read_only_copy
    before = tree_digest(src)
    cli_env(ro, ASSISTANT_LLM__BASE_URL="http://127.0.0.1:9/v1", ASSISTANT_LLM__MODEL="m")
    for args in (["ingest", "-q", str(SEED_FILE)], ["ingest", "--rebuild", "-q"]):
        r = run_cli(*args)
        assert r.exit_code == 1, (args, r.output)
        assert f"{ro} is read-only" in r.output and "ASSISTANT_DATA_DIR" in r.output, r.output
    # reading works (from a temporary copy: Chroma cannot open a store it cannot write)
    listing = run_cli("papers", "--json")
    assert listing.exit_code == 0, listing.output
    assert {json.loads(line)["title"] for line in listing.stdout.splitlines()} == {
        p.title for p in load_corpus([SEED_FILE]).papers
    }
    doctor = run_cli("doctor", "--no-llm")
    assert doctor.exit_code == 0 and "the store is healthy" in doctor.output, doctor.output
    asked = run_cli("ask", QUESTION)  # the store is read; only the (unreachable) LLM fails
    assert asked.exit_code in (1, 3) and "cannot reach the LLM at http://127.0.0.1:9/v1" in asked.output, asked.output
    after = tree_digest(src)
    after.pop("store.lock", None), before.pop("store.lock", None)
    assert after == before  # nothing written, nothing lost
    if mounted:
        subprocess.run(["umount", str(ro)], check=True)
    with PaperStore(Settings(data_dir=src), embedder=embedder) as store:
        assert len(store.papers()) == 16
    print(f"\nread-only folder: {'real read-only bind mount' if mounted else 'simulated via os.access'}")


_PACED_INGEST = textwrap.dedent(
    """
    # The real CLI with two test knobs: 4 chunks per write (16 papers make several writes) and 1.5 s per
    # embedding batch, so the parent can kill it between writes at a moment it chooses.
    import sys, time
    import assistant.store as store
    from assistant.embed import Embedder
    store.ADD_BATCH = store.WRITE_BATCH = 4
    embed = Embedder.embed_texts
    Embedder.embed_texts = lambda self, texts: (time.sleep(1.5), embed(self, texts))[1]
    from assistant.cli import main
    sys.argv = ["assistant", "ingest", "-q", sys.argv[1]]
    main()
    """
)


def _rows(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5) as con:
            return con.execute("select count(*) from embeddings").fetchone()[0]
    except sqlite3.Error:  # not created yet, or busy for a moment
        return 0


@pytest.mark.integration
def test_ingest_killed_halfway_is_completed_by_rerun_without_duplicates(tmp_path, cli_env, embedder, seed_papers):
    data = tmp_path / "data"
    env = {**os.environ, "ASSISTANT_DATA_DIR": str(data)}
    env = {k: v for k, v in env.items() if not k.startswith("OPENAI_")}
    child = subprocess.Popen(
        [sys.executable, "-c", _PACED_INGEST, str(SEED_FILE)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        db = data / "chroma" / "chroma.sqlite3"
        wait_until(lambda: _rows(db) >= 4, 180, "first write of the paced ingest", 0.05, proc=child)
        # a second process meanwhile is told who holds the store
        cli_env(data)
        busy = run_cli("papers")
        assert busy.exit_code == 1 and f"in use by pid {child.pid}" in busy.output, busy.output
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        partial = _rows(db)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    cfg = Settings().chunk
    expected_chunks = sum(
        len(chunk_paper(p, embedder.count_tokens, cfg.max_tokens, cfg.overlap_sentences)) for p in seed_papers
    )
    print(f"\nkilled the ingest after {partial} of {expected_chunks} chunks")
    assert 4 <= partial < expected_chunks, f"not interrupted halfway ({partial} of {expected_chunks} chunks)"
    # stale holder text (what it was doing: the ingest of the file), the lock itself released by the kernel
    assert (data / "store.lock").read_text().strip() == f"pid {child.pid} (ingest of {SEED_FILE})"

    rerun = subprocess.run(
        [str(BIN / "assistant"), "ingest", "-q", str(SEED_FILE)], env=env, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    with PaperStore(Settings(data_dir=data), embedder=embedder) as store:
        got = store.collection.get(include=["metadatas", "embeddings"])
        ids = got["ids"]
        assert len(ids) == len(set(ids)) == expected_chunks  # no duplicates, nothing missing
        per_paper: dict[str, set[int]] = {}
        for meta in got["metadatas"]:
            per_paper.setdefault(meta["paper_id"], set()).add(meta["chunk"])
        assert all(chunks == set(range(len(chunks))) for chunks in per_paper.values())
        stored = {p.id: p for p in store.papers()}
        assert stored == {p.id: p for p in seed_papers}  # every paper, lossless
        # the vector index survived the kill: every chunk is its own nearest neighbour
        found = store.collection.query(query_embeddings=got["embeddings"], n_results=1, include=[])
        assert [hit[0] for hit in found["ids"]] == ids


# -- the embedded LLM server hangs or dies mid-answer -----------------------------------------------------------
@pytest.fixture(scope="module")
def embedded(tmp_path_factory, retriever):
    """The real embedded llama.cpp server behind the real pipeline (short answers: 2 shared cores)."""
    data = tmp_path_factory.mktemp("llm") / "data"
    link_gguf(shared_gguf(tmp_path_factory), data)
    settings = Settings(
        data_dir=data,
        llm={"context_window": 4096, "max_tokens": 96, "temperature": 0.0},
        retrieval={"top_k": 3},  # a shorter prompt: the answers only need to be real, not thorough
    )
    llm = LLM.from_settings(settings, progress=False)
    try:
        yield Assistant(settings, retriever, llm)
    finally:
        llm.close()


@pytest.mark.integration
def test_hung_llm_server_gives_a_bounded_error_and_the_next_question_works(embedded):
    server = embedded.llm.server
    timeout_s = 3.0
    hung = LLM(base_url=server.base_url, model=server.alias, api_key=server.api_key, timeout_s=timeout_s, max_retries=0)
    # the abandoned request is still served once the server runs again: keep it short
    short = embedded.settings.model_copy(update={"llm": embedded.settings.llm.model_copy(update={"max_tokens": 8})})
    os.kill(server.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        a = Assistant(short, embedded.retriever, hung).ask(QUESTION)
        waited = time.monotonic() - t0
    finally:
        os.kill(server.pid, signal.SIGCONT)
        hung.close()
    assert a.incomplete and a.error == f"no answer from {server.base_url} within 3s (llm.timeout_s)"
    assert timeout_s <= waited < timeout_s + 5  # retrieval + the documented timeout, nothing more
    b = embedded.ask(QUESTION)
    assert b.error is None and not b.incomplete and DOVIT in [c.title for c in b.citations]


@pytest.mark.integration
def test_llm_server_killed_mid_answer_marks_it_incomplete_restarts_once_and_next_question_works(embedded, caplog):
    server = embedded.llm.server
    first_pid = server.pid
    streamed, answer = "", None
    t0 = time.monotonic()
    for event in embedded.stream(QUESTION):
        if event.kind == "token":
            if not streamed:
                os.kill(first_pid, signal.SIGKILL)  # the server dies while it is generating
            streamed += event.data
        elif event.kind == "answer":
            answer = event.data
    assert answer is not None and time.monotonic() - t0 < 180
    assert answer.incomplete and answer.error and "died mid-answer and was restarted; ask again" in answer.error
    # the model's few words are no answer: the user gets the evidence quoted and cited instead, marked incomplete
    assert streamed and answer.reply == streamed and answer.path == "extractive"
    assert "Quoted from the abstracts" in answer.text and DOVIT in [c.title for c in answer.citations]
    assert server.is_alive() and server.pid != first_pid  # restarted automatically
    assert "died with code -9; restarting it" in caplog.text
    b = embedded.ask(QUESTION)
    assert b.error is None and not b.incomplete and DOVIT in [c.title for c in b.citations]
    assert server.pid != first_pid and embedded.llm.base_url == server.base_url


def test_unreachable_llm_at_start_is_one_clear_line(template, tmp_path, cli_env):
    port = free_port()  # nothing listens there
    cli_env(copy_store(template, tmp_path / "data"), OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1")
    t0 = time.monotonic()
    r = run_cli("ask", QUESTION)
    assert r.exit_code == 1 and time.monotonic() - t0 < 60
    assert f"error: cannot reach the LLM at http://127.0.0.1:{port}/v1" in r.output


# -- bad input ---------------------------------------------------------------------------------------------------
def test_cli_refuses_bad_questions_and_filters_before_loading_anything(tmp_path, cli_env):
    cli_env(tmp_path / "nowhere")  # embedded LLM: starting it would take seconds and assemble a 490 MB model
    cases = [
        (["ask", ""], "The question is empty"),
        (["ask", "  \n\t \x00\x1b "], "The question is empty"),
        (["ask", "why " * 25_000], "The question is 99,999 characters long; the limit is 4,000"),
        (["ask", "--year-from", "2030", "--year-to", "2020", QUESTION], "year range 2030–2020 is empty"),
        (["ask", "--year-from", "3000", QUESTION], "year 3000 is out of range"),
    ]
    for args, needle in cases:
        t0 = time.monotonic()
        r = run_cli(*args)
        assert r.exit_code == 1 and needle in r.output, (args[:3], r.output)
        assert time.monotonic() - t0 < 5
    assert not (tmp_path / "nowhere").exists()


def test_control_characters_and_invalid_utf8_in_a_question_are_cleaned(retriever):
    fake = FakeLLM(default="DoViT reduces about 40% to 60% FLOPs [1].")
    assistant = Assistant(retriever.settings, retriever, fake)
    raw = "How much computation\x00 does DoViT\x1b[2J\x07 save\udcff in semantic\u200b segmentation?\x7f"
    a = assistant.ask(raw)
    assert a.question == "How much computation does DoViT[2J save in semantic segmentation?"
    assert all(unicodedata.category(ch) not in ("Cc", "Cs", "Cf") for ch in a.question + a.text)
    json.loads(a.model_dump_json())  # serialisable: no lone surrogates left
    assert a.contexts[0].title == DOVIT and a.citations and not a.refused
    prompt = fake.calls[0].messages[1]["content"]
    assert "\x1b" not in prompt and "\udcff" not in prompt


def test_cli_ask_json_with_control_characters_and_invalid_utf8(template, tmp_path, cli_env):
    with StubOpenAI() as stub:
        cli_env(copy_store(template, tmp_path / "data"), OPENAI_BASE_URL=stub.url("ok"), ASSISTANT_LLM__MODEL="stub")
        r = run_cli("ask", "--json", "What does DoViT\x1b]0;pwned\x07 do\udcff for semantic segmentation?")
    assert r.exit_code == 0, r.output
    answer = json.loads(r.stdout)
    assert answer["question"] == "What does DoViT]0;pwned do for semantic segmentation?"
    assert answer["error"] is None and answer["citations"][0]["title"] == DOVIT


def test_impossible_and_empty_filters(retriever):
    fake = FakeLLM(default="Segmentation is studied [1].")
    assistant = Assistant(retriever.settings, retriever, fake)
    with pytest.raises(QuestionError, match="year 3000 is out of range"):
        assistant.ask("segmentation", filters=Filters(year_from=3000))
    with pytest.raises(QuestionError, match="author filter is empty"):
        assistant.ask("segmentation", filters=Filters(authors=["  "]))
    # filters no paper matches: the refusal names the filters, and the model is not asked
    for filters in (Filters(category="ZZ"), Filters(authors=["Nobody Atall"]), Filters(year_from=1950, year_to=1960)):
        a = assistant.ask("Which papers study semantic segmentation?", filters=filters)
        assert a.refused and a.citations == [] and a.filters_applied == filters.describe() != "none"
    assert fake.calls == []


def test_corpus_files_with_control_characters_bad_utf8_and_broken_records_lose_and_duplicate_nothing(
    template, tmp_path, cli_env
):
    data = copy_store(template, tmp_path / "data")
    bad = tmp_path / "incoming"
    bad.mkdir()
    page = SEED_FILE.read_bytes()
    page = page.replace(b"Semantic Segmentation", b"Semantic Segm\xe9ntation", 1)  # a damaged title
    page = page.replace(b"Zero-shot Adversarial", b"Zero-shot\x1b[31m Adversarial", 1)  # a terminal escape
    page = page.replace(b"Knowledge", b"Know\x07ledge", 1)  # a bell
    (bad / "damaged-page.txt").write_bytes(page)
    new = {
        "id": "2405.00001",
        "title": "Bell\u0007 Curves: Control\u001b[2J Characters in Paper Records",
        "authors": "Ada Lovelace, Alan Turing",
        "abstract": "We study control characters\u0000 in scraped paper records. Records stay readable.",
        "categories": "cs.CL",
        "update_date": "2024-05-01",
    }
    (bad / "records.jsonl").write_text(
        json.dumps(new) + "\n" + '{"id": "2405.00002", "title": "Cut Off\n' + "garbage line\n", encoding="utf-8"
    )
    lines = SEED_FILE.read_text(encoding="utf-8").splitlines()
    (bad / "cut.txt").write_text("\n".join(lines[:5]) + "\n", encoding="utf-8")  # ends after a title line

    cli_env(data)
    first = run_cli("ingest", "-q", str(bad))
    assert first.exit_code == 2  # errors were reported, the rest was stored
    out = first.output
    assert "damaged-page.txt:" in out and "invalid UTF-8" in out and "control characters removed" in out
    assert "records.jsonl:2" in out and "records.jsonl:3" in out and "cut.txt:" in out

    with PaperStore(Settings(data_dir=data)) as store:
        papers = store.papers()
        ids = store.collection.get(include=[])["ids"]
        chunks = len(ids)
    assert len(ids) == len(set(ids))
    titles = sorted(p.title for p in papers)
    assert len(papers) == 17  # the 16 stored papers (merged, not duplicated) + the one new record
    assert DOVIT in titles and "Bell Curves: Control[2J Characters in Paper Records" in titles
    for p in papers:
        text = " ".join([p.title, p.abstract, *p.authors])
        assert "\ufffd" not in p.title and not any(unicodedata.category(ch) == "Cc" for ch in text), p.title

    again = run_cli("ingest", "-q", str(bad))
    assert again.exit_code == 2
    with PaperStore(Settings(data_dir=data)) as store:
        assert len(store.papers()) == 17 and store.count_chunks() == chunks
    listing = run_cli("papers")
    assert listing.exit_code == 0 and "\x1b" not in listing.output and "\x07" not in listing.output
