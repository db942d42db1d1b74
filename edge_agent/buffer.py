"""The SQLite buffer: an append-only log of records, kept until central acknowledges them.

One file in WAL mode. Records get their sequence number when appended and reach disk in batched commits
(an SD card wears out with every page written; one commit per reading would write a page each). A record
appended but not yet committed when the power goes is lost as if it had never been taken: its seq is
reused, and nothing with that seq was ever sent. Committed records survive crashes and power cuts.

The buffer is bounded: past ``max_bytes`` of records the oldest readings are evicted first (events
outlive readings) and an ``evicted`` event names exactly the seq ranges, count and time span removed.

All SQLite work runs on one dedicated thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from edge_agent.errors import BufferError
from protocols.fleet import CommandResult, Event, FleetError, Reading, decode_record, encode, seq_ranges
from protocols.fleet.events import EVICTED, RECORD_REFUSED
from protocols.fleet.limits import MAX_DATA_BYTES, MAX_MESSAGE_CHARS, MAX_SHORT_TEXT_CHARS, MAX_SOURCE_CHARS
from protocols.fleet.messages import Scalar, Severity
from protocols.quality import Quality

# Bytes a row costs beyond its body (rowid, header, index share); used for the size cap.
ROW_OVERHEAD = 24
# Stop evicting below this share of the cap, so a full buffer does not evict on every commit.
EVICT_TO = 0.9
# Keep a batch well under the fleet's data limit, envelope included.
BATCH_BYTES_BUDGET = MAX_DATA_BYTES // 2
# An eviction event lists at most this many seq ranges; a longer list is split over several events.
RANGES_PER_EVENT = 50

_T = TypeVar("_T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""


class Kind(IntEnum):
    READING = 0
    EVENT = 1
    RESULT = 2


@dataclass(slots=True)
class Batch:
    """Encoded records with seq first..last, ready for ``encode_data_batch``."""

    first: int
    last: int
    readings: list[bytes] = field(default_factory=list)
    events: list[bytes] = field(default_factory=list)
    results: list[bytes] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)  # of the records carried, ascending

    @property
    def count(self) -> int:
        return len(self.readings) + len(self.events) + len(self.results)


@dataclass(frozen=True, slots=True)
class Eviction:
    ranges: list[tuple[int, int]]
    count: int
    first_ts: int
    last_ts: int


class Buffer:
    """Append records, read them in seq order for sending, delete what central acknowledged."""

    def __init__(self, path: Path, *, max_bytes: int, clock_ms: Callable[[], int]) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._clock_ms = clock_ms
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="buffer")
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[int, int, int, bytes]] = []
        self._acked: list[tuple[int, int]] = []
        self._next_seq = 1
        self._bytes = 0
        self._count = 0
        self.stream = ""
        self.boot_count = 0
        self.committed_seq = 0
        self.evicted_total = 0
        self.bytes_committed = 0
        self._commit_listeners: list[Callable[[], None]] = []
        self._staged: dict[str, str] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await self._run(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on the card before anything of it is sent. With NORMAL a power cut
            # could roll back records central already holds, and their seqs would be reused for new
            # readings that central then takes for duplicates. Commits are batched, so this costs
            # one fsync a second, not one per reading.
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BufferError(str(self.path), f"integrity check failed: {check}")
        except sqlite3.Error as exc:
            raise BufferError(str(self.path), f"cannot open ({exc})") from exc
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        self.stream = meta.get("stream") or secrets.token_hex(8)
        self.boot_count = int(meta.get("boot_count", "0")) + 1
        last_seq = int(meta.get("last_seq", "0"))
        max_seq = db.execute("SELECT max(seq) FROM records").fetchone()[0] or 0
        self.committed_seq = max(last_seq, max_seq)
        self._next_seq = self.committed_seq + 1
        count, body_bytes = db.execute("SELECT count(*), total(length(body)) FROM records").fetchone()
        self._count = int(count)
        self._bytes = int(body_bytes) + self._count * ROW_OVERHEAD
        with db:
            db.execute("BEGIN")
            db.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [("stream", self.stream), ("boot_count", str(self.boot_count))],
            )
        self._db = db

    async def close(self) -> None:
        try:
            if self._db is not None:
                await self.flush()
                await self._run(self._db.close)
                self._db = None
        finally:
            self._executor.shutdown(wait=True)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _run(self, fn: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # -- appending (in memory until the next flush) ------------------------------------------------

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def append_reading(
        self,
        point: str,
        ts: int,
        value: Scalar,
        quality: Quality = Quality.GOOD,
        reason: str | None = None,
    ) -> int:
        seq = self._take_seq()
        if isinstance(value, float) and not math.isfinite(value):
            # The protocol carries finite numbers only: a NaN register is a bad reading, said so.
            value, quality, reason = None, Quality.BAD, f"not_finite: the device gave {value}"
        # Texts are cut to the protocol's limits here: central refuses a batch holding an overlong
        # one, and a refused batch would be resent forever.
        try:
            body = encode(
                Reading(
                    seq, point, ts, value, quality, None if reason is None else reason[:MAX_SHORT_TEXT_CHARS]
                )
            )
            decode_record(Reading, body)  # what central would refuse is refused here, at the source
        except (FleetError, OverflowError, TypeError) as exc:
            body = encode(
                Reading(seq, point, ts, None, Quality.BAD, f"refused: {exc}"[:MAX_SHORT_TEXT_CHARS])
            )
        self._pending.append((seq, Kind.READING, ts, body))
        return seq

    def append_event(
        self,
        *,
        ts: int,
        source: str,
        kind: str,
        severity: Severity,
        message: str,
        data: dict[str, Scalar] | None = None,
    ) -> int:
        seq = self._take_seq()
        try:
            body = encode(
                Event(
                    seq,
                    ts,
                    source[:MAX_SOURCE_CHARS],
                    kind,
                    severity,
                    message[:MAX_MESSAGE_CHARS],
                    data or {},
                )
            )
            decode_record(Event, body)
        except (FleetError, OverflowError, TypeError) as exc:
            note = f"event {kind!r} of {source!r} refused: {exc}"[:MAX_MESSAGE_CHARS]
            body = encode(Event(seq, ts, "agent/buffer", RECORD_REFUSED, "warning", note))
        self._pending.append((seq, Kind.EVENT, ts, body))
        return seq

    def append_result(self, *, ts: int, command_id: str, status: str, reason: str | None = None) -> int:
        seq = self._take_seq()
        body = encode(CommandResult(seq, ts, command_id, status, reason))  # type: ignore[arg-type]
        self._pending.append((seq, Kind.RESULT, ts, body))
        return seq

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def backlog(self) -> int:
        """Records waiting for central: committed ones plus those not yet committed."""
        return self._count + len(self._pending)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Called after every commit that made new records available to send."""
        self._commit_listeners.append(listener)

    def mark_acked(self, first: int, last: int) -> None:
        """Central committed first..last: delete them at the next flush (one write, not one per ack)."""
        self._acked.append((first, last))

    # -- committing ---------------------------------------------------------------------------------

    async def flush(self) -> Eviction | None:
        """Commit appended records, staged settings and acknowledged deletions in one transaction;
        then, if over the cap, evict (the eviction and the event naming it in one more)."""
        if not self._pending and not self._acked and not self._staged:
            return None
        rows, self._pending = self._pending, []
        acked, self._acked = self._acked, []
        staged, self._staged = self._staged, {}
        await self._run(lambda: self._commit_sync(rows, acked, staged))
        eviction = await self._evict() if self._bytes > self.max_bytes else None
        if rows or eviction is not None:
            for listener in self._commit_listeners:
                listener()
        return eviction

    async def _evict(self) -> Eviction | None:
        victims = await self._run(self._victims_sync)
        if not victims:
            return None
        stamps = [ts for _, ts, _ in victims]
        eviction = Eviction(
            ranges=seq_ranges(seq for seq, _, _ in victims),
            count=len(victims),
            first_ts=min(stamps),
            last_ts=max(stamps),
        )
        # Records appended while the victims were chosen go in the same transaction, before the
        # events: commits stay in seq order, so the sender, reading past its cursor, never skips one.
        rows, self._pending = self._pending, []
        rows += self._eviction_events(eviction)
        freed = sum(size + ROW_OVERHEAD for _, _, size in victims)
        await self._run(lambda: self._evict_sync([seq for seq, _, _ in victims], rows))
        added = sum(len(body) for *_, body in rows) + len(rows) * ROW_OVERHEAD
        self._count += len(rows) - len(victims)
        self._bytes += added - freed
        self.bytes_committed += added
        self.evicted_total += len(victims)
        self.committed_seq = rows[-1][0]
        return eviction

    def _eviction_events(self, eviction: Eviction) -> list[tuple[int, int, int, bytes]]:
        """Loss is never silent: events naming every evicted seq range, committed with the eviction."""
        rows = []
        for start in range(0, len(eviction.ranges), RANGES_PER_EVENT):
            part = eviction.ranges[start : start + RANGES_PER_EVENT]
            listed = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in part)
            count = sum(b - a + 1 for a, b in part)
            seq, ts = self._take_seq(), self._clock_ms()
            event = Event(
                seq,
                ts,
                "agent/buffer",
                EVICTED,
                "warning",
                f"buffer over its {self.max_bytes}-byte cap: evicted the {count} oldest records not yet"
                f" acknowledged by central, seq {part[0][0]}..{part[-1][1]} (exact ranges in seq_ranges)",
                {
                    "seq_ranges": listed,
                    "count": count,
                    "first_ts": eviction.first_ts,
                    "last_ts": eviction.last_ts,
                    "stream": self.stream,
                },
            )
            rows.append((seq, int(Kind.EVENT), ts, encode(event)))
        return rows

    def _commit_sync(
        self, rows: list[tuple[int, int, int, bytes]], acked: list[tuple[int, int]], staged: dict[str, str]
    ) -> None:
        db = self._require_db()
        try:
            with db:
                db.execute("BEGIN")
                deleted_count, deleted_bytes = self._delete_ranges_sync(db, acked)
                db.executemany(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    [(f"setting.{key}", value) for key, value in staged.items()],
                )
                if rows:
                    db.executemany(
                        "INSERT OR REPLACE INTO records(seq, kind, ts, body) VALUES (?, ?, ?, ?)",
                        rows,
                    )
                    db.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES ('last_seq', ?)",
                        (str(rows[-1][0]),),
                    )
        except sqlite3.Error as exc:
            raise BufferError(str(self.path), f"cannot commit ({exc})") from exc
        added = sum(len(body) for *_, body in rows) + len(rows) * ROW_OVERHEAD
        self._count += len(rows) - deleted_count
        self._bytes += added - deleted_bytes
        self.bytes_committed += added
        if rows:
            self.committed_seq = rows[-1][0]

    @staticmethod
    def _delete_ranges_sync(db: sqlite3.Connection, ranges: Iterable[tuple[int, int]]) -> tuple[int, int]:
        count = 0
        size = 0
        for first, last in ranges:
            n, body_bytes = db.execute(
                "SELECT count(*), total(length(body)) FROM records WHERE seq BETWEEN ? AND ?",
                (first, last),
            ).fetchone()
            if n:
                db.execute("DELETE FROM records WHERE seq BETWEEN ? AND ?", (first, last))
            count += int(n)
            size += int(body_bytes) + int(n) * ROW_OVERHEAD
        return count, size

    def _victims_sync(self) -> list[tuple[int, int, int]]:
        """The oldest readings to delete (then, only if no reading is left, the oldest events)."""
        db = self._require_db()
        target = int(self.max_bytes * EVICT_TO)
        victims: list[tuple[int, int, int]] = []
        freed = 0
        for kinds in ((Kind.READING,), (Kind.EVENT, Kind.RESULT)):
            placeholders = ",".join("?" * len(kinds))
            cursor = db.execute(
                f"SELECT seq, ts, length(body) FROM records WHERE kind IN ({placeholders}) ORDER BY seq",
                [int(k) for k in kinds],
            )
            for seq, ts, size in cursor:
                if self._bytes - freed <= target:
                    break
                victims.append((seq, ts, size))
                freed += size + ROW_OVERHEAD
            cursor.close()
            if self._bytes - freed <= target:
                break
        return sorted(victims)

    def _evict_sync(self, seqs: list[int], rows: list[tuple[int, int, int, bytes]]) -> None:
        db = self._require_db()
        try:
            with db:
                db.execute("BEGIN")
                db.executemany("DELETE FROM records WHERE seq = ?", [(seq,) for seq in seqs])
                db.executemany(
                    "INSERT OR REPLACE INTO records(seq, kind, ts, body) VALUES (?, ?, ?, ?)", rows
                )
                db.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('last_seq', ?)", (str(rows[-1][0]),)
                )
        except sqlite3.Error as exc:
            raise BufferError(str(self.path), f"cannot evict ({exc})") from exc

    # -- other durable state in the same file (command ledger, lighting settings) ---------------------

    async def transact(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in one transaction on the buffer's thread: one file, one writer, no lock fights."""

        def run() -> _T:
            db = self._require_db()
            try:
                with db:
                    db.execute("BEGIN")
                    return work(db)
            except sqlite3.Error as exc:
                raise BufferError(str(self.path), f"cannot write ({exc})") from exc

        return await self._run(run)

    async def get_setting(self, key: str) -> str | None:
        def get(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (f"setting.{key}",)).fetchone()
            return None if row is None else str(row[0])

        return await self.transact(get)

    def stage_setting(self, key: str, value: str) -> None:
        """Write a setting with the next commit, atomically with the records appended before it."""
        self._staged[key] = value

    async def put_setting(self, key: str, value: str | None) -> None:
        def put(db: sqlite3.Connection) -> None:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", (f"setting.{key}",))
            else:
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (f"setting.{key}", value))

        await self.transact(put)

    # -- reading for the sender ---------------------------------------------------------------------

    async def read_batch(self, after: int, max_records: int) -> Batch | None:
        """The committed records with seq > after, oldest first, at most max_records."""
        acked = list(self._acked)
        return await self._run(lambda: self._read_sync(after, None, max_records, acked))

    async def read_range(self, first: int, last: int) -> Batch | None:
        """What is left of first..last (for a resend); None when all of it was evicted or acked."""
        acked = list(self._acked)
        return await self._run(lambda: self._read_sync(first - 1, last, 1_000_000, acked))

    def _read_sync(
        self, after: int, last: int | None, max_records: int, acked: list[tuple[int, int]]
    ) -> Batch | None:
        """Rows in (after, last], leaving out those acknowledged but not yet deleted."""
        db = self._require_db()
        upper = last if last is not None else 2**63 - 1
        try:
            rows = db.execute(
                "SELECT seq, kind, body FROM records WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (after, upper, max_records),
            ).fetchall()
        except sqlite3.Error as exc:
            raise BufferError(str(self.path), f"cannot read ({exc})") from exc
        if acked:
            rows = [row for row in rows if not any(a <= row[0] <= b for a, b in acked)]
        if not rows:
            return None
        batch = Batch(first=rows[0][0], last=rows[0][0])
        size = 0
        lists = {Kind.READING: batch.readings, Kind.EVENT: batch.events, Kind.RESULT: batch.results}
        for seq, kind, body in rows:
            size += len(body) + 2
            if size > BATCH_BYTES_BUDGET and batch.count:
                break
            lists[Kind(kind)].append(body)
            batch.seqs.append(seq)
            batch.last = seq
        if last is not None and batch.count == len(rows):
            # A resend keeps the batch's original range (what was evicted since is simply absent).
            batch.first, batch.last = after + 1, last
        return batch

    def _require_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise BufferError(str(self.path), "not open")
        return self._db

    def file_bytes(self) -> int:
        """Bytes the buffer takes on disk now (database plus write-ahead log)."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            candidate = Path(f"{self.path}{suffix}")
            if candidate.exists():
                total += candidate.stat().st_size
        return total
