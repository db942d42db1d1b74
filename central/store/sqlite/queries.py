"""The read side of the SQLite store: plain functions of a read-only connection, run on a thread."""

from __future__ import annotations

import sqlite3

from central.store import codec
from central.store.codec import event_row
from central.store.rows import (
    CabinetRow,
    EventRow,
    PointValue,
    QuarantineCounts,
    QuarantineRow,
    Totals,
)

_CABINET_COLUMNS = """
    id, online, last_seen_ms, status_ts_ms, version, config_hash, stream, boot_count, backlog,
    inventory
"""

# For each point of the cabinet, its newest reading in sequence order, as named by latest_readings
# (kept at ingest, one upsert per point per batch; see central.record_time): one probe per point.
_LATEST = """
SELECT p.name, l.ts, l.value, l.quality, l.reason
FROM points AS p
JOIN latest_readings AS l ON l.point_pk = p.id
WHERE p.cabinet = ?
ORDER BY p.name
"""

# Events are read joined with their stream (``e``, ``s``), in the order of EventRow's fields.
EVENT_COLUMNS = "e.cabinet, s.stream, e.seq, e.ts, e.source, e.kind, e.severity, e.message, e.data"

_EVENTS = """
SELECT {columns}
FROM events AS e JOIN streams AS s ON s.id = e.stream_pk
WHERE {where}
ORDER BY e.ts DESC, e.stream_pk DESC, e.seq DESC
LIMIT ?
"""


def ping(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT count(*) FROM counters").fetchone()


def cabinets(conn: sqlite3.Connection) -> list[CabinetRow]:
    rows = conn.execute(f"SELECT {_CABINET_COLUMNS} FROM cabinets ORDER BY id")
    return [codec.cabinet_row(row) for row in rows]


def cabinet(conn: sqlite3.Connection, cabinet_id: str) -> CabinetRow | None:
    row = conn.execute(f"SELECT {_CABINET_COLUMNS} FROM cabinets WHERE id = ?", (cabinet_id,)).fetchone()
    return None if row is None else codec.cabinet_row(row)


def latest_values(conn: sqlite3.Connection, cabinet_id: str) -> list[PointValue]:
    return [PointValue(*row) for row in conn.execute(_LATEST, (cabinet_id,))]


def has_point(conn: sqlite3.Connection, cabinet_id: str, point: str) -> bool:
    row = conn.execute("SELECT 1 FROM points WHERE cabinet = ? AND name = ?", (cabinet_id, point)).fetchone()
    return row is not None


def events(
    conn: sqlite3.Connection, cabinet_id: str | None, since_ms: int | None, limit: int
) -> list[EventRow]:
    clauses: list[str] = []
    params: list[object] = []
    if cabinet_id is not None:
        clauses.append("e.cabinet = ?")
        params.append(cabinet_id)
    if since_ms is not None:
        clauses.append("e.ts >= ?")
        params.append(since_ms)
    sql = _EVENTS.format(columns=EVENT_COLUMNS, where=" AND ".join(clauses) or "1")
    return [event_row(row) for row in conn.execute(sql, (*params, limit))]


def quarantine(conn: sqlite3.Connection, limit: int) -> list[QuarantineRow]:
    rows = conn.execute(
        "SELECT id, received_ms, topic, reason, detail, size FROM quarantine ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [QuarantineRow(*row) for row in rows]


def quarantine_payload(conn: sqlite3.Connection, entry_id: int) -> bytes | None:
    row = conn.execute("SELECT payload FROM quarantine WHERE id = ?", (entry_id,)).fetchone()
    return None if row is None else bytes(row[0])


def _counters(conn: sqlite3.Connection) -> dict[str, int]:
    return {str(name): int(value) for name, value in conn.execute("SELECT * FROM counters")}


def quarantine_counts(conn: sqlite3.Connection) -> QuarantineCounts:
    rows = conn.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY reason")
    by_reason = {str(reason): int(n) for reason, n in rows}
    return QuarantineCounts(by_reason=by_reason, evicted=_counters(conn)["quarantine_evicted"])


def totals(conn: sqlite3.Connection) -> Totals:
    counters = _counters(conn)
    (n_cabinets,) = conn.execute("SELECT count(*) FROM cabinets").fetchone()
    return Totals(
        cabinets=int(n_cabinets),
        readings=counters["readings"],
        events=counters["events"],
        results=counters["results"],
        quarantined=counters["quarantined"],
    )
