"""The store's own lock on a Chroma server: a lease record, and the ingest journal kept beside it.

A local store folder belongs to one process at a time (``store.lock``, an flock). A Chroma server is shared by
design, and Chroma itself is not process-safe, so an ingest into a server takes a *lease*: a record in a collection
of its own on that server (``<collection>-lease``) naming its holder (a random token, pid, host, the process's start
time) and a heartbeat that a thread of the ingest renews. The journal of the file being written (see
``assistant.store``) is kept in the same collection, so that whoever finds it, on any machine, can roll it back.

Rules (``PaperStore`` follows them):

- Only the lease holder writes: it ingests, or it rolls back a journal a writer that is gone left behind.
- A lease is broken only with proof that its holder is gone. On the holder's own machine (same host name, boot id
  and pid namespace) the proof is its process: not running, or another process under its pid. A live process keeps
  its lease however long it is silent (stopped, swapping). From another machine the proof is its heartbeat, older
  than ``ASSISTANT_STORE__LEASE_TIMEOUT_S`` (the machines' clocks are taken to agree within that).
- Any journal found while holding the lease is an orphan (its writer's lease was broken), so it is rolled back.
- ``last`` names the most recent lease that wrote: readers compare it before and after a scan, so a scan that
  overlapped a write is done again, and the paper caches of every client carry it in their stamp.

Taking the lease relies on Chroma keeping the first of two ``add`` calls for one id and ignoring the second
(chromadb 1.5, measured: two processes adding at once both read back the same winner). Breaking a stale lease
deletes it only if it still holds the stale token; the new holder then reads its lease back after a short pause.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid

log = logging.getLogger(__name__)

LEASE = "lease"
LAST = "last"
JOURNAL = "journal"
PART = "journal-part"
PART_CHARS = 4_000_000  # characters of journal JSON per record (Chroma takes larger metadata values, slowly)
SETTLE_S = 0.2  # pause before reading a new lease back (a breaker racing us has made its move by then)
_DUMMY = [0.0]  # records of the lease collection carry no meaning in their vector, but Chroma needs one


class LeaseHeld(Exception):
    """Another process holds the lease and is not provably gone: ``holder`` and ``why`` (how we know it is live)."""

    def __init__(self, holder: dict, why: str) -> None:
        super().__init__(why)
        self.holder, self.why = holder, why


class LeaseLost(Exception):
    """This process's lease was broken by another one (it was silent longer than the timeout)."""


# -- who holds it, and is that process gone? ------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _machine() -> dict:
    """What tells this machine and pid namespace apart from others (empty strings where /proc is missing)."""
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = ""
    return {"host": socket.gethostname(), "boot": _read("/proc/sys/kernel/random/boot_id"), "pidns": pidns}


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None when no such process runs (or a zombie)."""
    stat = _read(f"/proc/{int(pid)}/stat")
    if not stat or ")" not in stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):  # a zombie has exited; only its parent has not reaped it
        return None
    return fields[19]  # field 22 of proc(5): starttime


def identity(what: str) -> dict:
    """The lease record of this process, ``what`` saying what it does (``ingest of big.jsonl``)."""
    now = time.time()
    return {
        "token": uuid.uuid4().hex,
        "pid": os.getpid(),
        "pstart": process_start(os.getpid()) or "",
        "what": what[:300],
        "started": now,
        "heartbeat": now,
        **_machine(),
    }


def here(holder: dict) -> bool:
    """Whether ``holder`` ran on this machine, in this pid namespace (so its pid can be looked up)."""
    me = _machine()
    return bool(me["boot"] and me["pidns"]) and all(holder.get(k) == me[k] for k in ("host", "boot", "pidns"))


def _running(pid: int, pstart: str | None) -> bool:
    """Whether the process that took a lease still runs: its pid runs, is no zombie, and started when it did."""
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return False
    except OSError:  # /proc may hide other users' processes (hidepid): ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # another user's process: its start time cannot be checked, so it is taken as alive
        return True
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20:
        return True  # an unknown format: no proof that it has ended
    return fields[0] not in ("Z", "X") and fields[19] == pstart


def judge(holder: dict, timeout_s: float, now: float | None = None) -> tuple[bool, str]:
    """(alive, how we know) for a lease holder; alive unless there is proof it is gone (see the module docstring)."""
    if here(holder):
        pid = int(holder.get("pid") or 0)
        if pid > 0 and _running(pid, holder.get("pstart")):
            return True, "its process is running"
        return False, f"its process (pid {holder.get('pid')}) has ended"
    age = (now or time.time()) - float(holder.get("heartbeat", 0))
    if age <= timeout_s:
        return True, f"its last heartbeat was {max(age, 0):.0f} s ago"
    return False, f"it sent no heartbeat for {age:.0f} s (ASSISTANT_STORE__LEASE_TIMEOUT_S is {timeout_s:g})"


def holder_name(holder: dict) -> str:
    where = "" if here(holder) else f" on {holder.get('host') or 'another machine'}"
    return f"pid {holder.get('pid', '?')}{where}"


# -- the lease collection ------------------------------------------------------------------------------------
class ServerLease:
    """The lease and journal records of one store on a Chroma server (``collection``: the lease collection)."""

    def __init__(self, collection, timeout_s: float) -> None:
        self.col = collection
        self.timeout_s = timeout_s
        self.mine: dict | None = None
        self.lost: str | None = None  # why this process lost its lease, set by the heartbeat thread
        self._wrote = False
        self._confirmed = 0.0  # time.monotonic() when the lease was last seen to be ours
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # reading
    def _get(self, ids: list[str]) -> dict[str, dict]:
        got = self.col.get(ids=ids, include=["metadatas"])
        return {i: (m or {}) for i, m in zip(got["ids"], got["metadatas"] or [{}] * len(got["ids"]), strict=True)}

    def holder(self) -> dict | None:
        return self._get([LEASE]).get(LEASE)

    def holder_and_journal(self) -> tuple[dict | None, dict | None]:
        """The lease holder and the journal's head, in one request (what every command checks when it opens)."""
        got = self._get([LEASE, JOURNAL])
        return got.get(LEASE), got.get(JOURNAL)

    def stamp(self) -> tuple[str | None, str | None]:
        """(token of the holder, token of the last lease that wrote): unchanged across a scan = no write during it."""
        got = self._get([LEASE, LAST])
        return got.get(LEASE, {}).get("token"), got.get(LAST, {}).get("token")

    def holds(self) -> bool:
        return self.mine is not None and self.lost is None

    # taking and giving back
    def acquire(self, what: str) -> dict | None:
        """Take the lease, breaking a stale one; returns the holder broken (if any). ``LeaseHeld`` when a live
        process holds it."""
        if self.mine is not None:
            return None
        mine = identity(what)
        broken = None
        for _ in range(5):
            holder = self.holder()
            if holder is not None:
                alive, why = judge(holder, self.timeout_s)
                if alive:
                    raise LeaseHeld(holder, why)
                log.info("breaking the lease of %s (%s): %s", holder_name(holder), holder.get("what"), why)
                # only if it still holds the stale token: a breaker racing us may have taken it already
                token = holder.get("token")
                self.col.delete(ids=[LEASE], where={"token": token}) if token else self.col.delete(ids=[LEASE])
                broken = holder
                continue
            self.col.add(ids=[LEASE], embeddings=[_DUMMY], metadatas=[mine])  # ignored if another add came first
            time.sleep(SETTLE_S)
            if (self.holder() or {}).get("token") == mine["token"]:
                break
        else:
            holder = self.holder() or mine
            raise LeaseHeld(holder, "it was taken by another process at the same moment")
        self.mine, self.lost, self._wrote = mine, None, False
        self._confirmed = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="store-lease", daemon=True)
        self._thread.start()
        return broken

    def _beat(self) -> None:
        """Renew the heartbeat until released; notice a lease broken while this process was silent."""
        interval = max(0.2, min(10.0, self.timeout_s / 6))
        while not self._stop.wait(interval):
            if self.mine is None:
                return
            try:
                if not self._verify():
                    return
                self.col.update(ids=[LEASE], metadatas=[{"heartbeat": time.time()}])
            except Exception as exc:  # the server may be restarting: the writer's own calls fail and say so
                log.debug("lease heartbeat failed: %s", exc)

    def _verify(self) -> bool:
        """Whether the lease on the server is still ours (``lost`` says why not)."""
        mine = self.mine
        holder = self.holder()
        if mine is not None and (holder or {}).get("token") == mine["token"]:
            self._confirmed = time.monotonic()
            return True
        self.lost = (
            f"its lease on the Chroma server was taken over by {holder_name(holder)}"
            if holder
            else "its lease on the Chroma server was broken"
        ) + f" after a silence longer than {self.timeout_s:g} s (ASSISTANT_STORE__LEASE_TIMEOUT_S)"
        return False

    def check(self) -> None:
        """Before each write: this process still holds the lease (``LeaseLost`` otherwise). Asks the server when
        the heartbeat has not confirmed it lately (this process may have been stopped for longer than the timeout,
        and its next write must not come before the heartbeat thread notices)."""
        if self.lost is None and time.monotonic() - self._confirmed > self.timeout_s / 3:
            self._verify()
        if self.lost is not None:
            raise LeaseLost(self.lost)

    def mark_write(self) -> None:
        """Record that this lease writes (once): readers' scans and caches see that the store changed."""
        if self._wrote or self.mine is None:
            return
        self.check()
        self.col.upsert(ids=[LAST], embeddings=[_DUMMY], metadatas=[{"token": self.mine["token"], "at": time.time()}])
        self._wrote = True

    def release(self) -> None:
        """Give the lease back (never raises: a server that is gone keeps it until it is proven stale)."""
        mine, self.mine = self.mine, None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if mine is None:
            return
        with contextlib.suppress(Exception):
            self.col.delete(ids=[LEASE], where={"token": mine["token"]})

    # the journal of the file being written
    def write_journal(self, journal: dict) -> None:
        """Store the journal in parts, then its head (a journal without a head was never started)."""
        self.check()
        text = json.dumps(journal)
        parts = [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]
        token = self.mine["token"] if self.mine else ""
        for n, part in enumerate(parts):
            self.col.upsert(
                ids=[f"{JOURNAL}:{n}"],
                embeddings=[_DUMMY],
                metadatas=[{"kind": PART, "part": part, "token": token}],
            )
        self.col.upsert(
            ids=[JOURNAL],
            embeddings=[_DUMMY],
            metadatas=[{"parts": len(parts), "token": token, "file": str(journal.get("file", ""))[:300]}],
        )

    def journal_head(self) -> dict | None:
        return self._get([JOURNAL]).get(JOURNAL)

    def read_journal(self) -> dict | None:
        """The journal left on the server, or None; ``ValueError`` when its parts are incomplete or unreadable."""
        head = self.journal_head()
        if head is None:
            return None
        ids = [f"{JOURNAL}:{n}" for n in range(int(head.get("parts", 0)))]
        got = self._get(ids) if ids else {}
        if len(got) != len(ids):
            raise ValueError(f"{len(ids) - len(got)} of its {len(ids)} parts are missing")
        return json.loads("".join(str(got[i].get("part", "")) for i in ids))

    def drop_journal(self) -> None:
        """Remove the journal: its head first (the commit point), then its parts (also parts of a journal whose
        writer ended before it wrote the head)."""
        self.col.delete(ids=[JOURNAL])
        self.col.delete(where={"kind": PART})
