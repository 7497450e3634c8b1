"""`assistant doctor`: do Chroma, the keyword index and the paper cache agree, and does the store answer?

Each check says what it found; a failed one names the command that fixes it. Derived data (the two caches,
an interrupted ingest's journal) is repaired by ``assistant doctor --fix``; damage to Chroma itself (its
database, its vector index files, chunks gone missing, vectors from another embedding model) only by
``assistant ingest --rebuild``, which moves the damaged store aside and rebuilds it.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import time
from dataclasses import dataclass

from .config import Settings
from .store import (
    JOURNAL,
    REBUILD,
    MachineFault,
    PaperStore,
    StoreError,
    StoreLocked,
    StoreUnreachable,
    check_store_files,
    chunk_texts,
    folder_holder,
    ingesting,
)

REPAIR = "assistant doctor --fix"
SAMPLE = 20  # chunks whose vectors are looked up in the index (spread over the collection)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def __str__(self) -> str:
        mark = "ok     " if self.ok else "PROBLEM"
        return f"{mark} {self.name}: {self.detail}" + ("" if self.ok or not self.fix else f" (fix: `{self.fix}`)")


def one_fix(checks: list[Check]) -> str | None:
    """The one command that fixes every store problem found (a rebuild covers what a repair does), else the fix of
    the first other problem (the LLM's)."""
    fixes = [c.fix for c in checks if not c.ok and c.fix]
    if REBUILD in fixes:
        return REBUILD
    if REPAIR in fixes:
        return REPAIR
    return fixes[0] if fixes else None


REBUILD_LLAMA = "make rebuild-llama"


def model_checks(settings: Settings) -> list[Check]:
    """The embedded model's file, hashed by content (also with --no-llm: it starts nothing). Its marker only says it
    was verified once; a file changed in place with its old timestamp passes it and then streams "??????"."""
    from .models import ModelError, get_model, verify_gguf

    if settings.llm.base_url:
        return []
    try:
        model = get_model(settings.llm.embedded_model)
    except ModelError as exc:
        return [Check("model file", False, str(exc))]
    path = settings.models_dir / model.filename
    if not path.exists():
        return [Check("model file", True, f"{path.name} is not assembled yet (the first start assembles it)")]
    t0 = time.monotonic()
    corrupt = verify_gguf(model.name, path)
    if corrupt:  # the fix line says `rm PATH`; what follows it is said here
        return [Check("model file", False, f"{corrupt}; once deleted, the next start assembles it again", f"rm {path}")]
    size = path.stat().st_size / 1e6
    return [Check("model file", True, f"{path}: sha256 verified ({size:.0f} MB in {time.monotonic() - t0:.1f} s)")]


def llm_checks(settings: Settings) -> list[Check]:
    """The LLM: for the embedded model, a llama.cpp build without the AMX kernels that crash, and a server that
    starts *and generates* (one short chat); for an endpoint, that it serves the model and answers one chat."""
    from .llm_errors import LLMError, LLMStartError, one_line
    from .services import start_llm

    checks = model_checks(settings)
    if any(not c.ok for c in checks):  # starting the server on a corrupt file would only repeat it
        return [*checks, Check("LLM", False, "not started: its model file failed the check above")]
    if not settings.llm.base_url:
        from .native import amx_compiled, system_info

        try:
            info = system_info()
        except ImportError as exc:
            return [Check("llama.cpp", False, f"llama_cpp cannot be imported ({exc})", REBUILD_LLAMA)]
        features = [f.split("=")[0].strip() for f in info.split("|") if f.strip().endswith("= 1")]
        if amx_compiled(info):
            checks.append(
                Check("llama.cpp", False, "built with AMX kernels, which crash (README: CPU support)", REBUILD_LLAMA)
            )
        else:
            checks.append(Check("llama.cpp", True, "built for this CPU without AMX: " + " ".join(features[:12])))
    try:
        llm = start_llm(settings)
    except LLMStartError as exc:
        fix = REBUILD_LLAMA if exc.reason == "crashed" else None
        return [*checks, Check("LLM", False, one_line(exc), fix)]
    except LLMError as exc:
        return [*checks, Check("LLM", False, one_line(exc))]
    try:
        reply = llm.chat([{"role": "user", "content": "Reply with one word: OK."}], max_tokens=4, temperature=0.0)
        ok = bool(reply.strip())
        detail = f"{llm.describe()}: answered a test chat ({reply.strip()[:20]!r})" if ok else "an empty reply"
        checks.append(Check("LLM", ok, detail))
    except LLMError as exc:
        checks.append(Check("LLM", False, one_line(exc)))
    finally:
        llm.close()
    return checks


def _cache(path, chroma_chunks: int, collection: str) -> tuple[list[str] | None, str | None]:
    """(lines after the stamp, None) for a current cache, else (None, what is wrong)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None, f"{path} is missing"
    except OSError as exc:
        return None, f"{path} cannot be read ({exc.strerror})"
    try:
        stamp = json.loads(lines[0]) if lines else {}
    except ValueError:
        stamp = {}
    if stamp.get("chunks") != chroma_chunks or stamp.get("collection") != collection:
        return None, f"{path} is out of date (made for {stamp.get('chunks', '?')} chunks, Chroma holds {chroma_chunks})"
    return lines[1:], None


def diagnose(settings: Settings, embedder=None) -> list[Check]:
    """Every check, in order; stops before opening Chroma when its files are damaged (opening could hide it)."""
    checks: list[Check] = []
    coll = settings.store.collection
    if not settings.store.chroma_url:
        # a store another process holds is being written (or read) right now: its files prove nothing, and a
        # journal there is a live ingest's, not an interrupted one
        holder = folder_holder(settings.data_dir)
        if holder is not None:
            busy = ingesting(holder)
            detail = (
                f"an ingest (pid {busy[0]}) is running ({busy[1]}); run `assistant doctor` again when it has finished"
                if busy
                else f"the store is in use by {holder}; run `assistant doctor` again once that process has ended"
            )
            return [Check("store", False, detail)]
        files = check_store_files(settings.data_dir, coll)
        if files.problems:
            checks.append(Check("store files", False, "; ".join(files.problems), REBUILD))
            return checks
        db = settings.chroma_dir / "chroma.sqlite3"
        if db.is_file():
            try:
                with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as con:
                    verdict = con.execute("PRAGMA quick_check").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                verdict = str(exc)
            checks.append(Check("chroma.sqlite3", verdict == "ok", f"integrity check: {verdict}", REBUILD))
            if verdict != "ok":
                return checks
        index_files = "vector index files present" if files.vector_dir else "no vector index yet"
        checks.append(Check("store files", True, f"{files.chunks or 0} chunks in chroma.sqlite3, {index_files}"))
    journal = settings.data_dir / JOURNAL
    if journal.exists():
        with contextlib.suppress(OSError, ValueError):
            what = json.loads(journal.read_text(encoding="utf-8")).get("file", "a file")
        checks.append(
            Check(
                "interrupted ingest",
                False,
                f"the ingest of {what} was cut short; part of it is in Chroma until it is rolled back "
                "(any command that opens the store does that)",
                REPAIR,
            )
        )
    store = PaperStore(settings, embedder=embedder)
    store.auto_recover = False  # look, do not touch
    try:
        store.open()
    except (MachineFault, StoreUnreachable, StoreLocked) as exc:
        # the machine, a server that does not answer, a live ingest: the message says what to do; a rebuild would
        # not help (and would drop what the ingest is writing)
        checks.append(Check("open", False, str(exc)))
        return checks
    except StoreError as exc:
        checks.append(Check("open", False, str(exc), REBUILD))
        return checks
    if store.interrupted:
        checks.append(Check("interrupted ingest", False, store.interrupted, REPAIR))
    try:
        checks.extend(_chroma_checks(store))
    except StoreUnreachable as exc:  # the server went away during the checks
        checks.append(Check("Chroma server", False, str(exc)))
    finally:
        store.close()
    return checks


def _chroma_checks(store: PaperStore) -> list[Check]:
    checks: list[Check] = []
    coll = store.settings.store.collection
    try:
        count = store.count_chunks()
        state = store._state()
    except StoreUnreachable:
        raise
    except Exception as exc:  # Chroma's errors for a damaged index are plain InternalErrors
        return [Check("Chroma", False, f"cannot read the collection: {type(exc).__name__}: {exc}", REBUILD)]
    ids = {f"{pid}:{i}" for pid, entry in state.items() for i in entry["chunks"]}
    incomplete = sorted(
        pid for pid, e in state.items() if e["chunks"] != set(range(e["n_chunks"])) or not e.get("paper_json")
    )
    detail = f"{len(state)} papers in {count} chunks"
    if incomplete:
        checks.append(
            Check("Chroma", False, f"{detail}; {len(incomplete)} papers miss chunks or their record", REBUILD)
        )
    else:
        checks.append(Check("Chroma", True, f"{detail}, every paper complete"))

    lines, wrong = _cache(store.nodes_path, count, coll)
    if wrong:
        checks.append(Check("keyword index", False, wrong, REPAIR))
    else:
        cached = {json.loads(line)["id"] for line in lines}
        same = cached == ids
        extra, gone = len(cached - ids), len(ids - cached)
        detail = "same chunk ids as Chroma" if same else f"{extra} chunk ids Chroma lacks, {gone} missing"
        checks.append(Check("keyword index", same, f"{store.nodes_path.name}: {len(cached)} chunks, {detail}", REPAIR))

    lines, wrong = _cache(store.catalog_path, count, coll)
    if wrong:
        checks.append(Check("paper cache", False, wrong, REPAIR))
    else:
        cached = {json.loads(line)["id"] for line in lines}
        want = {pid for pid, e in state.items() if e.get("paper_json")}
        same = cached == want
        detail = (
            "same paper ids as Chroma"
            if same
            else f"{len(cached - want)} unknown to Chroma, {len(want - cached)} missing"
        )
        checks.append(Check("paper cache", same, f"{store.catalog_path.name}: {len(cached)} papers, {detail}", REPAIR))

    if count:
        checks.extend(_query_checks(store, sorted(ids)))
    return checks


def _query_checks(store: PaperStore, ids: list[str]) -> list[Check]:
    """Each sampled chunk must be its own nearest neighbour; a stored text must embed to its stored vector."""
    step = max(1, len(ids) // SAMPLE)
    sample = ids[::step][:SAMPLE]
    try:
        got = store.collection.get(ids=sample, include=["embeddings", "documents", "metadatas"])
        found = store.collection.query(query_embeddings=got["embeddings"], n_results=1, include=[])
    except StoreUnreachable:
        raise
    except Exception as exc:
        return [Check("vector index", False, f"a test query failed: {type(exc).__name__}: {exc}", REBUILD)]
    hits = sum(1 for want, hit in zip(got["ids"], found["ids"], strict=True) if hit and hit[0] == want)
    checks = [
        Check(
            "vector index",
            hits == len(sample),
            f"test query: {hits} of {len(sample)} sampled chunks found as their own nearest neighbour",
            REBUILD,
        )
    ]
    try:
        vec = store.embedder.embed_texts([chunk_texts(got)[0]])[0]
    except Exception as exc:  # the embedder is part of what a query needs
        checks.append(Check("embedder", False, f"cannot embed a test query: {exc}", None))
        return checks
    stored = got["embeddings"][0]
    dot = sum(a * b for a, b in zip(vec, stored, strict=True))
    cos = dot / (math.sqrt(sum(a * a for a in vec)) * math.sqrt(sum(b * b for b in stored)) or 1.0)
    checks.append(
        Check(
            "embedder",
            cos >= 0.99,
            f"{store.embedder.describe()}: a stored chunk re-embeds to its stored vector (cosine {cos:.3f})"
            if cos >= 0.99
            else f"stored vectors were made by another embedding model (cosine {cos:.3f} to the current one)",
            REBUILD,
        )
    )
    return checks


def repair(settings: Settings, embedder=None) -> str | None:
    """Roll back an interrupted ingest and rebuild both caches from Chroma; the roll-back note, if any."""
    with PaperStore(settings, embedder=embedder, read_only=False) as store:
        store.refresh_caches()
        return store.recovered
