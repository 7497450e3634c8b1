"""Robust ingest and a recoverable store (issue 14), with real files, a real Chroma folder and the real CLI.

Every case of the issue that touches the store: junk files, a damaged or half-deleted store and its repair,
a full disk, conflicting records, bad field types and huge abstracts, NUL bytes, an ingest killed between
two files, stale caches, faults while assembling the model, a failed eval start and uploads. Each ends in one
line (no traceback) and loses or invents no paper. The parser-level cases are in test_corpus.py.

One template store (the 16 papers of one seed page) is built once; every test works on a copy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from procs import build_store, wait_until
from typer.testing import CliRunner

from assistant.cli import app
from assistant.config import SEEDS_DIR, Settings, get_settings
from assistant.corpus import load_corpus
from assistant.store import JOURNAL, PaperStore

pytestmark = pytest.mark.slow  # builds a real store and embeds

SEED_FILE = SEEDS_DIR / "000_20bba863e7f451be.txt"  # 16 papers, category+date layout
TRENDING = SEEDS_DIR / "004_e9d030355fb4dbac.txt"
ABSTRACT = (
    "We introduce Quokka Attention, a sparse attention pattern inspired by marsupial foraging. Quokka Attention "
    "reduces the memory of long-document transformers by 73% while keeping perplexity within 0.2 points on PG-19."
)


@pytest.fixture(scope="module")
def seed_papers():
    return load_corpus([SEED_FILE]).papers


@pytest.fixture(scope="module")
def template(tmp_path_factory, embedder, seed_papers) -> Path:
    data = tmp_path_factory.mktemp("template") / "data"
    build_store(data, seed_papers, embedder)
    return data


@pytest.fixture
def data(template, tmp_path) -> Path:
    """A copy of the 16-paper store for one test."""
    return Path(shutil.copytree(template, tmp_path / "data", ignore=shutil.ignore_patterns("store.lock")))


@pytest.fixture
def cli(monkeypatch, embedder):
    """``cli(data_dir, *args, **env)``: the real CLI in-process; asserts one-line errors, never a traceback.

    Its stores share the session's embedder (the same model; loading it per command costs seconds)."""
    for var in list(os.environ):
        if var.startswith(("ASSISTANT_", "OPENAI_")):
            monkeypatch.delenv(var)
    monkeypatch.setattr("assistant.store.Embedder", lambda settings: embedder)

    def run(data_dir: Path, *args: str, **env: str):
        monkeypatch.setenv("ASSISTANT_DATA_DIR", str(data_dir))
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()
        result = CliRunner().invoke(app, list(args))
        get_settings.cache_clear()
        assert "Traceback" not in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert len(errors) <= 1, result.output  # a failure is one line
        return result

    yield run
    get_settings.cache_clear()


@pytest.fixture
def no_llm(monkeypatch):
    """Fails the test if anything starts (or reaches) an LLM; the calls are recorded."""
    from assistant.llm import LLM

    calls: list = []

    def refuse(cls, *a, **kw):
        calls.append(a)
        raise AssertionError("the LLM was started")

    monkeypatch.setattr(LLM, "from_settings", classmethod(refuse))
    return calls


def stored(data: Path, embedder) -> tuple[dict, int]:
    """(papers by title, chunk count) read back from the store."""
    with PaperStore(Settings(data_dir=data), embedder=embedder) as store:
        return {p.title: p for p in store.papers()}, store.count_chunks()


def jsonl(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


# -- 1. junk -------------------------------------------------------------------------------------------------
def test_random_text_adds_no_paper_and_is_refused_in_one_line(data, cli, embedder, tmp_path):
    import random
    import string

    rng = random.Random(0)
    alphabet = string.ascii_letters + string.punctuation + "    "
    junk = tmp_path / "random.txt"
    lines, size = [], 0
    while size < 3_000_000:
        lines.append("".join(rng.choice(alphabet) for _ in range(rng.randint(5, 600))))
        size += len(lines[-1]) + 1
    junk.write_text("\n".join(lines), encoding="utf-8")
    before, chunks = stored(data, embedder)
    t0 = time.perf_counter()
    r = cli(data, "ingest", "-q", str(junk))
    elapsed = time.perf_counter() - t0
    assert r.exit_code == 2
    refused = [line for line in r.output.splitlines() if str(junk) in line]
    assert len(refused) == 1 and "file refused:" in refused[0] and "do not look like papers" in refused[0]
    assert stored(data, embedder) == (before, chunks)  # not one junk paper
    print(f"\n3 MB random text refused by `assistant ingest` in {elapsed:.1f}s")

    big = tmp_path / "big.txt"
    with big.open("w") as fh:  # 50 MB, over a 10 MB limit: refused by its size, unread
        for _ in range(50):
            fh.write("x" * 999_999 + "\n")
    t0 = time.perf_counter()
    r = cli(data, "ingest", "-q", str(big), ASSISTANT_INGEST__MAX_FILE_MB="10")
    assert r.exit_code == 2 and "over the 10 MB limit per file (ASSISTANT_INGEST__MAX_FILE_MB)" in r.output
    print(f"50 MB file over the size limit refused in {time.perf_counter() - t0:.2f}s")


# -- 2 and 7. a damaged store is detected before anything starts, and rebuilt by the tool -----------------------
def _damage(data: Path, how: str) -> None:
    chroma = data / "chroma"
    if how == "truncated":
        db = chroma / "chroma.sqlite3"
        with db.open("r+b") as fh:
            fh.truncate(db.stat().st_size // 2)
    elif how == "sqlite-missing":
        (chroma / "chroma.sqlite3").unlink()
    elif how == "index-files-deleted":
        for f in chroma.glob("*/*.bin"):
            f.unlink()


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ("truncated", "chroma.sqlite3 is truncated"),
        ("sqlite-missing", "chroma.sqlite3 is missing"),
        ("index-files-deleted", "the vector index files header.bin, data_level0.bin, length.bin, link_lists.bin"),
    ],
)
def test_damaged_store_is_reported_before_the_llm_starts_and_rebuilt_by_ingest_rebuild(
    data, cli, embedder, no_llm, tmp_path, seed_papers, how, said
):
    added = jsonl(tmp_path / "mine.jsonl", {"title": "Quokka Attention for Long Documents", "abstract": ABSTRACT})
    assert cli(data, "ingest", "-q", str(added)).exit_code == 0  # a file of the user's own, kept in added/
    _damage(data, how)
    fix = "Run `assistant ingest --rebuild`: it moves the damaged store aside and rebuilds it"
    for args in (["papers"], ["ask", "What does DoViT do?"], ["ingest", "-q", str(added)]):
        r = cli(data, *args)
        assert r.exit_code == 1 and f"error: the paper store in {data} is damaged: " in r.output, (args, r.output)
        assert said in r.output and fix in r.output
    assert no_llm == []  # the LLM was never started
    doctor = cli(data, "doctor", "--no-llm")
    assert doctor.exit_code == 1 and said in doctor.output
    assert doctor.output.strip().endswith("to fix: run `assistant ingest --rebuild`")

    r = cli(data, "ingest", "--rebuild", "-q", str(SEED_FILE))
    assert r.exit_code == 0, r.output
    moved = next(data.glob("damaged-*"))
    assert f"the old store was moved to {moved}" in r.output and (moved / "chroma").is_dir()
    titles, _ = stored(data, embedder)
    assert set(titles) == {p.title for p in seed_papers} | {"Quokka Attention for Long Documents"}
    assert titles["Quokka Attention for Long Documents"].sources[0].file == str(added)  # read from its kept copy
    assert cli(data, "doctor", "--no-llm").output.strip().endswith("the store is healthy")


def test_rebuild_keeps_papers_only_the_old_catalog_holds(data, cli, embedder, seed_papers):
    with PaperStore(Settings(data_dir=data), embedder=embedder) as store:
        orphan = seed_papers[0].model_copy(
            update={
                "title": "A Paper From an Upload Whose File Is Gone",
                "id": "0123456789abcdef",
                "abstract": ABSTRACT,
            }
        )
        store.ingest([orphan], progress=False)
    r = cli(data, "ingest", "--rebuild", "-q", str(SEED_FILE))
    assert r.exit_code == 0 and "(1 of them in no file)" in r.output, r.output
    titles, _ = stored(data, embedder)
    assert len(titles) == 17 and orphan.title in titles


# -- 3. a full disk ------------------------------------------------------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    """A small real tmpfs (root with CAP_SYS_ADMIN); skipped where it cannot be mounted."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount")):
        pytest.skip("mounting a tmpfs needs root")
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1400k", "tmpfs", str(mnt)], capture_output=True)
    if ok.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {ok.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_during_ingest_is_one_line_loses_nothing_and_a_rerun_completes(tmpfs, template, cli, embedder):
    data = Path(shutil.copytree(template, tmpfs / "data", ignore=shutil.ignore_patterns("store.lock")))
    before, chunks = stored(data, embedder)
    page = load_corpus([SEEDS_DIR / "003_83346722b6145c5b.txt"])  # 50 papers: more than the disk holds
    r = cli(data, "ingest", "-q", str(SEEDS_DIR / "003_83346722b6145c5b.txt"))
    assert r.exit_code == 1, r.output
    assert f"error: no space left on the disk holding {data}" in r.output
    assert "free some space there, or set ASSISTANT_DATA_DIR to a folder on a larger disk" in r.output
    # rolled back at once, or (when even that finds no space) as soon as the store is opened with space again
    assert "none of its records is stored" in r.output or "is rolled back when the store is next opened" in r.output
    subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs)], check=True)  # space freed
    assert stored(data, embedder) == (before, chunks)  # nothing lost, no half file
    assert not (data / JOURNAL).exists()
    r = cli(data, "ingest", "-q", str(SEEDS_DIR / "003_83346722b6145c5b.txt"))
    assert r.exit_code == 0, r.output
    titles, _ = stored(data, embedder)
    assert set(titles) == set(before) | {p.title for p in page.papers}


def test_chroma_write_error_rolls_the_file_back_in_one_line(data, cli, embedder, monkeypatch, tmp_path):
    """The same path without a tmpfs: ENOSPC simulated at Chroma's write boundary (its own error text)."""
    from chromadb.errors import InternalError

    from assistant.store import PaperStore

    before, chunks = stored(data, embedder)
    real_add = PaperStore._add
    calls = []

    def add(self, nodes):
        calls.append(len(nodes))
        if len(calls) == 2:  # the first batch is in: the roll-back must take it out again
            raise InternalError("Error in compaction: Failed to apply logs: No space left on device (os error 28)")
        return real_add(self, nodes)

    monkeypatch.setattr("assistant.store.ADD_BATCH", 2)
    monkeypatch.setattr("assistant.store.WRITE_BATCH", 2)
    monkeypatch.setattr(PaperStore, "_add", add)
    new = jsonl(
        tmp_path / "three.jsonl",
        *({"title": f"Quokka Attention Variant {n}", "abstract": ABSTRACT + f" Variant {n}."} for n in "ABC"),
    )
    r = cli(data, "ingest", "-q", str(new))
    assert r.exit_code == 1 and "error: no space left on the disk holding" in r.output
    assert f"The ingest of {new} was rolled back: none of its records is stored." in r.output
    monkeypatch.setattr(PaperStore, "_add", real_add)
    assert stored(data, embedder) == (before, chunks)


# -- atomic per file: a killed ingest leaves no half file, a rerun completes it ---------------------------------
_PACED = textwrap.dedent(
    """
    import sys, time
    import assistant.store as store
    from assistant.embed import Embedder
    store.ADD_BATCH = 4
    embed = Embedder.embed_texts
    Embedder.embed_texts = lambda self, texts: (time.sleep(1.5), embed(self, texts))[1]
    from assistant.cli import main
    sys.argv = ["assistant", "ingest", "-q", *sys.argv[1:]]
    main()
    """
)


@pytest.mark.integration
def test_ingest_killed_inside_the_second_file_keeps_the_first_and_no_part_of_the_second(
    data, cli, embedder, tmp_path, seed_papers
):
    second = tmp_path / "trending.txt"
    second.write_text("\n".join(TRENDING.read_text(encoding="utf-8").splitlines()[:24]) + "\n", encoding="utf-8")
    second_titles = {p.title for p in load_corpus([second]).papers}
    first = jsonl(tmp_path / "first.jsonl", {"title": "Quokka Attention for Long Documents", "abstract": ABSTRACT})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "OPENAI_"))}
    env.update(ASSISTANT_DATA_DIR=str(data), PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen(
        [sys.executable, "-c", _PACED, str(first), str(second)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    journal = data / JOURNAL
    try:
        # the second file's unit is being written once the journal names it
        wait_until(lambda: journal.exists() and str(second) in journal.read_text(), 300, "second file", 0.05, child)
        time.sleep(2.0)  # at least one of its batches is in Chroma
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert journal.exists()
    listing = cli(data, "papers", "--json")  # opening the store rolls the half file back
    assert listing.exit_code == 0 and "was rolled back: none of its records is stored" in listing.output
    titles = {json.loads(line)["title"] for line in listing.stdout.splitlines()}
    assert titles == {p.title for p in seed_papers} | {"Quokka Attention for Long Documents"}
    assert not titles & second_titles and not journal.exists()
    rerun = cli(data, "ingest", "-q", str(first), str(second))
    assert rerun.exit_code == 0, rerun.output
    final, chunks = stored(data, embedder)
    assert set(final) == titles | second_titles
    with PaperStore(Settings(data_dir=data), embedder=embedder) as store:
        ids = store.collection.get(include=[])["ids"]
    assert len(ids) == len(set(ids)) == chunks


# -- 5. conflicting records ----------------------------------------------------------------------------------------
def test_conflicting_records_are_united_reported_and_found_under_both_titles(data, cli, embedder, tmp_path):
    a = jsonl(
        tmp_path / "a.jsonl",
        {"title": "Quokka Attention", "abstract": ABSTRACT, "authors": "Ada Lovelace", "categories": "cs.CL"},
    )
    b = jsonl(
        tmp_path / "b.jsonl",
        {
            "title": "Marsupial Sparse Attention",
            "abstract": ABSTRACT,
            "authors": ["Alan Turing"],
            "categories": "cs.LG",
        },
    )
    assert cli(data, "ingest", "-q", str(a)).exit_code == 0
    r = cli(data, "ingest", "-q", str(b))  # merged with the stored paper, by its abstract
    assert r.exit_code == 0
    assert "1 merge(s) with conflicting fields:" in r.output
    assert f"merged: {b}:1 merged into 'Quokka Attention' ({a}:1, same abstract): title" in r.output
    titles, _ = stored(data, embedder)
    p = titles["Quokka Attention"]
    assert len(titles) == 17 and p.alt_titles == ["Marsupial Sparse Attention"]
    assert p.authors == ["Ada Lovelace", "Alan Turing"] and p.categories == ["cs.CL", "cs.LG"]
    assert [s.file for s in p.sources] == [str(a), str(b)]
    found = cli(data, "papers", "--json", "--search", "marsupial sparse")
    assert [json.loads(line)["title"] for line in found.stdout.splitlines()] == ["Quokka Attention"]
    from assistant.retrieve import Retriever

    with PaperStore(Settings(data_dir=data), embedder=embedder) as store:
        hits = Retriever(store, store.settings).search("Marsupial Sparse Attention", mode="bm25")
    assert hits[0].paper.title == "Quokka Attention"  # the alternative title is searchable by retrieval too
    again = cli(data, "ingest", "-q", str(b))
    assert again.exit_code == 0 and "with conflicting fields" not in again.output  # nothing new the second time


# -- issue 23, item 9: a record with a stored title cannot take over the paper's authorship ------------------------
DOVIT = "Dynamic Token-Pass Transformers for Semantic Segmentation"


def test_a_record_with_a_stored_title_keeps_the_stored_authors_first_and_is_reported(data, cli, embedder, tmp_path):
    before, chunks_before = stored(data, embedder)
    dovit = before[DOVIT]
    assert dovit.authors == ["Yuang Liu", "Qiang Zhou", "Jing Wang"] and dovit.authors_truncated
    mallory = jsonl(tmp_path / "mallory.jsonl", {"title": DOVIT, "abstract": ABSTRACT, "authors": "Mallory Attacker"})
    r = cli(data, "ingest", "-q", str(mallory))
    assert r.exit_code == 0
    (note,) = [line for line in r.output.splitlines() if line.strip().startswith("merged:")]
    assert f"merged: {mallory}:1 merged into {DOVIT!r}" in note and "same title" in note
    assert "authors 'Yuang Liu, Qiang Zhou, Jing Wang et al.' vs 'Mallory Attacker'" in note
    assert "the first in its order and with its first author" in note
    after, chunks_after = stored(data, embedder)
    p = after[DOVIT]
    # the stored order and first author stay; the conflicting name comes after them, and 'et al.' stays
    assert p.authors == ["Yuang Liu", "Qiang Zhou", "Jing Wang", "Mallory Attacker"] and p.authors_truncated
    assert p.abstract == dovit.abstract and p.title == DOVIT and p.id == dovit.id  # nothing else taken over
    assert {t: q for t, q in after.items() if t != DOVIT} == {t: q for t, q in before.items() if t != DOVIT}
    assert chunks_after == chunks_before
    first = cli(data, "papers", "--json", "--first-author", "Yuang Liu")
    assert DOVIT in {json.loads(line)["title"] for line in first.stdout.splitlines()}
    taken = cli(data, "papers", "--json", "--first-author", "Mallory Attacker")
    assert taken.exit_code == 0 and taken.stdout.strip() == ""
    # a different first author is a conflict even when every name is known: reported, the order kept
    swapped = jsonl(
        tmp_path / "swapped.jsonl", {"title": DOVIT, "abstract": dovit.abstract, "authors": "Qiang Zhou, Yuang Liu"}
    )
    r = cli(data, "ingest", "-q", str(swapped))
    assert r.exit_code == 0 and "vs 'Qiang Zhou, Yuang Liu'" in r.output, r.output
    assert stored(data, embedder)[0][DOVIT].authors == p.authors


def test_a_complete_author_list_extending_the_stored_one_is_no_conflict(data, cli, embedder, tmp_path):
    dovit = stored(data, embedder)[0][DOVIT]
    full = jsonl(
        tmp_path / "full.jsonl",
        {"title": DOVIT, "abstract": dovit.abstract, "authors": "Yuang Liu, Qiang Zhou, Jing Wang, Wei Zhang"},
    )
    r = cli(data, "ingest", "-q", str(full))
    assert r.exit_code == 0 and "with conflicting fields" not in r.output, r.output
    p = stored(data, embedder)[0][DOVIT]
    assert p.authors == ["Yuang Liu", "Qiang Zhou", "Jing Wang", "Wei Zhang"] and not p.authors_truncated


# -- 6 and 8. field types, huge abstracts, NUL bytes through the CLI ---------------------------------------------
def test_bad_field_types_huge_abstracts_and_nul_bytes_cost_one_record_each(data, cli, embedder, tmp_path):
    sentence = "We measure the effect of long abstracts on the embedding time of the store. "
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"title": "Authors As A Number", "abstract": ABSTRACT + " One.", "authors": 12345},
        {"title": "A One Megabyte Abstract", "abstract": sentence * 13_000},
        {"title": "Quokka Attention for Long Documents", "abstract": ABSTRACT, "authors": ["Ada Lovelace"]},
    ]
    path.write_bytes("\n".join(json.dumps(r) for r in rows).encode() + b'\n{"title": "N\x00L", "abstract": "broken"}\n')
    before, chunks = stored(data, embedder)
    t0 = time.perf_counter()
    r = cli(data, "ingest", "-q", str(path))
    assert r.exit_code == 2 and time.perf_counter() - t0 < 60
    out = " ".join(r.output.split())
    assert f"{path}:1: field 'authors' is a number (12345)" in out
    assert f"{path}:2: record 'A One Megabyte Abstract' does not look like a paper: the abstract is 987,999" in out
    assert f"{path}:4: NUL byte in the line" in out
    titles, after = stored(data, embedder)
    assert set(titles) == set(before) | {"Quokka Attention for Long Documents"} and after == chunks + 1


# -- the doctor: caches, an interrupted ingest ------------------------------------------------------------------
def test_doctor_finds_stale_caches_and_an_interrupted_ingest_and_doctor_fix_repairs_them(data, cli, embedder):
    r = cli(data, "doctor", "--no-llm")
    assert r.exit_code == 0 and r.output.strip().endswith("the store is healthy")
    assert "vector index: test query: 16 of 16 sampled chunks found as their own nearest neighbour" in r.output
    (data / "nodes.jsonl").unlink()
    lines = (data / "papers.jsonl").read_text().splitlines()
    (data / "papers.jsonl").write_text("\n".join(lines[:-3]) + "\n")  # three papers short, stamp unchanged
    journal = {"file": "half.jsonl", "written": ["0000000000000000:0"], "restore": []}
    (data / JOURNAL).write_text(json.dumps(journal))
    r = cli(data, "doctor", "--no-llm")
    assert r.exit_code == 1
    assert "PROBLEM keyword index: " in r.output and "nodes.jsonl is missing" in r.output
    assert "PROBLEM paper cache: papers.jsonl: 13 papers, 0 unknown to Chroma, 3 missing" in r.output
    assert "PROBLEM interrupted ingest: the ingest of half.jsonl was cut short" in r.output
    assert r.output.strip().endswith("to fix: run `assistant doctor --fix`")
    r = cli(data, "doctor", "--fix", "--no-llm")
    assert r.exit_code == 0 and r.output.strip().endswith("the store is healthy"), r.output
    assert "an interrupted ingest of half.jsonl was rolled back" in r.output
    assert len(stored(data, embedder)[0]) == 16


def test_doctor_says_when_vectors_come_from_another_embedding_model(data, cli, embedder):
    with PaperStore(Settings(data_dir=data), embedder=embedder) as store:
        got = store.collection.get(include=["embeddings", "documents", "metadatas"])
        store.collection.upsert(
            ids=got["ids"],
            embeddings=[list(reversed(list(map(float, e)))) for e in got["embeddings"]],
            documents=got["documents"],
            metadatas=got["metadatas"],
        )
    r = cli(data, "doctor", "--no-llm")
    assert r.exit_code == 1 and "stored vectors were made by another embedding model" in r.output
    assert r.output.strip().endswith("to fix: run `assistant ingest --rebuild`")


# -- machine faults: the model assembly, permission denied ------------------------------------------------------
def test_no_space_for_the_model_assembly_is_one_line_naming_the_folder(tmpfs, monkeypatch):
    from assistant.models import ModelError, ensure_gguf

    models = tmpfs / "models"
    with pytest.raises(ModelError) as exc:
        ensure_gguf("qwen2.5-coder-0.5b", models, progress=False)
    message = str(exc.value)
    assert f"not enough disk space in {models} to assemble qwen2.5-coder-0.5b" in message
    assert "set ASSISTANT_DATA_DIR to a folder on a larger disk" in message and "\n" not in message
    # the free-space check fooled: the disk really fills up while the parts are copied
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 40, 0, 1 << 40))
    with pytest.raises(ModelError, match=f"no space left in {models} to assemble qwen2.5-coder-0.5b"):
        ensure_gguf("qwen2.5-coder-0.5b", models, progress=False)
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []  # no partial file left


def test_unwritable_store_and_models_folders_are_one_line_naming_them(data, cli, embedder, monkeypatch, tmp_path):
    """Permission denied, made real for root with the immutable attribute (root ignores file modes)."""
    from assistant.models import ModelError, ensure_gguf

    if shutil.which("chattr") is None:
        pytest.skip("chattr is not available")
    chroma = data / "chroma"
    if subprocess.run(["chattr", "+i", str(chroma)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable attribute")
    try:
        r = cli(data, "ingest", "-q", str(jsonl(tmp_path / "x.jsonl", {"title": "Quokka", "abstract": ABSTRACT})))
        assert r.exit_code == 1
        assert f"error: permission denied: {chroma} cannot be written by this user" in r.output
        assert f"make {data} writable for this user" in r.output
    finally:
        subprocess.run(["chattr", "-i", str(chroma)], check=True)
    models = tmp_path / "models"
    models.mkdir()
    subprocess.run(["chattr", "+i", str(models)], check=True)
    try:
        with pytest.raises(ModelError) as exc:
            ensure_gguf("qwen2.5-coder-0.5b", models, progress=False)
    finally:
        subprocess.run(["chattr", "-i", str(models)], check=True)
    assert f"cannot write {models}" in str(exc.value) and "Operation not permitted" in str(exc.value)
    assert stored(data, embedder)[1] == 16


# -- 10. a failed eval start leaves no run folder -----------------------------------------------------------------
def test_eval_that_fails_at_start_up_leaves_no_run_folder(data, tmp_path, monkeypatch):
    from assistant.evaluation.runner import EvalError, run_eval

    dataset = tmp_path / "q.jsonl"
    first = (Path(__file__).resolve().parent.parent / "evals" / "datasets" / "dev.jsonl").read_text().splitlines()[0]
    dataset.write_text(first + "\n")
    runs = tmp_path / "runs"
    settings = Settings(data_dir=data)
    settings.llm.base_url, settings.llm.model = "http://127.0.0.1:9/v1", None  # nothing listens there
    with pytest.raises(EvalError, match="127.0.0.1:9"):
        run_eval(dataset, settings=settings, runs_dir=runs, judge=None)
    assert not runs.exists() or list(runs.iterdir()) == []


# -- uploads use the same rule, one unit per file, and keep a copy for --rebuild ------------------------------------
def test_upload_merges_by_the_same_rule_reports_conflicts_and_keeps_a_copy(data, embedder):
    from fakes import FakeLLM

    from assistant.answer import Assistant
    from assistant.retrieve import Retriever
    from assistant.ui.backend import Backend, UploadedFile
    from assistant.ui.render import upload_report_markdown

    settings = Settings(data_dir=data)
    with PaperStore(settings, embedder=embedder) as store:
        dovit = next(p for p in store.papers() if "DoViT" in p.abstract)
        backend = Backend(settings, Assistant(settings, Retriever(store, settings), FakeLLM(default="x [1].")))
        upload = {"title": "DoViT: Token Passing", "abstract": dovit.abstract, "authors": ["Ann Other"]}
        junk = "".join(chr(0x41 + (i * 7919) % 26) + ("" if i % 97 else " ") for i in range(3000))
        files = [
            UploadedFile("dovit.jsonl", (json.dumps(upload) + "\n").encode()),
            UploadedFile("junk.txt", f"Some Title\n{junk}\n".encode()),
        ]
        dry = backend.add_papers(files, dry_run=True)
        assert not dry.stored and [p.title for p in dry.merged] == [dovit.title] and dry.added == []
        report = backend.add_papers(files)
        text = upload_report_markdown(report)
        assert report.stored and [p.title for p in report.merged] == [dovit.title]
        assert "DoViT: Token Passing" in report.merged[0].alt_titles
        assert "Ann Other" in report.merged[0].authors and set(dovit.authors) <= set(report.merged[0].authors)
        assert "Merged although fields conflict" in text and "dovit.jsonl:1 merged into" in text
        assert any(r.startswith("junk.txt: file refused:") for r in report.rejected)
        assert len(backend.papers()) == 16  # merged, nothing invented
    kept = json.loads((data / "added" / "manifest.jsonl").read_text().splitlines()[0])
    assert kept["name"] == "upload/dovit.jsonl" and (data / "added" / kept["copy"]).read_bytes().startswith(b"{")


def test_web_app_reports_a_damaged_store_in_its_status_and_starts_no_llm(data, no_llm, caplog):
    from assistant.ui.backend import Backend

    _damage(data, "truncated")
    backend = Backend(Settings(data_dir=data)).start()
    try:
        assert not backend.wait(60)
        assert backend.store_error and "is damaged" in backend.store_error
        assert "Run `assistant ingest --rebuild`" in backend.unavailable_reason()
    finally:
        backend.close()
    assert no_llm == [] and not any(r.exc_info for r in caplog.records)  # logged in one line, no traceback
