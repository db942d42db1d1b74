"""Alarms, the newest events of a kind, and readings streamed for computations, in SQLite.

``apply_alarm_events``, ``apply_latest_readings`` and ``flag_time_suspects`` run on the writer thread
inside the batch's transaction; the others are reads. All of them order a cabinet's records by
sequence and leave out records stamped ahead of their receive time (``central.record_time``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping

from central.record_time import time_suspect
from central.store.codec import event_row
from central.store.rollups import WIDTH_MS
from central.store.rows import AlarmRow, EventRow, ReadingRow
from central.store.rules import AlarmUpdate
from central.store.sqlite.blocks import RawReading, buckets_of_point, good_before, good_from
from central.store.sqlite.queries import EVENT_COLUMNS
from protocols.fleet import DataBatch, Reading

# The newest event about an alarm wins, whatever order the batches arrive in: (stream, seq) orders
# events, never their stamps, and replaying an event already applied changes nothing (strictly newer
# only).
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
WHERE (excluded.updated_stream, excluded.updated_seq) > (alarms.updated_stream, alarms.updated_seq)
"""
_UPSERT_LATEST = """
INSERT INTO latest_readings VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (point_pk) DO UPDATE SET
    stream_pk = excluded.stream_pk,
    seq = excluded.seq,
    ts = excluded.ts,
    value = excluded.value,
    quality = excluded.quality,
    reason = excluded.reason
WHERE (excluded.stream_pk, excluded.seq) > (latest_readings.stream_pk, latest_readings.seq)
"""
_INSERT_SUSPECT = "INSERT OR IGNORE INTO time_suspect VALUES (?, ?, ?, ?)"
_ALARM_COLUMNS = "cabinet, device, alarm, active, severity, message, raised_ms, cleared_ms, updated_ms"

# Walks the distinct sources through the index (each step: the smallest source after the last one),
# then takes the newest event of each in sequence order, passing over any stamped ahead: a few index
# probes per source, never a scan of the history.
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
    SELECT stream_pk, seq FROM events AS n
    WHERE cabinet = :cabinet AND kind = :kind AND source = sources.source
        AND NOT EXISTS (SELECT 1 FROM time_suspect AS t WHERE (t.stream_pk, t.seq) = (n.stream_pk, n.seq))
    ORDER BY stream_pk DESC, seq DESC
    LIMIT 1
)
JOIN streams AS s ON s.id = e.stream_pk
ORDER BY e.ts DESC, e.source
"""

_POINT_PK = "SELECT id FROM points WHERE cabinet = ? AND name = ?"
_QUARTERS_BEFORE = """
SELECT bucket FROM rollups INDEXED BY rollups_point
WHERE point_pk = ? AND res = ? AND bucket < ? AND good > 0 ORDER BY bucket DESC
"""
_QUARTERS_FROM = """
SELECT bucket FROM rollups INDEXED BY rollups_point
WHERE point_pk = ? AND res = ? AND bucket >= ? AND good > 0 ORDER BY bucket
"""

# Where a page of readings ends: (ts, stream_pk, seq) of its last row.
PageKey = tuple[int, int, int]


def apply_alarm_events(cur: sqlite3.Cursor, stream_pk: int, updates: Iterable[AlarmUpdate]) -> None:
    rows = [
        (
            u.cabinet,
            u.device,
            u.alarm,
            int(u.active),
            u.severity,
            u.message,
            u.raised_ms,
            u.cleared_ms,
            u.updated_ms,
            stream_pk,
            u.seq,
        )
        for u in updates
    ]
    if rows:
        cur.executemany(_UPSERT_ALARM, rows)


def apply_latest_readings(
    cur: sqlite3.Cursor,
    stream_pk: int,
    readings: Iterable[Reading],
    point_pks: Mapping[str, int],
    received_ms: int,
    *,
    simple: bool = False,
) -> None:
    """Each point's newest reading of the batch (by seq, not a time suspect) becomes its latest value
    unless a newer one in sequence already is: one upsert per point, whatever the batch's size.

    ``simple``: the readings are in ascending seq and none is a time suspect, so the last of each
    point is its newest (found without a step in Python per reading)."""
    newest: dict[str, Reading]
    if simple:
        newest = dict(zip([r.point for r in readings], readings, strict=True))
    else:
        newest = {}
        for reading in readings:
            known = newest.get(reading.point)
            if (known is None or reading.seq > known.seq) and not time_suspect(reading.ts, received_ms):
                newest[reading.point] = reading
    cur.executemany(
        _UPSERT_LATEST,
        [
            (point_pks[point], stream_pk, r.seq, r.ts, r.value, r.quality, r.reason)
            for point, r in newest.items()
        ],
    )


def flag_time_suspects(
    cur: sqlite3.Cursor, stream_pk: int, batch: DataBatch, received_ms: int, *, readings_clean: bool = False
) -> None:
    """List the batch's records stamped ahead of their receive time or before the protocol existed
    (they are stored all the same). ``readings_clean``: the caller knows no reading is one."""
    kinds = (batch.events, batch.results) if readings_clean else (batch.readings, batch.events, batch.results)
    rows = [
        (stream_pk, record.seq, record.ts, received_ms)
        for records in kinds
        for record in records
        if time_suspect(record.ts, received_ms)
    ]
    if rows:
        cur.executemany(_INSERT_SUSPECT, rows)


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
    return [event_row(row) for row in rows]


def points_ending_with(conn: sqlite3.Connection, cabinet: str, suffix: str) -> list[str]:
    # LIKE narrows (it ignores ASCII case, and "_" is escaped); endswith decides, case included.
    pattern = "%" + suffix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = conn.execute(
        "SELECT name FROM points WHERE cabinet = ? AND name LIKE ? ESCAPE '\\' ORDER BY name",
        (cabinet, pattern),
    )
    return [str(name) for (name,) in rows if str(name).endswith(suffix)]


def point_pk(conn: sqlite3.Connection, cabinet: str, point: str) -> int | None:
    found = conn.execute(_POINT_PK, (cabinet, point)).fetchone()
    return None if found is None else int(found[0])


def reading_page(
    conn: sqlite3.Connection, *, point: int, after: PageKey, end_ms: int, limit: int = 10_000
) -> tuple[list[ReadingRow], PageKey | None]:
    """Up to ``limit`` readings after ``after`` and before ``end_ms``; the key to continue from, or
    None when this was the last page. A page ends inside a bucket: the next one sorts it again."""
    page: list[RawReading] = []
    for part in buckets_of_point(conn, point, after[0], end_ms):
        page += [r for r in part if (r.ts, r.stream, r.seq) > after]
        if len(page) >= limit:
            page = page[:limit]
            last = page[-1]
            return _rows(page), (last.ts, last.stream, last.seq)
    return _rows(page), None


def _rows(raw: Iterable[RawReading]) -> list[ReadingRow]:
    return [ReadingRow(r.ts, r.value, r.quality, r.reason) for r in raw]


def point_readings(
    conn: sqlite3.Connection, cabinet: str, point: str, *, start_ms: int, end_ms: int, limit: int
) -> list[ReadingRow]:
    pk = point_pk(conn, cabinet, point)
    if pk is None:
        return []
    found: list[RawReading] = []
    for part in buckets_of_point(conn, pk, start_ms, end_ms):
        found += part
        if len(found) >= limit:
            break
    return _rows(found[:limit])


def good_neighbours(
    conn: sqlite3.Connection, point: int, start_ms: int, end_ms: int
) -> tuple[list[ReadingRow], list[ReadingRow]]:
    """The last good reading before ``start_ms`` and the first good one from ``end_ms`` (each 0 or 1).

    The point's 15-minute rollups say which buckets hold good readings: the walk skips the others.
    """
    res = WIDTH_MS["15m"]
    before = good_before(
        conn, point, start_ms, (int(b) for (b,) in conn.execute(_QUARTERS_BEFORE, (point, res, start_ms)))
    )
    quarter = end_ms - end_ms % res
    after = good_from(
        conn, point, end_ms, (int(b) for (b,) in conn.execute(_QUARTERS_FROM, (point, res, quarter)))
    )
    return _rows([before] if before else []), _rows([after] if after else [])
