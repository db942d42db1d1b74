"""The SQLite buffer: an append-only log of records, kept until central acknowledges them.

One file in WAL mode. Records get their sequence number when appended and reach disk in batched commits,
each commit one compressed block (``edge_agent.record_blocks``): an SD card wears out with every page
written, and a block of a second's readings touches one or two small pages where a row per reading
touched several. A record appended but not yet committed when the power goes is lost as if it had never
been taken: its seq is reused, and nothing with that seq was ever sent. Committed records survive
crashes and power cuts (``synchronous=FULL``: the write-ahead log is on the card before a commit
returns, and nothing is sent before its commit).

Acknowledged records are left out of every read at once and deleted from the file later, in bulk
(every ``DELETE_EVERY_RECORDS`` acknowledged records or ``DELETE_EVERY_S`` seconds, and at close): a
deletion is a write too. After a crash the acknowledged records not yet deleted are sent again, and
central acknowledges the duplicates.

The buffer is bounded: past ``max_bytes`` of blocks the oldest readings are evicted first (events
outlive readings) and an ``evicted`` event names exactly the seq ranges, count and time span removed.

All SQLite work runs on one dedicated thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from edge_agent.acked_ranges import AckedRanges
from edge_agent.errors import BufferError
from edge_agent.journal import story
from edge_agent.record_blocks import MAX_BLOCK_RECORDS, Block, BlockError, Kind, pack, unpack
from protocols.fleet import CommandResult, Event, FleetError, Reading, decode_record, encode, seq_ranges
from protocols.fleet.events import EVICTED, RECORD_REFUSED
from protocols.fleet.limits import MAX_DATA_BYTES, MAX_MESSAGE_CHARS, MAX_SHORT_TEXT_CHARS, MAX_SOURCE_CHARS
from protocols.fleet.messages import Scalar, Severity
from protocols.quality import Quality

__all__ = ["Batch", "Buffer", "Eviction", "Kind", "read_file_last_seq", "read_file_records"]

log = logging.getLogger(__name__)

# Bytes a block costs beyond its body (rowid, header, cell pointer); used for the size cap.
ROW_OVERHEAD = 24
# Stop evicting below this share of the cap, so a full buffer does not evict on every commit.
EVICT_TO = 0.9
# Keep a batch well under the fleet's data limit, envelope included.
BATCH_BYTES_BUDGET = MAX_DATA_BYTES // 2
# An eviction event lists at most this many seq ranges; a longer list is split over several events.
RANGES_PER_EVENT = 50
# Acknowledged blocks are deleted in bulk: after this many acknowledged records, or this long after
# the first of them. Until then they are only left out of reads (at most a resend after a crash).
DELETE_EVERY_RECORDS = 200_000
DELETE_EVERY_S = 10.0
# The file's layout. 1: a row per record (``records``); 2: a compressed block per commit (``blocks``).
FORMAT = 2
# New files: SQLite's smallest pages. A commit of one block (~1 KB) writes its leaf, two overflow pages
# and the header page to the log: about 2 KiB, where 4 KiB pages wrote 8-12 KiB (measured by
# bench/edge_wear.py: 88 B a reading at 100 readings/s with 512 B pages, 103 with 1 KiB). An existing
# file keeps its page size (changing it means rewriting the whole file).
PAGE_SIZE = 512
# The write-ahead log is cut back to this after a checkpoint (it is rewritten from its start anyway).
JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024
MAX_SEQ = 2**63 - 1

_T = TypeVar("_T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    first INTEGER PRIMARY KEY,  -- seq of its first record
    last INTEGER NOT NULL,      -- of its last
    n INTEGER NOT NULL,         -- records in it (last - first + 1 unless some were evicted)
    readings INTEGER NOT NULL,  -- of which readings (eviction takes these first)
    ts_min INTEGER NOT NULL,
    ts_max INTEGER NOT NULL,
    body BLOB NOT NULL          -- record_blocks.pack
);
"""

_Row = tuple[int, int, int, bytes]  # seq, kind, ts, body


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
        self._pending: list[_Row] = []
        self._acked = AckedRanges()
        self._acked_undeleted = 0  # acknowledged records still in the file (an estimate until deleted)
        self._acked_since: float | None = None  # monotonic time of the first ack not yet deleted
        # The latest ack (clock ms, its last seq), written with the deletion it leads to (the same
        # meta page as last_seq, so no extra write) for ``cityedge diag`` to read.
        self._last_ack: tuple[int, int] | None = None
        self._next_seq = 1
        self._bytes = 0
        self._count = 0
        self.stream = ""
        self.boot_count = 0
        self.committed_seq = 0
        self.evicted_total = 0
        self.bytes_committed = 0
        self.page_size = 0
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
            if db.execute("PRAGMA page_count").fetchone()[0] == 0:
                db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only before the first table exists
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on the card before anything of it is sent. With NORMAL the log is
            # synced only at checkpoints: a power cut could roll back records central already holds,
            # and their seqs would be reused for new readings that central then takes for duplicates
            # (silent loss). Commits are batched, so this costs one sync a commit, not one a reading.
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BufferError(str(self.path), f"integrity check failed: {check}")
            found = _file_format(db)
            if found != "1" and found != str(FORMAT):
                # Before anything is written: the file stays as the newer agent left it.
                db.close()
                raise BufferError(
                    str(self.path),
                    f"written by a newer agent (buffer format {found[:20]!r}, this agent reads 1 and"
                    f" {FORMAT}): upgrade the agent, or move the file aside to start a new stream",
                )
            db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise BufferError(str(self.path), f"cannot open ({exc})") from exc
        self.page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        try:
            if _has_table(db, "records"):
                _migrate_rows_to_blocks(db, self.path)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            self.stream = meta.get("stream") or secrets.token_hex(8)
            self.boot_count = int(meta.get("boot_count", "0")) + 1
            last_seq = int(meta.get("last_seq", "0"))
            max_seq, count, nblocks, body_bytes = db.execute(
                "SELECT max(last), total(n), count(*), total(length(body)) FROM blocks"
            ).fetchone()
            with db:
                db.execute("BEGIN")
                db.executemany(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    [("stream", self.stream), ("boot_count", str(self.boot_count)), ("format", str(FORMAT))],
                )
        except sqlite3.Error as exc:
            raise BufferError(str(self.path), f"cannot open ({exc})") from exc
        self.committed_seq = max(last_seq, int(max_seq or 0))
        self._next_seq = self.committed_seq + 1
        self._count = int(count)
        self._bytes = int(body_bytes) + int(nblocks) * ROW_OVERHEAD
        self._db = db

    async def close(self) -> None:
        try:
            if self._db is not None:
                await self.flush(delete=True)
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
        """Records waiting for central: committed and not acknowledged, plus those not yet committed."""
        return max(0, self._count - self._acked_undeleted) + len(self._pending)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Called after every commit that made new records available to send."""
        self._commit_listeners.append(listener)

    def mark_acked(self, first: int, last: int) -> None:
        """Central committed first..last: left out of reads now, deleted in bulk later."""
        if first > last or last > self.committed_seq:
            last = min(last, self.committed_seq)  # only committed records can have been sent
            if first > last:
                return
        self._acked_undeleted += self._acked.add(first, last)
        self._last_ack = (self._clock_ms(), last)
        if self._acked_since is None:
            self._acked_since = time.monotonic()

    def _delete_due(self) -> bool:
        if self._acked_since is None:
            return False
        return (
            self._acked_undeleted >= DELETE_EVERY_RECORDS
            or time.monotonic() - self._acked_since >= DELETE_EVERY_S
        )

    # -- committing ---------------------------------------------------------------------------------

    async def flush(self, *, delete: bool = False) -> Eviction | None:
        """Commit appended records and staged settings in one transaction, with the deletion of the
        acknowledged blocks when due (or ``delete``); then, if over the cap, evict (the eviction and the
        event naming it in one more)."""
        delete = (delete and self._acked_since is not None) or self._delete_due()
        if not self._pending and not delete and not self._staged:
            return None
        rows, self._pending = self._pending, []
        staged, self._staged = self._staged, {}
        acked = self._acked.copy() if delete else None
        deleted = await self._run(lambda: self._commit_sync(rows, staged, acked))
        if deleted is not None:
            self._forget_deleted(*deleted)
        eviction = await self._evict() if self._bytes > self.max_bytes else None
        if rows or eviction is not None:
            for listener in self._commit_listeners:
                listener()
        return eviction

    def _forget_deleted(self, records: int, below: int) -> None:
        """On the loop's thread (where acks are marked): drop the acks of deleted blocks."""
        self._acked.drop_below(below)
        self._acked_undeleted = max(0, self._acked_undeleted - records) if self._acked else 0
        self._acked_since = time.monotonic() if self._acked_undeleted else None

    def _commit_sync(
        self, rows: list[_Row], staged: dict[str, str], acked: AckedRanges | None
    ) -> tuple[int, int] | None:
        """The commit; with ``acked``, (records deleted, the seq below which nothing is left)."""
        db = self._require_db()
        deleted = None
        try:
            with db:
                db.execute("BEGIN")
                if acked is not None:
                    deleted = self._delete_acked_sync(db, acked)
                if staged:
                    db.executemany(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                        [(f"setting.{key}", value) for key, value in staged.items()],
                    )
                self._insert_sync(db, rows)
        except sqlite3.Error as exc:
            raise BufferError(str(self.path), f"cannot commit ({exc})") from exc
        return deleted

    def _insert_sync(self, db: sqlite3.Connection, rows: list[_Row]) -> None:
        if not rows:
            return
        blocks = []
        for start in range(0, len(rows), MAX_BLOCK_RECORDS):
            part = rows[start : start + MAX_BLOCK_RECORDS]
            blocks.append(_block_row(part))
        db.executemany(
            "INSERT OR REPLACE INTO blocks(first, last, n, readings, ts_min, ts_max, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            blocks,
        )
        added = sum(len(b[-1]) + ROW_OVERHEAD for b in blocks)
        self._count += len(rows)
        self._bytes += added
        self.bytes_committed += added
        self.committed_seq = rows[-1][0]

    def _set_last_seq(self, db: sqlite3.Connection, seq: int) -> None:
        # Only written when blocks are deleted: otherwise the newest block says it.
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('last_seq', ?)", (str(seq),))

    def _delete_acked_sync(self, db: sqlite3.Connection, acked: AckedRanges) -> tuple[int, int]:
        """Delete every block whose records are all acknowledged."""
        doomed: dict[int, None] = {}  # a block straddling two ranges is met twice
        count = size = 0
        for a, b in acked.ranges():
            start = db.execute("SELECT max(first) FROM blocks WHERE first <= ?", (a,)).fetchone()[0]
            cursor = db.execute(
                "SELECT first, last, n, length(body) FROM blocks WHERE first >= ? AND first <= ?",
                (start if start is not None else a, b),
            )
            for first, last, n, length in cursor.fetchall():
                if first in doomed:
                    continue
                if n == last - first + 1:
                    gone = acked.covers(first, last)
                else:  # records were evicted from it: look at its seqs
                    (body,) = db.execute("SELECT body FROM blocks WHERE first = ?", (first,)).fetchone()
                    gone = all(seq in acked for seq in _unpack(body, self.path).seqs)
                if gone:
                    doomed[first] = None
                    count += n
                    size += length + ROW_OVERHEAD
        db.executemany("DELETE FROM blocks WHERE first = ?", [(first,) for first in doomed])
        self._set_last_seq(db, self.committed_seq)
        last_ack = self._last_ack
        if last_ack is not None:
            db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('last_ack', ?)",
                (f"{last_ack[0]} {last_ack[1]}",),
            )
        remaining = db.execute("SELECT min(first) FROM blocks").fetchone()[0]
        self._count -= count
        self._bytes -= size
        # Below the oldest block left (or past every committed seq) there is nothing to leave out.
        return count, int(remaining) if remaining is not None else self.committed_seq + 1

    async def _evict(self) -> Eviction | None:
        if self._acked:  # the acknowledged blocks go first: they are no loss
            acked = self._acked.copy()
            deleted = await self._run(lambda: self._commit_sync([], {}, acked))
            if deleted is not None:
                self._forget_deleted(*deleted)
        if self._bytes <= self.max_bytes:
            return None
        acked = self._acked.copy()
        plan = await self._run(lambda: self._victims_sync(acked))
        if plan is None:
            return None
        eviction, rewrites, deletes = plan
        # Records appended while the victims were chosen go in the same transaction, before the
        # events: commits stay in seq order, so the sender, reading past its cursor, never skips one.
        rows, self._pending = self._pending, []
        rows += self._eviction_events(eviction)
        await self._run(lambda: self._evict_sync(deletes, rewrites, rows))
        self.evicted_total += eviction.count
        if eviction.ranges:  # (only acknowledged records went: nothing was lost)
            self._log_eviction(eviction)
        return eviction

    def _log_eviction(self, eviction: Eviction) -> None:
        first, last = eviction.ranges[0][0], eviction.ranges[-1][1]
        log.warning(
            "buffer over its %d-byte cap: evicted the %d oldest records not yet acknowledged, seq %d..%d",
            self.max_bytes,
            eviction.count,
            first,
            last,
            extra=story(
                "evicted",
                seq_first=first,
                seq_last=last,
                count=eviction.count,
                ranges=len(eviction.ranges),
                stream=self.stream,
            ),
        )

    def _eviction_events(self, eviction: Eviction) -> list[_Row]:
        """Loss is never silent: events naming every evicted seq range, committed with the eviction."""
        rows: list[_Row] = []
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

    def _victims_sync(self, acked: AckedRanges) -> tuple[Eviction, list[tuple[int, Block]], list[int]] | None:
        """What to evict: the oldest readings (then, only if no reading is left, the oldest events).

        Returns the eviction, the blocks to rewrite with what they keep, and the blocks to delete."""
        db = self._require_db()
        excess = self._bytes - int(self.max_bytes * EVICT_TO)
        evicted: list[int] = []
        stamps: list[int] = []
        rewrites: list[tuple[int, Block]] = []
        deletes: list[int] = []
        chosen: set[int] = set()
        for readings_only in (True, False):
            where = "WHERE readings > 0" if readings_only else ""
            cursor = db.execute(
                f"SELECT first, last, n, readings, ts_min, ts_max, length(body), body FROM blocks {where}"
                " ORDER BY first"
            )
            for first, _last, n, readings, ts_min, ts_max, length, body in cursor:
                if excess <= 0:
                    break
                if first in chosen:
                    continue
                chosen.add(first)
                share = (length + ROW_OVERHEAD) / n
                whole = n == readings or not readings_only
                if whole and share * n <= excess + share:
                    block = _unpack(body, self.path)
                    gone = [s for s in block.seqs if s not in acked]
                    evicted += gone
                    stamps += [ts_min, ts_max]
                    deletes.append(first)
                    excess -= length + ROW_OVERHEAD
                    continue
                block = _unpack(body, self.path)
                keep = []
                for seq, kind, record in block.records():
                    go = excess > 0 and (kind == Kind.READING or not readings_only)
                    if go:
                        excess -= share
                        if seq not in acked:
                            evicted.append(seq)
                            stamps.append(_record_ts(kind, record))
                    keep.append(not go)
                rewrites.append((first, block.keep(keep)))
            cursor.close()
            if excess <= 0:
                break
        if not evicted and not deletes and not rewrites:
            return None
        eviction = Eviction(
            ranges=seq_ranges(evicted),
            count=len(evicted),
            first_ts=min(stamps, default=0),
            last_ts=max(stamps, default=0),
        )
        return eviction, rewrites, deletes

    def _evict_sync(self, deletes: list[int], rewrites: list[tuple[int, Block]], rows: list[_Row]) -> None:
        db = self._require_db()
        try:
            with db:
                db.execute("BEGIN")
                freed = count = 0
                for first in deletes:
                    n, length = db.execute(
                        "SELECT n, length(body) FROM blocks WHERE first = ?", (first,)
                    ).fetchone()
                    db.execute("DELETE FROM blocks WHERE first = ?", (first,))
                    freed += length + ROW_OVERHEAD
                    count += n
                for first, block in rewrites:
                    n, length = db.execute(
                        "SELECT n, length(body) FROM blocks WHERE first = ?", (first,)
                    ).fetchone()
                    db.execute("DELETE FROM blocks WHERE first = ?", (first,))
                    freed += length + ROW_OVERHEAD
                    count += n
                    if len(block):
                        row = _block_row_of(block)
                        db.execute(
                            "INSERT INTO blocks(first, last, n, readings, ts_min, ts_max, body)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?)",
                            row,
                        )
                        freed -= len(row[-1]) + ROW_OVERHEAD
                        count -= len(block)
                self._count -= count
                self._bytes -= freed
                self._insert_sync(db, rows)
                self._set_last_seq(db, self.committed_seq)
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
        acked = self._acked.copy()
        return await self._run(lambda: self._read_sync(after, None, max_records, acked))

    async def read_range(self, first: int, last: int) -> Batch | None:
        """What is left of first..last (for a resend); None when all of it was evicted or acked."""
        acked = self._acked.copy()
        return await self._run(lambda: self._read_sync(first - 1, last, 1_000_000, acked))

    def _read_sync(self, after: int, last: int | None, max_records: int, acked: AckedRanges) -> Batch | None:
        """Records in (after, last], leaving out those acknowledged but not yet deleted."""
        db = self._require_db()
        upper = last if last is not None else MAX_SEQ
        batch = Batch(first=0, last=0)
        lists = {Kind.READING: batch.readings, Kind.EVENT: batch.events, Kind.RESULT: batch.results}
        size = 0
        cut = False
        try:
            start = db.execute("SELECT max(first) FROM blocks WHERE first <= ?", (after,)).fetchone()[0]
            cursor = db.execute(
                "SELECT body FROM blocks WHERE first >= ? AND first <= ? ORDER BY first",
                (start if start is not None else after + 1, upper),
            )
            for (body,) in cursor:
                block = _unpack(body, self.path)
                room = max_records - batch.count
                if self._take_whole(
                    batch, block, after=after, upper=upper, room=room, acked=acked, size=size
                ):
                    size += sum(map(len, block.bodies)) + 2 * len(block)
                    continue
                for seq, kind, record in block.records():
                    if seq <= after or seq > upper or (acked and seq in acked):
                        continue
                    size += len(record) + 2
                    if batch.count >= max_records or (size > BATCH_BYTES_BUDGET and batch.count):
                        cut = True
                        break
                    lists[kind].append(record)
                    batch.seqs.append(seq)
                if cut:
                    break
            cursor.close()
        except sqlite3.Error as exc:
            raise BufferError(str(self.path), f"cannot read ({exc})") from exc
        if not batch.seqs:
            return None
        batch.first, batch.last = batch.seqs[0], batch.seqs[-1]
        if last is not None and not cut:
            # A resend keeps the batch's original range (what was evicted since is simply absent).
            batch.first, batch.last = after + 1, last
        return batch

    @staticmethod
    def _take_whole(
        batch: Batch, block: Block, *, after: int, upper: int, room: int, acked: AckedRanges, size: int
    ) -> bool:
        """The common case of a drain, a whole block of readings with nothing of it acknowledged, taken
        at once (a record at a time cost most of the sender's time); False when it must go record by
        record."""
        seqs = block.seqs
        if not (seqs and seqs[0] > after and seqs[-1] <= upper and len(seqs) <= room):
            return False
        if block.readings != len(seqs) or acked.overlaps(seqs[0], seqs[-1]):
            return False
        if batch.count and size + sum(map(len, block.bodies)) + 2 * len(seqs) > BATCH_BYTES_BUDGET:
            return False  # record by record: it cuts the batch where the budget ends
        batch.readings.extend(block.bodies)
        batch.seqs.extend(seqs)
        return True

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


def _block_row(rows: Sequence[_Row]) -> tuple[int, int, int, int, int, int, bytes]:
    block = Block([r[0] for r in rows], bytes(r[1] for r in rows), [r[3] for r in rows])
    stamps = [r[2] for r in rows]
    return (rows[0][0], rows[-1][0], len(rows), block.readings, min(stamps), max(stamps), pack(block))


def _block_row_of(block: Block) -> tuple[int, int, int, int, int, int, bytes]:
    """A rewritten block (some records evicted), under its new first seq."""
    stamps = [_record_ts(kind, body) for _, kind, body in block.records()]
    return (block.seqs[0], block.seqs[-1], len(block), block.readings, min(stamps), max(stamps), pack(block))


def _record_ts(kind: Kind, body: bytes) -> int:
    if kind == Kind.READING:
        return decode_record(Reading, body).ts
    if kind == Kind.EVENT:
        return decode_record(Event, body).ts
    return decode_record(CommandResult, body).ts


def _unpack(body: bytes, path: Path) -> Block:
    try:
        return unpack(body)
    except BlockError as exc:
        raise BufferError(
            str(path), f"{exc}: the file is damaged; move it aside to start a new stream"
        ) from exc


def _file_format(db: sqlite3.Connection) -> str:
    """The format the file says it has: "1" for a file of before formats were written down."""
    if not _has_table(db, "meta"):
        return str(FORMAT)  # a new file
    row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    return "1" if row is None else str(row[0])


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None


def _migrate_rows_to_blocks(db: sqlite3.Connection, path: Path) -> None:
    """Format 1 (a row per record) to blocks, in one transaction: a cabinet upgraded in the field keeps
    every unsent record, with its seq; a power cut during it leaves the old format whole."""
    started = time.monotonic()
    moved = 0
    with db:
        db.execute("BEGIN IMMEDIATE")
        last_seq = db.execute("SELECT max(seq) FROM records").fetchone()[0]
        cursor = db.execute("SELECT seq, kind, ts, body FROM records ORDER BY seq")
        while part := cursor.fetchmany(MAX_BLOCK_RECORDS):
            db.execute(
                "INSERT INTO blocks(first, last, n, readings, ts_min, ts_max, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                _block_row(part),
            )
            moved += len(part)
        db.execute("DROP TABLE records")
        if last_seq is not None:
            known = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
            seq = max(int(last_seq), int(known[0]) if known else 0)
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('last_seq', ?)", (str(seq),))
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('format', ?)", (str(FORMAT),))
    log.info(
        "buffer %s: %d records moved to the block format in %.1f s", path, moved, time.monotonic() - started
    )


def read_file_records(path: Path) -> list[tuple[int, Kind, bytes]]:
    """Every record in a buffer file, (seq, kind, body) in seq order: for diagnostics and tests that
    look into a file another process writes (read only; acknowledged records not yet deleted are in)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out: list[tuple[int, Kind, bytes]] = []
        for (body,) in db.execute("SELECT body FROM blocks ORDER BY first"):
            out += _unpack(body, path).records()
        return out
    finally:
        db.close()


def read_file_last_seq(path: Path) -> int:
    """The last seq committed to a buffer file (read only, like ``read_file_records``)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        newest = db.execute("SELECT max(last) FROM blocks").fetchone()[0]
        return max(int(row[0]) if row else 0, int(newest or 0))
    finally:
        db.close()
