"""Paper records -> chunks -> embeddings -> Chroma (through llama-index).

Chroma is the source of truth: every chunk carries its paper's id, year,
category and authors as metadata, and the first chunk of a paper carries the
whole record as JSON. Two caches beside it are derived from Chroma and can be
deleted at any time: ``papers.jsonl`` (the catalog, readable without opening
Chroma) and ``nodes.jsonl`` (chunk texts for the keyword retriever, because a
Chroma-backed llama-index index has an empty docstore).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

from .config import Settings
from .corpus import Paper, ParseIssue
from .embed import Embedder
from .text import split_sentences

log = logging.getLogger(__name__)

ADD_BATCH = 128  # chunks embedded and written per step: an interrupted ingest loses at most one batch


class StoreError(RuntimeError):
    """A store problem with a message meant for the user."""


class StoreLocked(StoreError):
    pass


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    chunks_written: int = 0
    seconds: float = 0.0
    issues: list[ParseIssue] = field(default_factory=list)

    @property
    def papers_per_s(self) -> float:
        return (self.added + self.updated) / self.seconds if self.seconds else 0.0


def paper_hash(paper: Paper) -> str:
    return hashlib.sha1(paper.model_dump_json().encode()).hexdigest()[:16]


def chunk_paper(paper: Paper, count_tokens: Callable[[str], int], max_tokens: int, overlap: int) -> list[TextNode]:
    """Most abstracts are one chunk; long ones split on sentence boundaries with overlap.

    Every chunk's text starts with the title so both retrievers see it.
    """
    head = paper.title.strip()
    whole = f"{head}\n{paper.abstract.strip()}"
    if count_tokens(whole) <= max_tokens:
        pieces = [paper.abstract.strip()]
    else:
        sentences = split_sentences(paper.abstract)
        budget = max(16, max_tokens - count_tokens(head))
        pieces, current, used = [], [], 0
        for sent in sentences:
            n = count_tokens(sent)
            if current and used + n > budget:
                pieces.append(" ".join(current))
                current = current[-overlap:] if overlap else []
                used = sum(count_tokens(s) for s in current)
            current.append(sent)
            used += n
        if current:
            pieces.append(" ".join(current))
    meta_common = {
        "paper_id": paper.id,
        "title": paper.title,
        "year": paper.year or 0,  # Chroma metadata cannot hold None; 0 = unknown
        "category": paper.category or "",
        "authors": ", ".join(paper.authors),
        "has_code": paper.has_code,
        "paper_hash": paper_hash(paper),
        "n_chunks": len(pieces),
    }
    nodes = []
    for i, piece in enumerate(pieces):
        meta = dict(meta_common, chunk=i)
        if i == 0:
            meta["paper_json"] = paper.model_dump_json()
        node = TextNode(id_=f"{paper.id}:{i}", text=f"{head}\n{piece}", metadata=meta)
        # Only the text is embedded; metadata is for filters and display.
        node.excluded_embed_metadata_keys = list(meta)
        node.excluded_llm_metadata_keys = list(meta)
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=paper.id)
        nodes.append(node)
    return nodes


def _atomic_write_lines(path: Path, lines: Iterable[str]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line + "\n")
    os.replace(tmp, path)


class PaperStore:
    """One process owns a local store folder (Chroma is not process-safe): a lock file enforces it."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None):
        self.settings = settings
        self.embedder = embedder or Embedder(settings)
        self._lock_fh = None
        self._client = None
        self._collection = None
        self._vector_store = None

    # -- lifecycle -------------------------------------------------------------------------
    def describe(self) -> str:
        if self.settings.store.chroma_url:
            return f"Chroma server {self.settings.store.chroma_url} collection '{self.settings.store.collection}'"
        return f"Chroma folder {self.settings.chroma_dir} collection '{self.settings.store.collection}'"

    def open(self) -> PaperStore:
        if self._collection is not None:
            return self
        if self._client is None:
            self._connect()
        # embedding_function=None: vectors always come from our embedder, never Chroma's downloader.
        self._collection = self._client.get_or_create_collection(
            self.settings.store.collection,
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
        )
        from llama_index.vector_stores.chroma import ChromaVectorStore

        self._vector_store = ChromaVectorStore(chroma_collection=self._collection)
        return self

    def _connect(self) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        url = self.settings.store.chroma_url
        try:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the data folder {self.settings.data_dir}: {exc.strerror}. "
                "Point ASSISTANT_DATA_DIR at a folder you can write to."
            ) from exc
        if url:
            parsed = urlparse(url if "://" in url else f"http://{url}")
            try:
                self._client = chromadb.HttpClient(
                    host=parsed.hostname or "127.0.0.1",
                    port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                    ssl=parsed.scheme == "https",
                    settings=chroma_settings,
                )
                self._client.heartbeat()
            except Exception as exc:  # chromadb raises a variety of transport errors
                raise StoreError(f"Cannot reach the Chroma server at {url}: {exc}. Is `chroma run` up?") from exc
        else:
            self._acquire_lock()
            if not os.access(self.settings.data_dir, os.W_OK):
                self._release_lock()
                raise StoreError(
                    f"The store folder {self.settings.data_dir} is read-only. "
                    "Make it writable or point ASSISTANT_DATA_DIR at a writable folder."
                )
            try:
                self._client = chromadb.PersistentClient(path=str(self.settings.chroma_dir), settings=chroma_settings)
            except Exception as exc:
                self._release_lock()
                raise StoreError(f"Cannot open the Chroma store in {self.settings.chroma_dir}: {exc}") from exc

    def close(self) -> None:
        self._collection = None
        self._vector_store = None
        self._client = None
        self._release_lock()

    def __enter__(self) -> PaperStore:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _acquire_lock(self) -> None:
        if self._lock_fh is not None:
            return
        path = self.settings.data_dir / "store.lock"
        try:
            fh = path.open("a+")
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise StoreError(
                    f"The store folder {self.settings.data_dir} is read-only ({exc.strerror}). Make it writable, or "
                    "copy it to a writable folder and point ASSISTANT_DATA_DIR there; nothing in it was changed."
                ) from None
            raise StoreError(
                f"Cannot use the store folder {self.settings.data_dir}: {exc.strerror}. "
                "Point ASSISTANT_DATA_DIR at a folder you can write to."
            ) from exc
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise StoreLocked(
                f"The store in {self.settings.data_dir} is in use by {holder}. Chroma allows one process per folder: "
                "stop that process, or run `chroma run` and set ASSISTANT_STORE__CHROMA_URL to share it."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._lock_fh = fh

    def _release_lock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    @property
    def collection(self):
        if self._collection is None:
            self.open()
        return self._collection

    @property
    def vector_store(self):
        if self._vector_store is None:
            self.open()
        return self._vector_store

    # -- reading ---------------------------------------------------------------------------
    def count_chunks(self) -> int:
        return self.collection.count()

    def _scan(self, include: list[str], where: dict | None = None, page: int = 5000):
        """Yield (id, document, metadata) for every chunk, a page at a time."""
        offset = 0
        while True:
            got = self.collection.get(include=include, where=where, limit=page, offset=offset)
            ids = got["ids"]
            if not ids:
                return
            docs = got.get("documents") or [None] * len(ids)
            metas = got.get("metadatas") or [{}] * len(ids)
            yield from zip(ids, docs, metas, strict=True)
            offset += len(ids)

    def _state(self) -> dict[str, dict]:
        """paper_id -> {hash, n_chunks, chunks (present indices), paper_json}."""
        state: dict[str, dict] = {}
        for _id, _doc, meta in self._scan(["metadatas"]):
            entry = state.setdefault(meta["paper_id"], {"chunks": set(), "hash": None, "n_chunks": 0})
            entry["chunks"].add(meta.get("chunk", 0))
            entry["hash"] = meta.get("paper_hash")
            entry["n_chunks"] = meta.get("n_chunks", 1)
            if "paper_json" in meta:
                entry["paper_json"] = meta["paper_json"]
        return state

    def papers(self) -> list[Paper]:
        """All stored papers, from the catalog cache when it is current."""
        cached = self._read_cache(self.settings.data_dir / "papers.jsonl")
        if cached is not None:
            return [Paper.model_validate_json(line) for line in cached]
        self.refresh_caches()
        return self.papers()

    def nodes(self) -> list[TextNode]:
        """All chunks (text + metadata) for the keyword retriever."""
        cached = self._read_cache(self.settings.nodes_path)
        if cached is None:
            self.refresh_caches()
            cached = self._read_cache(self.settings.nodes_path) or []
        nodes = []
        for line in cached:
            row = json.loads(line)
            nodes.append(TextNode(id_=row["id"], text=row["text"], metadata=row["metadata"]))
        return nodes

    def _read_cache(self, path: Path) -> list[str] | None:
        """Lines of a cache file if its stamp matches the collection, else None."""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return None
        if not lines:
            return None
        stamp = json.loads(lines[0])
        if stamp.get("chunks") != self.count_chunks() or stamp.get("collection") != self.settings.store.collection:
            return None
        return lines[1:]

    def refresh_caches(self) -> None:
        stamp = json.dumps({"chunks": self.count_chunks(), "collection": self.settings.store.collection})
        papers, nodes = [], []
        for cid, doc, meta in self._scan(["documents", "metadatas"]):
            if "paper_json" in meta:
                papers.append(meta["paper_json"])
            keep = {k: v for k, v in meta.items() if not k.startswith("_") and k not in ("paper_json",)}
            nodes.append(json.dumps({"id": cid, "text": doc, "metadata": keep}, ensure_ascii=False))
        papers.sort()
        _atomic_write_lines(self.settings.data_dir / "papers.jsonl", [stamp, *papers])
        _atomic_write_lines(self.settings.nodes_path, [stamp, *nodes])

    # -- writing ---------------------------------------------------------------------------
    def rebuild(self) -> None:
        """Drop the collection and its caches; the next ingest starts from nothing."""
        name = self.settings.store.collection
        try:
            self.open()
            self._client.delete_collection(name)
        except Exception as exc:  # a missing collection is fine
            log.debug("delete_collection(%s): %s", name, exc)
        self._collection = self._vector_store = None
        for cache in (self.settings.data_dir / "papers.jsonl", self.settings.nodes_path):
            cache.unlink(missing_ok=True)
        self.open()

    def ingest(self, papers: list[Paper], progress: bool = True) -> IngestReport:
        """Add new papers, update changed ones, leave identical ones alone (idempotent)."""
        from .corpus import merge_papers, normalise_abstract

        started = time.perf_counter()
        report = IngestReport()
        state = self._state()
        # A stored paper read again under a damaged or reworded title (invalid UTF-8, a typo) has the same
        # abstract: it is merged into the stored one (as load_corpus merges within one run), not duplicated.
        by_abstract = {
            normalise_abstract(Paper.model_validate_json(entry["paper_json"]).abstract): pid
            for pid, entry in state.items()
            if entry.get("paper_json")
        }
        todo: dict[str, Paper] = {}
        stale_ids: list[str] = []
        for paper in papers:
            pid = paper.id if paper.id in state else by_abstract.get(normalise_abstract(paper.abstract), paper.id)
            if pid in todo:  # a second record of the same paper in this call
                todo[pid] = merge_papers(todo[pid], paper)
                continue
            prev = state.get(pid)
            if prev is not None and prev.get("paper_json"):
                paper = merge_papers(Paper.model_validate_json(prev["paper_json"]), paper)
            complete = prev is not None and prev["chunks"] == set(range(prev["n_chunks"]))
            if complete and prev["hash"] == paper_hash(paper):
                report.unchanged += 1
                continue
            if prev is None:
                report.added += 1
            else:
                report.updated += 1
                stale_ids.extend(f"{paper.id}:{i}" for i in sorted(prev["chunks"]))
            todo[paper.id] = paper

        nodes: list[TextNode] = []
        for paper in todo.values():
            nodes.extend(
                chunk_paper(
                    paper,
                    self.embedder.count_tokens,
                    self.settings.chunk.max_tokens,
                    self.settings.chunk.overlap_sentences,
                )
            )
        if stale_ids:
            self.collection.delete(ids=stale_ids)
        self._write_nodes(nodes, progress)
        report.chunks_written = len(nodes)
        if todo or not (self.settings.data_dir / "papers.jsonl").exists():
            self.refresh_caches()
        report.seconds = time.perf_counter() - started
        return report

    def _write_nodes(self, nodes: list[TextNode], progress: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = [TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        with Progress(*columns, disable=not progress or not nodes, transient=False) as bar:
            task = bar.add_task("embed", total=len(nodes))
            for start in range(0, len(nodes), ADD_BATCH):
                batch = nodes[start : start + ADD_BATCH]
                vectors = self.embedder.embed_texts([n.get_content() for n in batch])
                for node, vec in zip(batch, vectors, strict=True):
                    node.embedding = vec
                self.vector_store.add(batch)
                bar.advance(task, len(batch))
