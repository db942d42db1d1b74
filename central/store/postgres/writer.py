"""The write side of the PostgreSQL store: one ``write()`` group is one transaction.

Same semantics as the SQLite writer (``central.store.sqlite.writer``), in set-oriented statements:
a batch's readings are one ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING`` (the
arrays travel in binary: one round trip per batch, and the row count is the number of new records).
bench/ingest.py measures it against a raw COPY of the same rows.

A group is first written without savepoints (subtransactions cost, and overflow past 64 per
transaction). If the database refuses a batch (a number out of range, a NUL in a text), the
transaction is rolled back and written again with each batch in a SAVEPOINT: the refused ones are
quarantined in that same transaction, the others stored.

Several workers may write at once (on one PostgreSQL): each transaction first upserts the cabinets
it touches in sorted order, and every other row it changes belongs to one of those cabinets, so the
cabinet rows act as locks taken in one order, and two workers never deadlock on each other's
cabinets. A deadlock or serialization failure that happens anyway is retried.

The ids of streams and points are cached; ids seen inside a transaction join the cache only when it
commits (an id handed out by a rolled-back transaction does not exist).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg
from psycopg import errors

from central.record_time import time_suspect
from central.store import rules
from central.store.postgres import partitions as parts
from central.store.postgres.commands import apply_results
from central.store.postgres.schema import COUNTER_SHARDS
from central.store.postgres.values import split
from central.store.rows import BatchOutcome, QuarantineEntry, ReceivedBatch, ReceivedStatus
from protocols.fleet import DataBatch, Status

Conn = psycopg.AsyncConnection[tuple[Any, ...]]
Cursor = psycopg.AsyncCursor[tuple[Any, ...]]

_json = msgspec.json.Encoder()
RETRIES = 3

# What "the database refuses this batch" looks like: its content, not the database's health.
REFUSALS: tuple[type[Exception], ...] = (
    psycopg.DataError,
    psycopg.IntegrityError,
    errors.ProgramLimitExceeded,
)
_RETRYABLE: tuple[type[Exception], ...] = (errors.DeadlockDetected, errors.SerializationFailure)

_UPSERT_SEEN = """
INSERT INTO cabinets (id, last_seen_ms, backlog)
SELECT * FROM unnest(%s::text[], %s::int8[], %s::int8[]) ORDER BY 1
ON CONFLICT (id) DO UPDATE SET
    last_seen_ms = greatest(coalesce(cabinets.last_seen_ms, 0), excluded.last_seen_ms),
    backlog = excluded.backlog
"""
_UPSERT_BIRTH = """
INSERT INTO cabinets (id, online, last_seen_ms, status_ts_ms, version, config_hash, stream,
                      boot_count, backlog, inventory)
VALUES (%s, true, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    online = true,
    last_seen_ms = greatest(coalesce(cabinets.last_seen_ms, 0), excluded.last_seen_ms),
    status_ts_ms = excluded.status_ts_ms,
    version = excluded.version,
    config_hash = excluded.config_hash,
    stream = excluded.stream,
    boot_count = excluded.boot_count,
    backlog = excluded.backlog,
    inventory = excluded.inventory
"""
_UPSERT_OFFLINE = """
INSERT INTO cabinets (id, online, status_ts_ms) VALUES (%s, false, %s)
ON CONFLICT (id) DO UPDATE SET online = false, status_ts_ms = excluded.status_ts_ms
"""
_INSERT_READINGS = """
INSERT INTO readings (stream_pk, seq, point_pk, ts, quality, reason, vf, vi, vb, vs)
SELECT %s, * FROM unnest(
    %s::int8[], %s::int4[], %s::int8[], %s::int2[], %s::text[],
    %s::float8[], %s::int8[], %s::bool[], %s::text[]
)
ON CONFLICT DO NOTHING
"""
_UPSERT_LATEST = """
INSERT INTO latest_readings (point_pk, stream_pk, seq, ts, quality, reason, vf, vi, vb, vs)
SELECT u.point_pk, %s, u.seq, u.ts, u.quality, u.reason, u.vf, u.vi, u.vb, u.vs
FROM unnest(
    %s::int4[], %s::int8[], %s::int8[], %s::int2[], %s::text[],
    %s::float8[], %s::int8[], %s::bool[], %s::text[]
) AS u (point_pk, seq, ts, quality, reason, vf, vi, vb, vs)
ORDER BY u.point_pk
ON CONFLICT (point_pk) DO UPDATE SET
    stream_pk = excluded.stream_pk, seq = excluded.seq, ts = excluded.ts, quality = excluded.quality,
    reason = excluded.reason, vf = excluded.vf, vi = excluded.vi, vb = excluded.vb, vs = excluded.vs
WHERE (excluded.stream_pk, excluded.seq) > (latest_readings.stream_pk, latest_readings.seq)
"""
_INSERT_EVENTS = """
INSERT INTO events (stream_pk, seq, cabinet, ts, source, kind, severity, message, data)
SELECT %s, u.seq, %s, u.ts, u.source, u.kind, u.severity, u.message, u.data
FROM unnest(%s::int8[], %s::int8[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])
    AS u (seq, ts, source, kind, severity, message, data)
ON CONFLICT DO NOTHING
"""
_INSERT_RESULTS = """
INSERT INTO command_results (stream_pk, seq, cabinet, ts, command_id, status, reason)
SELECT %s, u.seq, %s, u.ts, u.command_id, u.status, u.reason
FROM unnest(%s::int8[], %s::int8[], %s::text[], %s::text[], %s::text[])
    AS u (seq, ts, command_id, status, reason)
ON CONFLICT DO NOTHING
"""
_INSERT_SUSPECTS = """
INSERT INTO time_suspect (stream_pk, seq, ts, received_ms)
SELECT %s, u.seq, u.ts, %s FROM unnest(%s::int8[], %s::int8[]) AS u (seq, ts)
ON CONFLICT DO NOTHING
"""
# The newest event about an alarm wins in (stream, seq) order; replaying one changes nothing.
_UPSERT_ALARM = """
INSERT INTO alarms VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (cabinet, device, alarm) DO UPDATE SET
    active = excluded.active,
    severity = excluded.severity,
    message = excluded.message,
    raised_ms = CASE WHEN excluded.active THEN excluded.raised_ms ELSE alarms.raised_ms END,
    cleared_ms = excluded.cleared_ms,
    updated_ms = excluded.updated_ms,
    updated_stream = excluded.updated_stream,
    updated_seq = excluded.updated_seq
WHERE (excluded.updated_stream, excluded.updated_seq) > (alarms.updated_stream, alarms.updated_seq)
"""
_INSERT_QUARANTINE = """
INSERT INTO quarantine (received_ms, topic, reason, detail, size, payload)
SELECT * FROM unnest(%s::int8[], %s::text[], %s::text[], %s::text[], %s::int8[], %s::bytea[])
"""
_EVICT_QUARANTINE = """
DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine ORDER BY id LIMIT %s)
"""
_ADD_COUNTERS = """
UPDATE counters SET readings = readings + %s, events = events + %s, results = results + %s,
    quarantined = quarantined + %s, quarantine_evicted = quarantine_evicted + %s
WHERE shard = %s
"""


class _Refused(Exception):
    """A batch the database refused, in a transaction without savepoints: write it again with them."""


class _Txn:
    """Ids learnt inside one transaction: they join the writer's cache when it commits."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, str], int] = {}
        self.points: dict[str, dict[str, int]] = {}


class PgWriter:
    """Writes groups of batches. Safe to call from several tasks at once (each on its connection)."""

    def __init__(self, partitions: parts.Partitions) -> None:
        self._partitions = partitions
        self._streams: dict[tuple[str, str], int] = {}
        self._points: dict[str, dict[str, int]] = {}
        # Counter row of this process: workers add to different rows (see schema.counters).
        self._shard = os.getpid() % COUNTER_SHARDS

    async def prepare(self, conn: Conn, batches: Sequence[ReceivedBatch]) -> None:
        """Make the day partitions the group's readings need (in transactions of their own)."""
        days = {
            parts.day_of(r.ts)
            for received in batches
            for r in received.batch.readings
            if parts.in_window(parts.day_of(r.ts), received.received_ms)
        }
        if days:
            await self._partitions.ensure(conn, days)

    async def write(
        self,
        conn: Conn,
        batches: Sequence[ReceivedBatch],
        statuses: Sequence[ReceivedStatus],
        quarantine: Sequence[QuarantineEntry],
    ) -> list[BatchOutcome]:
        isolated = False
        attempt = 0
        while True:
            attempt += 1
            txn = _Txn()
            try:
                async with conn.transaction():
                    outcomes = await self._write_group(
                        conn, txn, batches, statuses, quarantine, isolated=isolated
                    )
            except _Refused:
                isolated = True
                continue
            except _RETRYABLE:
                if attempt >= RETRIES:
                    raise
                continue
            self._commit(txn)
            return outcomes

    def _commit(self, txn: _Txn) -> None:
        self._streams.update(txn.streams)
        for cabinet, points in txn.points.items():
            self._points.setdefault(cabinet, {}).update(points)

    async def _write_group(
        self,
        conn: Conn,
        txn: _Txn,
        batches: Sequence[ReceivedBatch],
        statuses: Sequence[ReceivedStatus],
        quarantine: Sequence[QuarantineEntry],
        *,
        isolated: bool,
    ) -> list[BatchOutcome]:
        cur = conn.cursor()
        # The cabinets first, in sorted order: the lock order every worker follows.
        seen: dict[str, tuple[int, int]] = {}
        for received in batches:
            b = received.batch
            last_seen = max(seen.get(b.cabinet, (received.received_ms, 0))[0], received.received_ms)
            seen[b.cabinet] = (last_seen, b.backlog)
        if seen and not isolated:
            await self._upsert_seen(cur, seen)
        outcomes = []
        for received in batches:
            if not isolated:
                try:
                    outcomes.append(await self._write_batch(cur, txn, received.batch, received.received_ms))
                except REFUSALS as exc:
                    raise _Refused from exc
                continue
            outcomes.append(await self._write_isolated(conn, cur, txn, received))
        for received_status in statuses:
            await self._write_status(cur, received_status.status, received_status.received_ms)
        unstorable = [
            rules.unstorable_entry(received, outcome.unstorable)
            for received, outcome in zip(batches, outcomes, strict=True)
            if outcome.unstorable is not None
        ]
        evicted = await self._write_quarantine(cur, [*quarantine, *unstorable])
        await cur.execute(
            _ADD_COUNTERS,
            (
                sum(o.readings_new for o in outcomes),
                sum(o.events_new for o in outcomes),
                sum(o.results_new for o in outcomes),
                len(quarantine) + len(unstorable),
                evicted,
                self._shard,
            ),
        )
        return outcomes

    async def _write_isolated(
        self, conn: Conn, cur: Cursor, txn: _Txn, received: ReceivedBatch
    ) -> BatchOutcome:
        batch = received.batch
        inner = _Txn()
        try:
            async with conn.transaction():  # a SAVEPOINT
                await self._upsert_seen(cur, {batch.cabinet: (received.received_ms, batch.backlog)})
                outcome = await self._write_batch(cur, inner, batch, received.received_ms)
        except REFUSALS as exc:
            return BatchOutcome(
                batch.cabinet, batch.stream, batch.first, batch.last, 0, 0, 0, 0, refusal_detail(exc)
            )
        txn.streams.update(inner.streams)
        for cabinet, points in inner.points.items():
            txn.points.setdefault(cabinet, {}).update(points)
        return outcome

    async def _upsert_seen(self, cur: Cursor, seen: dict[str, tuple[int, int]]) -> None:
        ids = sorted(seen)
        await cur.execute(_UPSERT_SEEN, (ids, [seen[c][0] for c in ids], [seen[c][1] for c in ids]))

    async def _write_batch(self, cur: Cursor, txn: _Txn, batch: DataBatch, received_ms: int) -> BatchOutcome:
        cabinet = batch.cabinet
        stream_pk = await self._stream_pk(cur, txn, cabinet, batch.stream)
        readings_new = await self._insert_readings(cur, txn, stream_pk, batch, received_ms)
        events_new = await self._insert_events(cur, stream_pk, batch, received_ms)
        results_new = await self._insert_results(cur, stream_pk, batch)
        await self._flag_time_suspects(cur, stream_pk, batch, received_ms)
        total = len(batch.readings) + len(batch.events) + len(batch.results)
        new = readings_new + events_new + results_new
        return BatchOutcome(
            cabinet, batch.stream, batch.first, batch.last, readings_new, events_new, results_new, total - new
        )

    async def _insert_readings(
        self,
        cur: Cursor,
        txn: _Txn,
        stream_pk: int,
        batch: DataBatch,
        received_ms: int,
    ) -> int:
        readings = batch.readings
        if not readings:
            return 0
        points = await self._point_pks(cur, txn, batch.cabinet, {r.point for r in readings})
        vf, vi, vb, vs = split([r.value for r in readings])
        await cur.execute(
            _INSERT_READINGS,
            (
                stream_pk,
                [r.seq for r in readings],
                [points[r.point] for r in readings],
                [r.ts for r in readings],
                [r.quality for r in readings],
                [r.reason for r in readings],
                vf,
                vi,
                vb,
                vs,
            ),
        )
        new = cur.rowcount
        # Each point's newest reading of the batch (by seq, not a time suspect) becomes its latest
        # value unless a newer one in sequence already is: one row per point.
        newest: dict[str, int] = {}
        for i, r in enumerate(readings):
            if not time_suspect(r.ts, received_ms):
                j = newest.get(r.point)
                if j is None or r.seq > readings[j].seq:
                    newest[r.point] = i
        if newest:
            chosen = [readings[i] for i in newest.values()]
            lf, li, lb, ls = split([r.value for r in chosen])
            await cur.execute(
                _UPSERT_LATEST,
                (
                    stream_pk,
                    [points[r.point] for r in chosen],
                    [r.seq for r in chosen],
                    [r.ts for r in chosen],
                    [r.quality for r in chosen],
                    [r.reason for r in chosen],
                    lf,
                    li,
                    lb,
                    ls,
                ),
            )
        return new

    async def _insert_events(self, cur: Cursor, stream_pk: int, batch: DataBatch, received_ms: int) -> int:
        events = batch.events
        if not events:
            return 0
        cabinet = batch.cabinet
        await cur.execute(
            _INSERT_EVENTS,
            (
                stream_pk,
                cabinet,
                [e.seq for e in events],
                [e.ts for e in events],
                [e.source for e in events],
                [e.kind for e in events],
                [e.severity for e in events],
                [e.message for e in events],
                [_json.encode(e.data).decode() for e in events],
            ),
        )
        new = cur.rowcount
        updates = rules.alarm_updates(cabinet, events, received_ms)
        if updates:
            await cur.executemany(
                _UPSERT_ALARM,
                [
                    (
                        u.cabinet,
                        u.device,
                        u.alarm,
                        u.active,
                        u.severity,
                        u.message,
                        u.raised_ms,
                        u.cleared_ms,
                        u.updated_ms,
                        stream_pk,
                        u.seq,
                    )
                    for u in sorted(updates, key=lambda u: u.seq)
                ],
            )
        return new

    async def _insert_results(self, cur: Cursor, stream_pk: int, batch: DataBatch) -> int:
        results = batch.results
        if not results:
            return 0
        await cur.execute(
            _INSERT_RESULTS,
            (
                stream_pk,
                batch.cabinet,
                [r.seq for r in results],
                [r.ts for r in results],
                [r.command_id for r in results],
                [r.status for r in results],
                [r.reason for r in results],
            ),
        )
        new = cur.rowcount
        # Duplicates too: applying a result twice changes nothing (central.store.rules).
        await apply_results(cur, batch.cabinet, results)
        return new

    async def _flag_time_suspects(
        self, cur: Cursor, stream_pk: int, batch: DataBatch, received_ms: int
    ) -> None:
        suspects = [
            (record.seq, record.ts)
            for records in (batch.readings, batch.events, batch.results)
            for record in records
            if time_suspect(record.ts, received_ms)
        ]
        if suspects:
            await cur.execute(
                _INSERT_SUSPECTS,
                (stream_pk, received_ms, [s for s, _ in suspects], [t for _, t in suspects]),
            )

    async def _stream_pk(self, cur: Cursor, txn: _Txn, cabinet: str, stream: str) -> int:
        key = (cabinet, stream)
        pk = self._streams.get(key) or txn.streams.get(key)
        if pk is None:
            await cur.execute(
                "INSERT INTO streams (cabinet, stream) VALUES (%s, %s) ON CONFLICT DO NOTHING", key
            )
            await cur.execute("SELECT id FROM streams WHERE cabinet = %s AND stream = %s", key)
            row = await cur.fetchone()
            assert row is not None
            pk = int(row[0])
            txn.streams[key] = pk
        return pk

    async def _point_pks(self, cur: Cursor, txn: _Txn, cabinet: str, names: set[str]) -> dict[str, int]:
        known = self._points.get(cabinet, {})
        pending = txn.points.setdefault(cabinet, {})
        missing = [n for n in names if n not in known and n not in pending]
        if missing:
            if cabinet not in self._points:
                missing = sorted(set(missing))  # first sight of this cabinet here: learn all of it
                await cur.execute(
                    "INSERT INTO points (cabinet, name) SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
                    (cabinet, missing),
                )
                await cur.execute("SELECT name, id FROM points WHERE cabinet = %s", (cabinet,))
            else:
                missing.sort()
                await cur.execute(
                    "INSERT INTO points (cabinet, name) SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
                    (cabinet, missing),
                )
                await cur.execute(
                    "SELECT name, id FROM points WHERE cabinet = %s AND name = ANY(%s::text[])",
                    (cabinet, missing),
                )
            for name, pk in await cur.fetchall():
                pending[str(name)] = int(pk)
        if not pending:
            return known
        return {**known, **pending}

    async def _write_status(self, cur: Cursor, status: Status, received_ms: int) -> None:
        if not status.online:
            await cur.execute(_UPSERT_OFFLINE, (status.cabinet, status.ts))
            return
        await cur.execute(
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
                _json.encode(status.inventory).decode(),
            ),
        )

    async def _write_quarantine(self, cur: Cursor, entries: Sequence[QuarantineEntry]) -> int:
        """Store refused messages (payloads capped) and trim the oldest past the cap; how many went."""
        if not entries:
            return 0
        cap = rules.QUARANTINE_PAYLOAD_BYTES
        await cur.execute(
            _INSERT_QUARANTINE,
            (
                [e.received_ms for e in entries],
                [e.topic for e in entries],
                [e.reason for e in entries],
                [e.detail for e in entries],
                [len(e.payload) for e in entries],
                [e.payload[:cap] for e in entries],
            ),
        )
        await cur.execute("SELECT count(*) FROM quarantine")
        row = await cur.fetchone()
        excess = rules.quarantine_excess(int(row[0]) if row is not None else 0)
        if excess > 0:
            await cur.execute(_EVICT_QUARANTINE, (excess,))
        return excess


def refusal_detail(exc: Exception) -> str:
    """Why PostgreSQL refused a batch, in words an operator reads in the quarantine."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, errors.NumericValueOutOfRange):
        return f"a number too large for its column: {text}"
    return text
