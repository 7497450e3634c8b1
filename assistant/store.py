"""Paper records -> chunks -> embeddings -> Chroma (through llama-index).

Chroma is the source of truth: every chunk carries its paper's id, year,
category and authors as metadata, and the first chunk of a paper carries the
whole record as JSON. Two caches beside it are derived from Chroma and can be
deleted at any time: ``papers.jsonl`` (the catalog, readable without opening
Chroma) and ``nodes.jsonl`` (chunk texts for the keyword retriever, because a
Chroma-backed llama-index index has an empty docstore).

Ingest is atomic per file: before a file's chunks are written, ``ingest-journal.json`` records the chunk ids
about to be written and the rows they replace; it is removed once the last chunk is in. A journal found when
the store is opened (a killed or failed ingest) is rolled back first, so a store never shows half a file.

A data folder that cannot be written (a read-only mount) is opened from a temporary copy of its store: reading
commands work, writing ones are refused with a message.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

from .config import Settings
from .corpus import ParseIssue
from .embed import Embedder
from .lease import LeaseHeld, LeaseLost, ServerLease, holder_name, judge, process_start
from .paper import MergeNote, Paper, PaperIndex, SourceRef, attach_abstract, merge_papers
from .text import split_sentences

log = logging.getLogger(__name__)

ADD_BATCH = 128  # chunks embedded per step (progress and memory; atomicity is per file, see above)
WRITE_BATCH = 1024  # chunks per Chroma add: each call costs about 20 ms whatever its size
JOURNAL = "ingest-journal.json"
REBUILD = "assistant ingest --rebuild"


class StoreError(RuntimeError):
    """A store problem with a message meant for the user."""


class StoreLocked(StoreError):
    pass


class MachineFault(StoreError):
    """Disk full, read-only, permission denied: the message names the folder and the fix."""


class StoreDamaged(StoreError):
    """The local store is damaged; the message says what is wrong and to run ``assistant ingest --rebuild``."""


class StoreUnreachable(StoreError):
    """The Chroma server does not answer (down, stopped, wrong URL): nothing about the store itself is known."""


def unreachable_message(url: str, exc: BaseException | None = None) -> str:
    why = ""
    if exc is not None:  # httpx's own words ("[Errno 111] Connection refused"), chromadb's are a ValueError
        text = (str(exc).splitlines() or ["no answer"])[0][:200]
        why = f" ({text})" if isinstance(exc, ValueError) else f" ({type(exc).__name__}: {text})"
    return (
        f"the Chroma server at {url} is not answering{why}: start it (`chroma run --path FOLDER --host HOST --port "
        "PORT`) or point ASSISTANT_STORE__CHROMA_URL at one that runs; nothing was changed"
    )


def _transport_error(exc: BaseException) -> bool:
    """A failure to talk to the server at all (refused, reset, timed out), as opposed to an error it returned."""
    import httpx

    return isinstance(exc, httpx.TransportError | ConnectionError)


class _ServerCollection:
    """A collection on a Chroma server whose transport errors (the server was stopped or killed, even in the middle
    of a question) become one `StoreUnreachable` line instead of an httpx traceback."""

    def __init__(self, inner, url: str) -> None:
        self._inner, self._url = inner, url

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                if _transport_error(exc):
                    raise StoreUnreachable(unreachable_message(self._url, exc)) from None
                raise

        return call


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    chunks_written: int = 0
    embeddings_reused: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0  # of ``seconds``, the time inside the embedding model (the rest is the overhead)
    issues: list[ParseIssue] = field(default_factory=list)
    merges: list[MergeNote] = field(default_factory=list)  # merges whose records disagreed on a field
    added_ids: list[str] = field(default_factory=list)
    updated_ids: list[str] = field(default_factory=list)
    unchanged_ids: list[str] = field(default_factory=list)
    attached: int = 0  # abstract-only records joined to a stored paper
    unmatched: list[SourceRef] = field(default_factory=list)  # abstract-only records matching no paper
    files_committed: list[str] = field(default_factory=list)
    papers: dict[str, Paper] = field(default_factory=dict)  # every paper of the call as stored (merged), by id

    @property
    def papers_per_s(self) -> float:
        return (self.added + self.updated) / self.seconds if self.seconds else 0.0


def chunk_texts(got: dict) -> list[str]:
    """The chunk texts of a Chroma ``get`` result (with documents and metadatas): the document where the chunk has
    one (stores written before the text moved into the metadata), else the text inside the llama-index metadata."""
    docs = got.get("documents") or [None] * len(got["ids"])
    metas = got.get("metadatas") or [{}] * len(got["ids"])
    out = []
    for doc, meta in zip(docs, metas, strict=True):
        if doc is None and meta and "_node_content" in meta:
            doc = json.loads(meta["_node_content"]).get("text")
        out.append(doc or "")
    return out


def paper_hash(paper: Paper) -> str:
    return hashlib.sha1(paper.model_dump_json().encode()).hexdigest()[:16]


def chunk_head(paper: Paper) -> str:
    """The line every chunk of a paper starts with: its title and any alternative titles."""
    head = paper.title.strip()
    if paper.alt_titles:
        head = f"{head} (also: {'; '.join(t.strip() for t in paper.alt_titles)})"
    return head


def whole_text(paper: Paper) -> str:
    """A paper as one chunk would hold it (most abstracts fit one chunk)."""
    return f"{chunk_head(paper)}\n{paper.abstract.strip()}"


def chunk_paper(paper: Paper, count_tokens: Callable[[str], int], max_tokens: int, overlap: int) -> list[TextNode]:
    """Most abstracts are one chunk; long ones split on sentence boundaries with overlap.

    Every chunk's text starts with the title (and any alternative titles, so both retrievers find a paper under
    each of its names)."""
    head = chunk_head(paper)
    if count_tokens(whole_text(paper)) <= max_tokens:
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


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write_lines(path: Path, lines: Iterable[str], durable: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line + "\n")
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave a half-written temp file behind
        raise
    if durable:
        _fsync_dir(path.parent)


# -- faults of the machine -------------------------------------------------------------------------------------
_NO_SPACE = ("no space left", "disk is full", "database or disk is full", "enospc", "quota exceeded")
_READ_ONLY = ("read-only file system", "readonly database", "attempt to write a readonly")
_DENIED = ("permission denied", "operation not permitted")


def free_mb(folder: Path) -> float | None:
    for p in (folder, *folder.parents):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(p).free / 1e6
    return None


NEARLY_FULL_MB = 5.0  # a write error with less free than this is a full disk; its rollback waits for the next open


def out_of_space(exc: BaseException, free: float | None) -> bool:
    """Whether ``exc`` is a full disk: ENOSPC/EDQUOT, Chroma's own wording of it, or its write error with under
    ``NEARLY_FULL_MB`` free (``free`` as `free_mb` gives it)."""
    nearly_full = free is not None and free < NEARLY_FULL_MB and type(exc).__name__ == "InternalError"
    text = f"{exc}".casefold()
    no_space = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(s in text for s in _NO_SPACE)
    return no_space or nearly_full


def machine_fault(exc: BaseException, folder: Path) -> str | None:
    """One line for a fault of the machine (disk full, read-only, permission denied) under ``folder``, or None.

    Chroma reports these as its own errors (``InternalError: Error in compaction…``), so its messages are
    matched too, and a write error on a nearly full disk is taken for a full disk."""
    text = f"{exc}".casefold()
    code = getattr(exc, "errno", None)
    free = free_mb(folder)
    if out_of_space(exc, free):
        left = f"{free:.1f} MB free" if free is not None else "free space unknown"
        return (
            f"no space left on the disk holding {folder} ({left}): free some space there, or set "
            "ASSISTANT_DATA_DIR to a folder on a larger disk, and run the command again; nothing already stored "
            "was lost"
        )
    if code == errno.EROFS or any(s in text for s in _READ_ONLY):
        return (
            f"{folder} is on a read-only file system: make it writable, or copy it to a writable folder and set "
            "ASSISTANT_DATA_DIR there; nothing in it was changed"
        )
    if code in (errno.EACCES, errno.EPERM) or any(s in text for s in _DENIED):
        where = getattr(exc, "filename", None) or folder
        return (
            f"permission denied on {where}: make {folder} writable for this user (e.g. chown it), or set "
            "ASSISTANT_DATA_DIR to a folder you own"
        )
    return None


# -- checking the files of a local store without opening Chroma -------------------------------------------------
HNSW_FILES = ("header.bin", "data_level0.bin", "length.bin", "link_lists.bin")
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class StoreFiles:
    """What the files of a local store say, read without Chroma (which would repair or create some of them)."""

    problems: list[str] = field(default_factory=list)
    chunks: int | None = None  # chunks in the collection, None when not known (no collection, or unreadable)
    vector_dir: Path | None = None


def check_store_files(root: Path, collection: str) -> StoreFiles:
    """Cheap checks every command runs before opening a local store: ``chroma.sqlite3`` present and not
    truncated, its tables readable, the collection's vector index files present when it holds chunks."""
    out = StoreFiles()
    chroma = root / "chroma"
    db = chroma / "chroma.sqlite3"
    catalog = root / "papers.jsonl"
    if not chroma.is_dir():
        if catalog.exists():
            out.problems.append(f"the Chroma folder {chroma} is missing, although the catalog {catalog} is there")
        return out
    if not db.is_file() or db.stat().st_size == 0:
        if catalog.exists() or any(p.is_dir() for p in chroma.iterdir()):
            out.problems.append(f"{db} is missing or empty, although the store holds other files")
        return out
    size = db.stat().st_size
    with db.open("rb") as fh:
        header = fh.read(100)
    if not header.startswith(_SQLITE_MAGIC) or len(header) < 100:
        out.problems.append(f"{db} is not an SQLite database any more (its header is damaged)")
        return out
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages = struct.unpack(">I", header[28:32])[0]
    if header[92:96] == header[24:28] and pages and size < pages * page_size:
        out.problems.append(f"{db} is truncated ({size:,} of {pages * page_size:,} bytes)")
        return out
    if any((chroma / f"chroma.sqlite3{s}").exists() for s in ("-journal", "-wal")):
        return out  # a transaction was cut short: Chroma's own SQLite recovers it when it opens the file
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as con:
            row = con.execute("SELECT id FROM collections WHERE name = ?", (collection,)).fetchone()
            if row is None:
                if catalog.exists():
                    out.problems.append(f"the collection '{collection}' is missing from {db}")
                out.chunks = 0
                return out
            segments = dict(con.execute("SELECT scope, id FROM segments WHERE collection = ?", (row[0],)).fetchall())
            meta = segments.get("METADATA")
            out.chunks = (
                con.execute("SELECT count(*) FROM embeddings WHERE segment_id = ?", (meta,)).fetchone()[0]
                if meta
                else 0
            )
    except sqlite3.DatabaseError as exc:
        out.problems.append(f"{db} cannot be read: {exc}")
        return out
    if segments.get("VECTOR"):
        out.vector_dir = chroma / segments["VECTOR"]
        missing = [f for f in HNSW_FILES if not (out.vector_dir / f).is_file()]
        if out.chunks and missing:
            out.problems.append(f"the vector index files {', '.join(missing)} are missing from {out.vector_dir}")
    return out


LOCK = "store.lock"
_HOLDER_RE = re.compile(r"pid (\d+)(?: \((.*)\))?$")


def folder_holder(data_dir: Path) -> str | None:
    """What the process holding a store folder's lock wrote there (``pid 123 (ingest of big.jsonl)``), or None when
    no process holds it. Reads only: the folder may be read-only."""
    try:
        fh = (data_dir / LOCK).open("r")
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return fh.read().strip() or "another process"
        except OSError:
            return None
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


def ingesting(holder: str) -> tuple[str, str] | None:
    """(pid, what) when a lock holder's text says it is ingesting (see ``PaperStore._note_lock``)."""
    m = _HOLDER_RE.match(holder)
    if m and (m.group(2) or "").startswith(("ingest", "rolling back", "rebuild")):
        return m.group(1), m.group(2)
    return None


def locked_message(data_dir: Path, holder: str) -> str:
    busy = ingesting(holder)
    if busy:
        return (
            f"The store in {data_dir} is in use by pid {busy[0]}: an ingest is running ({busy[1]}); run this again "
            "when it has finished (Chroma allows one process per folder: to share a store, run `chroma run` and set "
            "ASSISTANT_STORE__CHROMA_URL)."
        )
    return (
        f"The store in {data_dir} is in use by {holder}. Chroma allows one process per folder: "
        "stop that process, or run `chroma run` and set ASSISTANT_STORE__CHROMA_URL to share it."
    )


def _forget_failed_system(path: str) -> None:
    """chromadb 1.5 caches a folder's System before starting it and keeps it when starting fails: every later
    client for that folder in this process then fails with an AttributeError. Drop such an unused entry."""
    with contextlib.suppress(Exception):
        from chromadb.api.shared_system_client import SharedSystemClient as Shared

        if path not in Shared._identifier_to_refcount:
            Shared._identifier_to_system.pop(path, None)


def damaged_message(root: Path, problems: list[str]) -> str:
    return (
        f"the paper store in {root} is damaged: {'; '.join(problems)}. Run `{REBUILD}`: it moves the damaged "
        "store aside and rebuilds it from the corpus files and the files you added"
    )


def _encode_vector(vec) -> str:
    import numpy as np

    return base64.b64encode(np.asarray(vec, dtype=np.float32).tobytes()).decode("ascii")


def _decode_vector(text: str) -> list[float]:
    import numpy as np

    return np.frombuffer(base64.b64decode(text), dtype=np.float32).tolist()


class PaperStore:
    """One process owns a local store folder (Chroma is not process-safe): a lock file enforces it.

    ``read_only``: None (default) opens a folder that cannot be written from a temporary copy, for reading;
    False refuses such a folder (ingest); True always reads from a copy."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None, *, read_only: bool | None = None):
        self.settings = settings
        self.embedder = embedder or Embedder(settings)
        self.read_only = read_only
        self.root = settings.data_dir  # the folder holding chroma/ and the caches (a temporary copy if read-only)
        self.recovered: str | None = None  # set when opening rolled back an interrupted ingest
        self.auto_recover = True  # `assistant doctor` looks at an interrupted ingest instead of rolling it back
        self.interrupted: str | None = None  # what `auto_recover=False` found and left alone (a server's journal)
        self._lease: ServerLease | None = None  # a Chroma server's lease (assistant/lease.py); None for a folder
        self._snapshot: Path | None = None
        self._lock_fh = None
        self._client = None
        self._collection = None
        self._vector_store = None

    # -- lifecycle -------------------------------------------------------------------------
    def describe(self) -> str:
        if self.settings.store.chroma_url:
            return f"Chroma server {self.settings.store.chroma_url} collection '{self.settings.store.collection}'"
        where = f"Chroma folder {self.settings.chroma_dir} collection '{self.settings.store.collection}'"
        return where + (f" (read-only: read from a copy in {self._snapshot})" if self._snapshot else "")

    @property
    def remote(self) -> bool:
        return bool(self.settings.store.chroma_url)

    def open(self) -> PaperStore:
        if self._collection is not None:
            return self
        if self._client is None:
            self._connect()
        # embedding_function=None: vectors always come from our embedder, never Chroma's downloader.
        try:
            self._collection = self._client.get_or_create_collection(
                self.settings.store.collection,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
            )
            if self.remote:
                url = self.settings.store.chroma_url
                self._collection = _ServerCollection(self._collection, url)
                if self._lease is None:  # (kept across `rebuild`, which drops and opens the main collection)
                    name = f"{self.settings.store.collection}-lease"
                    lease = self._client.get_or_create_collection(name, embedding_function=None)
                    self._lease = ServerLease(_ServerCollection(lease, url), self.settings.store.lease_timeout_s)
        except Exception as exc:
            self.close()
            raise self._error(exc, "open the Chroma collection") from exc
        from llama_index.vector_stores.chroma import ChromaVectorStore

        self._vector_store = ChromaVectorStore(chroma_collection=self._collection)
        try:
            self._recover()
        except BaseException:
            self.close()
            raise
        return self

    def _error(self, exc: BaseException, doing: str) -> StoreError:
        """A store error for the user: a machine fault in one line, else what failed."""
        if isinstance(exc, StoreError):
            return exc
        if self.remote and _transport_error(exc):
            return StoreUnreachable(unreachable_message(self.settings.store.chroma_url, exc))
        fault = machine_fault(exc, self.settings.data_dir)
        if fault:
            return MachineFault(fault)
        denied = self._unwritable()
        if denied is not None:  # SQLite says "unable to open database file" for a folder it may not write
            return MachineFault(_denied_message(denied, self.settings.data_dir))
        return StoreError(f"cannot {doing} in {self.root / 'chroma'}: {type(exc).__name__}: {exc}")

    def _unwritable(self, force: bool = False) -> Path | None:
        """The first part of a local store this process may not write (Chroma needs to write them all)."""
        if not force and (self.remote or self._snapshot is not None):
            return None
        root = self.settings.data_dir
        chroma = root / "chroma"
        parts = [root, root / LOCK, chroma, chroma / "chroma.sqlite3"]
        if chroma.is_dir():
            parts += sorted(p for p in chroma.iterdir() if p.is_dir())
        return next((p for p in parts if p.exists() and not os.access(p, os.W_OK)), None)

    def _writable(self) -> bool:
        """Whether this process may write the folder and every part of its store: a folder of another user (or
        root's) whose files this user cannot write is read like a read-only mount, from a copy."""
        return os.access(self.settings.data_dir, os.W_OK) and self._unwritable(force=True) is None

    def _connect(self) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        url = self.settings.store.chroma_url
        data_dir = self.settings.data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the data folder {data_dir}: {exc.strerror}. "
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
                self._client = None
                raise StoreUnreachable(unreachable_message(url, exc)) from None
            return
        if self.read_only or not self._writable():
            if self.read_only is False:
                raise StoreError(self._read_only_message())
            self._open_snapshot()
        else:
            self._acquire_lock()
        try:
            files = check_store_files(self.root, self.settings.store.collection)
            if files.problems:
                raise StoreDamaged(damaged_message(self.settings.data_dir, files.problems))
            path = str(self.root / "chroma")
            try:
                self._client = chromadb.PersistentClient(path=path, settings=chroma_settings)
            except Exception as exc:
                _forget_failed_system(path)
                raise self._error(exc, "open the Chroma store") from exc
        except BaseException:
            self._release_lock()
            self._drop_snapshot()  # a failed open leaves no copy behind
            raise

    def _read_only_message(self) -> str:
        data = self.settings.data_dir
        denied = None if _read_only_fs(data) else self._unwritable(force=True)
        if denied is not None:  # a folder of another user (or root's), not a read-only mount: say which part
            return _denied_message(denied, data) + "; nothing in it was changed"
        what = "(a read-only file system)" if _read_only_fs(data) else "(or not writable for this user)"
        return (
            f"The store folder {data} is read-only {what}. Make it writable, or copy it to a writable folder and "
            "point ASSISTANT_DATA_DIR there; nothing in it was changed."
        )

    def _open_snapshot(self) -> None:
        """Read a store that cannot be written from a private temporary copy (Chroma writes even to read).

        The copy is removed when the store is closed, when the process exits, and, for a process that was killed,
        by the next one that makes a copy (its name carries the pid and start time of its process)."""
        src = self.settings.data_dir
        holder = folder_holder(src)
        if holder is not None and ingesting(holder):  # its files are being written: a copy could hold half a file
            raise StoreLocked(locked_message(src, holder))
        _sweep_snapshots()
        me = f"{os.getpid()}-{process_start(os.getpid()) or 0}"
        tmp = Path(tempfile.mkdtemp(prefix=f"{SNAPSHOT_PREFIX}{me}-"))
        _SNAPSHOTS.add(tmp)
        try:
            if (src / "chroma").is_dir():
                shutil.copytree(src / "chroma", tmp / "chroma")
            for name in ("papers.jsonl", "nodes.jsonl", JOURNAL):
                if (src / name).is_file():
                    shutil.copy2(src / name, tmp / name)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            _SNAPSHOTS.discard(tmp)
            fault = machine_fault(exc, tmp.parent)
            raise StoreError(f"{src} is read-only and it cannot be copied to read it: {fault or exc}") from None
        self._snapshot = self.root = tmp
        self.read_only = True
        log.info("%s is read-only: reading a copy of its store in %s", src, tmp)

    def close(self) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        self._collection = None
        self._vector_store = None
        if self._client is not None and hasattr(self._client, "close"):
            # Chroma shares one system per folder in a process: the last close releases its files, so a store
            # moved aside or rebuilt in this process is opened afresh, not through a stale cached system
            with contextlib.suppress(Exception):
                self._client.close()
        self._client = None
        self._release_lock()
        self._drop_snapshot()

    def _drop_snapshot(self) -> None:
        if self._snapshot is not None:
            shutil.rmtree(self._snapshot, ignore_errors=True)
            _SNAPSHOTS.discard(self._snapshot)
            self._snapshot = None
            self.root = self.settings.data_dir

    def __enter__(self) -> PaperStore:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def lock(self) -> None:
        """Take the store folder's lock without opening Chroma (``set_aside`` needs it)."""
        try:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(machine_fault(exc, self.settings.data_dir) or str(exc)) from None
        if not self._writable():
            raise StoreError(self._read_only_message())
        self._acquire_lock()

    def _acquire_lock(self) -> None:
        if self._lock_fh is not None:
            return
        path = self.settings.data_dir / LOCK
        try:
            fh = path.open("a+")
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise StoreError(
                    f"The store folder {self.settings.data_dir} is read-only ({exc.strerror}). Make it writable, or "
                    "copy it to a writable folder and point ASSISTANT_DATA_DIR there; nothing in it was changed."
                ) from None
            raise StoreError(
                machine_fault(exc, self.settings.data_dir)
                or f"Cannot use the store folder {self.settings.data_dir}: {exc.strerror}. "
                "Point ASSISTANT_DATA_DIR at a folder you can write to."
            ) from exc
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise StoreLocked(locked_message(self.settings.data_dir, holder)) from None
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
            metas = got.get("metadatas") or [{}] * len(ids)
            docs = chunk_texts(got) if "documents" in include else [None] * len(ids)
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

    @property
    def catalog_path(self) -> Path:
        return self.root / "papers.jsonl"

    @property
    def nodes_path(self) -> Path:
        return self.root / "nodes.jsonl"

    def papers(self) -> list[Paper]:
        """All stored papers, from the catalog cache when it is current."""
        cached = self._read_cache(self.catalog_path)
        if cached is not None:
            return [Paper.model_validate_json(line) for line in cached]
        self.refresh_caches()
        return self.papers()

    def nodes(self) -> list[TextNode]:
        """All chunks (text + metadata) for the keyword retriever."""
        cached = self._read_cache(self.nodes_path)
        if cached is None:
            self.refresh_caches()
            cached = self._read_cache(self.nodes_path) or []
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
        try:
            stamp = json.loads(lines[0])
        except ValueError:
            return None
        want = self._stamp()
        if any(stamp.get(k) != v for k, v in want.items()):
            return None
        return lines[1:]

    def _stamp(self) -> dict:
        """What a cache is valid for: the chunk count and collection; on a server also the last lease that wrote
        (another client's update changes papers without changing the count)."""
        stamp = {"chunks": self.count_chunks(), "collection": self.settings.store.collection}
        if self._lease is not None:
            stamp["written_by"] = self._lease.stamp()[1]
        return stamp

    def refresh_caches(self) -> None:
        for _attempt in range(3):
            before = self._lease.stamp() if self._lease is not None else None
            self._live_writer(before)
            stamp = json.dumps(self._stamp())
            papers, nodes = [], []
            for cid, doc, meta in self._scan(["documents", "metadatas"]):
                if "paper_json" in meta:
                    papers.append(meta["paper_json"])
                keep = {k: v for k, v in meta.items() if not k.startswith("_") and k not in ("paper_json",)}
                nodes.append(json.dumps({"id": cid, "text": doc, "metadata": keep}, ensure_ascii=False))
            # on a server, a scan during which another process wrote may hold half a file: scan again
            if before is None or self._lease.stamp() == before:
                break
        else:
            self._live_writer(self._lease.stamp())
            raise StoreError(
                f"the Chroma server at {self.settings.store.chroma_url} changed during each of 3 reads of the store; "
                "run this again"
            )
        papers.sort()
        try:
            _atomic_write_lines(self.catalog_path, [stamp, *papers])
            _atomic_write_lines(self.nodes_path, [stamp, *nodes])
        except OSError as exc:
            raise self._error(exc, "write the caches") from exc

    def _live_writer(self, stamp: tuple[str | None, str | None] | None) -> None:
        """Before a reader on a server scans the store: it stops (one line) while another process holds the lease,
        as it would see half a file; a lease whose writer died since the store was opened is recovered first."""
        if stamp is None or stamp[0] is None or self._lease.holds():
            return
        holder = self._lease.holder()
        if holder is None:
            return
        alive, why = judge(holder, self._lease.timeout_s)
        if alive:
            raise self._busy(LeaseHeld(holder, why))
        self._recover_server()

    def _drop_caches(self) -> None:
        for cache in (self.catalog_path, self.nodes_path):
            cache.unlink(missing_ok=True)

    # -- writing ---------------------------------------------------------------------------
    def _require_writable(self) -> None:
        if self._snapshot is not None or self.read_only:
            raise StoreError(self._read_only_message())

    def rebuild(self) -> None:
        """Drop the collection and its caches; the next ingest starts from nothing."""
        self._require_writable()
        name = self.settings.store.collection
        self.open()
        with self._writing("rebuild (the collection is dropped and built again)"):
            try:
                if self._lease is not None:
                    self._lease.mark_write()
                self._client.delete_collection(name)
            except StoreError:
                raise
            except Exception as exc:  # a missing collection is fine
                log.debug("delete_collection(%s): %s", name, exc)
            self._collection = self._vector_store = None
            self._drop_caches()
            (self.root / JOURNAL).unlink(missing_ok=True)
            self.open()

    def set_aside(self) -> Path | None:
        """Move a (damaged) store out of the way, without opening it: ``data_dir/damaged-<time>/`` receives
        ``chroma/``, the caches and any journal. Needs the lock (``lock()``); returns the new folder."""
        if self._lock_fh is None:
            raise RuntimeError("set_aside needs the store lock")
        data = self.settings.data_dir
        items = [data / n for n in ("chroma", "papers.jsonl", "nodes.jsonl", JOURNAL) if (data / n).exists()]
        if not items:
            return None
        dest = data / f"damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        n = 1
        while dest.exists():
            n += 1
            dest = data / f"damaged-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
        try:
            dest.mkdir()
            for item in items:
                os.replace(item, dest / item.name)  # a rename in the same folder: nothing is copied
        except OSError as exc:
            raise StoreError(machine_fault(exc, data) or f"cannot move the store aside to {dest}: {exc}") from None
        return dest

    # -- ingest ---------------------------------------------------------------------------
    def ingest(
        self,
        papers: list[Paper],
        progress: bool = True,
        orphans: Iterable[tuple[str, SourceRef]] = (),
        dry_run: bool = False,
        on_progress: Callable[[int, int], None] | None = None,
        file_order: Iterable[str] = (),
    ) -> IngestReport:
        """Add new papers, update changed ones, leave identical ones alone (idempotent), one file at a time.

        A record of a paper already stored (``paper.PaperIndex``: same title, alternative title or abstract) is
        united with it by ``paper.merge_papers``; ``orphans`` (abstract-only records) are attached to the stored
        paper with their abstract. The papers a file brings (by their first record in this call) are written as
        one unit: all of them or, after a crash or error, none (see the module docstring). ``dry_run`` only says
        what would be added, updated or left alone; ``on_progress(chunks_done, chunks_total)`` follows the writing;
        ``file_order`` is the order the files' units are written in (files not in it come last).

        From reading the stored state to the last write, the call holds the right to write (``_writing``: on a
        Chroma server, its lease), so that two ingests never merge against the same state nor interleave."""
        if dry_run:
            return self._ingest(papers, progress, orphans, True, on_progress, file_order)
        self._require_writable()
        file_order = list(file_order)
        files = file_order or list(dict.fromkeys(p.sources[0].file for p in papers if p.sources))
        more = f" and {len(files) - 2} more files" if len(files) > 2 else ""
        what = f"ingest of {', '.join(files[:2])}{more}" if files else "ingest"
        with self._writing(what):
            return self._ingest(papers, progress, orphans, False, on_progress, file_order)

    def _ingest(
        self,
        papers: list[Paper],
        progress: bool,
        orphans: Iterable[tuple[str, SourceRef]],
        dry_run: bool,
        on_progress: Callable[[int, int], None] | None,
        file_order: Iterable[str],
    ) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        state = self._state()
        stored = {pid: Paper.model_validate_json(e["paper_json"]) for pid, e in state.items() if e.get("paper_json")}
        index = PaperIndex()
        for pid, paper in stored.items():
            index.add(paper, pid)
        planned: dict[str, Paper] = {}
        origin: dict[str, str] = {}  # paper id -> the file whose unit writes it
        for paper in papers:
            found = index.find(paper)
            pid = found[0] if found else paper.id
            origin.setdefault(pid, paper.sources[0].file if paper.sources else "")
            base = planned.get(pid) or stored.get(pid)
            if base is not None:
                paper, notes = merge_papers([base, paper])
                report.merges.extend(notes)
            planned[pid] = paper
            index.add(paper, pid)
        for abstract, ref in orphans:
            found = index.find_abstract(abstract)
            if found is None:
                report.unmatched.append(ref)
                continue
            pid = found[0]
            planned[pid], notes = attach_abstract(planned.get(pid) or stored[pid], abstract, ref)
            report.merges.extend(notes)
            report.attached += 1
            origin.setdefault(pid, ref.file)

        units: dict[str, list[tuple[str, Paper]]] = {}
        for pid, paper in planned.items():
            prev = state.get(pid)
            complete = prev is not None and prev["chunks"] == set(range(prev["n_chunks"]))
            if complete and prev["hash"] == paper_hash(paper):
                report.unchanged += 1
                report.unchanged_ids.append(pid)
                continue
            if prev is None:
                report.added += 1
                report.added_ids.append(pid)
            else:
                report.updated += 1
                report.updated_ids.append(pid)
            units.setdefault(origin[pid], []).append((pid, paper))
        order = {f: i for i, f in enumerate(file_order)}  # files are written in the order they were read
        units = dict(sorted(units.items(), key=lambda kv: order.get(kv[0], len(order))))
        report.papers = planned
        if dry_run:
            report.seconds = time.perf_counter() - started
            return report

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        # every paper's whole text counted in one tokenizer call; only split abstracts count sentences one by one
        listed = [paper for items in units.values() for _pid, paper in items]
        wholes = [whole_text(paper) for paper in listed]
        known = dict(zip(wholes, self.embedder.count_tokens_many(wholes), strict=True))
        limit = self.settings.chunk.max_tokens
        long = [p for p, w in zip(listed, wholes, strict=True) if known[w] > limit]  # split on sentences: count them
        parts = [chunk_head(p) for p in long] + [x for p in long for x in split_sentences(p.abstract)]
        known.update(zip(parts, self.embedder.count_tokens_many(parts), strict=True))

        def count(text: str) -> int:
            n = known.get(text)
            return n if n is not None else self.embedder.count_tokens(text)

        chunked = {
            file: [
                n
                for _pid, paper in items
                for n in chunk_paper(
                    paper,
                    count,
                    self.settings.chunk.max_tokens,
                    self.settings.chunk.overlap_sentences,
                )
            ]
            for file, items in units.items()
        }
        total = sum(len(nodes) for nodes in chunked.values())
        columns = [TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        with Progress(*columns, disable=not progress or not total, transient=False) as bar:
            task = bar.add_task("embed", total=total)

            def advance(n: int) -> None:
                bar.advance(task, n)
                if on_progress is not None:
                    on_progress(report.chunks_written, total)

            if units:
                self._drop_caches()  # derived from Chroma: rebuilt below, or on the next read after a crash
            for file, items in units.items():
                try:
                    self._write_unit(file, [pid for pid, _ in items], chunked[file], state, report, advance)
                except StoreError as exc:
                    exc.report = report  # type: ignore[attr-defined]
                    raise
                report.files_committed.append(file)
        if units or not self.catalog_path.exists():
            self.refresh_caches()
        report.seconds = time.perf_counter() - started
        return report

    def _write_unit(
        self,
        file: str,
        pids: list[str],
        nodes: list[TextNode],
        state: dict[str, dict],
        report: IngestReport,
        advance: Callable[[int], None],
    ) -> None:
        """Write one file's papers all together: journal, replace, embed and add, then drop the journal."""
        stale = [f"{pid}:{i}" for pid in pids if pid in state for i in sorted(state[pid]["chunks"])]
        old = {"ids": [], "documents": [], "metadatas": [], "embeddings": []}
        if stale:
            old = self.collection.get(ids=stale, include=["documents", "metadatas", "embeddings"])
        texts = chunk_texts(old)
        journal = {
            "file": file,
            "pid": os.getpid(),
            "started": time.time(),
            "written": [n.node_id for n in nodes],
            "restore": [
                {"id": i, "document": d, "metadata": m, "embedding": _encode_vector(e)}
                for i, d, m, e in zip(old["ids"], old["documents"], old["metadatas"], old["embeddings"], strict=True)
            ],
        }
        # an unchanged chunk text keeps its vector: an update that only adds a source or an author re-embeds nothing
        reuse = {d: e for d, e in zip(texts, old["embeddings"], strict=True)}
        try:
            self._write_journal(journal)
        except LeaseLost as exc:
            raise StoreError(f"the ingest of {file} stopped before writing anything: {exc}") from None
        except (OSError, StoreUnreachable) as exc:
            raise self._error(exc, f"start the ingest of {file}") from exc
        try:
            if stale:
                self._check_lease()
                self.collection.delete(ids=stale)
            pending: list[TextNode] = []
            for start in range(0, len(nodes), ADD_BATCH):
                batch = nodes[start : start + ADD_BATCH]
                todo = [n for n in batch if n.get_content() not in reuse]
                t = time.perf_counter()
                vectors = self.embedder.embed_texts([n.get_content() for n in todo]) if todo else []
                report.embed_seconds += time.perf_counter() - t
                for node, vec in zip(todo, vectors, strict=True):
                    node.embedding = vec
                for node in batch:
                    if node.embedding is None:
                        node.embedding = list(map(float, reuse[node.get_content()]))
                        report.embeddings_reused += 1
                pending += batch
                if len(pending) >= WRITE_BATCH or start + ADD_BATCH >= len(nodes):
                    self._check_lease()
                    self._add(pending)
                    pending = []
                report.chunks_written += len(batch)
                advance(len(batch))
        except BaseException as exc:
            if isinstance(exc, LeaseLost):
                # the process that broke the lease has rolled this unit back already, and may have written since
                raise StoreError(
                    f"the ingest of {file} stopped: {exc}; that process rolled back what this one had written of "
                    f"{file}: ingest it again"
                ) from None
            # With the disk really full, Chroma's delete can block for good inside its bindings (seen in CI): the
            # journal stays and the unit is rolled back when the store is next opened, with space again.
            free = free_mb(self.settings.data_dir)
            no_room = out_of_space(exc, free) and (free is None or free < NEARLY_FULL_MB)
            undone = False if no_room else self._rollback(journal)
            if isinstance(exc, KeyboardInterrupt):
                raise
            fault = machine_fault(exc, self.settings.data_dir)
            what = fault or f"storing {file} failed: {type(exc).__name__}: {exc}"
            outcome = (
                f"the ingest of {file} was rolled back: none of its records is stored"
                if undone
                else f"the ingest of {file} is rolled back when the store is next opened"
            )
            if isinstance(exc, StoreUnreachable):
                what = str(exc).removesuffix("; nothing was changed")
            raise (MachineFault if fault else StoreError)(f"{what}. {outcome.capitalize()}.") from exc
        self._drop_journal(journal)

    def _check_lease(self) -> None:
        if self._lease is not None:
            self._lease.check()

    def _write_journal(self, journal: dict) -> None:
        if self._lease is not None:
            self._lease.mark_write()
            self._lease.write_journal(journal)
        else:
            _atomic_write_lines(self.root / JOURNAL, [json.dumps(journal)], durable=True)

    def _drop_journal(self, journal: dict) -> None:
        if self._lease is not None:
            self._lease.drop_journal()
        if self._lease is None or journal.get("legacy"):
            (self.root / JOURNAL).unlink(missing_ok=True)
            _fsync_dir(self.root)

    def _add(self, nodes: list[TextNode]) -> None:
        """Write chunks the way llama-index's ChromaVectorStore stores them (its node metadata, read back by its
        query), except that the text travels inside that metadata instead of as a Chroma document: Chroma indexes
        documents for full-text search, which nothing here uses and which cost about 0.6 ms per paper of ingest."""
        from llama_index.core.vector_stores.utils import node_to_metadata_dict

        self.collection.add(
            ids=[n.node_id for n in nodes],
            embeddings=[n.embedding for n in nodes],
            metadatas=[node_to_metadata_dict(n, remove_text=False, flat_metadata=True) for n in nodes],
        )

    def _rollback(self, journal: dict) -> bool:
        """Undo a unit: remove what it wrote, put back the rows it replaced. False (journal kept) if that fails."""
        try:
            if self._lease is not None:
                self._lease.mark_write()
            written = journal["written"]
            for start in range(0, len(written), 1000):
                self.collection.delete(ids=written[start : start + 1000])
            rows = journal["restore"]
            for start in range(0, len(rows), 1000):
                part = rows[start : start + 1000]
                documents = [r["document"] for r in part]
                self.collection.upsert(
                    ids=[r["id"] for r in part],
                    # rows written with their text in the metadata have no document (see `_add`)
                    documents=documents if all(isinstance(d, str) for d in documents) else None,
                    metadatas=[r["metadata"] for r in part],
                    embeddings=[_decode_vector(r["embedding"]) for r in part],
                )
        except Exception as exc:  # most often the disk is still full: the journal stays for the next open
            log.warning(
                "rolling back the ingest of %s failed (%s); it is retried on the next open", journal["file"], exc
            )
            return False
        self._drop_caches()
        try:
            self._drop_journal(journal)
        except StoreError as exc:  # the server went away again: the journal is rolled back on the next open
            log.warning("dropping the journal of %s failed (%s)", journal["file"], exc)
            return False
        return True

    def _recover(self) -> None:
        """Roll back an ingest that a crash or kill interrupted (see the module docstring)."""
        if self.remote:
            self._recover_server()
            return
        path = self.root / JOURNAL
        if not self.auto_recover:
            return
        try:
            journal = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise StoreDamaged(damaged_message(self.settings.data_dir, [f"{path} cannot be read ({exc})"])) from None
        self._undo(journal)

    def _undo(self, journal: dict) -> None:
        """Roll back an interrupted unit (the caller may write), or say in one line why it cannot be yet."""
        if not self._rollback(journal):
            low = (free_mb(self.root) or 100.0) < 5
            why = (
                machine_fault(OSError(errno.ENOSPC, "No space left"), self.settings.data_dir) if low else "see the log"
            )
            raise StoreError(
                f"an ingest of {journal['file']} was interrupted and cannot be rolled back yet ({why}); "
                "run the command again once that is fixed"
            )
        self.recovered = (
            f"an interrupted ingest of {journal['file']} was rolled back: none of its records is stored; "
            "ingest it again to add it"
        )
        log.warning("%s", self.recovered)

    # -- a Chroma server: its lease (assistant/lease.py) ------------------------------------------------------
    def _busy(self, exc: LeaseHeld) -> StoreLocked:
        h = exc.holder
        since = max(0.0, time.time() - float(h.get("started", time.time())))
        return StoreLocked(
            f"an ingest ({holder_name(h)}) is running on the Chroma server at {self.settings.store.chroma_url}: "
            f"{h.get('what') or 'ingest'}, for {since:.0f} s ({exc.why}); run this again when it has finished "
            "(nothing was changed)"
        )

    def _recover_server(self) -> None:
        """A journal on the server is rolled back only by the lease holder, and a live holder's lease is never
        broken: a command that meets a live ingest says so and stops; one that finds a dead writer's lease or
        journal takes the lease, rolls the journal back and gives the lease back."""
        lease = self._lease
        if lease.holds():
            return
        holder, head = lease.holder_and_journal()
        if holder is None and head is None and not self._legacy_journal():
            return
        why = "its writer is gone"
        if holder is not None:
            alive, why = judge(holder, lease.timeout_s)
            if alive:
                raise self._busy(LeaseHeld(holder, why))
        if not self.auto_recover:  # `doctor` looks without touching
            what = (holder or {}).get("what") or f"ingest of {(head or {}).get('file') or 'a file'}"
            who = f" by {holder_name(holder)}" if holder else ""
            self.interrupted = (
                f"the {what}{who} was cut short ({why}); part of it may be in Chroma until it is rolled back (any "
                "command that opens the store does that)"
            )
            return
        with self._writing("rolling back an interrupted ingest"):
            pass  # taking the lease rolls back what the writer that is gone left

    def _legacy_journal(self) -> dict | None:
        """A journal an earlier version left in the data folder while it ingested into a server (no lease then),
        unless the process that wrote it still runs."""
        path = self.settings.data_dir / JOURNAL
        try:
            journal = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        pid = journal.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and process_start(pid) is not None:
            return None
        return journal

    @contextlib.contextmanager
    def _writing(self, what: str):
        """Hold the right to write for the block: a folder's lock is held already (it only notes what it does, for
        a command that meets it); a server's lease is taken, rolling back first any journal a writer that is gone
        left behind, and given back at the end."""
        if not self.remote:
            self._note_lock(what)
            try:
                yield
            finally:
                self._note_lock(None)
            return
        lease = self._lease
        if lease.holds():  # nested (a rollback inside an ingest): the lease is ours already
            yield
            return
        try:
            broken = lease.acquire(what)
        except LeaseHeld as exc:
            raise self._busy(exc) from None
        try:
            try:
                journal = lease.read_journal()
            except ValueError as exc:
                raise StoreError(
                    f"the journal of an interrupted ingest on the Chroma server at {self.settings.store.chroma_url} "
                    f"cannot be read ({exc}); nothing was changed"
                ) from None
            if journal is None and self._legacy_journal() is not None:
                journal = self._legacy_journal()
                journal["legacy"] = True
            if journal is not None:
                self._undo(journal)
                if broken is not None:
                    log.info("the lease of %s was stale: its ingest was rolled back", holder_name(broken))
            elif broken is not None:
                lease.drop_journal()  # parts of a journal whose head was never written
            yield
        finally:
            lease.release()

    def _note_lock(self, what: str | None) -> None:
        """Say in the folder's lock file what its holder is doing (``assistant doctor`` and others read it)."""
        if self._lock_fh is None:
            return
        with contextlib.suppress(OSError):
            self._lock_fh.seek(0)
            self._lock_fh.truncate()
            self._lock_fh.write(f"pid {os.getpid()}" + (f" ({what})" if what else ""))
            self._lock_fh.flush()

    # -- the user's added files (kept so that `ingest --rebuild` can read them again) ------------------------------
    def keep_added(self, path: Path, name: str, data: bytes | None = None) -> None:
        """Keep a copy of a corpus file the user added (``added/`` in the data folder), once per content.

        ``data``: the bytes already read from a source that cannot be read again (a pipe: ``ParseResult.content``)."""
        self._require_writable()
        folder = self.settings.data_dir / ADDED
        if data is None:
            data = Path(path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        manifest = folder / "manifest.jsonl"
        known = {row["sha256"] for row in _read_manifest(manifest)}
        if digest in known:
            return
        base = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in Path(name).name)[:80] or "file"
        copy = folder / f"{digest[:16]}-{base}"
        try:
            folder.mkdir(exist_ok=True)
            tmp = copy.with_name(copy.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, copy)
            with manifest.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"copy": copy.name, "name": name, "sha256": digest, "added": time.time()}) + "\n")
        except OSError as exc:
            raise StoreError(
                machine_fault(exc, self.settings.data_dir) or f"cannot keep a copy of {name}: {exc}"
            ) from None


ADDED = "added"
SNAPSHOT_PREFIX = "paper-assistant-readonly-"
_SNAPSHOTS: set[Path] = set()  # copies of read-only stores this process made and has not removed yet


@atexit.register
def _remove_snapshots() -> None:
    for path in list(_SNAPSHOTS):
        shutil.rmtree(path, ignore_errors=True)


def _sweep_snapshots() -> None:
    """Remove this user's copies of read-only stores whose process has ended (it was killed before removing its
    copy): ``paper-assistant-readonly-<pid>-<start time>-*``."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    for old in Path(tempfile.gettempdir()).glob(f"{SNAPSHOT_PREFIX}*"):
        m = re.match(rf"{SNAPSHOT_PREFIX}(\d+)-(\d+)-", old.name)
        with contextlib.suppress(OSError):
            if m and (uid is None or old.stat().st_uid == uid) and process_start(int(m.group(1))) != m.group(2):
                shutil.rmtree(old, ignore_errors=True)


def _denied_message(denied: Path, data: Path) -> str:
    return (
        f"permission denied: {denied} cannot be written by this user, so the store cannot be opened; make {data} "
        "writable for this user (e.g. chown -R it), or set ASSISTANT_DATA_DIR to a folder you own"
    )


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _read_manifest(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        with contextlib.suppress(ValueError):
            rows.append(json.loads(line))
    return rows


def added_files(settings: Settings) -> list[tuple[str, str]]:
    """(path of the kept copy, the name the user gave it) for every file the user added, oldest first."""
    folder = settings.data_dir / ADDED
    return [
        (str(folder / row["copy"]), row["name"])
        for row in _read_manifest(folder / "manifest.jsonl")
        if (folder / row.get("copy", "")).is_file()
    ]


def read_catalog(path: Path) -> list[Paper]:
    """The papers a (possibly stale or damaged) catalog lists; unreadable lines are skipped."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]
    except OSError:
        return []
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            out.append(Paper.model_validate_json(line))
    return out
