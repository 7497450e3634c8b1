"""Saved chats: one JSON file per chat under ``<data dir>/chats/``, written atomically and bounded.

A chat belongs to an *owner*: one browser of the web app (a random id the page keeps in the browser's
localStorage), a logged-in user of the web app (when ASSISTANT_UI_USERNAME/PASSWORD are set), or the terminal
(``assistant chat``). Each owner has a folder of its own, named by a hash of the owner key, and every read, write
and delete goes through the owner's folder, so one owner never sees or touches another's chats.

A stored chat keeps each turn's question and what became of it: the whole checked `Answer` (its text with the
``[n]`` markers, citations with their evidence, the sources panel's contexts) or the notice / stopped text. The
cited paper ids of each answer are what a follow-up's "it" is resolved from (`Answer.as_message`), so a resumed
chat goes on where it stopped.

Bounds (settings ``chats.*``): at most ``max_chats`` chats per owner (saving one more removes the least recently
used, and says which), at most ``max_chat_kb`` per chat file, at most ``max_total_mb`` for all chats together.
A read-only or full data folder is one line (`ChatStoreError`); nothing already saved is lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from .answer import Answer

log = logging.getLogger(__name__)

VERSION = 1
TERMINAL = "terminal"  # the owner of `assistant chat`'s chats
_BROWSER_ID = re.compile(r"[0-9a-f]{32}")
_CHAT_ID = re.compile(r"[0-9a-f]{16}")
TITLE_CHARS = 80


class ChatStoreError(Exception):
    """A chat could not be read, found or saved; the message is one line meant for the user."""


class ChatNotFound(ChatStoreError):
    pass


TurnKind = Literal["answer", "notice", "stopped"]


class ChatTurn(BaseModel):
    """A question and what became of it: a checked answer, a notice (why it was not answered), or the partial text
    of an answer that was stopped."""

    question: str
    kind: TurnKind = "answer"
    text: str = Field("", description="The notice, or the text streamed before Stop; answers keep theirs in answer.")
    answer: Answer | None = None


class Chat(BaseModel):
    version: int = VERSION
    id: str
    title: str = ""
    created: str
    updated: str
    turns: list[ChatTurn] = Field(default_factory=list)

    def history(self) -> list[dict]:
        """The conversation as the pipeline reads it: each question with its checked answer (cited paper ids
        included); notices, stopped turns and failed answers left out, as in the live chat."""
        out: list[dict] = []
        for turn in self.turns:
            if turn.kind == "answer" and turn.answer is not None and not turn.answer.error:
                out += [{"role": "user", "content": turn.question}, turn.answer.as_message()]
        return out


@dataclass(frozen=True)
class ChatSummary:
    id: str
    title: str
    updated: str
    questions: int

    def label(self) -> str:
        """'2024-05-01 14:03 · How does DoViT … (3)' for a list of chats."""
        when = self.updated[:16].replace("T", " ")
        return f"{when} · {self.title} ({self.questions})"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_chat_id() -> str:
    return secrets.token_hex(8)


def new_browser_id() -> str:
    return secrets.token_hex(16)


def valid_browser_id(value: object) -> bool:
    return isinstance(value, str) and bool(_BROWSER_ID.fullmatch(value))


def browser_owner(browser_id: str) -> str:
    if not valid_browser_id(browser_id):
        raise ValueError("not a browser id")
    return f"browser:{browser_id}"


def user_owner(username: str) -> str:
    return f"user:{username}"


def title_of(question: str) -> str:
    words = " ".join(question.split())
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1].rstrip() + "…"


class ChatStore:
    """The chats of every owner, in ``folder`` (created on the first save, so reading never writes)."""

    def __init__(self, folder: Path, *, max_chats: int = 200, max_chat_kb: int = 2048, max_total_mb: float = 500):
        self.folder = Path(folder)
        self.max_chats = max_chats
        self.max_chat_bytes = max_chat_kb * 1024
        self.max_total_bytes = int(max_total_mb * 1_000_000)
        self._lock = threading.Lock()
        self._summaries: dict[Path, tuple[int, int, ChatSummary | None]] = {}  # path -> (mtime_ns, size, summary)

    @classmethod
    def from_settings(cls, settings) -> ChatStore:
        c = settings.chats
        return cls(
            settings.data_dir / "chats",
            max_chats=c.max_per_owner,
            max_chat_kb=c.max_chat_kb,
            max_total_mb=c.max_total_mb,
        )

    # -- paths ---------------------------------------------------------------------------------------------------
    def _owner_dir(self, owner: str) -> Path:
        # a hash, not the owner key: a user name or a browser id never becomes a path
        return self.folder / hashlib.sha256(owner.encode("utf-8")).hexdigest()[:32]

    def _path(self, owner: str, chat_id: str) -> Path:
        if not _CHAT_ID.fullmatch(chat_id or ""):
            raise ChatNotFound(f"no saved chat {chat_id!r}")
        return self._owner_dir(owner) / f"{chat_id}.json"

    def _files(self, owner: str) -> Iterator[Path]:
        folder = self._owner_dir(owner)
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ChatStoreError(f"cannot read the saved chats in {folder}: {exc.strerror or exc}") from None
        for entry in entries:
            name = entry.name
            if name.endswith(".json") and _CHAT_ID.fullmatch(name[:-5]):
                yield Path(entry.path)

    # -- reading -------------------------------------------------------------------------------------------------
    def list(self, owner: str) -> list[ChatSummary]:
        """The owner's chats, most recently updated first (a damaged file is left out, and logged)."""
        out = []
        for path in self._files(owner):
            summary = self._summary(path)
            if summary is not None:
                out.append(summary)
        return sorted(out, key=lambda s: s.updated, reverse=True)

    def _summary(self, path: Path) -> ChatSummary | None:
        try:
            st = path.stat()
        except OSError:
            return None
        cached = self._summaries.get(path)
        if cached is not None and cached[:2] == (st.st_mtime_ns, st.st_size):
            return cached[2]
        try:
            chat = self._read(path)
            summary = ChatSummary(chat.id, chat.title, chat.updated, len(chat.turns))
        except ChatStoreError as exc:
            log.warning("%s", exc)
            summary = None
        self._summaries[path] = (st.st_mtime_ns, st.st_size, summary)
        return summary

    def _read(self, path: Path) -> Chat:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ChatNotFound(f"no saved chat {path.stem!r}") from None
        except OSError as exc:
            raise ChatStoreError(f"cannot read the saved chat {path}: {exc.strerror or exc}") from None
        try:
            chat = Chat.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ()))
            raise ChatStoreError(
                f"the saved chat {path} is damaged ({where or 'file'}: {first.get('msg', 'invalid')}); delete it"
            ) from None
        if chat.id != path.stem:
            raise ChatStoreError(f"the saved chat {path} is damaged (it names chat {chat.id!r}); delete it")
        return chat

    def load(self, owner: str, chat_id: str) -> Chat:
        return self._read(self._path(owner, chat_id))

    def find(self, owner: str, prefix: str | None = None) -> Chat:
        """The owner's chat whose id starts with ``prefix`` (it must be the only one), or the most recent."""
        chats = self.list(owner)
        if not chats:
            raise ChatNotFound("there are no saved chats yet")
        if not prefix:
            return self.load(owner, chats[0].id)
        wanted = prefix.strip().lower()
        matches = [c for c in chats if c.id.startswith(wanted)]
        if not matches:
            raise ChatNotFound(f"no saved chat has an id starting with {prefix!r}")
        if len(matches) > 1:
            raise ChatNotFound(f"{len(matches)} saved chats have an id starting with {prefix!r}: give more of it")
        return self.load(owner, matches[0].id)

    # -- writing -------------------------------------------------------------------------------------------------
    def save(self, owner: str, chat: Chat) -> list[str]:
        """Write the chat (atomically: a reader sees the old file or the new one, never half). Returns the titles
        of the owner's oldest chats removed to stay within ``max_chats``. ChatStoreError when it cannot be saved."""
        if not chat.turns:
            return []
        if not chat.title:
            chat.title = title_of(chat.turns[0].question)
        chat.updated = now()
        data = chat.model_dump_json(exclude_none=False).encode("utf-8")
        if len(data) > self.max_chat_bytes:
            raise ChatStoreError(
                f"this chat is too long to save ({len(data) // 1024:,} KB; the limit is "
                f"{self.max_chat_bytes // 1024:,} KB, ASSISTANT_CHATS__MAX_CHAT_KB): start a new chat; what was "
                "saved of it before is kept"
            )
        path = self._path(owner, chat.id)
        with self._lock:
            total = self._total_bytes(exclude=path)
            if total + len(data) > self.max_total_bytes:
                raise ChatStoreError(
                    f"the saved chats take {total / 1e6:.1f} MB and the limit is {self.max_total_bytes / 1e6:g} MB "
                    "(ASSISTANT_CHATS__MAX_TOTAL_MB): delete old chats; this one was not saved"
                )
            self._write(path, data)
            return self._evict(owner, keep=chat.id)

    def _total_bytes(self, exclude: Path) -> int:
        total = 0
        try:
            owners = list(os.scandir(self.folder))
        except OSError:
            return 0
        for owner in owners:
            with contextlib.suppress(OSError):
                for entry in os.scandir(owner.path):
                    if entry.path != str(exclude):
                        total += entry.stat().st_size
        return total

    def _write(self, path: Path, data: bytes) -> None:
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            raise ChatStoreError(f"the chat was not saved: {self._fault(exc)}") from None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _fault(self, exc: OSError) -> str:
        from .store import machine_fault  # the store's wording of a read-only, full or forbidden folder

        return machine_fault(exc, self.folder) or f"{exc.strerror or exc} ({exc.filename or self.folder})"

    def _evict(self, owner: str, keep: str) -> list[str]:
        chats = self.list(owner)
        removed = []
        for old in chats[self.max_chats :]:
            if old.id != keep and self._remove(owner, old.id):
                removed.append(old.title)
        return removed

    def delete(self, owner: str, chat_id: str) -> bool:
        """Remove the owner's chat (its file); False when there was none."""
        with self._lock:
            return self._remove(owner, chat_id)

    def _remove(self, owner: str, chat_id: str) -> bool:
        path = self._path(owner, chat_id)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ChatStoreError(f"the chat was not deleted: {self._fault(exc)}") from None
        self._summaries.pop(path, None)
        return True

    def new(self) -> Chat:
        stamp = now()
        return Chat(id=new_chat_id(), created=stamp, updated=stamp)


def chat_json(chat: Chat) -> str:
    """The chat as the file holds it (for `assistant chat --export json`)."""
    return json.dumps(chat.model_dump(mode="json"), ensure_ascii=False, indent=2)
