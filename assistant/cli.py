"""`assistant`: ingest papers, list them, ask cited questions, chat, serve the UI.

Settings come from the environment (ASSISTANT_*, OPENAI_BASE_URL, OPENAI_API_KEY);
see `assistant settings` for every field and its current value.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .config import Settings, SettingsInvalid, get_settings
from .text import author_list

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
# Messages keep file paths on one line. Text from users, the corpus or the model reaches these consoles only escaped
# (`escape`, `Text`, or markup=False): "[/]" in a question or a title is text, never a style tag. No ":name:" emoji
# codes either, so a title with ":fire:" prints as typed.
console = Console(stderr=True, soft_wrap=True, emoji=False)
out = Console(soft_wrap=True, emoji=False)


class UserError(Exception):
    """Raised for problems the user can fix; printed as one line, no traceback."""


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


@contextlib.contextmanager
def _faults(settings: Settings):
    """Store errors and faults of the machine (disk full, read-only, permission denied) end in one line."""
    from chromadb.errors import ChromaError

    from .store import StoreError, machine_fault

    try:
        yield
    except StoreError as exc:
        raise _fail(str(exc)) from None
    except (OSError, ChromaError) as exc:  # Chroma reports a full disk as InternalError("Error in compaction…")
        fault = machine_fault(exc, settings.data_dir)
        if fault is None:
            raise
        raise _fail(fault) from None


def _check_before_starting(settings: Settings) -> None:
    """A damaged or empty local store is reported before the embedder and the LLM are started."""
    from .store import check_store_files, damaged_message, folder_holder, locked_message

    if settings.store.chroma_url:
        return
    holder = folder_holder(settings.data_dir)
    if holder is not None:  # its files are being written: they prove nothing yet (and a rebuild would lose them)
        raise _fail(locked_message(settings.data_dir, holder))
    files = check_store_files(settings.data_dir, settings.store.collection)
    if files.problems:
        raise _fail(damaged_message(settings.data_dir, files.problems))
    no_db = settings.chroma_dir.is_dir() and not (settings.chroma_dir / "chroma.sqlite3").exists()
    if files.chunks == 0 or (files.chunks is None and no_db):  # no folder yet: opening says who is creating it
        raise _fail("the store is empty: run `assistant ingest` first")


def _require_store(settings: Settings) -> None:
    """Commands that only read never create a store: a missing one is reported with what to do."""
    if settings.store.chroma_url or settings.chroma_dir.is_dir() or (settings.data_dir / "store.lock").exists():
        return  # a store that another process is creating holds the lock: opening it says so
    raise _fail(
        f"there is no paper store in {settings.data_dir} yet: run `assistant ingest` first "
        "(or set ASSISTANT_DATA_DIR to the folder that holds the store)"
    )


def _open_store(settings: Settings, **kw):
    from .services import open_store

    with _faults(settings):
        store = open_store(settings, **kw)
    _note_recovered(store)
    return store


def _note_recovered(store) -> None:
    if store.recovered:
        console.print(f"note: {escape(store.recovered)}", style="yellow", highlight=False)


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    try:
        settings = get_settings()
    except SettingsInvalid as exc:  # one line per variable: its name, the value given, what is allowed
        for line in exc.lines[:-1]:
            _fail(line)
        raise _fail(exc.lines[-1]) from None
    logging.basicConfig(
        level=logging.DEBUG if verbose else getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Third-party chatter (HTTP request lines, telemetry notices) is noise at INFO.
    for noisy in ("httpx", "chromadb", "sentence_transformers", "urllib3", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def ingest(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files or folders (seed layouts, arXiv JSONL). Default: the seeds.")
    ] = None,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Move the store aside (damaged or not) and build it again from PATHS (default: the seeds), the "
            "files you added before and any paper of the old catalog that no file holds.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Parse paper files, embed them and store them in Chroma, one file at a time. Re-running adds nothing new."""
    from .corpus import IngestLimits, iter_corpus_files, load_corpus
    from .paper import PaperIndex
    from .store import PaperStore, added_files, read_catalog

    settings = get_settings()
    targets = paths or [settings.seeds_dir]
    missing = [str(p) for p in targets if not p.exists()]
    if missing:
        raise _fail(f"no such file or folder: {', '.join(missing)}")
    limits = IngestLimits.from_settings(settings.ingest)
    given = iter_corpus_files(targets)
    kept = added_files(settings) if rebuild else []
    with _faults(settings):
        corpus = load_corpus(given + [path for path, _ in kept], limits, names=dict(kept))
    for issue in corpus.issues:
        if issue.code == "unmatched_orphan":
            continue  # judged again against the store below
        where = f"{issue.file}:{issue.line}" if issue.line else issue.file
        colour = "red" if issue.level == "error" else "yellow"
        console.print(f"[{colour}]{issue.level}[/] {escape(f'{where}: {issue.message}')}", highlight=False)

    store = PaperStore(settings, read_only=False)
    moved = None
    salvaged = []
    only_in_catalog = 0
    with _faults(settings):
        if rebuild and not settings.store.chroma_url:
            store.lock()
            moved = store.set_aside()
            if moved is not None:
                # the old catalog's records are merged in too: nothing the old store held is lost, not even a
                # paper no file gives any more (say, an upload from before copies were kept)
                salvaged = read_catalog(moved / "papers.jsonl")
                known = PaperIndex()
                for p in corpus.papers:
                    known.add(p, p.id)
                only_in_catalog = sum(1 for p in salvaged if known.find(p) is None)
        store.open()
        _note_recovered(store)
        console.print(
            f"store: {store.describe()}\nembedder: {store.embedder.describe()}", highlight=False, markup=False
        )
        try:
            if rebuild and settings.store.chroma_url:
                salvaged = store.papers()  # a server's store is dropped, not moved: its records are kept here
                store.rebuild()
            by_file = {r.file: r for r in corpus.results}
            seeds = settings.seeds_dir.resolve()
            for f in given:  # kept so that `ingest --rebuild` can read them again
                r = by_file.get(f)
                if r is not None and (r.papers or r.orphan_abstracts) and seeds not in Path(f).resolve().parents:
                    store.keep_added(Path(f), f, data=r.content)  # a pipe's bytes: it cannot be read again
            report = store.ingest(
                corpus.papers + salvaged,
                progress=not quiet,
                orphans=corpus.unmatched_orphans,
                file_order=list(corpus.per_file),
            )
        finally:
            store.close()
    for ref in report.unmatched:
        console.print(
            f"[yellow]warning[/] {escape(f'{ref.file}:{ref.line}')}: abstract-only record matches no paper read or "
            "stored; skipped",
            highlight=False,
        )
    merges = corpus.merges + report.merges
    if merges:
        console.print(f"{len(merges)} merge(s) with conflicting fields:", highlight=False)
        for note in merges:
            console.print(f"  merged: {note}", highlight=False, markup=False)
    skipped = sum(1 for i in corpus.issues if i.level == "error") + len(report.unmatched)
    table = Table(title="ingest", show_header=True)
    for col in ("files", "papers parsed", "added", "updated", "unchanged", "skipped", "seconds", "papers/s"):
        table.add_column(col, justify="right")
    table.add_row(
        str(len(corpus.per_file)),
        str(len(corpus.papers)),
        str(report.added),
        str(report.updated),
        str(report.unchanged),
        str(skipped),
        f"{report.seconds:.1f}",
        f"{report.papers_per_s:.1f}",
    )
    console.print(table)
    if rebuild:
        if moved is not None:
            console.print(
                f"rebuilt: the old store was moved to {moved} (delete it once the new one works); "
                f"{len(kept)} file(s) you added were read again and the {len(salvaged)} paper(s) of its catalog "
                f"merged in ({only_in_catalog} of them in no file)",
                highlight=False,
                markup=False,
            )
        elif settings.store.chroma_url:
            console.print(f"rebuilt: the collection was dropped and built again, its {len(salvaged)} paper(s) kept")
        else:
            console.print("rebuilt: there was no store to move aside", highlight=False)
    if any(i.level == "error" for i in corpus.issues):
        raise typer.Exit(2)


# Filter options shared by `papers` and `ask` (the planner also reads the same filters from the question's words).
YearFrom = Annotated[int | None, typer.Option("--year-from", help="Earliest year (inclusive).")]
YearTo = Annotated[int | None, typer.Option("--year-to", help="Latest year (inclusive).")]
DateFrom = Annotated[
    str | None,
    typer.Option("--date-from", help="Earliest date: 2024-03-15, 2024-03, 'March 2024' (papers need one)."),
]
DateTo = Annotated[str | None, typer.Option("--date-to", help="Latest date, same forms as --date-from.")]
Category = Annotated[
    str | None, typer.Option(help="Category by code or name: CV, cs.CL, 'computer vision', 'machine learning (LG)'.")
]
Authors = Annotated[
    list[str] | None, typer.Option("--author", help="Author name substring; repeat for several (all must co-author).")
]
FirstAuthor = Annotated[str | None, typer.Option("--first-author", help="Substring of the first author's name.")]
Affiliation = Annotated[
    str | None, typer.Option(help="Institution by name or code ('Tsinghua University', tsinghua); see filters.py.")
]
HasCode = Annotated[bool, typer.Option("--has-code", help="Only papers that link their code.")]


def _filters_from_options(**options):
    from .filters import Filters

    try:
        f = Filters.from_options(**options)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    return None if f.is_empty() else f


@app.command()
def papers(
    year: Annotated[int | None, typer.Option(help="Only papers from this year.")] = None,
    year_from: YearFrom = None,
    year_to: YearTo = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    category: Category = None,
    author: Authors = None,
    first_author: FirstAuthor = None,
    affiliation: Affiliation = None,
    has_code: HasCode = False,
    search: Annotated[str | None, typer.Option(help="Substring of the title (or of an alternative title).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many (1 or more).")] = None,
) -> None:
    """List and filter the stored papers."""
    from .filters import Filters

    if limit is not None and limit < 1:  # a slice would drop the last rows instead (rows[:-5])
        raise _fail(f"--limit must be 1 or more (got {limit})")
    settings = get_settings()
    filters = (
        _filters_from_options(
            year_from=year if year is not None else year_from,
            year_to=year if year is not None else year_to,
            date_from=date_from,
            date_to=date_to,
            category=category,
            authors=author,
            first_author=first_author,
            affiliation=affiliation,
            has_code=has_code,
        )
        or Filters()
    )
    _require_store(settings)
    store = _open_store(settings)
    try:
        with _faults(settings):
            stored = store.papers()
    finally:
        store.close()
    if not stored:
        console.print("the store is empty: run `assistant ingest` first", style="yellow", highlight=False)
    rows = [p for p in stored if filters.matches(p)]
    if search:
        needle = search.casefold()
        rows = [p for p in rows if any(needle in t.casefold() for t in [p.title, *p.alt_titles])]
    rows.sort(key=lambda p: (-(p.year or 0), p.title.casefold()))
    if limit is not None:
        rows = rows[:limit]
    if as_json:
        for p in rows:
            row = p.model_dump(mode="json")
            row["sources"] = [f"{s['file']}:{s['line']}" for s in row["sources"]]
            print(json.dumps(row, ensure_ascii=False))
        return
    table = Table(show_header=True, title=f"{len(rows)} papers")
    for col in ("year", "cat", "title", "authors"):
        table.add_column(col)
    for p in rows:
        authors = author_list(p.authors, p.authors_truncated)
        # Text, not str: a table renders str cells as markup, and a stored title may hold "[/]" or "[mask]"
        table.add_row(str(p.year or "?"), Text(p.category or ""), Text(p.title), Text(authors))
    out.print(table)


def _start_assistant(settings: Settings):
    from .llm_errors import LLMError, one_line
    from .services import open_assistant
    from .store import StoreError

    _require_store(settings)
    _check_before_starting(settings)
    console.print("starting: loading the store and the embedder, starting the LLM …", style="dim")
    try:
        with _faults(settings):
            assistant = open_assistant(settings, progress=True)
    except StoreError as exc:
        raise _fail(str(exc)) from None
    except LLMError as exc:
        raise _fail(one_line(exc)) from None
    for role, what in assistant.describe().items():
        console.print(f"{role}: {what}", style="dim", highlight=False, markup=False)
    if not assistant.retriever.papers:
        assistant.close()
        raise _fail("the store is empty: run `assistant ingest` first")
    return assistant


def _print_answer_stream(assistant, question: str, history: list[dict] | None, **kw):
    """Stream one answer to the terminal, then its checked references. Returns the Answer or None; a model that
    cannot run (see `answer.BROKEN`) ends the command with one line and exit code 1."""
    from .answer import BROKEN, QuestionError
    from .llm_errors import one_line
    from .store import StoreError

    answer = None
    streamed = ""
    try:
        for event in assistant.stream(question, history, **kw):
            if event.kind == "status":
                console.print(f"… {event.data}", style="dim", highlight=False, markup=False)
            elif event.kind == "evidence":
                # the references before the model's first token: what the answer is written from
                out.print("[bold]sources:[/]")
                for src in event.data.sources:
                    out.print(f"[{src.n}] {src.title} ({src.year or 'n.d.'})", highlight=False, markup=False)
                out.print()
            elif event.kind == "token":
                streamed += event.data
                out.print(event.data, end="", highlight=False, markup=False, soft_wrap=True)
            elif event.kind == "answer":
                answer = event.data
    except (QuestionError, StoreError) as exc:  # a bad question; the store's server stopped answering mid-question
        if streamed:
            out.print()
        console.print("[bold red]error:[/] ", end="", highlight=False)
        console.print(str(exc), highlight=False, markup=False)
        return None
    except BROKEN as exc:
        out.print()
        raise _fail(one_line(exc)) from None
    out.print()
    if answer is None:
        return None
    if answer.error:
        console.print(
            f"[bold red]error:[/] {escape(answer.error)}" + (" (answer incomplete)" if answer.incomplete else ""),
            highlight=False,
        )
    if answer.text.strip() != streamed.strip():
        # citations were checked after streaming: show the corrected text
        out.print("\n[bold]checked answer:[/]")
        out.print(answer.text, highlight=False, markup=False, soft_wrap=True)
    plain = {"highlight": False, "markup": False}  # the question's and the corpus's words, printed as they are
    if answer.standalone_query != answer.question:
        console.print(f"searched: {answer.standalone_query}", style="dim", **plain)
    for why in answer.plan_why:
        console.print(f"plan: {why}", style="dim", **plain)
    if answer.filters_applied != "none":
        console.print(f"filters: {answer.filters_applied}", style="dim", **plain)
    for target, title in answer.picked.items():
        console.print(f"comparing: {target} -> {title or 'not in the corpus'}", style="dim", **plain)
    for note in answer.notes:
        console.print(f"note: {note}", style="yellow", **plain)
    if answer.refused and answer.possibly_related:
        out.print("\n[bold]possibly related:[/]")
        for title in answer.possibly_related:
            out.print(f"  - {title}", highlight=False, markup=False)
    if answer.citations:
        out.print("\n[bold]references:[/]")
        for c in answer.citations:
            authors = author_list(c.authors)
            out.print(
                f"[{c.n}] {c.title} — {authors or 'unknown authors'} ({c.year or 'n.d.'})",
                highlight=False,
                markup=False,
            )
            out.print(f"     evidence: {c.evidence}", style="dim", highlight=False, markup=False)
    t = answer.timings
    path = answer.path + (f" ({answer.refusal_check})" if answer.refused else "")
    path += f" (model's reply not used: {answer.failure})" if answer.failure else ""
    console.print(
        f"{path} · {answer.model} · {answer.prompt_tokens}+{answer.completion_tokens} tokens · "
        f"evidence {t.get('first_evidence_s', 0):.2f}s · first token {t.get('ttft_s', 0):.1f}s · "
        f"total {t.get('total_s', 0):.1f}s",
        style="dim",
        highlight=False,
        markup=False,
    )
    return answer


class OutputFormat(StrEnum):
    markdown = "markdown"
    bibtex = "bibtex"
    json = "json"


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="A question about the papers.")],
    output: Annotated[
        OutputFormat | None,
        typer.Option(
            "--format",
            case_sensitive=False,
            help="Print only the answer: markdown (its text with the \\[n] markers, the references and the quoted "
            "evidence), bibtex (the cited papers) or json (the answer object, plan included).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Print the plan (kind, query, filters, compared papers) and stop.")
    ] = False,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, max=50, help="Papers given to the model.")] = None,
    year_from: YearFrom = None,
    year_to: YearTo = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    category: Category = None,
    author: Authors = None,
    first_author: FirstAuthor = None,
    affiliation: Affiliation = None,
    has_code: HasCode = False,
) -> None:
    """Answer one question with cited papers (or say why the corpus cannot answer it).

    Filters given here are added to those the question states ("papers from March 2024 by Yang Yue")."""
    from .answer import BROKEN, QuestionError, validate_question
    from .llm_errors import one_line
    from .store import StoreError

    settings = get_settings()
    filters = _filters_from_options(
        year_from=year_from,
        year_to=year_to,
        date_from=date_from,
        date_to=date_to,
        category=category,
        authors=author,
        first_author=first_author,
        affiliation=affiliation,
        has_code=has_code,
    )
    if as_json and output not in (None, OutputFormat.json):
        raise _fail(f"--json is --format json: give one of --json and --format {output.value}")
    fmt = OutputFormat.json if as_json else output
    try:  # an empty or over-long question is refused before the store, the embedder and the model are loaded
        validate_question(question, settings.max_question_chars)
    except QuestionError as exc:
        raise _fail(str(exc)) from None
    if explain:
        if fmt not in (None, OutputFormat.json):
            raise _fail("--explain prints the plan: as text, or as JSON with --format json")
        _explain(settings, question, filters, top_k, fmt is OutputFormat.json)
        return
    assistant = _start_assistant(settings)
    try:
        if fmt is not None:
            try:
                answer = assistant.ask(question, filters=filters, top_k=top_k)
            except (QuestionError, StoreError) as exc:
                raise _fail(str(exc)) from None
            except BROKEN as exc:
                raise _fail(one_line(exc)) from None
            print(_formatted(answer, fmt, assistant.retriever.papers), end="")
            if answer.error:
                raise typer.Exit(3)
            return
        answer = _print_answer_stream(assistant, question, None, filters=filters, top_k=top_k)
        if answer is None:
            raise typer.Exit(1)
        if answer.error:
            raise typer.Exit(3)
    finally:
        assistant.close()


def _formatted(answer, fmt: OutputFormat, papers) -> str:
    from . import export

    if fmt is OutputFormat.markdown:
        return export.answer_markdown(answer, papers)
    if fmt is OutputFormat.bibtex:
        return export.answer_bibtex(answer, papers)
    return answer.model_dump_json(indent=2) + "\n"


def _explain(settings: Settings, question: str, filters, top_k: int | None, as_json: bool) -> None:
    """The plan and what the pipeline decides from it (papers, verdict), without starting the model."""
    from .answer import QuestionError
    from .services import assistant_on, open_index

    _require_store(settings)
    with _faults(settings):
        retriever = open_index(settings, warm=False)
    _note_recovered(retriever.store)
    try:
        with _faults(settings):
            assistant = assistant_on(retriever)  # no model: the plan and the verdict only
            try:
                prepared = assistant.prepare(assistant.plan(question, None, filters), top_k)
            except QuestionError as exc:
                raise _fail(str(exc)) from None
    finally:
        retriever.close()
    plan, verdict = prepared.plan, prepared.verdict
    picked = prepared.gathered.picked()
    papers = [h.paper.title for h in prepared.hits]
    decision = "answer" if verdict.answerable else f"refuse ({verdict.check}): {verdict.reason or 'off topic'}"
    if as_json:
        row = {"plan": plan.model_dump(mode="json"), "picked": picked, "papers": papers, "decision": decision}
        print(json.dumps(row, ensure_ascii=False, indent=2))
        return
    out.print(f"kind: {plan.kind}" + (" (follow-up)" if plan.followup else ""), highlight=False, markup=False)
    out.print(f"searched as: {plan.query}", highlight=False, markup=False)
    out.print(f"filters: {plan.filters.describe()}", highlight=False, markup=False)
    for target, title in picked.items():
        out.print(f"comparing: {target} -> {title or 'not in the corpus'}", highlight=False, markup=False)
    for why in plan.why:
        out.print(f"why: {why}", highlight=False, markup=False)
    for n, title in enumerate(papers, start=1):
        out.print(f"[{n}] {title}", highlight=False, markup=False)
    out.print(f"decision: {decision}", highlight=False, markup=False)


@app.command()
def chat(
    chat_id: Annotated[
        str | None,
        typer.Argument(
            help="A saved chat (its id, or a unique start of it) for --resume, --export or --delete; default: the "
            "most recent.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Go on with a saved chat (CHAT_ID, or the most recent one).")
    ] = False,
    list_chats: Annotated[bool, typer.Option("--list", help="List the saved chats and stop.")] = False,
    export: Annotated[
        OutputFormat | None,
        typer.Option(
            "--export",
            case_sensitive=False,
            help="Print a saved chat (CHAT_ID, or the most recent) as markdown, bibtex or json and stop.",
        ),
    ] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Delete the saved chat CHAT_ID and stop.")] = False,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, max=50, help="Papers given to the model.")] = None,
) -> None:
    """Interactive chat with history: follow-ups ("how much faster is it?") are resolved. /new starts a new chat,
    /quit exits.

    Every chat is saved in the data folder as it goes (chats/), so `assistant chat --resume` goes on with it later,
    follow-ups included. These are the terminal's chats; the web app keeps each browser's (or user's) apart."""
    from .chats import TERMINAL, ChatStore, ChatStoreError, ChatTurn

    settings = get_settings()
    store = ChatStore.from_settings(settings)
    if sum([resume, list_chats, export is not None, delete]) > 1:
        raise _fail("give one of --resume, --list, --export and --delete")
    if list_chats:
        try:
            _list_chats(store.list(TERMINAL))
        except ChatStoreError as exc:
            raise _fail(str(exc)) from None
        return
    chat = None
    if resume or export is not None or delete or chat_id:
        if delete and not chat_id:
            raise _fail("--delete needs the id of the chat to delete (see `assistant chat --list`)")
        try:
            chat = store.find(TERMINAL, chat_id)
            if delete:
                store.delete(TERMINAL, chat.id)
        except ChatStoreError as exc:
            raise _fail(str(exc)) from None
        if delete:
            out.print(f"deleted chat {chat.id}: {chat.title}", highlight=False, markup=False)
            return
        if export is not None:
            print(_chat_formatted(chat, export, settings), end="")
            return
    assistant = _start_assistant(settings)
    history: list[dict] = []
    if chat is None:
        chat = store.new()
    else:
        history = chat.history()
        _replay(chat)
    unsaved = False  # said once: a read-only or full data folder does not stop the chat
    try:
        while True:
            try:
                question = input("\nyou> ")
            except (EOFError, KeyboardInterrupt):
                break
            command = question.strip().lower()
            if command in ("/quit", "/exit", "exit", "quit"):
                break
            if command == "/new":
                history.clear()
                chat = store.new()
                console.print("new chat (the previous one stays saved)", style="dim")
                continue
            if not command:
                continue
            answer = _print_answer_stream(assistant, question, history, top_k=top_k)
            if answer is None:
                continue
            if not answer.error:
                history += [{"role": "user", "content": question}, answer.as_message()]
            chat.turns.append(ChatTurn(question=answer.question, answer=answer))
            first = len(chat.turns) == 1
            try:
                removed = store.save(TERMINAL, chat)
            except ChatStoreError as exc:
                if not unsaved:
                    console.print(f"note: {exc}", style="yellow", highlight=False)
                unsaved = True
                continue
            if first:
                console.print(
                    f"saved as chat {chat.id}: `assistant chat --resume {chat.id[:8]}` goes on with it",
                    style="dim",
                    highlight=False,
                )
            for title in removed:
                console.print(f"note: the oldest saved chat was removed (limit reached): {title}", style="yellow")
    finally:
        assistant.close()


def _list_chats(chats) -> None:
    if not chats:
        out.print("no saved chats yet: `assistant chat` starts one", highlight=False)
        return
    table = Table(show_header=True, title=f"{len(chats)} saved chat{'s' if len(chats) != 1 else ''}")
    for col in ("id", "updated (UTC)", "questions", "title"):
        table.add_column(col)
    for c in chats:
        table.add_row(c.id, c.updated[:16].replace("T", " "), str(c.questions), c.title)
    out.print(table)


def _replay(chat) -> None:
    """The saved chat's questions and answers, before the next question."""
    out.print(f"[bold]chat {chat.id}[/]: {len(chat.turns)} earlier question(s)", highlight=False)
    for turn in chat.turns:
        out.print(f"\nyou> {turn.question}", highlight=False, markup=False)
        text = turn.answer.text if turn.answer is not None else turn.text
        out.print(text, highlight=False, markup=False, soft_wrap=True)


def _chat_formatted(chat, fmt: OutputFormat, settings: Settings) -> str:
    from . import export
    from .chats import chat_json
    from .store import read_catalog

    if fmt is OutputFormat.json:
        return chat_json(chat) + "\n"
    # arXiv ids and full author lists from the catalog, read without opening the store or starting anything
    papers = {p.id: p for p in read_catalog(settings.data_dir / "papers.jsonl")}
    return export.chat_markdown(chat, papers) if fmt is OutputFormat.markdown else export.chat_bibtex(chat, papers)


@app.command()
def doctor(
    fix: Annotated[
        bool, typer.Option("--fix", help="Roll back an interrupted ingest and rebuild the keyword index and cache.")
    ] = False,
    llm: Annotated[
        bool, typer.Option("--llm/--no-llm", help="Also start the LLM and have it answer a test chat (default: on).")
    ] = True,
) -> None:
    """Check the store (Chroma, the keyword index and the paper cache agree, the vector index answers a test query)
    and the LLM (the llama.cpp build, a server that generates). Says what is wrong and the one command that fixes
    it (exit code 1 when something is)."""
    from .doctor import REPAIR, diagnose, llm_checks, model_checks, one_fix, repair

    settings = get_settings()
    _require_store(settings)
    with _faults(settings):
        checks = diagnose(settings)
        if fix and one_fix(checks) == REPAIR:
            note = repair(settings)
            if note:
                console.print(f"note: {note}", style="yellow", highlight=False, markup=False)
            console.print("repaired; checking again", style="dim")
            checks = diagnose(settings)
    checks += llm_checks(settings) if llm else model_checks(settings)  # the model file is hashed either way
    for check in checks:
        out.print(str(check), highlight=False, markup=False)
    needed = one_fix(checks)
    if all(c.ok for c in checks):
        out.print("the store is healthy" + (" and the LLM answers" if llm else ""), highlight=False)
        return
    if needed is None:
        out.print("to fix: do what the problem above says, then run `assistant doctor` again", highlight=False)
    else:
        out.print(f"to fix: run `{needed}`", highlight=False, markup=False)
    raise typer.Exit(1)


@app.command("eval")
def eval_(
    dataset: Annotated[Path, typer.Option("--dataset", help="Question set (JSONL), e.g. evals/datasets/dev.jsonl.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: a timestamped folder in evals/runs/).")
    ] = None,
    retrieval_only: Annotated[
        bool, typer.Option("--retrieval-only", help="Score retrieval only: no LLM, takes seconds.")
    ] = False,
    retriever: Annotated[
        str | None,
        typer.Option("--retriever", help="bm25, dense or hybrid (default: ASSISTANT_RETRIEVAL__MODE)."),
    ] = None,
    compare: Annotated[
        Path | None, typer.Option("--compare", help="An earlier run folder: show the deltas against it.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N questions.")] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Only the questions of this split (tune or holdout).")
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature", min=0.0, max=2.0, help="Sampling temperature of the answers (default 0: greedy)."
        ),
    ] = None,
) -> None:
    """Score the assistant on a question set: metrics.json, results.jsonl, report.md, report.png (evals/README.md)."""
    from assistant.evaluation.runner import EvalError, cli_main

    try:
        run = cli_main(
            dataset=dataset,
            out=out_dir,
            retrieval_only=retrieval_only,
            retriever=retriever,
            compare=compare,
            limit=limit,
            split=split,
            temperature=temperature,
            console=console,
            stdout=out,
        )
    except EvalError as exc:
        raise _fail(str(exc)) from None
    if run.interrupted:
        raise typer.Exit(130)


@app.command("tune")
def tune(
    dataset: Annotated[
        list[Path] | None,
        typer.Option(
            "--dataset",
            help="Labelled question sets (JSONL); their tune splits are fit, the rest scored. Default: every set in "
            "evals/datasets/ but holdout.jsonl.",
        ),
    ] = None,
    shapes: Annotated[
        Path | None,
        typer.Option("--shapes", help="The labelled question bank of the shape classifier (evals/shapes.jsonl)."),
    ] = None,
    synthetic: Annotated[
        int, typer.Option("--synthetic", min=0, help="Synthetic inverse-cloze questions per paper (0: none).")
    ] = 2,
) -> None:
    """Fit the answer-shape classifier and the relevance model on labelled and synthetic data, print their held-out
    accuracy and calibration, and write them to assistant/trained/ (the shape classifier first: the relevance
    pairs are planned with it)."""
    from rich.progress import Progress

    from .evaluation.runner import DATASETS_DIR
    from .services import open_index
    from .shape import SHAPES_FILE, train_shapes
    from .tune import train_relevance

    shapes = shapes or SHAPES_FILE
    settings = get_settings()
    sets = dataset or [p for p in sorted(DATASETS_DIR.glob("*.jsonl")) if p.name != "holdout.jsonl"]
    for p in [*sets, shapes]:
        if not p.is_file():
            raise _fail(f"no question set at {p}")
    _require_store(settings)
    _check_before_starting(settings)
    retriever = open_index(settings, read_only=True)
    try:
        shape = train_shapes(retriever.store.embedder, shapes, retriever.name_index)
        shape["model"].save(shape["path"])
        out.print_json(data={"shape_classifier": shape["meta"]})
        console.print(f"shape classifier: {shape['path']}", highlight=False)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("relevance pairs", total=None)
            result = train_relevance(
                retriever, sets, synthetic, progress=lambda i, n: bar.update(task, completed=i, total=n)
            )
    finally:
        retriever.close()
    meta = result["meta"]
    result["model"].save(result["path"])
    out.print_json(data={"relevance_model": {k: meta[k] for k in ("threshold", "pairs", "tune", "holdout", "weights")}})
    console.print(f"relevance model: {result['path']}", highlight=False)


@app.command("ui")
def ui(
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 exposes it to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 7860,
    share: Annotated[bool, typer.Option("--share", help="Also open a public gradio.live link (off by default).")] = (
        False
    ),
) -> None:
    """Serve the web app: cited chat with a sources panel, filters, corpus browser, uploads and evals.

    The page is up at once; the embedded model starts in the background.
    Set ASSISTANT_UI_USERNAME and ASSISTANT_UI_PASSWORD to require a login."""
    from .ui.backend import ui_login

    try:
        ui_login(get_settings())
    except ValueError as exc:
        raise _fail(str(exc)) from None
    from .ui import launch_app  # imports Gradio: after the quick checks

    console.print(
        f"serving on http://{host}:{port} (Ctrl-C stops); the model starts in the background", style="dim", markup=False
    )
    try:
        launch_app(get_settings(), host=host, port=port, share=share)
    except OSError as exc:
        raise _fail(f"cannot serve on {host}:{port}: {exc}") from None


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="CI-sized run: fewer questions, no 100k corpus.")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the flat JSON results here.")] = None,
) -> None:
    """Measure ingest, retrieval (seed/10k/100k papers), answer latency and memory against the raw engines."""
    from assistant.evaluation.bench import run_bench

    settings = get_settings()
    results = run_bench(
        settings, quick=quick, log=lambda m: console.print(f"… {m}", style="dim", highlight=False, markup=False)
    )
    table = Table(title="bench" + (" (quick)" if quick else ""), show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in results.items():
        table.add_row(Text(key), Text(str(value)))
    out.print(table)
    if out_file:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(results, indent=2) + "\n")
        console.print(f"wrote {out_file}", highlight=False, markup=False)


@app.command("settings")
def show_settings() -> None:
    """Print every setting, its environment variable and current value (secrets hidden)."""
    settings = get_settings()
    table = Table(show_header=True)
    for col in ("env var", "value", "description"):
        table.add_column(col, overflow="fold")
    for env, value, desc in _walk_settings(settings):
        table.add_row(env, Text(value), Text(desc))  # a value (a path, a URL) is text, never markup
    out.print(table)


def _walk_settings(model, prefix: str = "ASSISTANT_"):
    from pydantic import BaseModel, SecretStr

    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        env = f"{prefix}{name.upper()}"
        if isinstance(value, BaseModel):
            yield from _walk_settings(value, env + "__")
            continue
        shown = "**********" if isinstance(value, SecretStr) else ("" if value is None else str(value))
        yield env, shown, info.description or ""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
