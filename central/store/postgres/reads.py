"""The read side of the PostgreSQL store: plain functions of a connection (autocommit: each
statement sees the latest commits). Orders and filters are SQLite's (the contract suite checks)."""

from __future__ import annotations

from typing import Any

import psycopg

from central.store import codec
from central.store.codec import event_row
from central.store.postgres.values import VALUE_COLUMNS, join
from central.store.rows import (
    AlarmRow,
    CabinetRow,
    EventRow,
    PointValue,
    QuarantineCounts,
    QuarantineRow,
    ReadingRow,
    Totals,
)
from protocols.quality import Quality

Conn = psycopg.AsyncConnection[tuple[Any, ...]]

_CABINET_COLUMNS = """
    id, online, last_seen_ms, status_ts_ms, version, config_hash, stream, boot_count, backlog,
    inventory
"""
EVENT_COLUMNS = "e.cabinet, s.stream, e.seq, e.ts, e.source, e.kind, e.severity, e.message, e.data"
_ALARM_COLUMNS = "cabinet, device, alarm, active, severity, message, raised_ms, cleared_ms, updated_ms"

_LATEST = f"""
SELECT p.name, l.ts, l.quality, l.reason, {VALUE_COLUMNS}
FROM points AS p JOIN latest_readings AS l ON l.point_pk = p.id
WHERE p.cabinet = %s
ORDER BY p.name
"""
_READINGS = f"""
SELECT ts, quality, reason, {VALUE_COLUMNS} FROM readings
WHERE point_pk = (SELECT id FROM points WHERE cabinet = %s AND name = %s) AND ts >= %s AND ts < %s
ORDER BY ts, stream_pk, seq
LIMIT %s
"""
_EVENTS = f"""
SELECT {EVENT_COLUMNS}
FROM events AS e JOIN streams AS s ON s.id = e.stream_pk
WHERE (%(cabinet)s::text IS NULL OR e.cabinet = %(cabinet)s)
    AND (%(since)s::int8 IS NULL OR e.ts >= %(since)s)
ORDER BY e.ts DESC, e.stream_pk DESC, e.seq DESC
LIMIT %(limit)s
"""
# The distinct sources walked through the index (a loose index scan), then the newest event of each
# in sequence order, passing over any stamped ahead: a few probes per source, never a history scan.
_LATEST_EVENTS = f"""
WITH RECURSIVE sources (source) AS (
    SELECT min(source) FROM events WHERE cabinet = %(cabinet)s AND kind = %(kind)s
    UNION ALL
    SELECT (
        SELECT min(source) FROM events
        WHERE cabinet = %(cabinet)s AND kind = %(kind)s AND source > sources.source
    )
    FROM sources WHERE sources.source IS NOT NULL
)
SELECT {EVENT_COLUMNS}
FROM sources
JOIN events AS e ON (e.stream_pk, e.seq) = (
    SELECT stream_pk, seq FROM events AS n
    WHERE cabinet = %(cabinet)s AND kind = %(kind)s AND source = sources.source
        AND NOT EXISTS (
            SELECT 1 FROM time_suspect AS t WHERE (t.stream_pk, t.seq) = (n.stream_pk, n.seq)
        )
    ORDER BY stream_pk DESC, seq DESC
    LIMIT 1
)
JOIN streams AS s ON s.id = e.stream_pk
ORDER BY e.ts DESC, e.source
"""
# Keyset pages in index order (point, ts, then the key): no OFFSET, and readings sharing one stamp
# (a hostile cabinet may send thousands) cannot stall the walk.
_PAGE = f"""
SELECT ts, quality, reason, {VALUE_COLUMNS}, stream_pk, seq FROM readings
WHERE point_pk = %s AND (ts, stream_pk, seq) > (%s, %s, %s) AND ts >= %s AND ts < %s
ORDER BY ts, stream_pk, seq LIMIT %s
"""
_GOOD_BEFORE = f"""
SELECT ts, quality, reason, {VALUE_COLUMNS} FROM readings
WHERE point_pk = %s AND ts < %s AND quality = %s ORDER BY ts DESC LIMIT 1
"""
_GOOD_FROM = f"""
SELECT ts, quality, reason, {VALUE_COLUMNS} FROM readings
WHERE point_pk = %s AND ts >= %s AND quality = %s ORDER BY ts LIMIT 1
"""
_COUNTERS = """
SELECT coalesce(sum(readings), 0), coalesce(sum(events), 0), coalesce(sum(results), 0),
    coalesce(sum(quarantined), 0), coalesce(sum(quarantine_evicted), 0)
FROM counters
"""

PageKey = tuple[int, int, int]


def reading_row(row: tuple[Any, ...]) -> ReadingRow:
    """A row of (ts, quality, reason, vf, vi, vb, vs, ...)."""
    return ReadingRow(row[0], join(row[3], row[4], row[5], row[6]), row[1], row[2])


async def _all(conn: Conn, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query, params)
    return await cur.fetchall()


async def _one(conn: Conn, query: str, params: Any = None) -> tuple[Any, ...] | None:
    cur = await conn.execute(query, params)
    return await cur.fetchone()


async def ping(conn: Conn) -> None:
    await _one(conn, "SELECT 1 FROM counters LIMIT 1")


async def cabinets(conn: Conn) -> list[CabinetRow]:
    return [
        codec.cabinet_row(r) for r in await _all(conn, f"SELECT {_CABINET_COLUMNS} FROM cabinets ORDER BY id")
    ]


async def cabinet(conn: Conn, cabinet_id: str) -> CabinetRow | None:
    row = await _one(conn, f"SELECT {_CABINET_COLUMNS} FROM cabinets WHERE id = %s", (cabinet_id,))
    return None if row is None else codec.cabinet_row(row)


async def latest_values(conn: Conn, cabinet_id: str) -> list[PointValue]:
    return [
        PointValue(r[0], r[1], join(r[4], r[5], r[6], r[7]), r[2], r[3])
        for r in await _all(conn, _LATEST, (cabinet_id,))
    ]


async def has_point(conn: Conn, cabinet_id: str, point: str) -> bool:
    row = await _one(conn, "SELECT 1 FROM points WHERE cabinet = %s AND name = %s", (cabinet_id, point))
    return row is not None


async def readings(
    conn: Conn, cabinet_id: str, point: str, *, start_ms: int, end_ms: int, limit: int
) -> list[ReadingRow]:
    rows = await _all(conn, _READINGS, (cabinet_id, point, start_ms, end_ms, limit))
    return [reading_row(r) for r in rows]


async def events(conn: Conn, cabinet_id: str | None, since_ms: int | None, limit: int) -> list[EventRow]:
    rows = await _all(conn, _EVENTS, {"cabinet": cabinet_id, "since": since_ms, "limit": limit})
    return [event_row(r) for r in rows]


async def latest_events(conn: Conn, cabinet_id: str, kind: str) -> list[EventRow]:
    return [event_row(r) for r in await _all(conn, _LATEST_EVENTS, {"cabinet": cabinet_id, "kind": kind})]


async def alarms(conn: Conn, cabinet_id: str | None, active: bool | None, limit: int) -> list[AlarmRow]:
    rows = await _all(
        conn,
        f"SELECT {_ALARM_COLUMNS} FROM alarms"
        " WHERE (%(cabinet)s::text IS NULL OR cabinet = %(cabinet)s)"
        " AND (%(active)s::bool IS NULL OR active = %(active)s)"
        " ORDER BY active DESC, updated_ms DESC, cabinet, device, alarm LIMIT %(limit)s",
        {"cabinet": cabinet_id, "active": active, "limit": limit},
    )
    return [AlarmRow(*r) for r in rows]


async def points_ending_with(conn: Conn, cabinet_id: str, suffix: str) -> list[str]:
    rows = await _all(
        conn,
        "SELECT name FROM points WHERE cabinet = %s AND right(name, %s) = %s ORDER BY name",
        (cabinet_id, len(suffix), suffix),
    )
    return [str(name) for (name,) in rows if str(name).endswith(suffix)]


async def point_pk(conn: Conn, cabinet_id: str, point: str) -> int | None:
    row = await _one(conn, "SELECT id FROM points WHERE cabinet = %s AND name = %s", (cabinet_id, point))
    return None if row is None else int(row[0])


async def reading_page(
    conn: Conn, *, point: int, after: PageKey, start_ms: int, end_ms: int, limit: int
) -> tuple[list[ReadingRow], PageKey | None]:
    """Up to ``limit`` readings after ``after`` (and from ``start_ms``) before ``end_ms``; the key to
    continue from, or None when this was the last page."""
    rows = await _all(conn, _PAGE, (point, *after, start_ms, end_ms, limit))
    page = [reading_row(r) for r in rows]
    if len(rows) < limit:
        return page, None
    last = rows[-1]
    return page, (int(last[0]), int(last[7]), int(last[8]))


async def good_neighbours(
    conn: Conn, point: int, start_ms: int, end_ms: int
) -> tuple[list[ReadingRow], list[ReadingRow]]:
    before = [reading_row(r) for r in await _all(conn, _GOOD_BEFORE, (point, start_ms, Quality.GOOD))]
    after = [reading_row(r) for r in await _all(conn, _GOOD_FROM, (point, end_ms, Quality.GOOD))]
    return before, after


async def quarantine(conn: Conn, limit: int) -> list[QuarantineRow]:
    rows = await _all(
        conn,
        "SELECT id, received_ms, topic, reason, detail, size FROM quarantine ORDER BY id DESC LIMIT %s",
        (limit,),
    )
    return [QuarantineRow(*r) for r in rows]


async def quarantine_payload(conn: Conn, entry_id: int) -> bytes | None:
    row = await _one(conn, "SELECT payload FROM quarantine WHERE id = %s", (entry_id,))
    return None if row is None else bytes(row[0])


async def _counters(conn: Conn) -> tuple[int, ...]:
    row = await _one(conn, _COUNTERS)
    assert row is not None
    return tuple(int(v) for v in row)


async def quarantine_counts(conn: Conn) -> QuarantineCounts:
    rows = await _all(conn, "SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY reason")
    evicted = (await _counters(conn))[4]
    return QuarantineCounts(by_reason={str(r): int(n) for r, n in rows}, evicted=evicted)


async def totals(conn: Conn) -> Totals:
    readings_n, events_n, results_n, quarantined, _ = await _counters(conn)
    row = await _one(conn, "SELECT count(*) FROM cabinets")
    assert row is not None
    return Totals(
        cabinets=int(row[0]),
        readings=readings_n,
        events=events_n,
        results=results_n,
        quarantined=quarantined,
    )
