"""The chat store on real folders: round trip, delete, owners kept apart, bounds, atomic writes, a read-only folder."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from assistant.answer import Answer, Citation
from assistant.chats import (
    Chat,
    ChatNotFound,
    ChatStore,
    ChatStoreError,
    ChatTurn,
    browser_owner,
    new_browser_id,
    user_owner,
)

ALICE = browser_owner(new_browser_id())
BOB = browser_owner(new_browser_id())


def answer(question: str, cited: list[tuple[str, str]], error: str | None = None) -> Answer:
    """A checked answer citing (paper id, title) pairs as [1], [2], …"""
    citations = [
        Citation(n=n, paper_id=pid, title=title, authors=["Ada Lovelace"], year=2023, evidence=f"{title} is fast.")
        for n, (pid, title) in enumerate(cited, start=1)
    ]
    text = " ".join(f"{title} is fast [{n}]." for n, (_, title) in enumerate(cited, start=1))
    return Answer(question=question, standalone_query=question, text=text, citations=citations, error=error)


def chat_of(store: ChatStore, *turns: ChatTurn) -> Chat:
    chat = store.new()
    chat.turns = list(turns)
    return chat


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_a_chat_round_trips_with_what_the_follow_up_planner_needs(tmp_path):
    store = ChatStore(tmp_path / "chats")
    assert store.list(ALICE) == [] and not (tmp_path / "chats").exists()  # reading never creates the folder
    first = answer("How does DoViT reduce the cost of segmentation?", [("dovit", "DoViT"), ("vit", "ViT")])
    failed = answer("And Gold-YOLO?", [("gold", "Gold-YOLO")], error="the model timed out")
    chat = chat_of(
        store,
        ChatTurn(question=first.question, answer=first),
        ChatTurn(question="Papers from 2030?", kind="notice", text="Check the filters: no paper is from 2030."),
        ChatTurn(question="What does it lose?", kind="stopped", text="It loses about"),
        ChatTurn(question=failed.question, answer=failed),
    )
    assert store.save(ALICE, chat) == []
    back = store.load(ALICE, chat.id)
    assert back == chat and back.title == first.question
    assert back.turns[0].answer.citations[1].paper_id == "vit"
    # the pipeline's history: questions and checked answers with their cited papers; the notice, the stopped
    # turn and the failed answer are left out, as in the live chat
    assert back.history() == [
        {"role": "user", "content": first.question},
        {"role": "assistant", "content": first.text, "papers": ["dovit", "vit"], "refused": False},
    ]
    [summary] = store.list(ALICE)
    assert (summary.id, summary.questions, summary.title) == (chat.id, 4, first.question)
    # one plain JSON file per chat, nothing else left behind (no temporary files)
    [path] = files(tmp_path / "chats")
    assert path.name == f"{chat.id}.json" and json.loads(path.read_text())["id"] == chat.id


def test_saving_again_updates_the_chat_and_the_most_recent_comes_first(tmp_path):
    store = ChatStore(tmp_path)
    older = chat_of(store, ChatTurn(question="first chat", kind="notice", text="n"))
    newer = chat_of(store, ChatTurn(question="second chat", kind="notice", text="n"))
    store.save(ALICE, older)
    store.save(ALICE, newer)
    assert [c.id for c in store.list(ALICE)] == [newer.id, older.id]
    older.turns.append(ChatTurn(question="more", kind="notice", text="n"))
    store.save(ALICE, older)
    assert [(c.id, c.questions) for c in store.list(ALICE)] == [(older.id, 2), (newer.id, 1)]
    assert store.find(ALICE).id == older.id  # no id: the most recent
    assert store.find(ALICE, older.id[:6]).id == older.id  # a unique start of the id
    with pytest.raises(ChatNotFound, match="no saved chat has an id starting with 'zz'"):
        store.find(ALICE, "zz")


def test_deleting_a_chat_deletes_its_file(tmp_path):
    store = ChatStore(tmp_path)
    keep = chat_of(store, ChatTurn(question="keep", kind="notice", text="n"))
    gone = chat_of(store, ChatTurn(question="gone", kind="notice", text="n"))
    store.save(ALICE, keep)
    store.save(ALICE, gone)
    assert store.delete(ALICE, gone.id) is True
    assert [c.id for c in store.list(ALICE)] == [keep.id]
    assert [p.stem for p in files(tmp_path)] == [keep.id]
    with pytest.raises(ChatNotFound):
        store.load(ALICE, gone.id)
    assert store.delete(ALICE, gone.id) is False


def test_owners_never_see_each_others_chats(tmp_path):
    store = ChatStore(tmp_path)
    alices = chat_of(store, ChatTurn(question="alice asks", kind="notice", text="n"))
    store.save(ALICE, alices)
    assert store.list(BOB) == []
    with pytest.raises(ChatNotFound):
        store.load(BOB, alices.id)  # knowing the id is not enough: every lookup goes through the owner's folder
    with pytest.raises(ChatNotFound):
        store.find(BOB, alices.id)
    assert store.delete(BOB, alices.id) is False and store.load(ALICE, alices.id) == alices
    # a user with the login set is an owner of their own; a user name never becomes a path
    store.save(user_owner("../../etc"), chat_of(store, ChatTurn(question="u", kind="notice", text="n")))
    assert all(p.is_relative_to(tmp_path) for p in files(tmp_path))
    assert len(store.list(user_owner("../../etc"))) == 1 and len(store.list(user_owner("etc"))) == 0
    # a browser id must be one the app made; ids of chats are checked before they touch a path
    with pytest.raises(ValueError):
        browser_owner("../x")
    with pytest.raises(ChatNotFound):
        store.load(ALICE, "../" + alices.id)


def test_the_number_of_chats_per_owner_is_bounded_the_oldest_removed_and_named(tmp_path):
    store = ChatStore(tmp_path, max_chats=2)
    chats = [chat_of(store, ChatTurn(question=f"chat {i}", kind="notice", text="n")) for i in range(3)]
    assert store.save(ALICE, chats[0]) == [] and store.save(ALICE, chats[1]) == []
    store.save(BOB, chat_of(store, ChatTurn(question="bob's", kind="notice", text="n")))
    assert store.save(ALICE, chats[2]) == ["chat 0"]
    assert [c.title for c in store.list(ALICE)] == ["chat 2", "chat 1"]
    assert [c.title for c in store.list(BOB)] == ["bob's"]  # another owner's chats do not count


def test_a_chat_over_the_size_bound_is_refused_and_its_saved_version_kept(tmp_path):
    store = ChatStore(tmp_path, max_chat_kb=16)
    chat = chat_of(store, ChatTurn(question="short", kind="notice", text="n"))
    store.save(ALICE, chat)
    chat.turns.append(ChatTurn(question="long", kind="stopped", text="word " * 5000))
    with pytest.raises(ChatStoreError, match=r"too long to save \(24 KB; the limit is 16 KB") as caught:
        store.save(ALICE, chat)
    assert "\n" not in str(caught.value)
    assert len(store.load(ALICE, chat.id).turns) == 1


def test_all_chats_together_are_bounded(tmp_path):
    store = ChatStore(tmp_path, max_total_mb=0.02)
    store.save(ALICE, chat_of(store, ChatTurn(question="a", kind="stopped", text="word " * 2000)))
    with pytest.raises(ChatStoreError, match="delete old chats; this one was not saved"):
        store.save(BOB, chat_of(store, ChatTurn(question="b", kind="stopped", text="word " * 2000)))
    assert store.list(BOB) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    store = ChatStore(tmp_path)
    chat = chat_of(store, ChatTurn(question="kept", kind="notice", text="n"))
    store.save(ALICE, chat)
    before = {p: p.read_bytes() for p in files(tmp_path)}

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    chat.turns.append(ChatTurn(question="lost", kind="notice", text="n"))
    with pytest.raises(ChatStoreError, match="the chat was not saved: no space left on the disk holding"):
        store.save(ALICE, chat)
    assert {p: p.read_bytes() for p in files(tmp_path)} == before


def test_a_damaged_file_is_left_out_of_the_list_and_named_when_opened(tmp_path):
    store = ChatStore(tmp_path)
    good = chat_of(store, ChatTurn(question="good", kind="notice", text="n"))
    bad = chat_of(store, ChatTurn(question="bad", kind="notice", text="n"))
    store.save(ALICE, good)
    store.save(ALICE, bad)
    path = next(p for p in files(tmp_path) if p.stem == bad.id)
    path.write_text(path.read_text()[:40])  # cut short
    assert [c.id for c in store.list(ALICE)] == [good.id]
    with pytest.raises(ChatStoreError, match=f"the saved chat {path} is damaged .*; delete it"):
        store.load(ALICE, bad.id)


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A chats folder behind a real read-only bind mount (root + CAP_SYS_ADMIN); elsewhere its writes fail with
    EROFS through a patched ``os.replace``/``os.unlink`` (root ignores file modes, so chmod cannot do it)."""
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount"):
        mounted = subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True).returncode == 0
        if mounted and subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True).returncode:
            subprocess.run(["umount", str(ro)], check=False)
            mounted = False
    if not mounted:
        ro.rmdir()
        ro.symlink_to(src)

        def refuse(*args, **kw):
            raise OSError(errno.EROFS, "Read-only file system", str(args[0]))

        def arm():
            monkeypatch.setattr(os, "replace", refuse)
            monkeypatch.setattr(os, "unlink", refuse)
            monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: refuse(self))

    else:

        def arm():
            pass

    try:
        yield src, ro, arm
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], check=False)


def test_a_read_only_folder_is_read_and_refuses_writes_in_one_line_changing_nothing(read_only):
    src, ro, arm = read_only
    writable = ChatStore(src)
    chat = chat_of(writable, ChatTurn(question="saved before", kind="notice", text="n"))
    writable.save(ALICE, chat)
    before = {p.relative_to(src): p.read_bytes() for p in files(src)}
    arm()
    store = ChatStore(ro)
    assert [c.id for c in store.list(ALICE)] == [chat.id] and store.load(ALICE, chat.id) == chat
    chat.turns.append(ChatTurn(question="new", kind="notice", text="n"))
    for act in (lambda: store.save(ALICE, chat), lambda: store.delete(ALICE, chat.id)):
        with pytest.raises(ChatStoreError, match="is on a read-only file system") as caught:
            act()
        assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)
    with pytest.raises(ChatStoreError, match="read-only"):
        store.save(BOB, chat_of(store, ChatTurn(question="bob", kind="notice", text="n")))  # a new owner folder
    assert {p.relative_to(src): p.read_bytes() for p in files(src)} == before
