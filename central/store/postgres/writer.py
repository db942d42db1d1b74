"""The write side of the PostgreSQL store: one ``write()`` group is one transaction.

Same semantics as the SQLite writer (``central.store.sqlite.writer``), in set-oriented statements
(``writer_sql``); what is computed from a batch beforehand is ``batch_facts``. bench/ingest.py measures
it against a raw COPY of the same rows.

Three ways to write a group, the first that works:
1. ``copy`` (the usual case): one query loads the ``held`` seq ranges the group's batches touch
   (``held``: a seq held is a duplicate, whatever its stamp or value), then ONE binary COPY stores
   the others (rows encoded a batch at a time: ``copy_rows``), and one statement writes back the
   ranges that grew. COPY inserts in bulk (about 3x faster than an INSERT ... ON CONFLICT here:
   bench/ingest.py measures both). The unique key (stream_pk, seq, ts) still guards: should a row
   the ranges missed be there, the COPY fails with a unique violation and the group is written
   again, the second way. The group's rollups and latest values are COPYed into the session's
   stage tables (``stage``) and merged from there. Round trips are few: the cabinets' upsert, the
   ids and the held ranges go in one pipeline, the merges, the ranges' save, the KPI change bump
   and the counters in another, then the commit.
2. ``upsert``: each batch's readings in one ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO
   NOTHING``: correct whatever runs beside it.
3. ``isolated``: if the database refuses a batch (a number out of range, a NUL in a text), the
   transaction is rolled back and written again with each batch in a SAVEPOINT, the second way: the
   refused ones are quarantined in that same transaction, the others stored. (Savepoints only then:
   subtransactions cost, and overflow past 64 per transaction.)

Several workers may write at once (on one PostgreSQL): each transaction first upserts the cabinets
it touches in sorted order, and every other row it changes belongs to one of those cabinets, so the
cabinet rows act as locks taken in one order, and two workers never deadlock on each other's
cabinets. That lock also covers ``held``: a stream's ranges are read and extended only by the
transaction holding its cabinet's row, which sees what the one before it committed (READ COMMITTED:
each statement after the lock reads a fresh snapshot). A deadlock or serialization failure that
happens anyway is retried.

The ids of streams and points are cached; ids seen inside a transaction join the cache only when it
commits (an id handed out by a rolled-back transaction does not exist).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
import psycopg
from psycopg import errors

from central.record_time import time_suspect
from central.store import rules
from central.store.kpi_days import changed_days
from central.store.postgres import copy_rows, stage
from central.store.postgres import partitions as parts
from central.store.postgres import writer_sql as q
from central.store.postgres.batch_facts import (
    Latest,
    Shape,
    add_good_floats,
    add_samples,
    newest_of,
    refusal_detail,
)
from central.store.postgres.commands import apply_results
from central.store.postgres.episodes import apply_episodes, unseen_alarm_events
from central.store.postgres.held import HeldSeqs, Range, span_runs
from central.store.postgres.kpi_days import bump_changes
from central.store.postgres.rollups import (
    MERGE_PLAIN,
    Plain,
    apply_counters,
    apply_rollups,
    plain_rollups,
    plain_rows_of,
    stage_plain,
)
from central.store.postgres.schema import COUNTER_SHARDS
from central.store.postgres.values import pg_text, split, split_one
from central.store.rollups import Sample
from central.store.rows import BatchOutcome, QuarantineEntry, ReceivedBatch, ReceivedStatus
from protocols.fleet import DataBatch, Reading, Status

Conn = psycopg.AsyncConnection[tuple[Any, ...]]
Cursor = psycopg.AsyncCursor[tuple[Any, ...]]

_json = msgspec.json.Encoder()
RETRIES = 3

# What "the database refuses this batch" looks like: its content, not the database's health.
REFUSALS: tuple[type[Exception], ...] = (
    OverflowError,  # a binary COPY refuses an integer past 64 bits before sending it
    psycopg.DataError,
    psycopg.IntegrityError,
    errors.ProgramLimitExceeded,
)
_RETRYABLE: tuple[type[Exception], ...] = (errors.DeadlockDetected, errors.SerializationFailure)


Mode = Literal["copy", "upsert", "isolated"]
Statement = tuple[str, Sequence[Any] | None]


class _Refused(Exception):
    """The database refused a write of the group: write it again another way (``__cause__``)."""


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
        days: set[int] = set()
        for received in batches:
            readings = received.batch.readings
            if not readings:
                continue
            s = Shape.of(readings)
            if parts.day_of(s.lo_ts) == parts.day_of(s.hi_ts):
                found = {parts.day_of(s.lo_ts)}
            else:
                found = {parts.day_of(r.ts) for r in readings}
            days.update(d for d in found if parts.in_window(d, received.received_ms))
        if days:
            await self._partitions.ensure(conn, days)

    async def write(
        self,
        conn: Conn,
        batches: Sequence[ReceivedBatch],
        statuses: Sequence[ReceivedStatus],
        quarantine: Sequence[QuarantineEntry],
    ) -> list[BatchOutcome]:
        await stage.ensure(conn)
        mode: Mode = "copy"
        attempt = 0
        while True:
            attempt += 1
            txn = _Txn()
            try:
                async with conn.transaction():
                    outcomes = await self._write_group(conn, txn, batches, statuses, quarantine, mode=mode)
            except _Refused as refused:
                # Another worker stored some of these records meanwhile: the upsert skips them.
                # Anything else is a batch the database refuses: find it, batch by batch.
                raced = mode == "copy" and isinstance(refused.__cause__, errors.UniqueViolation)
                mode = "upsert" if raced else "isolated"
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
        mode: Mode,
    ) -> list[BatchOutcome]:
        cur = conn.cursor()
        # The cabinets first, in sorted order: the lock order every worker follows.
        seen: dict[str, tuple[int, int]] = {}
        for received in batches:
            b = received.batch
            last_seen = max(seen.get(b.cabinet, (received.received_ms, 0))[0], received.received_ms)
            seen[b.cabinet] = (last_seen, b.backlog)
        if seen and mode == "upsert":
            await self._upsert_seen(cur, seen)
        outcomes: list[BatchOutcome] = []
        # Statements with no result to wait for: sent together at the end, one round trip.
        deferred: list[Statement] = []
        if mode == "copy":
            try:
                outcomes = await self._copy_group(cur, txn, batches, seen, deferred)
            except REFUSALS as exc:
                raise _Refused from exc
        for received in batches if mode != "copy" else ():
            if mode == "upsert":
                try:
                    outcomes.append(await self._write_batch(cur, txn, received.batch, received.received_ms))
                except REFUSALS as exc:
                    raise _Refused from exc
                continue
            outcomes.append(await self._write_isolated(conn, cur, txn, received))
        unstorable = [
            rules.unstorable_entry(received, outcome.unstorable)
            for received, outcome in zip(batches, outcomes, strict=True)
            if outcome.unstorable is not None
        ]
        unstorable += await self._write_statuses(conn, cur, statuses, mode=mode)
        evicted = await self._write_quarantine(cur, [*quarantine, *unstorable])
        deferred.append(
            (
                q.ADD_COUNTERS,
                (
                    sum(o.readings_new for o in outcomes),
                    sum(o.events_new for o in outcomes),
                    sum(o.results_new for o in outcomes),
                    len(quarantine) + len(unstorable),
                    evicted,
                    self._shard,
                ),
            )
        )
        try:
            async with conn.pipeline():
                for query, params in deferred:
                    await cur.execute(query, params)
                await bump_changes(cur, changed_days(batches, outcomes))  # the KPI day cache's days to redo
        except REFUSALS as exc:
            if mode != "copy":
                raise
            raise _Refused from exc  # a merge of the group's rollups or latest values
        return outcomes

    async def _write_statuses(
        self, conn: Conn, cur: Cursor, statuses: Sequence[ReceivedStatus], *, mode: Mode
    ) -> list[QuarantineEntry]:
        """Apply the statuses; those the database refused (isolated mode) to quarantine instead."""
        refused: list[QuarantineEntry] = []
        for received_status in statuses:
            if mode != "isolated":
                try:
                    await self._write_status(cur, received_status.status, received_status.received_ms)
                except REFUSALS as exc:
                    raise _Refused from exc
                continue
            entry = await self._write_status_isolated(conn, cur, received_status)
            if entry is not None:
                refused.append(entry)
        return refused

    async def _copy_group(
        self,
        cur: Cursor,
        txn: _Txn,
        batches: Sequence[ReceivedBatch],
        seen: dict[str, tuple[int, int]],
        deferred: list[Statement],
    ) -> list[BatchOutcome]:
        """The group's new readings in one COPY; events and results as the upsert writes them. The
        merges of what it staged, and the held ranges, join ``deferred``."""
        # Pipelined: the cabinets' locks, the ids and the held ranges in one round trip (ids known).
        async with cur.connection.pipeline():
            if seen:
                await self._upsert_seen(cur, seen)
            stream_pks = [await self._stream_pk(cur, txn, r.batch.cabinet, r.batch.stream) for r in batches]
            point_maps = [
                await self._point_pks(cur, txn, r.batch.cabinet, {x.point for x in r.batch.readings})
                if r.batch.readings
                else {}
                for r in batches
            ]
            held = await HeldSeqs.load(
                cur, [_probe(pk, r.batch) for pk, r in zip(stream_pks, batches, strict=True)]
            )
        fresh: list[int] = []
        latest: Latest = {}
        samples: dict[int, tuple[bool, list[Sample]]] = {}
        plain: Plain = {}
        rows: list[tuple[object, ...]] = []
        if any(r.batch.readings for r in batches):
            # Rows are sent as they are made, and the rollups computed before the COPY ends: the
            # server takes the rows in while this process works.
            floats = all(copy_rows.floats_only(r.batch.readings) for r in batches)
            async with cur.copy(q.COPY_FLOAT_READINGS if floats else q.COPY_READINGS) as copy:
                await copy.write(copy_rows.SIGNATURE)
                for received, stream_pk, points in zip(batches, stream_pks, point_maps, strict=True):
                    chosen = _not_held(held, stream_pk, received.batch)
                    if data := copy_rows.encode(chosen, stream_pk, points, floats=floats):
                        await copy.write(data)
                    fresh.append(len(chosen))
                    newest_of(latest, stream_pk, chosen, points, received.received_ms)
                    left = add_good_floats(plain, stream_pk, chosen, points)
                    add_samples(samples, stream_pk, chosen if left is None else left, points)
                rows = plain_rows_of(plain_rollups(samples, plain))
                await copy.write(copy_rows.TRAILER)
        else:
            fresh = [0] * len(batches)
            for received, stream_pk in zip(batches, stream_pks, strict=True):
                held.hold(stream_pk, _seq_runs(received.batch))
        if (save := held.save_statement()) is not None:
            deferred.append(save)
        if await self._stage_latest(cur, latest):
            deferred.append((q.MERGE_LATEST, None))
        if await stage_plain(cur, rows):
            deferred.append((MERGE_PLAIN, None))
        await apply_counters(cur, samples)
        outcomes = []
        for received, stream_pk, readings_new in zip(batches, stream_pks, fresh, strict=True):
            batch = received.batch
            events_new = await self._insert_events(cur, stream_pk, batch, received.received_ms)
            results_new = await self._insert_results(cur, stream_pk, batch)
            await self._flag_time_suspects(cur, stream_pk, batch, received.received_ms)
            total = len(batch.readings) + len(batch.events) + len(batch.results)
            new = readings_new + events_new + results_new
            outcomes.append(
                BatchOutcome(
                    batch.cabinet,
                    batch.stream,
                    batch.first,
                    batch.last,
                    readings_new,
                    events_new,
                    results_new,
                    total - new,
                )
            )
        return outcomes

    async def _stage_latest(self, cur: Cursor, latest: Latest) -> bool:
        """Stage each point's newest reading for ``MERGE_LATEST``; whether there was any."""
        if not latest:
            return False
        rows = []
        for pk in sorted(latest):
            stream_pk, r = latest[pk]
            rows.append((pk, stream_pk, r.seq, r.ts, r.quality, r.reason, *split_one(r.value)))
        await stage.put(cur, stage.LATEST_STAGE, q.LATEST_COLUMNS, q.LATEST_TYPES, rows)
        return True

    async def _upsert_latest(self, cur: Cursor, latest: Latest) -> None:
        if await self._stage_latest(cur, latest):
            await cur.execute(q.MERGE_LATEST)

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

    async def _write_status_isolated(
        self, conn: Conn, cur: Cursor, received: ReceivedStatus
    ) -> QuarantineEntry | None:
        """A status in a SAVEPOINT; what to quarantine instead when the database refuses it (a NUL
        in a text: valid on the wire, not in PostgreSQL)."""
        try:
            async with conn.transaction():
                await self._write_status(cur, received.status, received.received_ms)
        except REFUSALS as exc:
            return QuarantineEntry(
                received.received_ms,
                received.topic,
                "unstorable",
                f"the database refused this status: {refusal_detail(exc)}",
                received.payload,
            )
        return None

    async def _upsert_seen(self, cur: Cursor, seen: dict[str, tuple[int, int]]) -> None:
        ids = sorted(seen)
        await cur.execute(q.UPSERT_SEEN, (ids, [seen[c][0] for c in ids], [seen[c][1] for c in ids]))

    async def _write_batch(self, cur: Cursor, txn: _Txn, batch: DataBatch, received_ms: int) -> BatchOutcome:
        cabinet = batch.cabinet
        stream_pk = await self._stream_pk(cur, txn, cabinet, batch.stream)
        held = await HeldSeqs.load(cur, [_probe(stream_pk, batch)])
        readings = _not_held(held, stream_pk, batch)
        readings_new = await self._insert_readings(
            cur, txn, stream_pk, batch, readings, received_ms=received_ms
        )
        await held.save(cur)
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
        readings: Sequence[Reading],
        *,
        received_ms: int,
    ) -> int:
        """Store ``readings`` (of ``batch``, their seqs not held before) with INSERT ... ON CONFLICT."""
        if not readings:
            return 0
        points = await self._point_pks(cur, txn, batch.cabinet, {r.point for r in readings})
        vf, vi, vb, vs = split([r.value for r in readings])
        await cur.execute(
            q.INSERT_READINGS,
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
        stored = {(int(seq), int(ts)) for seq, ts in await cur.fetchall()}
        # Only what was stored now is counted: a duplicate never reaches a rollup.
        fresh = []
        for r in readings:
            if (r.seq, r.ts) in stored:
                stored.discard((r.seq, r.ts))
                fresh.append(r)
        latest: Latest = {}
        newest_of(latest, stream_pk, fresh, points, received_ms)
        await self._upsert_latest(cur, latest)
        samples: dict[int, tuple[bool, list[Sample]]] = {}
        add_samples(samples, stream_pk, fresh, points)
        await apply_rollups(cur, samples)
        return len(fresh)

    async def _insert_events(self, cur: Cursor, stream_pk: int, batch: DataBatch, received_ms: int) -> int:
        events = batch.events
        if not events:
            return 0
        cabinet = batch.cabinet
        unseen = await unseen_alarm_events(cur, stream_pk, events)
        await cur.execute(
            q.INSERT_EVENTS,
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
                q.UPSERT_ALARM,
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
        await apply_episodes(cur, stream_pk, cabinet, unseen, received_ms)
        return new

    async def _insert_results(self, cur: Cursor, stream_pk: int, batch: DataBatch) -> int:
        results = batch.results
        if not results:
            return 0
        await cur.execute(
            q.INSERT_RESULTS,
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
        readings = batch.readings
        honest = not readings or Shape.of(readings).no_suspect(received_ms)
        groups = (batch.events, batch.results) if honest else (readings, batch.events, batch.results)
        suspects = [
            (record.seq, record.ts)
            for records in groups
            for record in records
            if time_suspect(record.ts, received_ms)
        ]
        if suspects:
            await cur.execute(
                q.INSERT_SUSPECTS,
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
            await cur.execute(q.UPSERT_OFFLINE, (status.cabinet, status.ts))
            return
        await cur.execute(
            q.UPSERT_BIRTH,
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
            q.INSERT_QUARANTINE,
            (
                [e.received_ms for e in entries],
                [pg_text(e.topic) for e in entries],
                [pg_text(e.reason) for e in entries],
                [pg_text(e.detail) for e in entries],
                [len(e.payload) for e in entries],
                [e.payload[:cap] for e in entries],
            ),
        )
        await cur.execute("SELECT count(*) FROM quarantine")
        row = await cur.fetchone()
        excess = rules.quarantine_excess(int(row[0]) if row is not None else 0)
        if excess > 0:
            await cur.execute(q.EVICT_QUARANTINE, (excess,))
        return excess


def _probe(stream_pk: int, batch: DataBatch) -> tuple[int, int, int]:
    """The stream and the seqs a batch's records span (its declared first and last may lie)."""
    seqs = [r.seq for records in (batch.readings, batch.events, batch.results) for r in records]
    return (stream_pk, min(seqs), max(seqs)) if seqs else (stream_pk, batch.first, batch.first)


def _seq_runs(batch: DataBatch) -> list[Range]:
    runs = span_runs([r.seq for r in batch.readings])
    if batch.events or batch.results:
        runs += [(r.seq, r.seq) for records in (batch.events, batch.results) for r in records]
    return runs


def _not_held(held: HeldSeqs, stream_pk: int, batch: DataBatch) -> Sequence[Reading]:
    """The readings of a batch to store: their seq not held already (stored before, or earlier in
    this group, as any record), nor earlier in this batch. Then the batch's seqs are held."""
    readings = batch.readings
    chosen_at = held.fresh(stream_pk, [r.seq for r in readings])
    held.hold(stream_pk, _seq_runs(batch))
    return readings if chosen_at is None else [readings[i] for i in chosen_at]
