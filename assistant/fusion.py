"""Reciprocal-rank fusion: the one way rankings are combined — chunks in hybrid retrieval (BM25, dense, names),
a follow-up's two searches, and evidence sentences (lexical, BM25, dense)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def rrf(rankings: Sequence[Sequence[Hashable]], k: float, weights: Sequence[float] | None = None) -> dict:
    """Each item's fused score: the sum over rankings of ``weight / (k + rank + 1)`` (rank 0 = best)."""
    scores: dict = {}
    for i, ranking in enumerate(rankings):
        w = 1.0 if weights is None else weights[i]
        for rank, item in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + w / (k + rank + 1)
    return scores
