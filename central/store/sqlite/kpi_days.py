"""The KPI day cache on SQLite (``central.store.kpi_days`` says what it holds and when it is current)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Sequence

from central.store.kpi_days import CounterEdge, KpiDayRow
from central.store.rollups import COUNTER_SUFFIX, WIDTH_MS
from central.store.rows import EpisodeTimes

KPI_DAYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS kpi_changes (
    cabinet TEXT NOT NULL,
    day INTEGER NOT NULL,  -- UTC day: ms since 1970 // 86,400,000
    gen INTEGER NOT NULL,
    PRIMARY KEY (cabinet, day)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kpi_changes_day ON kpi_changes (day);
CREATE TABLE IF NOT EXISTS kpi_days (
    tz TEXT NOT NULL,
    day TEXT NOT NULL,  -- the local day, YYYY-MM-DD
    cabinet TEXT NOT NULL,
    first_utc INTEGER NOT NULL,
    last_utc INTEGER NOT NULL,
    gen INTEGER NOT NULL,
    shape TEXT NOT NULL,
    figures BLOB NOT NULL,
    computed_ms INTEGER NOT NULL,
    PRIMARY KEY (tz, day, cabinet)
) WITHOUT ROWID;
"""

_BUMP = """
INSERT INTO kpi_changes (cabinet, day, gen) VALUES (?, ?, 1)
ON CONFLICT (cabinet, day) DO UPDATE SET gen = gen + 1
"""
# Only the rows still current: their gen is the sum of their UTC days' change counts now.
_CURRENT = """
SELECT k.cabinet, k.day, k.first_utc, k.last_utc, k.gen, k.shape, k.figures, k.computed_ms
FROM kpi_days AS k
WHERE k.tz = ? AND k.day >= ? AND k.day <= ?{cabinets}
  AND k.gen = (SELECT coalesce(sum(c.gen), 0) FROM kpi_changes AS c
               WHERE c.cabinet = k.cabinet AND c.day BETWEEN k.first_utc AND k.last_utc)
"""
_TOTALS = "SELECT cabinet, sum(gen) FROM kpi_changes WHERE day BETWEEN ? AND ? GROUP BY cabinet"
_GENS = "SELECT day, gen FROM kpi_changes WHERE cabinet = ? AND day BETWEEN ? AND ?"
_PUT = """
INSERT INTO kpi_days (tz, day, cabinet, first_utc, last_utc, gen, shape, figures, computed_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tz, day, cabinet) DO UPDATE SET
    first_utc = excluded.first_utc, last_utc = excluded.last_utc, gen = excluded.gen,
    shape = excluded.shape, figures = excluded.figures, computed_ms = excluded.computed_ms
"""
# Every counter point, and its nearest quarters with a counted reading on each side of a period: the
# buckets found on the point's index, their rows by primary key.
_NEAREST = (
    "SELECT r.bucket FROM rollups AS r INDEXED BY rollups_point"
    " WHERE r.point_pk = p.id AND r.res = :res AND r.counted > 0 AND r.bucket {cmp} ORDER BY r.bucket {order}"
    " LIMIT 1"
)
_EDGES = f"""
SELECT e.cabinet, e.name, b.last_wh_ts, b.last_wh, a.first_wh_ts, a.first_wh
FROM (
    SELECT p.id, p.cabinet, p.name,
        ({_NEAREST.format(cmp="< :start", order="DESC")}) AS before_bucket,
        ({_NEAREST.format(cmp=">= :end", order="")}) AS after_bucket
    FROM points AS p WHERE p.name LIKE :pattern ESCAPE '\\'
) AS e
LEFT JOIN rollups AS b ON b.res = :res AND b.bucket = e.before_bucket AND b.point_pk = e.id
LEFT JOIN rollups AS a ON a.res = :res AND a.bucket = e.after_bucket AND a.point_pk = e.id
ORDER BY e.cabinet, e.name
"""


def bump_changes(cur: sqlite3.Cursor, days: Sequence[tuple[str, int]]) -> None:
    """One more change on each (cabinet, UTC day): in the transaction of the batches that made them."""
    if days:
        cur.executemany(_BUMP, days)


_ALL_CABINETS = _CURRENT.format(cabinets="")
_THESE_CABINETS = _CURRENT.format(cabinets=" AND k.cabinet IN (SELECT value FROM json_each(?))")


def current_days(
    conn: sqlite3.Connection, tz: str, first: dt.date, last: dt.date, cabinets: Sequence[str] | None
) -> list[KpiDayRow]:
    days = (tz, first.isoformat(), last.isoformat())
    if cabinets is None:
        rows = conn.execute(_ALL_CABINETS, days)
    else:
        rows = conn.execute(_THESE_CABINETS, (*days, json.dumps(list(cabinets))))
    return [
        KpiDayRow(tz, cabinet, dt.date.fromisoformat(day), fu, lu, gen, shape, bytes(figures), computed)
        for cabinet, day, fu, lu, gen, shape, figures, computed in rows
    ]


def change_counts(conn: sqlite3.Connection, cabinet: str, first_day: int, last_day: int) -> dict[int, int]:
    return {int(d): int(g) for d, g in conn.execute(_GENS, (cabinet, first_day, last_day))}


def change_totals(conn: sqlite3.Connection, first_day: int, last_day: int) -> dict[str, int]:
    return {str(c): int(g) for c, g in conn.execute(_TOTALS, (first_day, last_day))}


def zones(conn: sqlite3.Connection) -> list[str]:
    return [str(tz) for (tz,) in conn.execute("SELECT DISTINCT tz FROM kpi_days ORDER BY tz")]


def put_days(cur: sqlite3.Cursor, rows: Sequence[KpiDayRow]) -> None:
    cur.executemany(
        _PUT,
        [
            (r.tz, r.date.isoformat(), r.cabinet, r.first_utc_day, r.last_utc_day, r.gen, r.shape,
             r.figures, r.computed_ms)
            for r in rows
        ],
    )  # fmt: skip


_EPISODE_TIMES = "id, cabinet, device, alarm, severity, raised_ms, acked_ms, cleared_ms"
_EPISODES = f"""
SELECT {_EPISODE_TIMES} FROM alarm_episodes WHERE raised_ms >= ? AND raised_ms < ?
UNION ALL
SELECT {_EPISODE_TIMES} FROM alarm_episodes INDEXED BY alarm_episodes_open
WHERE cleared_seq IS NULL AND raised_ms < ?
ORDER BY id LIMIT ?
"""


def episode_times(conn: sqlite3.Connection, since_ms: int, until_ms: int, limit: int) -> list[EpisodeTimes]:
    rows = conn.execute(_EPISODES, (since_ms, until_ms, since_ms, limit))
    return [EpisodeTimes._make(row) for row in rows]


def counter_edges(conn: sqlite3.Connection, start_ms: int, end_ms: int) -> list[CounterEdge]:
    pattern = "%" + COUNTER_SUFFIX.replace("_", "\\_")
    params = {"res": WIDTH_MS["15m"], "start": start_ms, "end": end_ms, "pattern": pattern}
    edges = []
    for cabinet, name, b_ts, b_wh, a_ts, a_wh in conn.execute(_EDGES, params):
        if not str(name).endswith(COUNTER_SUFFIX):  # LIKE ignores ASCII case
            continue
        before = None if b_ts is None or b_wh is None else (int(b_ts), float(b_wh))
        after = None if a_ts is None or a_wh is None else (int(a_ts), float(a_wh))
        edges.append(CounterEdge(str(cabinet), str(name), before, after))
    return edges
