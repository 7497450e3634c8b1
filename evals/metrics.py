"""Retrieval metrics over expected titles (binary relevance)."""

from __future__ import annotations

import math


def _norm(title: str) -> str:
    return " ".join(title.casefold().split())


def retrieval_scores(ranked_titles: list[str], expected_titles: list[str], k: int = 5) -> dict[str, float]:
    """hit@k, recall@k, reciprocal rank and nDCG@10 of one ranked list against the expected titles."""
    expected = {_norm(t) for t in expected_titles}
    ranked = [_norm(t) for t in ranked_titles]
    rel = [1 if t in expected else 0 for t in ranked]
    hit = float(any(rel[:k]))
    recall = len(expected & set(ranked[:k])) / len(expected) if expected else 0.0
    rr = next((1.0 / (i + 1) for i, r in enumerate(rel) if r), 0.0)
    dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel[:10]))
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(expected), 10)))
    return {f"hit@{k}": hit, f"recall@{k}": recall, "mrr": rr, "ndcg@10": dcg / ideal if ideal else 0.0}
