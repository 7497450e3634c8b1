"""Embedding precision: chosen from the CPU, stated at start-up, and close to float32 when bfloat16."""

from __future__ import annotations

import numpy as np
import pytest

import assistant.embed as embed
from assistant.config import Settings
from assistant.embed import Embedder


@pytest.mark.parametrize(
    ("setting", "native", "expected"),
    [
        ("auto", True, "bfloat16"),
        ("auto", False, "float32"),
        ("float32", True, "float32"),
        ("bfloat16", False, "bfloat16"),
    ],
)
def test_precision_follows_the_setting_and_the_cpu(monkeypatch, setting, native, expected):
    monkeypatch.setattr(embed, "native_bf16", lambda: native)
    e = Embedder(Settings(embed={"precision": setting}))
    assert e.precision == expected and f", {expected} (" in e.describe()


def test_a_remote_embedder_has_no_local_precision():
    e = Embedder(Settings(embed={"base_url": "http://127.0.0.1:9/v1"}))
    assert e.precision == "remote" and "remote embeddings" in e.describe()


@pytest.mark.slow
def test_bfloat16_vectors_stay_close_to_float32_and_rank_alike(seed_corpus):
    texts = [p.abstract for p in seed_corpus.papers[:24]]
    query = "How much computation does dynamic token pruning save in semantic segmentation?"
    vecs = {}
    for precision in ("float32", "bfloat16"):
        e = Embedder(Settings(embed={"precision": precision}))
        vecs[precision] = (np.array(e.embed_texts(texts)), np.array(e.embed_query(query)))
    (d32, q32), (d16, q16) = vecs["float32"], vecs["bfloat16"]
    cos = (d32 * d16).sum(1) / np.linalg.norm(d32, axis=1) / np.linalg.norm(d16, axis=1)
    assert cos.min() > 0.99
    assert list(np.argsort(-(d32 @ q32))[:3]) == list(np.argsort(-(d16 @ q16))[:3])
