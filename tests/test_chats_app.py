"""Saved chats and exports where people use them: the real `assistant` CLI (typer's CliRunner) and the web app's
handlers, on a real store of 16 seed papers with a scripted model (tests/fakes.py). The browser itself (reload,
restart, two browsers) is driven in test_ui_browser.py with the real model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import gradio as gr
import pytest
from fakes import FakeLLM
from procs import build_store
from test_export import markdown_references, markers, parse_bibtex
from typer.testing import CliRunner

from assistant import services
from assistant.answer import Assistant
from assistant.chats import TERMINAL, ChatStore, browser_owner, user_owner
from assistant.cli import app
from assistant.config import SEEDS_DIR, Settings, get_settings
from assistant.corpus import load_corpus
from assistant.retrieve import Retriever
from assistant.store import PaperStore

pytestmark = pytest.mark.slow  # a real store, the embedder and Gradio

SEED_FILE = SEEDS_DIR / "000_20bba863e7f451be.txt"  # 16 papers, DoViT among them
DOVIT = "Dynamic Token-Pass Transformers for Semantic Segmentation"
QUESTION = "How does DoViT reduce the cost of semantic segmentation?"
FOLLOW_UP = "How much faster is it?"
REPLY = "DoViT cuts about 40% to 60% FLOPs [1]. The mIoU drop stays within 0.8% for segmentation [1]."


@pytest.fixture(scope="module")
def template(tmp_path_factory, embedder) -> Path:
    data = tmp_path_factory.mktemp("chats-template") / "data"
    build_store(data, load_corpus([SEED_FILE]).papers, embedder)
    return data


@pytest.fixture
def data(template, tmp_path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "data", ignore=shutil.ignore_patterns("store.lock")))


def chat_files(data: Path) -> list[Path]:
    return sorted((data / "chats").rglob("*.json")) if (data / "chats").exists() else []


# -- the CLI -------------------------------------------------------------------------------------------------------
@pytest.fixture
def cli(data, monkeypatch):
    """The CLI on the copy, answering with a scripted model (everything else real: store, retriever, checks)."""
    for var in list(os.environ):
        if var.startswith(("ASSISTANT_", "OPENAI_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(data))
    get_settings.cache_clear()
    fake = FakeLLM(default=REPLY)
    monkeypatch.setattr(services, "start_llm", lambda settings, progress=False: fake)
    yield fake
    get_settings.cache_clear()


def run(*args: str, input: str | None = None):
    result = CliRunner().invoke(app, list(args), input=input)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_ask_prints_markdown_bibtex_or_json_and_json_stays_an_alias(cli):
    md = run("ask", "--format", "markdown", QUESTION)
    assert md.exit_code == 0, md.output
    body, refs, quotes = markdown_references(md.stdout)
    assert body.startswith(f"# {QUESTION}\n") and "FLOPs [1]" in body
    assert sorted(set(markers(body))) == sorted(refs) == [1]
    assert DOVIT in refs[1][0] and quotes[1] and "40%" in quotes[1][0]

    bib = run("ask", "--format", "bibtex", QUESTION)
    assert bib.exit_code == 0, bib.output
    [(key, entry)] = parse_bibtex(bib.stdout).items()
    assert key == "liu2023dynamic" and entry["title"] == "{" + DOVIT + "}"

    as_format, as_alias = run("ask", "--format", "json", QUESTION), run("ask", "--json", QUESTION)
    assert as_format.exit_code == as_alias.exit_code == 0
    a, b = json.loads(as_format.stdout), json.loads(as_alias.stdout)
    assert a["citations"] == b["citations"] and a["citations"][0]["title"] == DOVIT

    clash = run("ask", "--json", "--format", "markdown", QUESTION)
    assert clash.exit_code == 1 and "--json is --format json" in clash.output
    bad = run("ask", "--format", "pdf", QUESTION)
    assert bad.exit_code == 2 and "pdf" in bad.output


def test_chat_is_saved_listed_resumed_with_its_follow_ups_exported_and_deleted(cli, data):
    first = run("chat", input=f"{QUESTION}\n/quit\n")
    assert first.exit_code == 0, first.output
    [path] = chat_files(data)
    chat_id = path.stem
    assert f"saved as chat {chat_id}" in first.output

    listed = run("chat", "--list")
    assert chat_id in listed.stdout and "How does DoViT" in listed.stdout

    # the most recent chat goes on: its question is shown again and "it" is DoViT, read from the saved answer
    resumed = run("chat", "--resume", input=f"{FOLLOW_UP}\n/quit\n")
    assert resumed.exit_code == 0, resumed.output
    assert f"you> {QUESTION}" in resumed.stdout and "FLOPs [1]" in resumed.stdout
    assert "searched: How much faster is DoViT" in resumed.output
    chat = ChatStore(data / "chats").load(TERMINAL, chat_id)
    assert [t.question for t in chat.turns] == [QUESTION, FOLLOW_UP]
    assert "DoViT" in chat.turns[1].answer.standalone_query
    assert chat.history()[1]["papers"] == [chat.turns[0].answer.citations[0].paper_id]
    assert chat_files(data) == [path]  # the same chat, not a new one

    md = run("chat", "--export", "markdown", chat_id[:6])
    body, refs, _ = markdown_references(md.stdout)
    assert f"## 1. {QUESTION}" in body and f"## 2. {FOLLOW_UP}" in body
    assert len(refs) == 1 and DOVIT in refs[1][0]  # both answers cite DoViT: one reference
    assert list(parse_bibtex(run("chat", "--export", "bibtex").stdout)) == ["liu2023dynamic"]

    missing = run("chat", "--resume", "ffffffff")
    assert missing.exit_code == 1 and "no saved chat has an id starting with 'ffffffff'" in missing.output
    deleted = run("chat", "--delete", chat_id)
    assert deleted.exit_code == 0 and chat_id in deleted.stdout
    assert chat_files(data) == [] and "no saved chats yet" in run("chat", "--list").stdout


def test_a_chat_that_cannot_be_saved_says_so_once_and_goes_on(cli, data):
    (data / "chats").write_text("a file where the chats folder should be")
    r = run("chat", input=f"{QUESTION}\n{QUESTION}\n/quit\n")
    assert r.exit_code == 0, r.output
    assert r.output.count("note: the chat was not saved:") == 1
    assert r.stdout.count("FLOPs [1]") >= 2  # both questions answered
    listed = run("chat", "--list")
    assert listed.exit_code == 1 and "cannot read the saved chats in" in listed.output


# -- the web app's handlers ----------------------------------------------------------------------------------------
ANY = "any"


@pytest.fixture
def web(data, embedder):
    from assistant.ui.app import AppUI
    from assistant.ui.backend import Backend

    settings = Settings(data_dir=data)
    store = PaperStore(settings, embedder=embedder).open()
    assistant = Assistant(settings, Retriever(store, settings), FakeLLM(default=REPLY))

    def start():  # a new app over the same data folder: what a restart leaves
        return AppUI(Backend(settings, assistant))

    yield start
    store.close()


def open_page(ui, browser_id=None, user=None):
    """A page load: returns (browser id, session, chat list update, note, downloads)."""
    from assistant.ui.app import new_session

    request = gr.Request(username=user)
    out = ui.on_open_page(browser_id, new_session(), request)
    browser, _chat, session, *_ = out
    return browser, session, out[6], out[7], out[9:]


def ask(ui, session, question: str):
    ui.on_submit(question, session)
    for _ in ui.on_answer(session, ANY, ANY, ANY, None, 3):
        pass
    return ui.on_persist(session)


def questions(session) -> list[str]:
    return [t.question for t in session.turns]


def test_a_browsers_chat_survives_a_reload_and_a_restart_and_its_follow_ups_still_resolve(web, data):
    from assistant.ui.app import chat_messages

    ui = web()
    browser, session, chats, _, downloads = open_page(ui)
    assert re.fullmatch(r"[0-9a-f]{32}", browser) and session.turns == []
    assert all(d["interactive"] is False for d in downloads)  # nothing to download yet
    chats, note, _delete, answer_md, answer_bib, chat_md, chat_bib = ask(ui, session, QUESTION)
    assert note == "" and len(chat_files(data)) == 1
    assert [label for label, _ in chats["choices"]][0].endswith(
        "How does DoViT reduce the cost of semantic segmentation? (1)"
    )
    # the downloads: the answer and the chat, as Markdown and BibTeX
    body, refs, _ = markdown_references(Path(answer_md["value"]).read_text())
    assert Path(answer_md["value"]).name.startswith("answer-1-how-does-dovit") and DOVIT in refs[1][0]
    assert list(parse_bibtex(Path(answer_bib["value"]).read_text())) == ["liu2023dynamic"]
    assert f"## 1. {QUESTION}" in Path(chat_md["value"]).read_text()
    assert list(parse_bibtex(Path(chat_bib["value"]).read_text())) == ["liu2023dynamic"]
    shown = chat_messages(session)

    # a reload: the same browser id opens the same chat, exactly as it was shown
    _, reloaded, chats, _, _ = open_page(ui, browser)
    assert chat_messages(reloaded) == shown and reloaded.chat_id == session.chat_id
    assert chats["value"] == session.chat_id

    # a restart of the app: nothing in memory, the chat is read back from the data folder
    restarted = web()
    _, again, _, _, _ = open_page(restarted, browser)
    assert chat_messages(again) == shown
    ask(restarted, again, FOLLOW_UP)  # "it" is DoViT, read from the saved answer's cited papers
    assert "DoViT" in again.turns[-1].answer.standalone_query
    assert len(chat_files(data)) == 1 and questions(open_page(web(), browser)[1]) == [QUESTION, FOLLOW_UP]


def test_browsers_and_users_keep_their_own_chats_new_chat_reopen_and_delete(web, data):
    from assistant.ui.app import NEW_CHAT

    ui = web()
    a, session_a, _, _, _ = open_page(ui)
    b, session_b, chats_b, _, _ = open_page(ui)
    assert a != b
    ask(ui, session_a, QUESTION)
    _, session_b, chats_b, _, _ = open_page(ui, b)
    assert session_b.turns == [] and [v for _, v in chats_b["choices"]] == [NEW_CHAT[1]]
    assert ChatStore(data / "chats").list(browser_owner(b)) == []

    # with the login set, chats belong to the user, whichever browser: not to a browser, not to another user
    _, ada_here, _, _, _ = open_page(ui, a, user="ada")
    assert ada_here.turns == [] and ada_here.owner == user_owner("ada")
    ask(ui, ada_here, "Which papers use token pruning?")
    _, ada_there, _, _, _ = open_page(ui, b, user="ada")
    assert questions(ada_there) == ["Which papers use token pruning?"]
    assert open_page(ui, a, user="bob")[1].turns == []
    assert questions(open_page(ui, a)[1]) == [QUESTION]  # the browser's own chat, untouched

    # New chat keeps the old one in the list; reopening it shows it again
    _, session_a, _, _, _ = open_page(ui, a)
    old_id = session_a.chat_id
    fresh = ui.on_new_chat(session_a)[1]
    chats, _, delete, *downloads = ui.on_persist(fresh)
    assert chats["value"] == NEW_CHAT[1] and old_id in [v for _, v in chats["choices"]]
    assert delete["interactive"] is False and all(d["interactive"] is False for d in downloads)
    ask(ui, fresh, "What does Gold-YOLO change?")
    assert len(ChatStore(data / "chats").list(browser_owner(a))) == 2
    # the list naming the chat shown (the app's own update) changes nothing; a pick of another chat opens it
    assert all(isinstance(x, type(gr.skip())) for x in ui.on_chat_list_change(fresh.chat_id, fresh))
    assert all(isinstance(x, type(gr.skip())) for x in ui.on_chat_list_change(NEW_CHAT[1], fresh))
    reopened = ui.on_chat_list_change(old_id, fresh)[1]
    assert questions(reopened) == [QUESTION] and reopened.chat_id == old_id

    # Delete chat deletes it, its file too, and starts a new one
    before = set(chat_files(data))
    cleared = ui.on_delete_chat(reopened)[1]
    chats, *_ = ui.on_persist(cleared)
    assert cleared.turns == [] and old_id not in [v for _, v in chats["choices"]]
    assert {p.stem for p in before - set(chat_files(data))} == {old_id}
    assert questions(open_page(ui, a)[1]) == ["What does Gold-YOLO change?"]


def test_a_chat_the_data_folder_cannot_hold_is_answered_and_says_why_it_is_not_saved(web, data):
    ui = web()
    (data / "chats").write_text("a file where the chats folder should be")
    _, session, _, _, _ = open_page(ui)
    chats, note, *_ = ask(ui, session, QUESTION)
    assert session.turns[0].kind == "answer"
    assert note.startswith("⚠ the chat was not saved:") and "\n" not in note
