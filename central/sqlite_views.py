"""Alarms, the newest events of a kind, and readings streamed for computations, in SQLite.

``apply_alarm_events`` runs on the writer thread inside the batch's transaction; the others are reads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from central.alarms import alarm_change
from central.sqlite_queries import EVENT_COLUMNS
from central.store import EventRow, ReadingRow
from central.store_rows import AlarmRow
from protocols.fleet import Event
from protocols.quality import Quality

_T = TypeVar("_T")

# The newest event about an alarm wins, whatever order the batches arrive in: (ts, stream, seq)
# orders events, and replaying an event already applied changes nothing (strictly newer only).
_UPSERT_ALARM = """
INSERT INTO alarms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (cabinet, device, alarm) DO UPDATE SET
    active = excluded.active,
    severity = excluded.severity,
    message = excluded.message,
    raised_ms = CASE WHEN excluded.active THEN excluded.raised_ms ELSE alarms.raised_ms END,
    cleared_ms = excluded.cleared_ms,
    updated_ms = excluded.updated_ms,
    updated_stream = excluded.updated_stream,
    updated_seq = excluded.updated_seq
WHERE (excluded.updated_ms, excluded.updated_stream, excluded.updated_seq)
    > (alarms.updated_ms, alarms.updated_stream, alarms.updated_seq)
"""
_ALARM_COLUMNS = "cabinet, device, alarm, active, severity, message, raised_ms, cleared_ms, updated_ms"

# Walks the distinct sources through the index (each step: the smallest source after the last one),
# then takes the newest event of each: a few index probes per source, never a scan of the history.
_LATEST_EVENTS = f"""
WITH RECURSIVE sources (source) AS (
    SELECT min(source) FROM events WHERE cabinet = :cabinet AND kind = :kind
    UNION ALL
    SELECT (
        SELECT min(source) FROM events
        WHERE cabinet = :cabinet AND kind = :kind AND source > sources.source
    )
    FROM sources WHERE sources.source IS NOT NULL
)
SELECT {EVENT_COLUMNS}
FROM sources
JOIN events AS e ON (e.stream_pk, e.seq) = (
    SELECT stream_pk, seq FROM events
    WHERE cabinet = :cabinet AND kind = :kind AND source = sources.source
    ORDER BY ts DESC, stream_pk DESC, seq DESC
    LIMIT 1
)
JOIN streams AS s ON s.id = e.stream_pk
ORDER BY e.ts DESC, e.source
"""

_POINT_PK = "SELECT id FROM points WHERE cabinet = ? AND name = ?"
_RANGE = (
    "SELECT ts, value, quality, reason FROM readings WHERE point_pk = ? AND ts >= ? AND ts < ? ORDER BY ts"
)
_GOOD_BEFORE = """
SELECT ts, value, quality, reason FROM readings
WHERE point_pk = ? AND ts < ? AND quality = ? ORDER BY ts DESC LIMIT 1
"""
_GOOD_FROM = """
SELECT ts, value, quality, reason FROM readings
WHERE point_pk = ? AND ts >= ? AND quality = ? ORDER BY ts LIMIT 1
"""


def apply_alarm_events(cur: sqlite3.Cursor, cabinet: str, stream_pk: int, events: Iterable[Event]) -> None:
    rows = []
    for event in events:
        change = alarm_change(event)
        if change is None:
            continue
        rows.append(
            (
                cabinet,
                change.device,
                change.alarm,
                int(change.active),
                event.severity,
                event.message,
                event.ts if change.active else None,
                None if change.active else event.ts,
                event.ts,
                stream_pk,
                event.seq,
            )
        )
    if rows:
        cur.executemany(_UPSERT_ALARM, rows)


def alarms(conn: sqlite3.Connection, cabinet: str | None, active: bool | None, limit: int) -> list[AlarmRow]:
    clauses: list[str] = []
    params: list[object] = []
    if cabinet is not None:
        clauses.append("cabinet = ?")
        params.append(cabinet)
    if active is not None:
        clauses.append("active = ?")
        params.append(int(active))
    sql = (
        f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE {' AND '.join(clauses) or '1'}"
        " ORDER BY active DESC, updated_ms DESC, cabinet, device, alarm LIMIT ?"
    )
    rows = conn.execute(sql, (*params, limit))
    return [AlarmRow(r[0], r[1], r[2], bool(r[3]), *r[4:]) for r in rows]


def latest_events(conn: sqlite3.Connection, cabinet: str, kind: str) -> list[EventRow]:
    rows = conn.execute(_LATEST_EVENTS, {"cabinet": cabinet, "kind": kind})
    return [EventRow(*row) for row in rows]


def points_ending_with(conn: sqlite3.Connection, cabinet: str, suffix: str) -> list[str]:
    # LIKE narrows (it ignores ASCII case, and "_" is escaped); endswith decides, case included.
    pattern = "%" + suffix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = conn.execute(
        "SELECT name FROM points WHERE cabinet = ? AND name LIKE ? ESCAPE '\\' ORDER BY name",
        (cabinet, pattern),
    )
    return [str(name) for (name,) in rows if str(name).endswith(suffix)]


def fold_readings(
    conn: sqlite3.Connection,
    cabinet: str,
    point: str,
    *,
    start_ms: int,
    end_ms: int,
    fold: Callable[[Iterator[ReadingRow]], _T],
    neighbours: bool,
) -> _T:
    """``fold`` over the point's readings in [start, end), oldest first, streamed from the cursor.

    ``neighbours`` adds the last good reading before ``start_ms`` and the first good one from
    ``end_ms``: what a computation over intervals needs to cover the edges of the range.
    """
    found = conn.execute(_POINT_PK, (cabinet, point)).fetchone()
    if found is None:
        return fold(iter(()))
    point_pk = int(found[0])

    def rows() -> Iterator[ReadingRow]:
        if neighbours:
            yield from (
                ReadingRow(*r) for r in conn.execute(_GOOD_BEFORE, (point_pk, start_ms, Quality.GOOD))
            )
        yield from (ReadingRow(*r) for r in conn.execute(_RANGE, (point_pk, start_ms, end_ms)))
        if neighbours:
            yield from (ReadingRow(*r) for r in conn.execute(_GOOD_FROM, (point_pk, end_ms, Quality.GOOD)))

    return fold(rows())
