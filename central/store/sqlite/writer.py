"""The write side of the SQLite store. Every method runs on the store's single writer thread.

A group of batches is one transaction (group commit): with many cabinets sending small batches, the
cost of a commit is shared by all of them. Each batch sits in a SAVEPOINT so that one batch the
database refuses is quarantined without failing the others.

What a batch implies is written in the batch's transaction too: command results move their command's
status, alarm events the alarm's state and its episodes, by the rules of ``central.store.rules`` and
``central.store.episodes``. A batch is therefore
acknowledged only once everything it changes is committed.

The ids of streams and points are cached in memory: the hot loop over readings is one tuple build and
one dict lookup per reading. Rows of those tables are never deleted or renumbered, so the caches stay
valid even when several processes write to the same file; they are dropped on rollback, since ids
handed out inside a rolled-back transaction do not exist.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from operator import lt
from typing import TypeVar

import msgspec

from central.record_time import time_suspect
from central.store import rules
from central.store.kpi_days import changed_days
from central.store.rollups import is_counter
from central.store.rows import BatchOutcome, Purged, QuarantineEntry, ReceivedBatch, ReceivedStatus
from central.store.sqlite import quarter_parts
from central.store.sqlite.blocks import bucket_slices, fresh_readings, hold, insert_columns, purge
from central.store.sqlite.commands import apply_results
from central.store.sqlite.episodes import apply_episodes, unseen_alarm_events
from central.store.sqlite.kpi_days import bump_changes
from central.store.sqlite.rollups import apply_quarters
from central.store.sqlite.views import apply_alarm_events, apply_latest_readings, flag_time_suspects
from protocols.fleet import DataBatch, Status

_json = msgspec.json.Encoder()
_T = TypeVar("_T")


def _json_text(value: object) -> str:
    return _json.encode(value).decode()


_UPSERT_SEEN = """
INSERT INTO cabinets (id, last_seen_ms, backlog) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    last_seen_ms = max(coalesce(last_seen_ms, 0), excluded.last_seen_ms),
    backlog = excluded.backlog
"""
_UPSERT_BIRTH = """
INSERT INTO cabinets (id, online, last_seen_ms, status_ts_ms, version, config_hash, stream,
                      boot_count, backlog, inventory)
VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    online = 1,
    last_seen_ms = max(coalesce(last_seen_ms, 0), excluded.last_seen_ms),
    status_ts_ms = excluded.status_ts_ms,
    version = excluded.version,
    config_hash = excluded.config_hash,
    stream = excluded.stream,
    boot_count = excluded.boot_count,
    backlog = excluded.backlog,
    inventory = excluded.inventory
"""
# A last will carries what the cabinet said when it connected: only "offline" is news.
_UPSERT_OFFLINE = """
INSERT INTO cabinets (id, online, status_ts_ms) VALUES (?, 0, ?)
ON CONFLICT (id) DO UPDATE SET online = 0, status_ts_ms = excluded.status_ts_ms
"""
_INSERT_EVENT = "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_RESULT = "INSERT OR IGNORE INTO command_results VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_QUARANTINE = """
INSERT INTO quarantine (received_ms, topic, reason, detail, size, payload) VALUES (?, ?, ?, ?, ?, ?)
"""
_ADD_COUNTER = "UPDATE counters SET value = value + ? WHERE name = ?"


class SqliteWriter:
    """Owns the writer connection. Not thread-safe by design: one thread calls it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._streams: dict[tuple[str, str], int] = {}
        self._points: dict[str, dict[str, int]] = {}
        self._counters: dict[str, set[int]] = {}  # per cabinet: the pks of its counter points
        self._purge_from = 0  # where the walk of the retention purge goes on from

    def write(
        self,
        batches: Sequence[ReceivedBatch],
        statuses: Sequence[ReceivedStatus],
        quarantine: Sequence[QuarantineEntry],
    ) -> list[BatchOutcome]:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            outcomes = [self._write_isolated(cur, received) for received in batches]
            for received_status in statuses:
                self._write_status(cur, received_status.status, received_status.received_ms)
            unstorable = [
                rules.unstorable_entry(received, outcome.unstorable)
                for received, outcome in zip(batches, outcomes, strict=True)
                if outcome.unstorable is not None
            ]
            self._write_quarantine(cur, [*quarantine, *unstorable])
            self._add_counters(cur, outcomes)
            bump_changes(cur, changed_days(batches, outcomes))  # the KPI day cache's days to redo
            cur.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return outcomes

    def transaction(self, fn: Callable[[sqlite3.Cursor], _T]) -> _T:
        """Run ``fn`` in one transaction of its own (commands, groups, expiry)."""
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            result = fn(cur)
            cur.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return result

    def purge(self, *, before_ms: int, limit: int) -> Purged:
        """One short transaction of the retention purge (``RetentionStore.purge_readings``)."""
        deleted, following = self.transaction(
            lambda cur: purge(cur, before_ms=before_ms, limit=limit, from_stream=self._purge_from)
        )
        self._purge_from = 0 if following is None else following
        return Purged(deleted, following is None)

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self._streams.clear()
        self._points.clear()
        self._counters.clear()

    def _write_isolated(self, cur: sqlite3.Cursor, received: ReceivedBatch) -> BatchOutcome:
        batch = received.batch
        cur.execute("SAVEPOINT batch")
        try:
            outcome = self._write_batch(cur, batch, received.received_ms)
        except (OverflowError, sqlite3.IntegrityError, sqlite3.InterfaceError) as exc:
            # The batch was valid on the wire but holds something SQLite cannot keep (an integer
            # beyond 64 bits): quarantine it, keep the rest of the group.
            cur.execute("ROLLBACK TO batch")
            cur.execute("RELEASE batch")
            self._streams.clear()
            self._points.clear()
            self._counters.clear()
            return BatchOutcome(batch.cabinet, batch.stream, batch.first, batch.last, 0, 0, 0, 0, str(exc))
        cur.execute("RELEASE batch")
        return outcome

    def _write_batch(self, cur: sqlite3.Cursor, batch: DataBatch, received_ms: int) -> BatchOutcome:
        cabinet = batch.cabinet
        cur.execute(_UPSERT_SEEN, (cabinet, received_ms, batch.backlog))
        stream_pk = self._stream_pk(cur, cabinet, batch.stream)
        seqs = [r.seq for r in batch.readings]
        readings_new = 0
        readings_clean = False
        if batch.readings:
            readings_new, readings_clean = self._insert_readings(cur, stream_pk, batch, seqs, received_ms)
        events_new = self._insert_events(cur, stream_pk, batch, received_ms) if batch.events else 0
        results_new = self._insert_results(cur, stream_pk, batch) if batch.results else 0
        flag_time_suspects(cur, stream_pk, batch, received_ms, readings_clean=readings_clean)
        if batch.events or batch.results:
            seqs = [*seqs, *(e.seq for e in batch.events), *(r.seq for r in batch.results)]
        hold(cur, stream_pk, seqs)
        total = len(batch.readings) + len(batch.events) + len(batch.results)
        new = readings_new + events_new + results_new
        return BatchOutcome(
            cabinet, batch.stream, batch.first, batch.last, readings_new, events_new, results_new, total - new
        )

    def _insert_readings(
        self, cur: sqlite3.Cursor, stream_pk: int, batch: DataBatch, seqs: list[int], received_ms: int
    ) -> tuple[int, bool]:
        """(how many were new, whether every reading of the batch is free of time suspicion)."""
        cabinet = batch.cabinet
        points = self._points.get(cabinet)
        if points is None:
            points = self._load_points(cur, cabinet)
        # Time suspicion is a bound on each side of the stamp: the extremes of the batch decide it.
        stamps = [r.ts for r in batch.readings]
        clean = not (time_suspect(min(stamps), received_ms) or time_suspect(max(stamps), received_ms))
        fresh = fresh_readings(cur, stream_pk, batch.readings, seqs)
        if not fresh:
            return 0, clean
        if len(fresh) != len(batch.readings):
            seqs = [r.seq for r in fresh]
            stamps = [r.ts for r in fresh]
        get = points.get
        new_point = self._new_point
        # One list per column, each a comprehension (ids start at 1, never 0).
        names = [r.point for r in fresh]
        pks = [get(name) or new_point(cur, cabinet, name) for name in names]
        values = [r.value for r in fresh]
        qualities = [r.quality for r in fresh]
        parts = bucket_slices(stamps)
        columns = (seqs, pks, stamps, values, qualities, [r.reason for r in fresh])
        insert_columns(cur, stream_pk, columns, parts)
        # In seq order and none suspect (a batch as the agent sends it): the last of each point wins.
        ascending = all(map(lt, seqs, seqs[1:]))
        apply_latest_readings(cur, stream_pk, fresh, points, received_ms, simple=clean and ascending)
        # Only what was stored now is counted: a duplicate never reaches a rollup.
        counters = self._counters[cabinet]
        plain, samples = quarter_parts.cut(
            parts, stream_pk, (seqs, pks, stamps, values, qualities), counters, ascending=ascending
        )
        # The wall clock (not the batch's stamps): the daily rollups kept for old days use it too.
        apply_quarters(cur, plain, samples, now_ms=time.time_ns() // 1_000_000)
        return len(fresh), clean

    def _insert_events(self, cur: sqlite3.Cursor, stream_pk: int, batch: DataBatch, received_ms: int) -> int:
        cabinet = batch.cabinet
        rows = [
            (stream_pk, e.seq, cabinet, e.ts, e.source, e.kind, e.severity, e.message, _json_text(e.data))
            for e in batch.events
        ]
        unseen = unseen_alarm_events(cur, stream_pk, batch.events)
        cur.executemany(_INSERT_EVENT, rows)
        new = cur.rowcount
        apply_alarm_events(cur, stream_pk, rules.alarm_updates(cabinet, batch.events, received_ms))
        apply_episodes(cur, stream_pk, cabinet, unseen, received_ms)
        return new

    def _insert_results(self, cur: sqlite3.Cursor, stream_pk: int, batch: DataBatch) -> int:
        cabinet = batch.cabinet
        rows = [(stream_pk, r.seq, cabinet, r.ts, r.command_id, r.status, r.reason) for r in batch.results]
        cur.executemany(_INSERT_RESULT, rows)
        new = cur.rowcount
        # Duplicates too: applying a result twice changes nothing (see sqlite_commands).
        apply_results(cur, cabinet, batch.results)
        return new

    def _stream_pk(self, cur: sqlite3.Cursor, cabinet: str, stream: str) -> int:
        key = (cabinet, stream)
        pk = self._streams.get(key)
        if pk is None:
            cur.execute("INSERT OR IGNORE INTO streams (cabinet, stream) VALUES (?, ?)", key)
            row = cur.execute("SELECT id FROM streams WHERE cabinet = ? AND stream = ?", key).fetchone()
            pk = int(row[0])
            self._streams[key] = pk
        return pk

    def _load_points(self, cur: sqlite3.Cursor, cabinet: str) -> dict[str, int]:
        rows = cur.execute("SELECT name, id FROM points WHERE cabinet = ?", (cabinet,))
        points = {str(name): int(pk) for name, pk in rows}
        self._points[cabinet] = points
        self._counters[cabinet] = {pk for name, pk in points.items() if is_counter(name)}
        return points

    def _new_point(self, cur: sqlite3.Cursor, cabinet: str, name: str) -> int:
        cur.execute("INSERT OR IGNORE INTO points (cabinet, name) VALUES (?, ?)", (cabinet, name))
        row = cur.execute("SELECT id FROM points WHERE cabinet = ? AND name = ?", (cabinet, name)).fetchone()
        pk = int(row[0])
        self._points[cabinet][name] = pk
        if is_counter(name):
            self._counters[cabinet].add(pk)
        return pk

    def _write_status(self, cur: sqlite3.Cursor, status: Status, received_ms: int) -> None:
        if not status.online:
            cur.execute(_UPSERT_OFFLINE, (status.cabinet, status.ts))
            return
        cur.execute(
            _UPSERT_BIRTH,
            (
                status.cabinet,
                received_ms,
                status.ts,
                status.version,
                status.config_hash,
                status.stream,
                status.boot_count,
                status.backlog,
                _json_text(status.inventory),
            ),
        )

    def _write_quarantine(self, cur: sqlite3.Cursor, entries: Sequence[QuarantineEntry]) -> None:
        if not entries:
            return
        cap = rules.QUARANTINE_PAYLOAD_BYTES
        rows = [
            (e.received_ms, e.topic, e.reason, e.detail, len(e.payload), e.payload[:cap]) for e in entries
        ]
        cur.executemany(_INSERT_QUARANTINE, rows)
        cur.execute(_ADD_COUNTER, (len(entries), "quarantined"))
        (kept,) = cur.execute("SELECT count(*) FROM quarantine").fetchone()
        excess = rules.quarantine_excess(int(kept))
        if excess > 0:
            cur.execute(
                "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine ORDER BY id LIMIT ?)",
                (excess,),
            )
            cur.execute(_ADD_COUNTER, (excess, "quarantine_evicted"))

    def _add_counters(self, cur: sqlite3.Cursor, outcomes: Sequence[BatchOutcome]) -> None:
        added = {
            "readings": sum(o.readings_new for o in outcomes),
            "events": sum(o.events_new for o in outcomes),
            "results": sum(o.results_new for o in outcomes),
        }
        cur.executemany(_ADD_COUNTER, [(n, name) for name, n in added.items() if n])
