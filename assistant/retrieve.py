"""Hybrid retrieval: BM25 (bm25s) + dense (Chroma) fused by reciprocal rank, grouped per paper.

Filters are applied inside each retriever's query: a Chroma `where` clause for the
dense side and a weight mask for BM25, so a filtered search never returns and
then drops out-of-range hits.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from llama_index.core.schema import TextNode

from .config import Settings
from .coverage import TopicIndex
from .evidence import SentenceIndex
from .filters import Filters
from .fusion import rrf
from .names import NameIndex
from .paper import Paper
from .store import PaperStore

log = logging.getLogger(__name__)

Mode = str  # "hybrid" | "dense" | "bm25"


@dataclass
class Chunk:
    node_id: str
    text: str
    dense: float | None = None  # cosine similarity to the query
    bm25: float | None = None
    dense_rank: int | None = None
    bm25_rank: int | None = None
    rrf: float = 0.0


@dataclass
class Hit:
    """One retrieved paper with the chunks that matched."""

    paper: Paper
    chunks: list[Chunk] = field(default_factory=list)
    score: float = 0.0  # fused score used for ranking
    relevance: float | None = None  # P(the question is about this paper), from the relevance model when it ranked

    @property
    def dense(self) -> float:
        return max((c.dense for c in self.chunks if c.dense is not None), default=0.0)

    @property
    def bm25(self) -> float:
        return max((c.bm25 for c in self.chunks if c.bm25 is not None), default=0.0)

    def to_dict(self) -> dict:
        return {
            "paper_id": self.paper.id,
            "title": self.paper.title,
            "score": round(self.score, 5),
            "dense": round(self.dense, 4),
            "bm25": round(self.bm25, 3),
            "relevance": None if self.relevance is None else round(self.relevance, 4),
            "chunks": [c.node_id for c in self.chunks],
        }


_STEMMER = None


def _tokenize(texts: list[str]):
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s forces DEBUG on its own logger at import
    global _STEMMER
    if _STEMMER is None:
        try:
            import Stemmer

            _STEMMER = Stemmer.Stemmer("english")
        except ImportError:  # stemming improves recall but is optional
            _STEMMER = False
    return bm25s.tokenize(texts, stopwords="en", stemmer=_STEMMER or None, show_progress=False)


class Retriever:
    def __init__(self, store: PaperStore, settings: Settings):
        self.store = store
        self.settings = settings
        self.reload()

    def reload(self) -> None:
        """Re-read the store (after an ingest) and rebuild the keyword index."""
        self.papers: dict[str, Paper] = {p.id: p for p in self.store.papers()}
        self.nodes: list[TextNode] = self.store.nodes()
        self._node_pos = {n.node_id: i for i, n in enumerate(self.nodes)}
        self.__dict__.pop("_bm25", None)
        self.name_index = NameIndex.build(self.papers.values())
        self._chunks_of: dict[str, list[str]] = {}
        for n in self.nodes:
            self._chunks_of.setdefault(n.metadata["paper_id"], []).append(n.node_id)
        self.sentences = SentenceIndex(list(self.papers.values()), embed=self.store.embedder.embed_texts)
        self.topics = TopicIndex.build(self.papers.values())

    def close(self) -> None:
        """Close the store this retriever reads."""
        self.store.close()

    def warm_up(self) -> None:
        """Load the embedding model and build the keyword index now, not on the first question."""
        self.store.embedder.embed_query("warm up")
        self.build_keyword_index()

    def build_keyword_index(self) -> None:
        """Build the BM25 index now (after `reload`), not on the next question."""
        self._bm25  # noqa: B018

    @cached_property
    def _bm25(self):
        import bm25s

        index = bm25s.BM25()
        if self.nodes:
            tokens = _tokenize([n.text for n in self.nodes])
            index.index(tokens, show_progress=False)
            self._vocab = tokens.vocab
        return index

    # -- single retrievers -------------------------------------------------------------------
    def bm25(self, query: str, k: int, filters: Filters | None = None) -> list[tuple[str, float]]:
        if not self.nodes:
            return []
        index = self._bm25
        q = _tokenize([query])
        inverse = {v: t for t, v in q.vocab.items()}
        words = [inverse[i] for i in q.ids[0] if inverse.get(i)]
        words = [w for w in words if w in self._vocab]
        if not words:
            return []
        mask = self._mask(filters)
        scores = index.get_scores(words, weight_mask=mask)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(self.nodes[i].node_id, float(scores[i])) for i in top if scores[i] > 0]

    def _mask(self, filters: Filters | None) -> np.ndarray | None:
        if filters is None or filters.is_empty():
            return None
        allowed = {pid for pid, p in self.papers.items() if filters.matches(p)}
        return np.array([1.0 if n.metadata["paper_id"] in allowed else 0.0 for n in self.nodes], dtype=np.float32)

    def names(self, query: str, filters: Filters | None = None) -> list[tuple[str, float]]:
        """Chunks of the few papers that use a name from the query (DoViT, Gold-YOLO, LAUDNet).

        Made-up method names are what dense embeddings know least and users type most."""
        out: list[tuple[str, float]] = []
        for term in self.name_index.names_in(query):
            if sum(ch.isupper() for ch in term) < 2:
                continue  # capitalised words (Atari, Chinese) describe, they rarely identify one paper
            users = self.name_index.papers_with(term) & self._chunks_of.keys()
            if not 0 < len(users) <= MAX_NAME_PAPERS:
                continue
            for pid in sorted(users):
                if filters is None or filters.is_empty() or filters.matches(self.papers[pid]):
                    out.extend((nid, 1.0) for nid in self._chunks_of[pid])
        return list(dict.fromkeys(out))

    def dense(self, query: str, k: int, filters: Filters | None = None) -> list[tuple[str, float]]:
        from llama_index.core.vector_stores.types import VectorStoreQuery

        if not self.nodes:
            return []
        vec = self.store.embedder.embed_query(query)
        where = filters.chroma_where(list(self.papers.values())) if filters and not filters.is_empty() else None
        res = self.store.vector_store.query(
            VectorStoreQuery(query_embedding=vec, similarity_top_k=min(k, len(self.nodes))), where=where
        )
        # ChromaVectorStore reports exp(-distance); cosine space: distance = 1 - cos.
        return [(n.node_id, 1.0 + math.log(s)) for n, s in zip(res.nodes, res.similarities, strict=True)]

    def paper_dense(self, query: str, paper_ids: list[str]) -> dict[str, float]:
        """Cosine similarity of the query to each paper's best chunk, for any papers (not only the dense top-k):
        the chunk vectors are read from the store, the query embedded once."""
        ids = [nid for pid in dict.fromkeys(paper_ids) for nid in self._chunks_of.get(pid, [])]
        if not ids:
            return {}
        q = np.asarray(self.store.embedder.embed_query(query), dtype=np.float32)
        q /= np.linalg.norm(q) + 1e-9
        got = self.store.collection.get(ids=ids, include=["embeddings"])
        vecs = np.asarray(got["embeddings"], dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-9
        out: dict[str, float] = {}
        for nid, cos in zip(got["ids"], (vecs @ q).tolist(), strict=True):
            pid = self.nodes[self._node_pos[nid]].metadata["paper_id"] if nid in self._node_pos else nid.split(":")[0]
            out[pid] = max(out.get(pid, -1.0), float(cos))
        return out

    # -- fused -------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        mode: Mode | None = None,
    ) -> list[Hit]:
        cfg = self.settings.retrieval
        top_k = top_k or cfg.top_k
        mode = mode or cfg.mode
        started = time.perf_counter()
        chunks: dict[str, Chunk] = {}

        def chunk(node_id: str) -> Chunk:
            if node_id not in chunks:
                chunks[node_id] = Chunk(node_id=node_id, text=self.nodes[self._node_pos[node_id]].text)
            return chunks[node_id]

        rankings: list[list[str]] = []
        weights: list[float] = []
        if mode in ("hybrid", "dense"):
            ranked = [
                (nid, score) for nid, score in self.dense(query, cfg.candidates, filters) if nid in self._node_pos
            ]
            for rank, (nid, score) in enumerate(ranked):
                c = chunk(nid)
                c.dense, c.dense_rank = score, rank
            rankings.append([nid for nid, _ in ranked])
            weights.append(cfg.dense_weight)
        if mode in ("hybrid", "bm25"):
            ranked = self.bm25(query, cfg.candidates, filters)
            for rank, (nid, score) in enumerate(ranked):
                c = chunk(nid)
                c.bm25, c.bm25_rank = score, rank
            rankings.append([nid for nid, _ in ranked])
            weights.append(1.0)
        if mode == "hybrid":
            ranked = self.names(query, filters)
            for nid, _score in ranked:
                chunk(nid)
            rankings.append([nid for nid, _ in ranked])
            weights.append(cfg.name_weight)
        for nid, fused in rrf(rankings, cfg.rrf_k, weights).items():
            chunks[nid].rrf = fused

        hits: dict[str, Hit] = {}
        for c in sorted(chunks.values(), key=lambda c: -c.rrf):
            pid = self.nodes[self._node_pos[c.node_id]].metadata["paper_id"]
            if pid not in self.papers:
                continue
            hit = hits.setdefault(pid, Hit(paper=self.papers[pid]))
            if len(hit.chunks) < cfg.max_chunks_per_paper:
                hit.chunks.append(c)
                # a paper's score is its best chunk plus a little for further matching chunks
                hit.score += c.rrf if len(hit.chunks) == 1 else 0.25 * c.rrf
        ranked = sorted(hits.values(), key=lambda h: -h.score)[:top_k]
        log.debug(
            "search %r mode=%s filters=%s: %d hits in %.0f ms",
            query,
            mode,
            filters,
            len(ranked),
            1000 * (time.perf_counter() - started),
        )
        return ranked


MAX_NAME_PAPERS = 3  # a name found in more papers is a common term, not an identifier
