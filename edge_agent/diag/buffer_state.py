"""The buffer as ``cityedge diag`` sees it, read without ever getting in a running agent's way.

The file is opened read-only. While an agent has it open (its write-ahead log exists), through
SQLite's ``mode=ro`` with a short busy timeout: a WAL reader takes no lock a writer waits for, and
``PRAGMA query_only`` refuses any write. When no write-ahead log exists nothing has the file open,
and it is opened ``immutable``: ``mode=ro`` would create the log and its shared-memory file, and left
behind by diag running as root they would stop the agent (another user) from opening its buffer.

Acknowledged records leave the file in bulk, at most ``DELETE_EVERY_S`` after their ack (at once
when the agent stops): while it runs, "waiting" may count a few seconds of records central holds,
and the last ack read here is that of the last deletion.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.buffer import DELETE_EVERY_S
from edge_agent.diag.model import Check, Fact, Status
from edge_agent.record_blocks import BlockError, Kind, unpack
from protocols.fleet import Event, FleetError, decode_record
from protocols.fleet.events import (
    ALARM_CLEARED,
    ALARM_RAISED,
    DEVICE_BACK,
    DEVICE_LOST,
    EVICTED,
    LIGHTING_WRITE_FAILED,
    SETTINGS_UNREADABLE,
)

BUSY_TIMEOUT_S = 0.2
# A record older than this still waiting: the buffer is not draining (the link, the broker, central).
DRAINING_WITHIN_S = 300.0 + DELETE_EVERY_S
# Events worth a crew's eye; the newest this many, out of at most SCANNED_BLOCKS blocks holding events.
ALARM_KINDS = frozenset(
    {
        ALARM_RAISED,
        ALARM_CLEARED,
        DEVICE_LOST,
        DEVICE_BACK,
        EVICTED,
        LIGHTING_WRITE_FAILED,
        SETTINGS_UNREADABLE,
    }
)
RECENT_EVENTS = 10
SCANNED_BLOCKS = 200
MAX_SETTINGS = 1000


class BufferReadError(Exception):
    """The file cannot be read as a buffer: ``problem`` says why and what to do."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(slots=True)
class BufferState:
    path: Path
    size_bytes: int  # on disk: the database, its write-ahead log and shared-memory file
    records: int  # in the file, not yet deleted
    oldest_seq: int | None
    oldest_ts: int | None
    newest_seq: int
    last_ack_ts: int | None
    last_ack_seq: int | None
    stream: str | None
    boot_count: int | None
    opened: str  # "read-only (an agent has it open)" or "immutable (nothing has it open)"
    active_alarms: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # newest first


def read_buffer_state(path: Path) -> BufferState:
    """What is in the buffer at ``path``; BufferReadError when it is missing or not a buffer."""
    if not path.exists():
        raise BufferReadError(path, "no such file: the agent has not run here yet, or buffer.path is wrong")
    if not os.access(path, os.R_OK):
        raise BufferReadError(path, "this user may not read it: run diag with sudo")
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    live = wal.exists() and shm.exists()
    query = "mode=ro" if live else "immutable=1"
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise BufferReadError(path, f"cannot open it read-only ({exc})") from exc
    try:
        with contextlib.closing(db):
            db.execute("PRAGMA query_only = 1")
            db.execute("BEGIN")  # one snapshot for every figure below (a shared read, never a write lock)
            state = _read(db, path, live)
            db.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        raise BufferReadError(path, f"cannot read it ({exc}); run diag again") from exc
    except sqlite3.DatabaseError as exc:
        raise BufferReadError(path, f"not a readable buffer ({exc})") from exc
    state.size_bytes = sum(p.stat().st_size for p in (path, wal, shm) if p.exists())
    return state


def _read(db: sqlite3.Connection, path: Path, live: bool) -> BufferState:
    meta = dict(db.execute("SELECT key, value FROM meta LIMIT ?", (MAX_SETTINGS,)).fetchall())
    records, newest = db.execute("SELECT total(n), max(last) FROM blocks").fetchone()
    oldest = db.execute("SELECT first, ts_min FROM blocks ORDER BY first LIMIT 1").fetchone()
    last_ack_ts, last_ack_seq = _last_ack(meta.get("last_ack"))
    return BufferState(
        path=path,
        size_bytes=0,
        records=int(records),
        oldest_seq=None if oldest is None else int(oldest[0]),
        oldest_ts=None if oldest is None else int(oldest[1]),
        newest_seq=max(int(newest or 0), _int(meta.get("last_seq")) or 0),
        last_ack_ts=last_ack_ts,
        last_ack_seq=last_ack_seq,
        stream=meta.get("stream"),
        boot_count=_int(meta.get("boot_count")),
        opened="read-only (an agent has it open)" if live else "immutable (nothing has it open)",
        active_alarms=active_alarms(meta),
        events=_recent_events(db, path),
    )


def active_alarms(meta: dict[str, str]) -> list[str]:
    """The alarms the agent holds raised (kept in its settings to survive restarts)."""
    found = []
    for key, value in sorted(meta.items()):
        if key.startswith("setting.alarms.") and value:
            device = key.removeprefix("setting.alarms.")
            found += [f"{device}: {name}" for name in value.split(",") if name]
        elif key.startswith("setting.device_lost.") and value == "1":
            found.append(f"{key.removeprefix('setting.device_lost.')}: device lost (does not answer)")
        elif key == "setting.alarm.clock_unsynchronised" and value == "1":
            found.append("agent: clock_unsynchronised")
    return found


def _recent_events(db: sqlite3.Connection, path: Path) -> list[Event]:
    events: list[Event] = []
    cursor = db.execute(
        "SELECT body FROM blocks WHERE readings < n ORDER BY first DESC LIMIT ?", (SCANNED_BLOCKS,)
    )
    for (body,) in cursor:
        try:
            block = unpack(body)
        except BlockError as exc:
            raise BufferReadError(path, f"a damaged block ({exc})") from exc
        for _, kind, record in reversed(list(block.records())):
            if kind != Kind.EVENT:
                continue
            try:
                event = decode_record(Event, record)
            except FleetError:
                continue  # the agent refuses what it cannot send; one such is not the crew's concern
            if event.kind in ALARM_KINDS:
                events.append(event)
                if len(events) >= RECENT_EVENTS:
                    return events
    return events


def _last_ack(value: str | None) -> tuple[int | None, int | None]:
    ts, _, seq = (value or "").partition(" ")
    return _int(ts), _int(seq)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def buffer_check(read: BufferState | BufferReadError, now_ms: int) -> Check:
    if isinstance(read, BufferReadError):
        return Check("buffer", Status.FAIL, read.problem, {"path": str(read.path)})
    facts: dict[str, Fact] = {
        "path": str(read.path),
        "size_bytes": read.size_bytes,
        "records_waiting": read.records,
        "oldest_seq": read.oldest_seq,
        "oldest_ts": read.oldest_ts,
        "oldest_age_s": _age_s(read.oldest_ts, now_ms),
        "newest_seq": read.newest_seq,
        "last_ack_ts": read.last_ack_ts,
        "last_ack_seq": read.last_ack_seq,
        "last_ack_age_s": _age_s(read.last_ack_ts, now_ms),
        "stream": read.stream,
        "boot_count": read.boot_count,
        "opened": read.opened,
    }
    size = f"{read.size_bytes / 1e6:.1f} MB on disk"
    ack = (
        "never acknowledged by central"
        if read.last_ack_ts is None
        else f"last ack {_ago(read.last_ack_ts, now_ms)} (through seq {read.last_ack_seq})"
    )
    if not read.records:
        return Check("buffer", Status.OK, f"empty: central holds every record ({size}; {ack})", facts)
    oldest = f"oldest seq {read.oldest_seq}, taken {_ago(read.oldest_ts, now_ms)}"
    summary = f"{read.records} records waiting ({size}); {oldest}; {ack}"
    age = facts["oldest_age_s"]
    if isinstance(age, float) and age > DRAINING_WITHIN_S:
        return Check("buffer", Status.WARN, f"not draining: {summary}", facts)
    return Check("buffer", Status.OK, summary, facts)


def _age_s(ts: int | None, now_ms: int) -> float | None:
    return None if ts is None else round((now_ms - ts) / 1000, 1)


def _ago(ts: int | None, now_ms: int) -> str:
    age = _age_s(ts, now_ms)
    if age is None:
        return "never"
    if abs(age) < 120:
        return f"{age:.0f} s ago"
    if abs(age) < 7200:
        return f"{age / 60:.0f} min ago"
    return f"{age / 3600:.1f} h ago"
