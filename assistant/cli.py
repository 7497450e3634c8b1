"""`assistant`: ingest papers, list them, ask cited questions, chat, serve the UI.

Settings come from the environment (ASSISTANT_*, OPENAI_BASE_URL, OPENAI_API_KEY);
see `assistant settings` for every field and its current value.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .config import Settings, get_settings

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console(stderr=True, soft_wrap=True)  # messages keep file paths on one line
out = Console()


class UserError(Exception):
    """Raised for problems the user can fix; printed as one line, no traceback."""


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _open_store(settings: Settings):
    from .store import PaperStore, StoreError

    store = PaperStore(settings)
    try:
        store.open()
    except StoreError as exc:
        raise _fail(str(exc)) from None
    return store


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    settings = get_settings()
    logging.basicConfig(
        level=logging.DEBUG if verbose else getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Third-party chatter (HTTP request lines, telemetry notices) is noise at INFO.
    for noisy in ("httpx", "chromadb", "sentence_transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def ingest(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files or folders (seed layouts, arXiv JSONL). Default: the seeds.")
    ] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Drop the store and start over.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Parse paper files, embed them and store them in Chroma. Re-running adds nothing new."""
    from .corpus import load_corpus

    settings = get_settings()
    targets = paths or [settings.seeds_dir]
    missing = [str(p) for p in targets if not p.exists()]
    if missing:
        raise _fail(f"no such file or folder: {', '.join(missing)}")
    corpus = load_corpus(targets)
    for issue in corpus.issues:
        where = f"{issue.file}:{issue.line}" if issue.line else issue.file
        colour = "red" if issue.level == "error" else "yellow"
        console.print(f"[{colour}]{issue.level}[/] {where}: {issue.message}", highlight=False)
    store = _open_store(settings)
    console.print(f"store: {store.describe()}\nembedder: {store.embedder.describe()}", highlight=False)
    try:
        if rebuild:
            store.rebuild()
        report = store.ingest(corpus.papers, progress=not quiet)
    finally:
        store.close()
    skipped = sum(1 for i in corpus.issues if i.level == "error") + len(corpus.unmatched_abstracts)
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
    if any(i.level == "error" for i in corpus.issues):
        raise typer.Exit(2)


@app.command()
def papers(
    year: Annotated[int | None, typer.Option(help="Only papers from this year.")] = None,
    year_from: Annotated[int | None, typer.Option("--year-from", help="Earliest year (inclusive).")] = None,
    year_to: Annotated[int | None, typer.Option("--year-to", help="Latest year (inclusive).")] = None,
    category: Annotated[str | None, typer.Option(help="Category code, e.g. CV, LG, CL.")] = None,
    author: Annotated[str | None, typer.Option(help="Author name substring (case-insensitive).")] = None,
    search: Annotated[str | None, typer.Option(help="Substring of the title.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many.")] = None,
) -> None:
    """List and filter the stored papers."""
    from .filters import Filters

    settings = get_settings()
    filters = Filters(
        year_from=year if year is not None else year_from,
        year_to=year if year is not None else year_to,
        category=category,
        author=author,
    )
    try:
        filters.validate()
    except ValueError as exc:
        raise _fail(str(exc)) from None
    store = _open_store(settings)
    try:
        rows = [p for p in store.papers() if filters.matches(p)]
    finally:
        store.close()
    if search:
        rows = [p for p in rows if search.casefold() in p.title.casefold()]
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
        authors = ", ".join(p.authors[:3]) + (" et al." if p.authors_truncated or len(p.authors) > 3 else "")
        table.add_row(str(p.year or "?"), p.category or "", p.title, authors)
    out.print(table)


@app.command("settings")
def show_settings() -> None:
    """Print every setting, its environment variable and current value (secrets hidden)."""
    settings = get_settings()
    table = Table(show_header=True)
    for col in ("env var", "value", "description"):
        table.add_column(col, overflow="fold")
    for env, value, desc in _walk_settings(settings):
        table.add_row(env, value, desc)
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
