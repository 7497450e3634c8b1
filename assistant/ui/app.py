"""The Gradio 6 app: streaming cited chat with a sources panel, filters, a corpus browser, uploads and evals.

``create_app(settings)`` builds the page around a ``Backend`` that opens the store and starts the LLM in the
background (tests pass an existing ``Assistant``); ``launch_app()`` serves it. Each browser tab keeps the chat it
shows in a ``gr.State``; generations go through one queue slot per model slot (one for the embedded llama.cpp
server), so other users wait with a visible queue position instead of failing.

Chats are saved in the data folder (`assistant.chats`) as each answer ends, per browser: the page keeps a random
browser id in the browser's localStorage (``gr.BrowserState``) and opens that browser's latest chat on load, so a
chat survives a reload and a restart of the app; with the login set, chats belong to the user instead. Every answer
and every chat downloads as Markdown or BibTeX (`assistant.export`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import gradio as gr
import pandas as pd

from .. import evaluation, export
from ..answer import Answer, Assistant, QuestionError, validate_question
from ..chats import (
    Chat,
    ChatStore,
    ChatStoreError,
    ChatTurn,
    browser_owner,
    new_browser_id,
    new_chat_id,
    now,
    user_owner,
    valid_browser_id,
)
from ..config import Settings, get_settings
from ..filters import Filters
from . import render
from .backend import Backend, UploadedFile, max_upload_bytes, ui_login
from .static import CSS, JS

log = logging.getLogger(__name__)

ANY = "any"
# outputs of on_load besides status, timer and the loaded flag: the filter controls and the corpus tab
FACET_OUTPUTS = 8  # facet_updates(): year from/to, category, author, first author, affiliation, corpus category/year
CORPUS_OUTPUTS = 4  # corpus_outputs(): table, count, the two plots

# Real questions about the seed corpus: factoid, comparisons, a filter, a refusal, and a follow-up to the first.
EXAMPLES: list[tuple[str, str]] = [
    ("How does DoViT reduce the cost of semantic segmentation, and what does it lose?", "DoViT: cost and accuracy"),
    ("How much faster is it?", "↳ follow-up: how much faster is it?"),
    ("Compare Gold-YOLO and DAMO-YOLO: how does each redesign the multi-scale fusion neck?", "Gold-YOLO vs DAMO-YOLO"),
    ("How do FLatten Transformer and SLAB differ in how they make attention cheaper?", "FLatten vs SLAB attention"),
    ("What AP and frame rate does Gold-YOLO-N reach on COCO, and on which GPU?", "Gold-YOLO-N: AP and FPS"),
    ("Which offline reinforcement learning papers has Yang Yue co-authored?", "Yang Yue's offline RL papers"),
    ("Which papers from 2023 propose early-exiting networks?", "2023 early-exit papers"),
    ("What mAP does YOLOv8 achieve on COCO?", "YOLOv8 (not in the corpus)"),
]


TurnKind = Literal["pending", "answer", "stopped", "notice"]
# the list of saved chats starts with this entry while the chat shown is not saved yet (no answer so far)
NEW_CHAT = ("New chat (saved once answered)", "new")


@dataclass
class Turn:
    """One question of a chat and what became of it."""

    question: str
    kind: TurnKind = "pending"
    text: str = ""  # streamed text (pending, stopped) or the notice
    status: str | None = "waiting for a free model slot…"
    answer: Answer | None = None

    def update(self, **fields) -> None:
        for name, value in fields.items():
            setattr(self, name, value)


@dataclass
class Session:
    """A browser tab's chat: its turns, which answer the sources panel shows, and where it is saved: ``owner`` (the
    browser or user it belongs to; None for API clients, whose chats are not saved) and ``chat_id`` (None until
    its first turn is saved)."""

    turns: list[Turn] = field(default_factory=list)
    shown: int | None = None
    owner: str | None = None
    chat_id: str | None = None
    created: str | None = None
    saved: str | None = None  # digest of the turns as last saved: an unchanged chat is not written again
    note: str = ""  # why the chat is not saved, or what saving removed; shown under the list of chats


def new_session(owner: str | None = None) -> Session:
    return Session(owner=owner)


def session_chat(session: Session) -> Chat:
    """The session's finished turns as a stored chat (a pending turn is saved once it ends)."""
    turns = []
    for turn in session.turns:
        if turn.kind == "answer" and turn.answer is not None:
            turns.append(ChatTurn(question=turn.question, kind="answer", answer=turn.answer))
        elif turn.kind in ("notice", "stopped"):
            turns.append(ChatTurn(question=turn.question, kind=turn.kind, text=turn.text))
    stamp = session.created or now()
    return Chat(id=session.chat_id or new_chat_id(), created=stamp, updated=stamp, turns=turns)


def reopen(session: Session, chat: Chat) -> Session:
    """Show a saved chat in the session: its turns as they were, the sources panel on its last answer."""
    session.turns = [
        Turn(turn.question, kind=turn.kind, text=turn.text, status=None, answer=turn.answer) for turn in chat.turns
    ]
    answers = [i for i, t in enumerate(session.turns) if t.kind == "answer"]
    session.shown = answers[-1] if answers else None
    session.chat_id, session.created, session.note = chat.id, chat.created, ""
    session.saved = _digest(session_chat(session))
    return session


def _digest(chat: Chat) -> str:
    return hashlib.sha256(b"".join(t.model_dump_json().encode() for t in chat.turns)).hexdigest()


def _pending_turn(question: str) -> Turn:
    return Turn(question)


# -- session -> chat -----------------------------------------------------------------------------------------
def chat_messages(session: Session) -> list[dict]:
    messages: list[dict] = []
    for i, turn in enumerate(session.turns):
        messages.append({"role": "user", "content": render.esc(turn.question)})
        kind = turn.kind
        if kind == "answer":
            content = render.answer_markdown(turn.answer, i)
        elif kind == "pending":
            content = render.streaming_markdown(turn.text, turn.status)
        elif kind == "stopped":
            partial = render.esc(turn.text)
            content = (partial + "\n\n" if partial else "") + '<div class="answer-meta status">■ stopped</div>'
        else:
            content = render.notice_markdown(turn.text)
        messages.append({"role": "assistant", "content": content})
    return messages


def pipeline_history(session: Session, upto: int | None = None) -> list[dict]:
    """The conversation the pipeline sees: questions and checked answers (notices and failures left out)."""
    history: list[dict] = []
    for turn in session.turns[:upto]:
        answer: Answer | None = turn.answer
        if turn.kind == "answer" and answer is not None and not answer.error:
            history += [{"role": "user", "content": turn.question}, answer.as_message()]
    return history


def answer_choices(session: Session) -> list[tuple[str, str]]:
    out = []
    for i, turn in enumerate(session.turns):
        if turn.kind == "answer":
            q = turn.question
            out.append((f"{i + 1}. {q[:70]}{'…' if len(q) > 70 else ''}", str(i)))
    return out


def parse_filters(
    year_from,
    year_to,
    category,
    author,
    date_from=None,
    date_to=None,
    first_author=None,
    affiliation=None,
    has_code=False,
) -> Filters | None:
    """Filters from the controls (several authors separated by ';'); ValueError with a readable message."""

    def one(value):
        """An API client may send a control's value as a list: [] is no filter (never the text "[]")."""
        if isinstance(value, (list, tuple)):
            if len(value) > 1:
                raise ValueError(f"give one value, not a list of {len(value)}")
            return value[0] if value else None
        return value

    def year(value) -> int | None:
        value = one(value)
        if value in (None, "", ANY):
            return None
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError(f"year {str(value)[:40]!r} is not a year") from None

    def text(value) -> str | None:
        value = one(value)
        return None if value in (None, "", ANY) else str(value).strip() or None

    def names(value) -> list[str]:
        """Authors as '; '-separated text, or as a list of names (an API client's multiselect)."""
        items = value if isinstance(value, (list, tuple)) else (text(value) or "").split(";")
        return [str(a).strip() for a in items if a is not None and str(a).strip()]

    f = Filters.from_options(
        year_from=year(year_from),
        year_to=year(year_to),
        date_from=text(date_from),
        date_to=text(date_to),
        category=text(category),
        authors=names(author),
        first_author=text(first_author),
        affiliation=text(affiliation),
        has_code=bool(has_code),
    )
    return None if f.is_empty() else f


class AppUI:
    """Handlers of the page, bound to one backend."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.settings = backend.settings
        self.chats = ChatStore.from_settings(backend.settings)
        # downloads are written here (the system temp folder, which Gradio serves from); removed with the app
        self._exports = tempfile.TemporaryDirectory(prefix="paper-assistant-exports-")

    # -- status ----------------------------------------------------------------------------------------------
    def status_html(self) -> str:
        b = self.backend
        d = b.describe()
        esc = render.esc
        parts = []
        if b.ready:
            server = getattr(b.assistant.llm, "server", None)
            if server is not None and not server.is_alive():
                parts.append('<span class="dot failed">●</span><b>LLM server down</b> — restarted on the next question')
            else:
                parts.append('<span class="dot ready">●</span><b>Ready</b>')
        elif b.store_error:
            parts.append(f'<span class="dot failed">●</span><b>Store unavailable</b>: {esc(b.store_error)}')
        elif b.llm_error:
            parts.append(
                f'<span class="dot failed">●</span><b>LLM unavailable</b>: {esc(b.llm_error.splitlines()[0])} — '
                "search, the corpus and uploads work; the next question retries"
            )
        else:
            parts.append(
                f'<span class="dot starting">●</span><b>Starting</b>: {esc(b.phase)} ({b.starting_for():.0f} s) — '
                "questions asked now are answered once the model is up"
            )
        title = (
            '<div id="app-title"><h1>Paper assistant</h1><span class="sub">ML paper abstracts, answered with checked '
            "citations</span></div>"
        )
        if b.store_ready and not b.papers():
            parts.append(
                '<span class="dot failed">●</span><b>The store is empty</b>: add papers in the <i>Add papers</i> tab '
                "or run <code>assistant ingest</code>"
            )
        for key in ("llm", "embedder", "store"):
            if key in d:
                full = d[key]
                short = render.model_label(full) if key == "llm" else render.shorten_paths(full)
                short = short.replace("local sentence-transformers model ", "").replace("Chroma folder ", "Chroma ")
                parts.append(
                    f'<span class="k">{"LLM" if key == "llm" else key}</span> '
                    f'<span title="{esc(full)}">{esc(short)}</span>'
                )
        return f'{title}<div id="status-line">{" · ".join(parts)}</div>'

    def facet_updates(self) -> tuple:
        facets = self.backend.facets()
        years = [ANY, *[str(y) for y in facets["years"]]]
        cats = [(ANY, ANY), *[(f"{c} · {n}", c) for c, n in facets["categories"]]]
        return (
            gr.update(choices=years),
            gr.update(choices=years),
            gr.update(choices=cats),
            gr.update(choices=facets["authors"]),
            gr.update(choices=facets["authors"]),
            gr.update(choices=facets["affiliations"]),
            gr.update(choices=cats),
            gr.update(choices=years),
        )

    def on_load(self, loaded: bool):
        """Status, and (once the store is open) the filter choices, the corpus table and the plots."""
        b = self.backend
        timer = gr.Timer(value=10 if b.ready else 1.5, active=True)
        if not b.store_ready or loaded:
            # as many skips as the outputs it leaves alone (a count written out by hand went stale once, and every
            # tick then failed with an error toast)
            return (self.status_html(), timer, loaded, *([gr.skip()] * (FACET_OUTPUTS + CORPUS_OUTPUTS)))
        return (self.status_html(), timer, True, *self.facet_updates(), *self.corpus_outputs("", ANY, ANY, False))

    # -- chat ------------------------------------------------------------------------------------------------
    def on_submit(self, question: str, session: Session):
        """Echo the question at once (the answer step may wait in the queue). Empty: nothing happens."""
        try:
            q = validate_question(question or "", self.settings.max_question_chars)
        except QuestionError as exc:
            if exc.reason == "empty":
                raise gr.Error("empty question", visible=False, print_exception=False) from None
            raise gr.Error(str(exc), title="Question not asked", print_exception=False) from None
        session.turns.append(_pending_turn(q))
        return chat_messages(session), session, ""

    def on_answer(
        self,
        session: Session,
        year_from,
        year_to,
        category,
        author,
        top_k,
        date_from=None,
        date_to=None,
        first_author=None,
        affiliation=None,
        has_code=False,
    ):
        """Stream the answer to the pending question: chat, session, sources, answer selector, answer JSON."""
        skip = gr.skip()
        turns = session.turns
        index = next((i for i in range(len(turns) - 1, -1, -1) if turns[i].kind == "pending"), None)
        if index is None:
            yield chat_messages(session), session, skip, skip, skip
            return
        turn = turns[index]

        def stream_out():
            return chat_messages(session), session, skip, skip, skip

        def finish_notice(message: str):
            turn.update(kind="notice", text=message, status=None)
            return self._with_sources(session)

        try:
            filters = parse_filters(
                year_from, year_to, category, author, date_from, date_to, first_author, affiliation, has_code
            )
        except ValueError as exc:
            yield finish_notice(f"Check the filters: {exc}.")
            return
        k = int(top_k) if top_k else None

        # wait for start-up (the page is served while the store loads and the model starts)
        deadline = time.monotonic() + self.settings.llm.startup_timeout_s + 120
        retried = False
        while not self.backend.ready:
            b = self.backend
            if b.store_error:
                yield finish_notice(b.unavailable_reason())
                return
            if b.llm_error:
                if not retried and b.retry_llm():
                    retried = True
                else:
                    yield finish_notice(b.unavailable_reason() + " Ask again to retry.")
                    return
            if time.monotonic() > deadline:
                yield finish_notice("The model is taking too long to start; see the server log.")
                return
            turn.status = f"waiting for the model to start: {b.phase} ({b.starting_for():.0f} s)"
            yield stream_out()
            b.wait(1.0)

        run = self.backend.answer(turn.question, pipeline_history(session, index), filters, k)
        finished = False
        answer: Answer | None = None
        last = 0.0
        phase, phase_started = "retrieving", time.monotonic()
        turn.status = phase
        try:
            yield stream_out()
            for item in run.events():
                now = time.monotonic()
                if item is None:
                    # a clock while the model reads the prompt; the yield also lets Stop close this generator
                    if now - last >= 1.0 and turn.kind == "pending" and not turn.text:
                        last = now
                        turn.status = f"{phase} ({now - phase_started:.0f} s)"
                        yield stream_out()
                    continue
                if item.kind == "status":
                    phase, phase_started = str(item.data), now
                    turn.status = phase
                elif item.kind == "evidence":
                    # the sources panel shows the selected evidence at once, while the model reads the prompt
                    papers = self.backend.retriever.papers if self.backend.store_ready else {}
                    panel = render.evidence_panel(item.data, turn.question, papers, index, question_no=index + 1)
                    yield chat_messages(session), session, panel, skip, skip
                    continue
                elif item.kind == "token":
                    turn.text = turn.text + str(item.data)
                    turn.status = None
                elif item.kind == "answer":
                    answer = item.data
                elif item.kind == "question_error":
                    turn.update(kind="notice", text=str(item.data), status=None)
                elif item.kind == "broken":
                    turn.update(
                        kind="notice",
                        text=f"The language model cannot answer: {item.data}. Search, the corpus and uploads work; "
                        "ask again once it is fixed.",
                        status=None,
                    )
                elif item.kind == "crash":
                    turn.update(
                        kind="notice",
                        text=f"Something went wrong while answering ({item.data}). The details are in the server "
                        "log; ask again.",
                        status=None,
                    )
                if item.kind != "token" or now - last >= 0.08:
                    last = now
                    if turn.kind == "pending":
                        yield stream_out()
            finished = True
        finally:
            if not finished:  # closed early: Stop, New chat, or the browser went away
                run.cancel()
                if turn.kind == "pending":
                    turn.update(kind="stopped", status=None)
        if answer is not None:
            turn.update(kind="answer", answer=answer, status=None)
            session.shown = index
            yield self._with_sources(session)
        else:
            if turn.kind == "pending":  # the stream ended without an answer (should not happen)
                turn.update(kind="notice", text="The answer stream ended without an answer; ask again.")
            yield self._with_sources(session)

    def _with_sources(self, session: Session):
        return chat_messages(session), session, *self.sources_outputs(session)

    def sources_outputs(self, session: Session) -> tuple:
        shown = session.shown
        turns = session.turns
        if shown is None or shown >= len(turns) or turns[shown].kind != "answer":
            choices = answer_choices(session)
            return render.EMPTY_SOURCES, gr.update(choices=choices, value=None, visible=bool(choices)), None
        answer: Answer = turns[shown].answer
        papers = self.backend.retriever.papers if self.backend.store_ready else {}
        html = render.sources_panel(answer, shown, papers, question_no=shown + 1)
        return (
            html,
            gr.update(choices=answer_choices(session), value=str(shown), visible=True),
            answer.model_dump(mode="json", exclude={"question"}),
        )

    def on_ask_api(
        self,
        question: str,
        year_from,
        year_to,
        category,
        author,
        top_k,
        date_from="",
        date_to="",
        first_author=None,
        affiliation=None,
        has_code=False,
        session: Session | None = None,
    ):
        """One call for API clients: add the question and stream its answer (same outputs as the chat). The extra
        filters default to none, so clients written for the first six inputs keep working."""
        session = session if session is not None else new_session()
        try:
            q = validate_question(question or "", self.settings.max_question_chars)
        except QuestionError as exc:
            if exc.reason == "empty":
                yield self._with_sources(session)
                return
            raise gr.Error(str(exc)) from None
        session.turns.append(_pending_turn(q))
        more = (date_from, date_to, first_author, affiliation, has_code)
        yield from self.on_answer(session, year_from, year_to, category, author, top_k, *more)

    def on_new_chat(self, session: Session):
        fresh = new_session(session.owner)  # the earlier chat stays saved, in the list of chats
        return [], fresh, render.EMPTY_SOURCES, gr.update(choices=[], value=None, visible=False), None, ""

    # -- saved chats and downloads ---------------------------------------------------------------------------
    def on_open_page(self, browser_id, session: Session, request: gr.Request):
        """A page load: whose chats these are (the logged-in user, else this browser's id, made on its first
        visit), and that owner's latest chat reopened. Outputs: browser id, the chat outputs, chats and downloads.

        The session is filled in place: a question asked before this ran (a fast typist, a slow load) is kept."""
        if not valid_browser_id(browser_id):  # first visit (or a value that is not ours): a new random id
            browser_id = new_browser_id()
        username = getattr(request, "username", None) if request is not None else None
        session.owner = user_owner(username) if username else browser_owner(browser_id)
        if not session.turns:
            try:
                latest = self.chats.list(session.owner)[:1]
                if latest:
                    reopen(session, self.chats.load(session.owner, latest[0].id))
            except ChatStoreError as exc:
                session.note = str(exc)
        return (browser_id, *self._with_sources(session), *self.chat_outputs(session))

    def on_persist(self, session: Session):
        """After a turn ends (or the chat shown changes): save the chat if it changed, then the list of chats and
        the downloads."""
        self._save(session)
        return self.chat_outputs(session)

    def _save(self, session: Session) -> None:
        if session.owner is None:
            return
        chat = session_chat(session)
        digest = _digest(chat)
        if not chat.turns or digest == session.saved:
            return
        try:
            removed = self.chats.save(session.owner, chat)
        except ChatStoreError as exc:
            session.note = str(exc)
            return
        session.chat_id, session.created, session.saved = chat.id, chat.created, digest
        session.note = ""
        if removed:
            session.note = f"Saved; the oldest chat was removed to stay within the limit: {'; '.join(removed)}."

    def on_pick_chat(self, session: Session, evt: gr.SelectData):
        return self.on_open_chat(evt.value, session)

    def on_chat_list_change(self, chat_id, session: Session):
        """The list's value changed: the app showing which chat is open (it names that chat, or "new"), or a pick
        with the keyboard. Only the latter opens a chat, and not while an answer is being written (Stop first)."""
        busy = any(t.kind == "pending" for t in session.turns)
        if busy or not chat_id or chat_id in (NEW_CHAT[1], session.chat_id):
            return (gr.skip(),) * 5
        return self.on_open_chat(chat_id, session)

    def on_open_chat(self, chat_id, session: Session):
        """Reopen a saved chat of this browser (or user) from the list."""
        if not chat_id or chat_id == NEW_CHAT[1] or session.owner is None or chat_id == session.chat_id:
            return self._with_sources(session)
        self._save(session)  # nothing of the chat being left is lost (a stopped turn, say)
        try:
            chat = self.chats.load(session.owner, str(chat_id))
        except ChatStoreError as exc:
            session.note = str(exc)
            return self._with_sources(session)
        return self._with_sources(reopen(new_session(session.owner), chat))

    def on_delete_chat(self, session: Session):
        """Delete the chat shown (its file too) and start a new one."""
        note = ""
        if session.owner is not None and session.chat_id is not None:
            try:
                self.chats.delete(session.owner, session.chat_id)
            except ChatStoreError as exc:
                note = str(exc)
        fresh = new_session(session.owner)
        fresh.note = note
        return self._with_sources(fresh)

    def chat_outputs(self, session: Session) -> tuple:
        """The list of chats (the one shown selected), the note under it, Delete chat, and the four downloads."""
        choices: list[tuple[str, str]] = []
        if session.owner is not None:
            try:
                choices = [(c.label(), c.id) for c in self.chats.list(session.owner)]
            except ChatStoreError as exc:
                session.note = session.note or str(exc)
        if not any(v == session.chat_id for _, v in choices):  # a chat not saved yet heads the list, selected
            label, value = NEW_CHAT
            choices.insert(0, (f"{label} · {len(choices)} saved" if choices else label, value))
        shown = session.chat_id if any(v == session.chat_id for _, v in choices) else NEW_CHAT[1]
        chats = gr.update(choices=choices, value=shown)
        note = f"⚠ {render.esc(session.note)}" if session.note else ""
        deletable = gr.update(interactive=session.chat_id is not None and shown == session.chat_id)
        return (chats, note, deletable, *self.downloads(session))

    def downloads(self, session: Session) -> tuple:
        """Answer as Markdown, answer as BibTeX, chat as Markdown, chat as BibTeX: files, or disabled buttons."""
        papers = self.backend.retriever.papers if self.backend.store_ready else {}
        turns = session.turns
        shown = session.shown
        if shown is None or shown >= len(turns) or turns[shown].kind != "answer":
            shown = next((i for i in range(len(turns) - 1, -1, -1) if turns[i].kind == "answer"), None)
        files: list[str | None] = [None, None]
        if shown is not None:
            answer = turns[shown].answer
            stem = f"answer-{shown + 1}-{export.file_stem(answer.question)}"
            files = [
                self._export_file(f"{stem}.md", export.answer_markdown(answer, papers)),
                self._export_file(f"{stem}.bib", export.answer_bibtex(answer, papers)),
            ]
        chat = session_chat(session)
        if chat.turns:
            stem = f"chat-{export.file_stem(chat.turns[0].question)}"
            files += [
                self._export_file(f"{stem}.md", export.chat_markdown(chat, papers)),
                self._export_file(f"{stem}.bib", export.chat_bibtex(chat, papers)),
            ]
        else:
            files += [None, None]
        return tuple(gr.update(value=f, interactive=f is not None) for f in files)

    def _export_file(self, name: str, text: str) -> str:
        """The text as a file to download, named ``name``: one folder per content, so that tabs never overwrite each
        other's file and an unchanged export is not written again."""
        data = text.encode("utf-8")
        folder = Path(self._exports.name) / hashlib.sha256(data).hexdigest()[:24]
        path = folder / name
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}.tmp"
            tmp.write_bytes(data)
            tmp.replace(path)
        return str(path)

    def on_stop(self, session: Session):
        for turn in session.turns:
            if turn.kind == "pending":
                turn.update(kind="stopped", status=None)
        return chat_messages(session), session

    def on_retry(self, session: Session):
        """Ask the last question again (after an error, or for another sample)."""
        turns = session.turns
        if not turns or turns[-1].kind == "pending":
            raise gr.Error("nothing to retry", visible=False, print_exception=False)
        question = turns[-1].question
        turns[-1] = _pending_turn(question)
        if session.shown == len(turns) - 1:
            session.shown = None
        return chat_messages(session), session

    def on_show_answer(self, which: str, session: Session):
        try:
            index = int(str(which).strip())
        except (TypeError, ValueError):
            return gr.skip(), gr.skip(), gr.skip(), session
        turns = session.turns
        if 0 <= index < len(turns) and turns[index].kind == "answer":
            session.shown = index
        return (*self.sources_outputs(session), session)

    # -- corpus ----------------------------------------------------------------------------------------------
    def corpus_outputs(self, search: str, category, year, code_only: bool) -> tuple:
        """Table, count line and the two plots."""
        papers = self.backend.papers()
        cat = None if category in (None, "", ANY) else str(category)
        try:
            yr = None if year in (None, "", ANY) else int(year)
        except ValueError:
            yr = None
        rows = self.backend.search_papers(search or "", cat, yr, bool(code_only))
        table = pd.DataFrame([render.paper_row(p) for p in rows], columns=render.PAPER_COLUMNS)
        count = f"{len(rows)} of {len(papers)} papers"
        cats = pd.Series([p.category for p in papers if p.category], dtype="object").value_counts()
        by_cat = pd.DataFrame({"category": cats.index.astype(str), "papers": cats.values})
        years = pd.Series([str(p.year) for p in papers if p.year], dtype="object").value_counts()
        by_year = pd.DataFrame({"year": years.index.astype(str), "papers": years.values}).sort_values("year")
        no_cat = sum(1 for p in papers if not p.category)
        no_year = sum(1 for p in papers if not p.year)
        return (
            table,
            count,
            gr.BarPlot(by_cat, title=f"Papers per category ({no_cat} listed without one)"),
            gr.BarPlot(by_year, title=f"Papers per year ({no_year} without a year)"),
        )

    def on_corpus_filter(self, search: str, category, year, code_only: bool):
        table, count, _, _ = self.corpus_outputs(search, category, year, code_only)
        return table, count

    def on_paper_select(self, evt: gr.SelectData):
        row = evt.row_value or []
        title = row[0] if row else None
        paper = next((p for p in self.backend.papers() if p.title == title), None)
        return render.paper_detail(paper), (paper.id if paper else None), gr.update(interactive=paper is not None)

    def on_ask_about(self, paper_id: str | None):
        paper = self.backend.paper(paper_id) if paper_id else None
        if paper is None:
            return gr.skip(), gr.skip()
        question = f"What does “{paper.title}” propose, and what results does it report?"
        return question, gr.Tabs(selected="chat")

    # -- uploads ---------------------------------------------------------------------------------------------
    def on_upload(self, files: list[str] | None, pasted: str, dry_run: bool, progress=gr.Progress()):
        skip = gr.skip()
        no_updates = (skip,) * 13  # corpus table, count, 2 plots; 8 filter choices; status
        uploads: list[UploadedFile] = []
        limit = max_upload_bytes(self.backend.settings)
        for path in files or []:
            p = Path(path)
            with p.open("rb") as fh:  # read as bytes only; at most one byte over the limit
                uploads.append(UploadedFile(p.name, fh.read(limit + 1)))
        if pasted and pasted.strip():
            uploads.append(UploadedFile("pasted text", pasted.encode("utf-8")))
        if not uploads:
            return ("Choose a file or paste records first.", None, *no_updates)
        if not self.backend.store_ready and not self.backend.wait(60, for_store_only=True):
            return (f"The store is not available: {self.backend.unavailable_reason()}", None, *no_updates)

        def report_progress(fraction: float, message: str) -> None:
            progress(fraction, desc=message)

        progress(0, desc="parsing")
        report = self.backend.add_papers(uploads, dry_run=bool(dry_run), progress=report_progress)
        rows = [[p.title, "new", p.year or "", p.category or ""] for p in report.added]
        rows += [[p.title, "merged into a stored paper", p.year or "", p.category or ""] for p in report.merged]
        rows += [[p.title, "already stored", p.year or "", p.category or ""] for p in report.unchanged]
        table = pd.DataFrame(rows, columns=["Title", "Status", "Year", "Category"]) if rows else None
        md = render.upload_report_markdown(report)
        if not report.stored:
            return (md, table, *no_updates)
        return (
            md,
            table,
            *self.corpus_outputs("", ANY, ANY, False),
            *self.facet_updates(),
            self.status_html(),
        )

    # -- evals -----------------------------------------------------------------------------------------------
    def eval_datasets(self) -> list[tuple[str, str]]:
        return [(p.name, str(p)) for p in evaluation.list_datasets()]

    def on_eval(self, dataset: str | None, retrieval_only: bool, limit, progress=gr.Progress()):
        allowed = dict((v, k) for k, v in self.eval_datasets())
        if not dataset or dataset not in allowed:
            return ("Pick a dataset from `evals/datasets/`.", None, None, "")
        if retrieval_only:
            ok = self.backend.store_ready or self.backend.wait(120, for_store_only=True)
        else:
            ok = self.backend.ready or self.backend.wait(self.settings.llm.startup_timeout_s + 60)
        if not ok:
            return (self.backend.unavailable_reason(), None, None, "")
        n = int(limit) if limit else None

        def callback(done: int, total: int, message: str = "") -> None:
            progress((done, total) if total else 0, desc=message or f"{done}/{total}")

        progress(0, desc="starting")
        try:
            run = self.backend.run_eval(Path(dataset), retrieval_only=bool(retrieval_only), limit=n, progress=callback)
        except Exception as exc:
            log.exception("eval run failed")
            return (f"The eval run failed: {type(exc).__name__}: {render.esc(exc)}", None, None, "")
        return eval_outputs(run, allowed[dataset], bool(retrieval_only))


def _read_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Path) or (isinstance(value, str) and len(value) < 1000 and value.endswith(".md")):
        try:
            return Path(value).read_text(encoding="utf-8")
        except OSError:
            return ""
    return str(value)


def eval_outputs(run: evaluation.EvalRun, dataset_name: str, retrieval_only: bool) -> tuple:
    """Summary, metrics table (with the previous run and the difference), plot, report text."""
    metrics = run.metrics
    deltas = run.deltas or {}
    overall: dict = deltas.get("overall", {})
    support: dict = metrics.get("support", {}) if isinstance(metrics.get("support"), dict) else {}
    rows = []
    for name, value in metrics.items():
        if isinstance(value, dict | list):
            continue  # by_type, support, extra, run, compared_with: in the report
        d = overall.get(name) or {}
        delta = d.get("delta")
        better = d.get("better")
        arrow = "" if delta in (None, 0) or better is None else (" ▲" if better else " ▼")
        rows.append(
            [
                name,
                _fmt(value),
                _fmt(d.get("previous")),
                ("" if delta is None else f"{delta:+.3f}" if isinstance(delta, float) else str(delta)) + arrow,
                support.get(name, ""),
            ]
        )
    table = pd.DataFrame(rows, columns=["metric", "this run", "previous run", "difference", "questions"])
    image = None
    png = run.report_png
    if png.is_file():
        from PIL import Image

        with Image.open(png) as im:
            image = im.copy()
    mode = "retrieval only" if retrieval_only else "full answers"
    summary = f"**{dataset_name}** · {mode} · saved to `{run.out_dir}`"
    if overall:
        summary += f" · compared with `{Path(str(deltas.get('run', ''))).name}`"
        if deltas.get("same_dataset") is False:
            summary += " (the dataset changed since: compare with care)"
    else:
        summary += " · no previous run of this kind to compare with"
    if run.interrupted:
        summary += " · **interrupted**"
    return summary, table, image, _read_text(run.report_md)


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.3f}"
    return str(value)


# -- the page ------------------------------------------------------------------------------------------------
def create_app(
    settings: Settings | None = None, assistant: Assistant | None = None, *, start: bool = True
) -> tuple[gr.Blocks, Backend]:
    """The Blocks app and its backend. With ``assistant``, that one is used (and not closed by the app)."""
    settings = settings or (assistant.settings if assistant is not None else get_settings())
    backend = Backend(settings, assistant)
    if start:
        backend.start()
    ui = AppUI(backend)
    slots = backend.llm_slots()

    # delete_cache: uploaded files (and other temporary files) older than a day are removed every hour
    with gr.Blocks(
        title="Paper assistant", analytics_enabled=False, fill_width=True, delete_cache=(3600, 86400)
    ) as demo:
        session = gr.State(new_session())
        # this browser's id, kept in its localStorage. BrowserState encrypts the value with a secret it sends to the
        # page, so the secret protects nothing; a fixed one (instead of Gradio's random one per start) lets a
        # restarted app read the ids browsers kept, which is what makes chats survive a restart
        browser = gr.BrowserState(None, storage_key="paper-assistant-browser", secret="paper-assistant-browser-id")
        facets_loaded = gr.State(False)
        selected_paper = gr.State(None)
        timer = gr.Timer(1.5)
        status = gr.HTML(ui.status_html(), elem_id="status")

        with gr.Tabs() as tabs:
            with gr.Tab("Chat", id="chat"):
                with gr.Row(elem_id="filters", equal_height=True):
                    year_from = gr.Dropdown([ANY], value=ANY, label="Year from", allow_custom_value=True, scale=1)
                    year_to = gr.Dropdown([ANY], value=ANY, label="Year to", allow_custom_value=True, scale=1)
                    category = gr.Dropdown([ANY], value=ANY, label="Category", allow_custom_value=True, scale=1)
                    author = gr.Dropdown(
                        [],
                        value=None,
                        label="Author (substring; several: A; B)",
                        allow_custom_value=True,
                        filterable=True,
                        scale=2,
                    )
                    top_k = gr.Slider(
                        1, 20, value=settings.retrieval.top_k, step=1, label="Papers for the model (top-k)", scale=2
                    )
                with gr.Accordion("More filters", open=False, elem_id="more-filters"), gr.Row(equal_height=True):
                    date_from = gr.Textbox("", label="Date from (2024-03, March 2024)", scale=1)
                    date_to = gr.Textbox("", label="Date to", scale=1)
                    first_author = gr.Dropdown(
                        [], value=None, label="First author", allow_custom_value=True, filterable=True, scale=2
                    )
                    affiliation = gr.Dropdown(
                        [], value=None, label="Affiliation", allow_custom_value=True, filterable=True, scale=1
                    )
                    has_code = gr.Checkbox(False, label="Has code", scale=1)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=6, min_width=440):
                        with gr.Row(equal_height=True, elem_id="chats-row"):
                            chat_list = gr.Dropdown(
                                [NEW_CHAT],
                                value=NEW_CHAT[1],
                                label="Saved chats",
                                show_label=False,
                                container=False,
                                scale=6,
                                elem_id="chat-list",
                            )
                            small = dict(size="sm", scale=0, interactive=False)
                            delete_chat = gr.Button("Delete chat", min_width=100, elem_id="delete-chat", **small)
                            chat_md = gr.DownloadButton("Chat ⬇ Markdown", min_width=140, elem_id="chat-md", **small)
                            chat_bib = gr.DownloadButton("Chat ⬇ BibTeX", min_width=120, elem_id="chat-bib", **small)
                        chats_note = gr.Markdown("", elem_id="chats-note")
                        chatbot = gr.Chatbot(
                            elem_id="chat",
                            label="Chat",
                            show_label=False,
                            height="calc(100vh - 460px)",
                            min_height=360,
                            layout="bubble",
                            feedback_options=None,
                            buttons=[],
                            placeholder=(
                                "**Ask about the papers in the corpus.** Answers cite their sources as numbered "
                                "chips; click one to see the paper and the sentence that supports it."
                            ),
                            latex_delimiters=[],
                        )
                        with gr.Row(equal_height=True):
                            question = gr.Textbox(
                                placeholder="Ask about the papers…  (Enter sends, Shift+Enter for a new line)",
                                show_label=False,
                                lines=1,
                                max_lines=6,
                                scale=8,
                                elem_id="question",
                                container=False,
                            )
                            send = gr.Button("Send", variant="primary", scale=0, min_width=84, elem_id="send")
                            stop = gr.Button("Stop", variant="stop", scale=0, min_width=72, elem_id="stop")
                            new_chat = gr.Button("New chat", scale=0, min_width=116, elem_id="new-chat")
                        gr.Examples(
                            examples=[[q] for q, _ in EXAMPLES],
                            example_labels=[label for _, label in EXAMPLES],
                            inputs=[question],
                            label="Examples: click one to fill in the question, then Send",
                            examples_per_page=8,
                        )
                    with gr.Column(scale=5, min_width=380):
                        which = gr.Dropdown(
                            [],
                            value=None,
                            label="Sources of answer",
                            show_label=False,
                            container=False,
                            allow_custom_value=True,
                            elem_id="which",
                            visible=False,
                        )
                        with gr.Row(equal_height=True, elem_id="answer-downloads"):
                            answer_md = gr.DownloadButton(
                                "Answer ⬇ Markdown", interactive=False, size="sm", elem_id="answer-md"
                            )
                            answer_bib = gr.DownloadButton(
                                "Answer ⬇ BibTeX", interactive=False, size="sm", elem_id="answer-bib"
                            )
                        sources = gr.HTML(render.EMPTY_SOURCES, elem_id="sources")
                        with gr.Accordion("Answer details (JSON: contexts, scores, timings, repairs)", open=False):
                            answer_json = gr.JSON(label="answer", show_label=False)
                        # the citation-chip script writes an answer number here and clicks the button
                        cite_target = gr.Textbox(visible="hidden", elem_id="cite-target")
                        cite_go = gr.Button(visible="hidden", elem_id="cite-go")

            with gr.Tab("Corpus", id="corpus"):
                with gr.Row(equal_height=True):
                    corpus_search = gr.Textbox(
                        label="Search titles, authors, affiliations and abstracts (all words)",
                        scale=4,
                        elem_id="corpus-tab-search",
                    )
                    corpus_cat = gr.Dropdown([ANY], value=ANY, label="Category", allow_custom_value=True, scale=1)
                    corpus_year = gr.Dropdown([ANY], value=ANY, label="Year", allow_custom_value=True, scale=1)
                    corpus_code = gr.Checkbox(label="with code only", scale=1)
                corpus_count = gr.Markdown("", elem_id="corpus-count")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        corpus_table = gr.Dataframe(
                            headers=render.PAPER_COLUMNS,
                            interactive=False,
                            wrap=True,
                            max_height=620,
                            column_widths=["46%", "26%", "8%", "12%", "8%"],
                            elem_id="corpus-table",
                        )
                    with gr.Column(scale=2):
                        paper_view = gr.HTML(render.paper_detail(None), elem_id="paper-detail")
                        ask_about = gr.Button("Ask about this paper", interactive=False)
                with gr.Row():
                    cat_plot = gr.BarPlot(
                        x="category",
                        y="papers",
                        title="Papers per category",
                        sort="-y",
                        height=260,
                        x_title="",
                        elem_id="cat-plot",
                    )
                    year_plot = gr.BarPlot(
                        x="year", y="papers", title="Papers per year", sort="x", height=260, elem_id="year-plot"
                    )

            with gr.Tab("Add papers", id="add"):
                gr.Markdown(
                    "Upload files in any supported layout — the five seed page layouts, arXiv metadata JSONL or a "
                    "JSON list of papers. The layout is recognised from the content, never the file name. Files are "
                    f"only read as text (nothing is executed or unpickled); at most "
                    f"{backend.settings.ui_max_upload_mb:g} MB per file. Papers already stored are merged, not "
                    "duplicated, and new papers are searchable as soon as this finishes."
                )
                with gr.Row(equal_height=False):
                    with gr.Column():
                        upload_files = gr.File(label="Files", file_count="multiple", type="filepath")
                        pasted = gr.Textbox(label="…or paste records", lines=6, max_lines=16)
                        with gr.Row():
                            dry_run = gr.Checkbox(label="dry run: parse and report only, store nothing")
                            add_btn = gr.Button("Parse and add", variant="primary")
                    with gr.Column():
                        upload_report = gr.Markdown("", elem_id="upload-report")
                        upload_table = gr.Dataframe(
                            headers=["Title", "Status", "Year", "Category"],
                            interactive=False,
                            wrap=True,
                            max_height=420,
                            column_widths=["55%", "25%", "10%", "10%"],
                        )

            with gr.Tab("Evals", id="evals"):
                datasets = ui.eval_datasets()
                gr.Markdown(
                    "Run an evaluation dataset from `evals/datasets/` against this app's pipeline. *Retrieval only* "
                    "scores the retriever in seconds; a full run asks the model every question (minutes; chat answers "
                    "are slower meanwhile). Results are saved under `evals/runs/` and compared with the previous run."
                )
                with gr.Row(equal_height=True):
                    eval_dataset = gr.Dropdown(
                        datasets,
                        value=datasets[0][1] if datasets else None,
                        label="Dataset",
                        scale=3,
                        interactive=bool(datasets),
                    )
                    eval_retrieval = gr.Checkbox(
                        label="retrieval only", value=True, scale=1, interactive=bool(datasets)
                    )
                    eval_limit = gr.Number(
                        label="Questions (0 = all)",
                        value=0,
                        precision=0,
                        minimum=0,
                        scale=1,
                        interactive=bool(datasets),
                    )
                    eval_btn = gr.Button("Run", variant="primary", scale=1, interactive=bool(datasets))
                eval_summary = gr.Markdown("")
                with gr.Row(equal_height=False):
                    eval_table = gr.Dataframe(
                        headers=["metric", "this run", "previous run", "difference", "questions"],
                        interactive=False,
                        scale=2,
                    )
                    eval_plot = gr.Image(label="report", type="pil", interactive=False, scale=3)
                with gr.Accordion("Report", open=False):
                    eval_report = gr.Markdown("")

        # -- wiring ------------------------------------------------------------------------------------------
        facet_outputs = [year_from, year_to, category, author, first_author, affiliation, corpus_cat, corpus_year]
        corpus_outputs = [corpus_table, corpus_count, cat_plot, year_plot]
        assert (len(facet_outputs), len(corpus_outputs)) == (FACET_OUTPUTS, CORPUS_OUTPUTS)
        load_outputs = [status, timer, facets_loaded, *facet_outputs, *corpus_outputs]
        demo.load(ui.on_load, [facets_loaded], load_outputs, api_visibility="private", show_progress="hidden")
        timer.tick(
            ui.on_load,
            [facets_loaded],
            load_outputs,
            api_visibility="private",
            show_progress="hidden",
            concurrency_limit=None,
        )

        filters_in = [
            year_from,
            year_to,
            category,
            author,
            top_k,
            date_from,
            date_to,
            first_author,
            affiliation,
            has_code,
        ]
        answer_out = [chatbot, session, sources, which, answer_json]
        answer_kw = dict(concurrency_limit=slots, concurrency_id="llm", show_progress_on=[chatbot])
        # after every change of the chat shown: save it, refresh the list of chats and the downloads
        chats_out = [chat_list, chats_note, delete_chat, answer_md, answer_bib, chat_md, chat_bib]
        persist = dict(fn=ui.on_persist, inputs=[session], outputs=chats_out, api_visibility="private")
        persist_kw = dict(show_progress="hidden", concurrency_limit=None)
        demo.load(
            ui.on_open_page,
            [browser, session],
            [browser, *answer_out, *chats_out],
            api_visibility="private",
            show_progress="hidden",
            concurrency_limit=None,
        )
        submit_events = []
        for trigger in (question.submit, send.click):
            ev = trigger(
                ui.on_submit, [question, session], [chatbot, session, question], queue=False, api_visibility="private"
            ).success(ui.on_answer, [session, *filters_in], answer_out, api_visibility="private", **answer_kw)
            ev.then(**persist, **persist_kw)
            submit_events.append(ev)
        ask_event = gr.Button(visible=False).click(
            ui.on_ask_api,
            [question, *filters_in, session],
            answer_out,
            api_name="ask",
            api_description="Ask a question (with optional filters and top-k); streams the chat, the sources "
            "panel HTML and the final answer as JSON. The conversation is kept per client session.",
            **answer_kw,
        )
        retry_event = chatbot.retry(ui.on_retry, [session], [chatbot, session], api_visibility="private").success(
            ui.on_answer, [session, *filters_in], answer_out, api_visibility="private", **answer_kw
        )
        retry_event.then(**persist, **persist_kw)
        running = [*submit_events, ask_event, retry_event]
        stop.click(
            ui.on_stop, [session], [chatbot, session], cancels=running, api_visibility="private", queue=False
        ).then(**persist, **persist_kw)
        new_chat_out = [chatbot, session, sources, which, answer_json, question]
        new_chat.click(ui.on_new_chat, [session], new_chat_out, cancels=running, api_name="new_chat", queue=False).then(
            **persist, **persist_kw
        )
        chatbot.clear(ui.on_new_chat, [session], new_chat_out, cancels=running, api_visibility="private").then(
            **persist, **persist_kw
        )
        # A chat is opened on .select (a pick with the mouse; it stops an answer being written), and on .change
        # for a pick with the keyboard, which selects nothing. Never on .input: the dropdown fires that on every
        # blur as well, and a blur just before New chat reopened the chat being left.
        chat_list.select(
            ui.on_pick_chat, [session], answer_out, cancels=running, api_visibility="private", queue=False
        ).then(**persist, **persist_kw)
        chat_list.change(
            ui.on_chat_list_change, [chat_list, session], answer_out, api_visibility="private", queue=False
        ).then(**persist, **persist_kw)
        delete_chat.click(
            ui.on_delete_chat, [session], answer_out, cancels=running, api_visibility="private", queue=False
        ).then(**persist, **persist_kw)

        show_out = [sources, which, answer_json, session]
        which.input(ui.on_show_answer, [which, session], show_out, api_visibility="private", queue=False).then(
            **persist, **persist_kw
        )
        cite_go.click(ui.on_show_answer, [cite_target, session], show_out, api_visibility="private", queue=False).then(
            **persist, **persist_kw
        )

        corpus_in = [corpus_search, corpus_cat, corpus_year, corpus_code]
        for trigger in (corpus_search.submit, corpus_search.change, corpus_cat.change, corpus_year.change):
            trigger(
                ui.on_corpus_filter,
                corpus_in,
                [corpus_table, corpus_count],
                api_visibility="private",
                show_progress="hidden",
                trigger_mode="always_last",
                concurrency_limit=None,
            )
        corpus_code.change(
            ui.on_corpus_filter, corpus_in, [corpus_table, corpus_count], api_name="papers", concurrency_limit=None
        )
        corpus_table.select(
            ui.on_paper_select, None, [paper_view, selected_paper, ask_about], api_visibility="private", queue=False
        )
        ask_about.click(ui.on_ask_about, [selected_paper], [question, tabs], api_visibility="private", queue=False)

        add_btn.click(
            ui.on_upload,
            [upload_files, pasted, dry_run],
            [upload_report, upload_table, *corpus_outputs, *facet_outputs, status],
            api_name="add_papers",
            concurrency_limit=1,
            concurrency_id="ingest",
        )
        eval_btn.click(
            ui.on_eval,
            [eval_dataset, eval_retrieval, eval_limit],
            [eval_summary, eval_table, eval_plot, eval_report],
            api_name="run_eval",
            concurrency_limit=1,
            concurrency_id="evals",
        )

    demo.queue(default_concurrency_limit=slots)
    return demo, backend


# -- serving -------------------------------------------------------------------------------------------------
THEME = gr.themes.Soft(
    primary_hue="blue",
    neutral_hue="slate",
    font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def launch_kwargs(host: str, port: int, share: bool, auth, settings: Settings) -> dict:
    return dict(
        server_name=host,
        server_port=port,
        share=share,
        auth=auth,
        auth_message="Paper assistant: sign in with the username and password set in ASSISTANT_UI_USERNAME/PASSWORD.",
        max_file_size=max_upload_bytes(settings),
        footer_links=["api", "settings"],
        run_history=False,
        enable_monitoring=False,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        show_error=True,
        theme=THEME,
        css=CSS,
        js=JS,
    )


def launch_app(
    settings: Settings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    assistant: Assistant | None = None,
    block: bool = True,
):
    """Serve the app; with ``block`` (the CLI) until Ctrl-C, then stop the model and release the store."""
    settings = settings or (assistant.settings if assistant is not None else get_settings())
    auth = ui_login(settings)
    if not _is_loopback(host) and auth is None:
        log.warning("serving on %s without a password: anyone who can reach it can use it", host)
    demo, backend = create_app(settings, assistant)
    try:
        demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(host, port, share, auth, settings))
    except BaseException:
        backend.close()
        raise
    if not block:
        return demo, backend
    try:
        demo.block_thread()
    finally:
        demo.close()
        backend.close()
    return demo, backend
