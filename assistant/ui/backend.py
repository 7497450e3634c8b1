"""What the web app needs from the pipeline, without any Gradio: start-up in the background, one answer
stream per question on its own thread, uploads, the corpus catalog and eval runs.

The page is served while the store loads and the embedded model starts; ``Backend.status()`` says how far
start-up is, and questions asked meanwhile wait for it. Uploaded files are only ever read as bytes and
parsed as text: nothing is executed, imported or unpickled.
"""

from __future__ import annotations

import logging
import queue
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..answer import BROKEN, Assistant, Event, QuestionError
from ..config import Settings
from ..corpus import LAYOUT_BINARY, load_corpus
from ..evaluation import EvalRun, previous_run, run_eval
from ..filters import Filters
from ..llm_errors import one_line
from ..paper import Paper
from ..services import assistant_on, open_index, start_llm
from ..store import StoreError

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 20
UPLOAD_BATCH = 256  # papers embedded per ingest step (one progress update each)
LLM_RETRY_S = 10.0  # a failed LLM start is retried by the next question, at most this often


def max_upload_bytes(settings: Settings) -> int:
    """Upload size limit per file (setting ``ui_max_upload_mb``, env ASSISTANT_UI_MAX_UPLOAD_MB)."""
    return int(settings.ui_max_upload_mb * 1_000_000)


def ui_login(settings: Settings) -> tuple[str, str] | None:
    """(username, password) from ``ui_username`` / ``ui_password`` (ASSISTANT_UI_USERNAME / ASSISTANT_UI_PASSWORD),
    or None when both are unset; ValueError when only one is."""
    user = settings.ui_username or ""
    password = settings.ui_password.get_secret_value() if settings.ui_password else ""
    if not user and not password:
        return None
    if not user or not password:
        raise ValueError("set both ASSISTANT_UI_USERNAME and ASSISTANT_UI_PASSWORD (or neither) to protect the UI")
    return user, password


class BackendUnavailable(RuntimeError):
    """The store or the LLM is not (yet) usable; the message says why, for the user."""


class RWLock:
    """Many readers (searches) or one writer (an ingest swapping the indexes). Not tied to threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._writer = True
            while self._readers:
                self._cond.wait()

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


# -- the pipeline on its own thread --------------------------------------------------------------------------
@dataclass
class StreamItem:
    """What the answer thread hands to the page: a pipeline event, or how it ended."""

    kind: str  # "status" | "token" | "answer" | "question_error" | "broken" | "crash" | "done"
    data: Any = None


class AnswerRun:
    """One question answered on a dedicated thread.

    Gradio resumes a streaming handler on whichever worker thread is free, while the LLM client keeps its
    per-call statistics per thread; running the whole pipeline generator on one thread keeps them right.
    ``cancel()`` (the user left, pressed Stop or started a new chat) closes the pipeline generator, which
    closes the HTTP stream so the model stops generating.
    """

    def __init__(self, backend: Backend, question: str, history: list[dict], filters: Filters | None, top_k):
        self._queue: queue.Queue[StreamItem] = queue.Queue()
        self._cancel = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(backend, question, history, filters, top_k), name="answer", daemon=True
        )
        self._thread.start()

    def _run(self, backend: Backend, question, history, filters, top_k) -> None:
        stream = None
        read_locked = False
        try:
            assistant = backend.assistant
            backend.index_lock.acquire_read()  # retrieval must not see an ingest swapping the indexes
            read_locked = True
            stream = assistant.stream(question, history=history, filters=filters, top_k=top_k)
            for event in stream:
                if read_locked and (event.kind != "status" or event.step == "write"):
                    backend.index_lock.release_read()  # retrieval done: generation does not touch the indexes
                    read_locked = False
                if self._cancel.is_set():
                    break
                self._queue.put(StreamItem(event.kind, event.data))
        except QuestionError as exc:
            self._queue.put(StreamItem("question_error", str(exc)))
        except StoreError as exc:  # the Chroma server stopped answering mid-question: its one line, no traceback
            log.error("answering %r: %s", question, exc)
            self._queue.put(StreamItem("question_error", str(exc)))
        except BROKEN as exc:  # the model cannot run: the status line says so (red) and the next question retries
            log.error("the LLM is broken: %s", exc)
            backend.llm_broken(exc)
            self._queue.put(StreamItem("broken", one_line(exc)))
        except Exception as exc:  # a bug or an unexpected store error: readable in the chat, full in the log
            log.exception("answering %r failed", question)
            self._queue.put(StreamItem("crash", f"{type(exc).__name__}: {exc}"))
        finally:
            if stream is not None:
                stream.close()
            if read_locked:
                backend.index_lock.release_read()
            self._queue.put(StreamItem("done"))

    def events(self, poll_s: float = 0.25) -> Iterator[StreamItem | None]:
        """Items as they come; ``None`` every ``poll_s`` without one (lets the caller refresh a clock)."""
        while True:
            try:
                item = self._queue.get(timeout=poll_s)
            except queue.Empty:
                yield None
                continue
            if item.kind == "done":
                return
            yield item

    def cancel(self) -> None:
        self._cancel.set()


# -- uploads -------------------------------------------------------------------------------------------------
@dataclass
class UploadedFile:
    name: str  # as the user named it (display only; never used to pick a parser)
    data: bytes


@dataclass
class FileReport:
    name: str
    layout: str
    records: int
    papers: int
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class UploadReport:
    files: list[FileReport] = field(default_factory=list)
    added: list[Paper] = field(default_factory=list)
    merged: list[Paper] = field(default_factory=list)  # united with a paper already stored
    unchanged: list[Paper] = field(default_factory=list)  # already stored, nothing new
    duplicates_in_upload: int = 0  # records folded into another record of the upload
    abstracts_attached: int = 0  # abstract-only records joined to a stored paper
    rejected: list[str] = field(default_factory=list)  # "file:line: reason"
    conflicts: list[str] = field(default_factory=list)  # merges whose records disagreed on a field
    stored: bool = False
    seconds: float = 0.0
    papers_total: int = 0


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_name(name: str, index: int) -> str:
    base = _SAFE_NAME.sub("_", Path(name).name).strip("._") or "upload"
    return f"{index:02d}_{base[:80]}"


# -- the backend ---------------------------------------------------------------------------------------------
class Backend:
    """Owns (or borrows) the Assistant; everything the UI calls goes through here."""

    def __init__(self, settings: Settings, assistant: Assistant | None = None):
        self.settings = settings
        self.index_lock = RWLock()
        self._ingest_lock = threading.Lock()
        self._cond = threading.Condition()
        self._owns = assistant is None
        self._assistant = assistant
        self._retriever = assistant.retriever if assistant is not None else None
        self._llm = assistant.llm if assistant is not None else None
        self._phase = "ready" if assistant is not None else "not started"
        self._store_error: str | None = None
        self._llm_error: str | None = None
        self._llm_failed_at = 0.0
        self._started_at = time.monotonic()
        self._llm_started_at: float | None = None
        self._llm_thread: threading.Thread | None = None
        self._closed = False

    # -- start-up --------------------------------------------------------------------------------------------
    def start(self) -> Backend:
        """Open the store and start the LLM on a background thread; returns at once."""
        if self._assistant is not None or self._closed:
            return self
        threading.Thread(target=self._start, name="backend-start", daemon=True).start()
        return self

    def _start(self) -> None:
        from ..store import StoreError

        self._set_phase("opening the store and loading the embedder")
        try:
            retriever = open_index(self.settings)
        except Exception as exc:
            if isinstance(exc, StoreError):  # damaged, read-only, disk full...: the message says what to do
                log.error("store start-up failed: %s", exc)
            else:
                log.exception("store start-up failed")
            with self._cond:
                self._store_error = str(exc)
                self._phase = "failed"
                self._cond.notify_all()
            return
        with self._cond:
            self._retriever = retriever
            self._cond.notify_all()
        self._start_llm()

    def _start_llm(self) -> None:
        with self._cond:
            self._phase = "starting the LLM"
            self._llm_error = None
            self._llm_started_at = time.monotonic()
            self._cond.notify_all()
        try:
            llm = start_llm(self.settings)
        except Exception as exc:
            log.error("LLM start-up failed: %s", exc)
            with self._cond:
                self._llm_error = one_line(exc)
                self._llm_failed_at = time.monotonic()
                self._phase = "LLM failed"
                self._cond.notify_all()
            return
        with self._cond:
            if self._closed:
                llm.close()
                return
            self._llm = llm
            self._assistant = assistant_on(self._retriever, llm)
            self._phase = "ready"
            self._cond.notify_all()
        log.info("ready: %s", self._assistant.describe())

    def _set_phase(self, phase: str) -> None:
        with self._cond:
            self._phase = phase
            self._cond.notify_all()

    def llm_broken(self, exc: BaseException) -> None:
        """The model failed in a way an answer cannot work around (it crashed and could not be restarted, the key or
        the model name is refused): drop it, so the status line turns red and the next question starts it again."""
        with self._cond:
            llm, self._llm, self._assistant = self._llm, None, None
            self._llm_error = one_line(exc)
            self._llm_failed_at = time.monotonic()
            self._phase = "LLM failed"
            self._cond.notify_all()
        if llm is not None:
            llm.close()

    def retry_llm(self) -> bool:
        """Start the LLM again after a failed start (not more often than every LLM_RETRY_S). True if started."""
        with self._cond:
            if self._retriever is None or self._llm is not None or self._closed:
                return False
            if self._llm_thread is not None and self._llm_thread.is_alive():
                return False
            if time.monotonic() - self._llm_failed_at < LLM_RETRY_S:
                return False
            self._llm_thread = threading.Thread(target=self._start_llm, name="llm-start", daemon=True)
            self._llm_thread.start()
            return True

    # -- state -----------------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._assistant is not None

    @property
    def assistant(self) -> Assistant:
        if self._assistant is None:
            raise BackendUnavailable(self.unavailable_reason())
        return self._assistant

    @property
    def retriever(self):
        if self._retriever is None:
            raise BackendUnavailable(self.unavailable_reason())
        return self._retriever

    @property
    def store_ready(self) -> bool:
        return self._retriever is not None

    @property
    def starting(self) -> bool:
        return self._assistant is None and self._store_error is None and self._llm_error is None

    @property
    def phase(self) -> str:
        return self._phase

    @property
    def store_error(self) -> str | None:
        return self._store_error

    @property
    def llm_error(self) -> str | None:
        return self._llm_error

    def unavailable_reason(self) -> str:
        if self._store_error:
            return f"The paper store could not be opened: {self._store_error}"
        if self._llm_error:
            return f"The language model could not be started: {self._llm_error}"
        return f"Still starting ({self._phase}, {self.starting_for():.0f} s so far)."

    def starting_for(self) -> float:
        since = self._llm_started_at if self._llm_started_at and self._retriever else self._started_at
        return time.monotonic() - since

    def wait(self, timeout: float, for_store_only: bool = False) -> bool:
        """Block until ready (or the store is, or start-up failed) or ``timeout``; True if usable."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                usable = self._retriever is not None if for_store_only else self._assistant is not None
                if usable or self._store_error or (self._llm_error and not for_store_only):
                    return usable
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    def llm_label(self) -> str:
        """Which LLM is (or will be) in use, for the status line."""
        if self._llm is not None:
            return self._llm.describe()
        s = self.settings.llm
        if s.base_url:
            from ..llm import safe_url

            return f"remote {safe_url(s.base_url)} model {s.model or '(the one it serves)'}"
        return f"embedded llama.cpp {s.embedded_model}"

    def describe(self) -> dict[str, str]:
        out = {"llm": self.llm_label()}
        if self._retriever is not None:
            store = self._retriever.store
            out["embedder"] = store.embedder.describe()
            out["store"] = f"{store.describe()} · {len(self._retriever.papers)} papers"
        return out

    def llm_slots(self) -> int:
        """Generations served at once: one for the embedded model (llama.cpp serves one), a few for a remote one."""
        return 4 if self.settings.llm.base_url else 1

    # -- questions -------------------------------------------------------------------------------------------
    def answer(self, question: str, history: list[dict], filters: Filters | None, top_k: int | None) -> AnswerRun:
        return AnswerRun(self, question, history, filters, top_k)

    # -- corpus ----------------------------------------------------------------------------------------------
    def papers(self) -> list[Paper]:
        if self._retriever is None:
            return []
        return list(self._retriever.papers.values())

    def paper(self, paper_id: str) -> Paper | None:
        if self._retriever is None:
            return None
        return self._retriever.papers.get(paper_id)

    def facets(self) -> dict[str, list]:
        """Years, categories (with counts) and authors present, for the filter controls."""
        papers = self.papers()
        cats = Counter(p.category for p in papers if p.category)
        years = sorted({p.year for p in papers if p.year}, reverse=True)
        authors = Counter(a for p in papers for a in p.authors)
        affiliations = Counter(a for p in papers for a in p.affiliations)
        return {
            "affiliations": [a for a, _ in affiliations.most_common()],
            "years": years,
            "categories": sorted(cats.items(), key=lambda kv: (-kv[1], kv[0])),
            "authors": [a for a, _ in sorted(authors.items(), key=lambda kv: (-kv[1], kv[0].casefold()))],
        }

    def search_papers(
        self, text: str = "", category: str | None = None, year: int | None = None, has_code: bool = False
    ) -> list[Paper]:
        """Papers whose title (or an alternative one), authors, affiliations or abstract hold every word of ``text``."""
        words = [w.casefold() for w in text.split()]
        out = []
        for p in self.papers():
            if category and (p.category or "") != category:
                continue
            if year and p.year != year:
                continue
            if has_code and not p.has_code:
                continue
            if words:
                hay = " ".join([p.title, *p.alt_titles, " ".join(p.authors), " ".join(p.affiliations), p.abstract])
                hay = hay.casefold()
                if not all(w in hay for w in words):
                    continue
            out.append(p)
        out.sort(key=lambda p: (-(p.year or 0), p.title.casefold()))
        return out

    # -- uploads ---------------------------------------------------------------------------------------------
    def add_papers(
        self,
        files: list[UploadedFile],
        dry_run: bool = False,
        progress: Callable[[float, str], None] | None = None,
    ) -> UploadReport:
        """Parse uploaded files by content, merge with the store, embed, and make them searchable at once."""
        started = time.perf_counter()
        report = UploadReport()
        limit = max_upload_bytes(self.settings)
        retriever = self.retriever
        ok_files: list[tuple[str, UploadedFile]] = []
        for i, f in enumerate(files):
            if len(f.data) > limit:
                report.files.append(FileReport(f.name, "too large", 0, 0))
                report.rejected.append(
                    f"{f.name}: over the {self.settings.ui_max_upload_mb:g} MB upload limit; "
                    "ingest it with `assistant ingest PATH` instead"
                )
                continue
            ok_files.append((_safe_name(f.name, i), f))
        if not ok_files:
            report.seconds = time.perf_counter() - started
            return report

        from ..corpus import IngestLimits
        from ..store import StoreError

        store = retriever.store
        with tempfile.TemporaryDirectory(prefix="assistant-upload-") as tmp:
            names: dict[str, str] = {}
            for safe, f in ok_files:
                path = Path(tmp) / safe
                path.write_bytes(f.data)
                names[str(path)] = f"upload/{f.name}"  # how sources and messages name it; never parsed by name
            corpus = load_corpus(list(names), IngestLimits.from_settings(self.settings.ingest), names=names)

            def shown(file: str) -> str:
                return file.removeprefix("upload/")

            for result in corpus.results:
                report.files.append(
                    FileReport(
                        name=shown(result.file),
                        layout=result.layout,
                        records=result.raw_records,
                        papers=len(result.papers),
                        errors=[_issue_text(i, shown) for i in result.issues if i.level == "error"],
                        warnings=[
                            _issue_text(i, shown)
                            for i in result.issues
                            if i.level == "warning" and i.code != "unmatched_orphan"
                        ],
                    )
                )
                if result.layout == LAYOUT_BINARY:
                    report.rejected.append(
                        f"{shown(result.file)}: not a text file (binary content), so nothing was read from it; only "
                        "text corpus files (the seed page layouts, arXiv JSONL, JSON) can be added"
                    )
                    continue
                report.rejected.extend(f"{shown(i.file)}{_line(i.line)}: {i.message}" for i in result.errors)
            report.duplicates_in_upload = corpus.merged_by_title + corpus.merged_by_abstract

            with self._ingest_lock:
                # the store's own plan (the merge rule ingest uses): what is new, what changes a stored paper, what not
                plan = store.ingest(corpus.papers, orphans=corpus.unmatched_orphans, dry_run=True)
                report.abstracts_attached = plan.attached
                report.rejected.extend(
                    f"{shown(ref.file)}{_line(ref.line)}: abstract-only record matches no paper in the corpus or upload"
                    for ref in plan.unmatched
                )
                report.conflicts = [str(n).replace("upload/", "") for n in [*corpus.merges, *plan.merges]]
                report.added = [plan.papers[i] for i in plan.added_ids]
                report.merged = [plan.papers[i] for i in plan.updated_ids]
                report.unchanged = [plan.papers[i] for i in plan.unchanged_ids]
                if dry_run or not (report.added or report.merged):
                    report.papers_total = len(retriever.papers)
                    report.seconds = time.perf_counter() - started
                    return report

                def step(done: int, total: int) -> None:
                    if progress:
                        progress(done / max(1, total), f"embedding: {done} of {total} chunks")

                try:
                    for path, result in zip(names, corpus.results, strict=True):
                        if (result.papers or result.orphan_abstracts) and not result.rejected:
                            store.keep_added(Path(path), names[path])  # for `assistant ingest --rebuild`
                    # one unit per uploaded file: a file's papers are stored all together or not at all
                    store.ingest(
                        corpus.papers,
                        progress=False,
                        orphans=corpus.unmatched_orphans,
                        on_progress=step,
                        file_order=list(corpus.per_file),
                    )
                    report.stored = True
                except StoreError as exc:
                    report.rejected.append(f"storing stopped: {exc}")
                if progress:
                    progress(1.0, "rebuilding the keyword index")
                self.index_lock.acquire_write()
                try:
                    retriever.reload()
                    retriever.build_keyword_index()
                finally:
                    self.index_lock.release_write()
                report.added = [retriever.papers.get(p.id, p) for p in report.added]
                report.merged = [retriever.papers.get(p.id, p) for p in report.merged]
        report.papers_total = len(retriever.papers)
        report.seconds = time.perf_counter() - started
        return report

    # -- evals -----------------------------------------------------------------------------------------------
    def run_eval(self, dataset: Path, *, retrieval_only: bool, limit: int | None, progress=None) -> EvalRun:
        """Run the eval on this app's retriever (and model), compared with the previous run of its kind."""
        # retrieval only: the runner uses the assistant's retriever and settings, no need to wait for the model
        assistant = (self._assistant or assistant_on(self.retriever)) if retrieval_only else self.assistant
        compare = previous_run(dataset, retrieval_only=retrieval_only)
        return run_eval(
            dataset,
            retrieval_only=retrieval_only,
            limit=limit,
            compare=compare,
            assistant=assistant,
            progress=progress,
        )

    # -- shutdown --------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the LLM server and release the store, if this backend started them."""
        with self._cond:
            self._closed = True
            owned = self._owns
            llm, retriever = self._llm, self._retriever
        if not owned:
            return
        if llm is not None:
            llm.close()
        if retriever is not None:
            retriever.store.close()


def _line(line: int | None) -> str:
    return f":{line}" if line else ""


def _issue_text(issue, shown: Callable[[str], str]) -> str:
    return f"{shown(issue.file)}{_line(issue.line)}: {issue.message}"


__all__ = [
    "AnswerRun",
    "Backend",
    "BackendUnavailable",
    "Event",
    "FileReport",
    "StreamItem",
    "UploadReport",
    "UploadedFile",
    "max_upload_bytes",
    "ui_login",
]
