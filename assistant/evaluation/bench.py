"""`assistant bench`: speed and memory of the pipeline beside the raw engines underneath it, in one run.

Every figure is measured in the same process and run, so ratios (pipeline / raw engine) are
comparable even on a busy machine. Timings are reported, never asserted.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from llama_index.core.schema import TextNode

from assistant.answer import QuestionError
from assistant.config import REPO_ROOT, SEEDS_DIR, Settings
from assistant.corpus import load_corpus
from assistant.embed import Embedder
from assistant.paper import Paper
from assistant.services import assistant_on, index_on, open_store, start_llm
from assistant.store import chunk_paper
from assistant.text import split_sentences

DEV = REPO_ROOT / "evals" / "datasets" / "dev.jsonl"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _time(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _questions(limit: int) -> list[dict]:
    rows = [json.loads(line) for line in DEV.read_text().splitlines() if line.strip()]
    factoids = [r for r in rows if r["type"] == "factoid" and not r["history"]]
    comparisons = [r for r in rows if r["type"] == "comparative" and not r["history"]]
    # two factoids to one comparison (a comparison's findings are timed too), in the dataset's order
    mixed = [r for i, f in enumerate(factoids) for r in ([f] + (comparisons[i // 2 : i // 2 + 1] if i % 2 else []))]
    return mixed[:limit]


# -- 1. ingest ------------------------------------------------------------------------------------
def _seed_chunks(settings: Settings, embedder) -> tuple[list, list[str]]:
    """The seed papers and their chunk texts, shortest first (as ingest batches them)."""

    cfg = settings.chunk
    papers = load_corpus([settings.seeds_dir]).papers
    texts = [
        n.get_content()
        for p in papers
        for n in chunk_paper(p, embedder.count_tokens, cfg.max_tokens, cfg.overlap_sentences)
    ]
    return papers, sorted(texts, key=len)


def _bare_encode_s(embedder, texts: list[str], batch_size: int) -> float:
    """Seconds the bare sentence-transformers model takes on the texts, after a warm-up batch."""
    model = embedder.model._model
    model.encode(texts[:8])  # model load and first-call set-up are not embedding speed
    t = time.perf_counter()
    model.encode(texts, batch_size=batch_size)
    return time.perf_counter() - t


def bench_ingest(settings: Settings, log: Callable[[str], None]) -> dict:

    embedder = Embedder(settings)
    papers, texts = _seed_chunks(settings, embedder)
    log(f"ingest: {len(papers)} papers, {len(texts)} chunks")
    bare_s = _bare_encode_s(embedder, texts, settings.embed.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        s = settings.model_copy(update={"data_dir": Path(tmp)})
        store = open_store(s, embedder=embedder, read_only=False)
        try:
            report = store.ingest(papers, progress=False)
        finally:
            store.close()
    return {
        "ingest.papers": len(papers),
        "ingest.precision": embedder.precision,
        "ingest.chunks": len(texts),
        "ingest.seconds": round(report.seconds, 2),
        "ingest.papers_per_s": round(len(papers) / report.seconds, 1),
        "ingest.bare_embed_papers_per_s": round(len(papers) / bare_s, 1),
        "ingest.overhead_ratio": round(report.seconds / bare_s, 3),
        # everything ingest does besides embedding (chunking, token counts, Chroma, journal, keyword index, caches)
        "ingest.embed_seconds": round(report.embed_seconds, 2),
        "ingest.overhead_ms_per_paper": round(1000 * (report.seconds - report.embed_seconds) / len(papers), 2),
    }


def bench_precisions(settings: Settings, log: Callable[[str], None]) -> dict:
    """The bare embedding model at each precision on the seed chunks (the ASSISTANT_EMBED__PRECISION choice)."""

    extra: dict = {}
    if settings.embed.base_url:
        return extra
    for precision in ("float32", "bfloat16"):
        other = settings.model_copy(deep=True)
        other.embed.precision = precision
        embedder = Embedder(other)
        papers, texts = _seed_chunks(other, embedder)
        key = f"ingest.bare_embed_papers_per_s.{precision}"
        extra[key] = round(len(papers) / _bare_encode_s(embedder, texts, settings.embed.batch_size), 1)
        log(f"ingest: bare {precision} {extra[key]} papers/s")
    return extra


# -- 2. retrieval at scale ------------------------------------------------------------------------
def _synthetic_nodes(papers, n: int, dim: int, seed: int = 0):
    """n synthetic papers recombined from seed sentences under unique titles, with random unit vectors."""

    rng = random.Random(seed)
    pool = [s for p in papers for s in split_sentences(p.abstract)]
    words = [w for p in papers for w in p.title.split()]
    vecs = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    nodes = []
    for i in range(n):
        title = " ".join(rng.sample(words, 6)) + f" {i}"
        text = f"{title}\n" + " ".join(rng.sample(pool, 6))
        meta = {
            "paper_id": f"syn{i}",
            "title": title,
            "year": 2018 + i % 7,
            "category": "CV",
            "authors": "",
            "chunk": 0,
            "n_chunks": 1,
        }
        node = TextNode(id_=f"syn{i}:0", text=text, metadata=meta)
        node.embedding = vecs[i].tolist()
        nodes.append(node)
    return nodes


def bench_retrieval(settings: Settings, sizes: list[int], queries: list[str], log: Callable[[str], None]) -> dict:

    out: dict = {}
    papers = load_corpus([settings.seeds_dir]).papers
    with tempfile.TemporaryDirectory() as tmp:
        s = settings.model_copy(update={"data_dir": Path(tmp)})
        store = open_store(s, read_only=False)
        store.ingest(papers, progress=False)
        retriever = index_on(store)
        have = len(papers)
        for size in sizes:
            label = "seed" if size <= len(papers) else (f"{size // 1000}k")
            extra = max(0, size - have)
            if extra:
                log(f"retrieval: growing the store to {size:,} papers (random unit vectors, recombined text)")
                nodes = _synthetic_nodes(papers, extra, len(retriever.store.embedder.embed_query("x")), seed=size)
                for i in range(0, len(nodes), 5000):
                    store.vector_store.add(nodes[i : i + 5000])
                store.refresh_caches()
                retriever.reload()
                # synthetic papers need records so filters and grouping work like real ones
                for node in nodes:
                    meta = node.metadata
                    retriever.papers[meta["paper_id"]] = Paper(
                        id=meta["paper_id"], title=meta["title"], abstract=node.text, year=meta["year"]
                    )
                retriever.warm_up()
                have = size
            for mode in ("bm25", "dense", "hybrid"):
                embedder = retriever.store.embedder
                # each timed search embeds its query afresh (the embedder caches a question's vector per answer)
                lat = [
                    t * 1000
                    for q in queries
                    for t in _time(lambda q=q, m=mode, e=embedder: (e.forget_queries(), retriever.search(q, mode=m)), 1)
                ]
                out[f"retrieval.{mode}.p50_ms.{label}"] = round(statistics.median(lat), 2)
                out[f"retrieval.{mode}.p95_ms.{label}"] = round(_pct(lat, 0.95), 2)
            log(f"retrieval at {label}: hybrid p50 {out[f'retrieval.hybrid.p50_ms.{label}']} ms")
        store.close()
    return out


# -- 3. answering ---------------------------------------------------------------------------------
def bench_answer(settings: Settings, n_questions: int, log: Callable[[str], None]) -> dict:
    """Pipeline vs the raw llama.cpp server given the identical prompt, from the same cache state."""

    questions = _questions(n_questions)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        s = settings.model_copy(update={"data_dir": Path(tmp)})
        s.llm.temperature = 0.0
        s.models_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(s, read_only=False)
        store.ingest(load_corpus([s.seeds_dir]).papers, progress=False)
        retriever = index_on(store)
        llm = start_llm(s)
        try:
            assistant = assistant_on(retriever, llm)
            # Before each measured call: a short unrelated question under the same system prompt, so both the
            # raw server and the pipeline start from the state a chat is in (fixed prefix cached, sources not).
            system = assistant.build_messages(questions[0]["question"])[0]
            flush = [system, {"role": "user", "content": "Say OK."}]
            pipe_ttft, pipe_total, raw_ttft, raw_total, prompt_tokens, evidence = [], [], [], [], [], []
            findings: list[float] = []
            prompt_rate, gen_rate = [], []  # the raw server's own speed: prompt and generated tokens per second
            for i, row in enumerate(questions, start=1):
                log(f"answer {i}/{len(questions)}: {row['question'][:60]}")
                try:
                    messages, grammar = assistant.model_request(row["question"])
                except QuestionError:  # refused or listed by the pipeline: no model call to compare
                    continue
                llm.chat(flush, max_tokens=2)  # same cache state before each measured call
                t = time.perf_counter()
                first = None
                for _ in llm.stream_chat(messages, max_tokens=s.llm.max_tokens, temperature=0.0, grammar=grammar):
                    first = first or time.perf_counter()
                raw_total.append(time.perf_counter() - t)
                raw_ttft.append((first or time.perf_counter()) - t)
                if (rate := llm.last.prompt_tokens_per_s) is not None:
                    prompt_rate.append(rate)
                if (rate := llm.last.completion_tokens_per_s) is not None:
                    gen_rate.append(rate)
                llm.chat(flush, max_tokens=2)
                answer = assistant.ask(row["question"])
                pipe_ttft.append(answer.timings.get("ttft_s", 0.0))
                evidence.append(answer.timings.get("first_evidence_s", 0.0))
                if "findings_s" in answer.timings:  # comparisons: the table is complete before the model writes
                    findings.append(answer.timings["findings_s"])
                pipe_total.append(answer.timings.get("total_s", 0.0))
                prompt_tokens.append(answer.prompt_tokens)
            server = llm.server
            out.update(
                {
                    "answer.questions": len(questions),
                    "answer.first_evidence_p50_s": round(statistics.median(evidence), 3),
                    "answer.first_evidence_p95_s": round(_pct(evidence, 0.95), 3),
                    # a comparison's findings (its table), complete before the model's first token
                    "answer.findings_p50_s": round(statistics.median(findings), 3) if findings else None,
                    "answer.findings_p95_s": round(_pct(findings, 0.95), 3) if findings else None,
                    "llm.prompt_tokens_per_s": round(statistics.median(prompt_rate), 1) if prompt_rate else None,
                    "llm.generated_tokens_per_s": round(statistics.median(gen_rate), 1) if gen_rate else None,
                    "answer.ttft_p50_s": round(statistics.median(pipe_ttft), 3),
                    "answer.ttft_p95_s": round(_pct(pipe_ttft, 0.95), 3),
                    "answer.total_p50_s": round(statistics.median(pipe_total), 3),
                    "answer.total_p95_s": round(_pct(pipe_total, 0.95), 3),
                    "answer.raw_ttft_p50_s": round(statistics.median(raw_ttft), 3),
                    "answer.raw_total_p50_s": round(statistics.median(raw_total), 3),
                    # pipeline TTFT over the raw server's on the identical prompt, per question, median
                    "answer.ttft_ratio_p50": round(
                        statistics.median(p / r for p, r in zip(pipe_ttft, raw_ttft, strict=True) if r > 0), 3
                    ),
                    "answer.prompt_tokens_mean": round(statistics.mean(prompt_tokens), 1),
                    # share of the pipeline's time that is not the model's prefill + generation
                    "answer.overhead_ratio": round(max(0.0, (sum(pipe_total) - sum(raw_total)) / sum(pipe_total)), 4),
                }
            )
            if server is not None and server.pid:
                out["memory.model_server_peak_rss_mb"] = _peak_rss_mb(server.pid)
        finally:
            llm.close()
            store.close()
    return out


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


def run_bench(settings: Settings, quick: bool = False, log: Callable[[str], None] = print) -> dict:
    settings = settings.model_copy(deep=True)
    settings.seeds_dir = settings.seeds_dir if settings.seeds_dir.exists() else SEEDS_DIR
    queries = [r["question"] for r in _questions(20)]
    results: dict = {"bench.quick": quick}
    t0 = time.perf_counter()
    # What an app process does (open the store, ingest the seeds, answer) runs first, so the peak RSS taken
    # after it is the app's; the 10k/100k corpora exist only in the benchmark and are measured apart.
    results.update(bench_answer(settings, 3 if quick else 20, log))
    results.update(bench_ingest(settings, log))
    results["memory.app_peak_rss_mb"] = _peak_rss_mb(os.getpid())
    if not quick:
        results.update(bench_precisions(settings, log))
    sizes = [310, 10_000] if quick else [310, 10_000, 100_000]
    results.update(bench_retrieval(settings, sizes, queries[: 8 if quick else 20], log))
    results["memory.bench_peak_rss_mb"] = _peak_rss_mb(os.getpid())
    results["memory.peak_rss_mb"] = round(
        results["memory.app_peak_rss_mb"] + results.get("memory.model_server_peak_rss_mb", 0.0), 1
    )
    results["bench.seconds"] = round(time.perf_counter() - t0, 1)
    return results
