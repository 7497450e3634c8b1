"""The persistent store: chunking, idempotent ingest into a real Chroma folder, filters, locking, bad input."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from assistant.cli import app
from assistant.config import SEEDS_DIR, Settings
from assistant.paper import Paper, paper_id
from assistant.store import PaperStore, StoreLocked, chunk_paper


def _words(text: str) -> int:
    return len(text.split())


def _paper(title: str, abstract: str, **kw) -> Paper:
    return Paper(id=paper_id(title), title=title, abstract=abstract, **kw)


def test_short_abstract_is_one_chunk_carrying_title_and_metadata():
    p = _paper("A Short Paper", "One sentence. Two sentences.", year=2023, category="CV", authors=["Ann Lee"])
    nodes = chunk_paper(p, _words, max_tokens=50, overlap=1)
    assert len(nodes) == 1
    assert nodes[0].text.startswith("A Short Paper\n")
    meta = nodes[0].metadata
    assert meta["paper_id"] == p.id and meta["year"] == 2023 and meta["category"] == "CV"
    assert meta["authors"] == "Ann Lee" and meta["n_chunks"] == 1
    assert Paper.model_validate_json(meta["paper_json"]) == p


def test_long_abstract_splits_on_sentences_with_overlap_and_budget():
    sentences = [f"Sentence number {i} has exactly seven words." for i in range(20)]
    p = _paper("Long Paper", " ".join(sentences))
    nodes = chunk_paper(p, _words, max_tokens=40, overlap=1)
    assert len(nodes) > 3
    for node in nodes:
        assert _words(node.text) <= 40 + 7  # title + budget; never more than one sentence over
        body = node.text.split("\n", 1)[1]
        assert body.endswith(".")  # chunks end on a sentence boundary
    for a, b in zip(nodes, nodes[1:], strict=False):
        last = a.text.split("\n", 1)[1].split(". ")[-1].rstrip(".")
        assert b.text.split("\n", 1)[1].startswith(last)  # one sentence of overlap
    covered = " ".join(n.text for n in nodes)
    assert all(s in covered for s in sentences)
    assert [n.metadata["chunk"] for n in nodes] == list(range(len(nodes)))
    assert "paper_json" in nodes[0].metadata and "paper_json" not in nodes[1].metadata


@pytest.mark.slow
def test_seed_store_holds_every_paper_and_chunk(seed_store, seed_corpus):
    stored = {p.id: p for p in seed_store.papers()}
    assert set(stored) == {p.id for p in seed_corpus.papers}
    for p in seed_corpus.papers:
        assert stored[p.id] == p  # lossless round trip through Chroma metadata
    nodes = seed_store.nodes()
    assert len(nodes) == seed_store.count_chunks() >= len(seed_corpus.papers)
    assert {n.metadata["paper_id"] for n in nodes} == set(stored)
    # most abstracts are one chunk
    single = sum(1 for n in nodes if n.metadata["n_chunks"] == 1)
    assert single > 0.6 * len(stored)


@pytest.mark.slow
def test_dense_query_with_filters_applied_in_store(seed_store, embedder):
    from llama_index.core.vector_stores.types import VectorStoreQuery

    from assistant.filters import Filters

    papers = seed_store.papers()
    q = embedder.embed_query("dynamic token pass vision transformer for semantic segmentation")
    res = seed_store.vector_store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3))
    assert res.nodes[0].metadata["title"] == "Dynamic Token-Pass Transformers for Semantic Segmentation"

    where = Filters(year_from=2022, year_to=2022, category="LG").chroma_where(papers)
    res = seed_store.vector_store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10), where=where)
    assert res.nodes and all(n.metadata["year"] == 2022 and n.metadata["category"] == "LG" for n in res.nodes)

    where = Filters(authors=["yuang liu"]).chroma_where(papers)
    res = seed_store.vector_store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=50), where=where)
    assert res.nodes and all("Yuang Liu" in n.metadata["authors"] for n in res.nodes)


@pytest.mark.slow
def test_ingest_is_idempotent_and_persists(tmp_path, embedder, seed_corpus):
    settings = Settings(data_dir=tmp_path / "data")
    subset = seed_corpus.papers[:40]
    with PaperStore(settings, embedder=embedder) as store:
        first = store.ingest(subset, progress=False)
        assert (first.added, first.updated, first.unchanged) == (40, 0, 0)
        chunks = store.count_chunks()
        again = store.ingest(subset, progress=False)
        assert (again.added, again.updated, again.unchanged) == (0, 0, 40)
        assert store.count_chunks() == chunks
    # a new store object (as a new process would) sees the same data on disk
    with PaperStore(settings, embedder=embedder) as store:
        assert store.count_chunks() == chunks
        assert {p.id for p in store.papers()} == {p.id for p in subset}
        changed = subset[0].model_copy(update={"has_code": not subset[0].has_code})
        r = store.ingest([changed], progress=False)
        assert (r.added, r.updated) == (0, 1)
        assert store.count_chunks() == chunks  # replaced, not duplicated
        # the stored record unites old and new (has_code is OR-ed), so nothing known is lost
        assert {p.id: p for p in store.papers()}[changed.id].has_code is True
        store.rebuild()
        assert store.count_chunks() == 0


@pytest.mark.slow
def test_interrupted_ingest_is_completed_by_rerun(tmp_path, embedder, seed_corpus):
    settings = Settings(data_dir=tmp_path / "data")
    too_long = settings.chunk.max_tokens
    longest = [p for p in seed_corpus.papers if embedder.count_tokens(f"{p.title}\n{p.abstract}") > too_long][:3]
    subset = longest + [p for p in seed_corpus.papers if p not in longest][:27]
    with PaperStore(settings, embedder=embedder) as store:
        store.ingest(subset, progress=False)
        multi = sorted({n.metadata["paper_id"] for n in store.nodes() if n.metadata["n_chunks"] > 1})
        single = sorted({n.metadata["paper_id"] for n in store.nodes() if n.metadata["n_chunks"] == 1})
        assert len(multi) >= 2 and single
        # simulate a crash that wrote only the first chunk of two papers and nothing of a third
        store.collection.delete(ids=[f"{multi[0]}:1", f"{multi[1]}:1"])
        store.collection.delete(where={"paper_id": single[0]})
        r = store.ingest(subset, progress=False)
        assert (r.added, r.updated, r.unchanged) == (1, 2, 27)
        ids = store.collection.get(include=[])["ids"]
        assert len(ids) == len(set(ids))
        assert {f"{multi[0]}:1", f"{multi[1]}:1", f"{single[0]}:0"} <= set(ids)
        assert {p.id for p in store.papers()} == {p.id for p in subset}


def test_second_process_gets_a_clear_lock_message(settings):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import fcntl, pathlib, sys, time
                d = pathlib.Path({str(settings.data_dir)!r}); d.mkdir(parents=True, exist_ok=True)
                fh = open(d / "store.lock", "a+"); fcntl.flock(fh, fcntl.LOCK_EX); fh.write("pid 4242"); fh.flush()
                print("locked", flush=True); time.sleep(30)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLocked, match="in use by pid 4242"):
            PaperStore(settings).open()
        result = CliRunner().invoke(app, ["papers"])
        assert result.exit_code == 1
        assert "in use by pid 4242" in result.output and "Traceback" not in result.output
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_cli_ingest_bad_files_reports_them_and_keeps_the_rest(settings, tmp_path):
    runner = CliRunner()
    seed = SEEDS_DIR / "000_20bba863e7f451be.txt"
    first = runner.invoke(app, ["ingest", "-q", str(seed)])
    assert first.exit_code == 0, first.output
    before = PaperStore(settings).open()
    n_before = len(before.papers())
    before.close()
    assert n_before == 16

    bad_dir = tmp_path / "incoming"
    bad_dir.mkdir()
    (bad_dir / "empty.txt").write_text("")
    (bad_dir / "binary.txt").write_bytes(b"\x00\x01\x02\xff" * 100)
    (bad_dir / "broken.jsonl").write_text(
        '{"id": "2301.00001", "title": "A Good JSONL Paper", "authors": "Ann Lee, Bo Chen",'
        ' "abstract": "We study good things. It works.", "categories": "cs.LG", "update_date": "2023-01-02"}\n'
        '{"id": "2301.00002", "title": "Broken\n'
    )
    result = runner.invoke(app, ["ingest", "-q", str(bad_dir)])
    assert result.exit_code == 2
    out = result.output
    assert "empty.txt" in out and "binary.txt" in out and "broken.jsonl:2" in out
    assert "Traceback" not in out
    store = PaperStore(settings).open()
    titles = {p.title for p in store.papers()}
    store.close()
    assert "A Good JSONL Paper" in titles and len(titles) == n_before + 1

    again = runner.invoke(app, ["ingest", "-q", str(seed)])
    assert again.exit_code == 0 and "16" in again.output


@pytest.mark.slow
def test_cli_papers_json_and_filters(settings):
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "-q", str(SEEDS_DIR / "000_20bba863e7f451be.txt")]).exit_code == 0
    import json

    result = runner.invoke(app, ["papers", "--json"])
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 16
    for key in ("id", "title", "authors", "year", "category", "affiliations", "abstract", "sources"):
        assert key in rows[0]
    assert all(r["sources"][0].startswith(str(SEEDS_DIR / "000_")) for r in rows)
    result = runner.invoke(app, ["papers", "--json", "--author", "yuang liu", "--year", "2021"])
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows and all(r["year"] == 2021 and any("Yuang Liu" in a for a in r["authors"]) for r in rows)
    bad = runner.invoke(app, ["papers", "--year-from", "2024", "--year-to", "2020"])
    assert bad.exit_code == 1 and "start is after the end" in bad.output
