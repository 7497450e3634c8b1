"""The benchmark's building blocks on a small scale (the timings themselves are never asserted)."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.evaluation.bench import _pct, _synthetic_nodes, bench_retrieval


def test_percentiles_interpolate_between_ranks():
    assert _pct([3.0, 1.0, 2.0, 4.0], 0.5) == 2.5
    assert _pct([5.0], 0.95) == 5.0 and np.isnan(_pct([], 0.5))


def test_synthetic_papers_have_unique_titles_unit_vectors_and_seed_sentences(seed_corpus):
    nodes = _synthetic_nodes(seed_corpus.papers, 500, 384)
    titles = {n.metadata["title"] for n in nodes}
    assert len(titles) == 500 and len({n.id_ for n in nodes}) == 500
    assert np.allclose(np.linalg.norm([n.embedding for n in nodes], axis=1), 1.0, atol=1e-5)
    pool = " ".join(p.abstract for p in seed_corpus.papers)
    assert all(n.text.split("\n", 1)[1][:40] in pool for n in nodes[:20])


@pytest.mark.slow
def test_retrieval_bench_grows_the_store_and_reports_every_mode_and_size(settings, seed_corpus):
    out = bench_retrieval(settings, [310, 1500], ["How much faster is DoViT?", "graph neural networks"], log=print)
    for mode in ("bm25", "dense", "hybrid"):
        for label in ("seed", "1k"):
            assert out[f"retrieval.{mode}.p50_ms.{label}"] > 0
            assert out[f"retrieval.{mode}.p95_ms.{label}"] >= out[f"retrieval.{mode}.p50_ms.{label}"]
