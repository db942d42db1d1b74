"""The KPI day cache on PostgreSQL, as on SQLite (``central.store.kpi_days`` says what it holds)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import psycopg

from central.store.kpi_days import CounterEdge, KpiDayRow
from central.store.rollups import COUNTER_SUFFIX, WIDTH_MS
from central.store.rows import EpisodeTimes

Cursor = psycopg.AsyncCursor[tuple[Any, ...]]
Conn = psycopg.AsyncConnection[tuple[Any, ...]]

KPI_DAYS_SCHEMA = """
CREATE TABLE kpi_changes (
    cabinet text COLLATE "C" NOT NULL,
    day integer NOT NULL,
    gen bigint NOT NULL,
    PRIMARY KEY (cabinet, day)
);
CREATE INDEX kpi_changes_day ON kpi_changes (day);
CREATE TABLE kpi_days (
    tz text COLLATE "C" NOT NULL,
    day date NOT NULL,
    cabinet text COLLATE "C" NOT NULL,
    first_utc integer NOT NULL,
    last_utc integer NOT NULL,
    gen bigint NOT NULL,
    shape text COLLATE "C" NOT NULL,
    figures bytea NOT NULL,
    computed_ms bigint NOT NULL,
    PRIMARY KEY (tz, day, cabinet)
);
"""

# One statement for the group's (cabinet, day) pairs, distinct and sorted: the lock order.
_BUMP = """
INSERT INTO kpi_changes (cabinet, day, gen)
SELECT c, d, 1 FROM unnest(%s::text[], %s::integer[]) AS t (c, d)
ON CONFLICT (cabinet, day) DO UPDATE SET gen = kpi_changes.gen + 1
"""
_CURRENT = """
SELECT k.cabinet, k.day, k.first_utc, k.last_utc, k.gen, k.shape, k.figures, k.computed_ms
FROM kpi_days AS k
WHERE k.tz = %s AND k.day BETWEEN %s AND %s AND (%s::text[] IS NULL OR k.cabinet = ANY(%s::text[]))
  AND k.gen = (SELECT coalesce(sum(c.gen), 0) FROM kpi_changes AS c
               WHERE c.cabinet = k.cabinet AND c.day BETWEEN k.first_utc AND k.last_utc)
"""
_TOTALS = "SELECT cabinet, sum(gen) FROM kpi_changes WHERE day BETWEEN %s AND %s GROUP BY cabinet"
_GENS = "SELECT day, gen FROM kpi_changes WHERE cabinet = %s AND day BETWEEN %s AND %s"
_PUT = """
INSERT INTO kpi_days (tz, day, cabinet, first_utc, last_utc, gen, shape, figures, computed_ms)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (tz, day, cabinet) DO UPDATE SET
    first_utc = EXCLUDED.first_utc, last_utc = EXCLUDED.last_utc, gen = EXCLUDED.gen,
    shape = EXCLUDED.shape, figures = EXCLUDED.figures, computed_ms = EXCLUDED.computed_ms
"""
_EDGES = """
SELECT p.cabinet, p.name, b.last_wh_ts, b.last_wh, a.first_wh_ts, a.first_wh
FROM points AS p
LEFT JOIN LATERAL (
    SELECT r.last_wh_ts, r.last_wh FROM rollups AS r
    WHERE r.point_pk = p.id AND r.res = %(res)s AND r.counted > 0 AND r.bucket < %(start)s
    ORDER BY r.bucket DESC LIMIT 1
) AS b ON true
LEFT JOIN LATERAL (
    SELECT r.first_wh_ts, r.first_wh FROM rollups AS r
    WHERE r.point_pk = p.id AND r.res = %(res)s AND r.counted > 0 AND r.bucket >= %(end)s
    ORDER BY r.bucket LIMIT 1
) AS a ON true
WHERE right(p.name, %(n)s) = %(suffix)s
ORDER BY p.cabinet, p.name
"""


_EPISODE_TIMES = "id, cabinet, device, alarm, severity, raised_ms, acked_ms, cleared_ms"
_EPISODES = f"""
SELECT {_EPISODE_TIMES} FROM alarm_episodes WHERE raised_ms >= %s AND raised_ms < %s
UNION ALL
SELECT {_EPISODE_TIMES} FROM alarm_episodes WHERE cleared_seq IS NULL AND raised_ms < %s
ORDER BY id LIMIT %s
"""


async def episode_times(conn: Conn, since_ms: int, until_ms: int, limit: int) -> list[EpisodeTimes]:
    cur = await conn.execute(_EPISODES, (since_ms, until_ms, since_ms, limit))
    return [EpisodeTimes._make(row) for row in await cur.fetchall()]


async def bump_changes(cur: Cursor, days: Sequence[tuple[str, int]]) -> None:
    """One more change on each (cabinet, UTC day), in the transaction of the batches that made them."""
    if days:
        await cur.execute(_BUMP, ([c for c, _ in days], [d for _, d in days]))


async def current_days(
    conn: Conn, tz: str, first: dt.date, last: dt.date, cabinets: Sequence[str] | None
) -> list[KpiDayRow]:
    these = None if cabinets is None else list(cabinets)
    cur = await conn.execute(_CURRENT, (tz, first, last, these, these))
    return [
        KpiDayRow(tz, cabinet, day, fu, lu, gen, shape, bytes(figures), computed)
        for cabinet, day, fu, lu, gen, shape, figures, computed in await cur.fetchall()
    ]


async def change_counts(conn: Conn, cabinet: str, first_day: int, last_day: int) -> dict[int, int]:
    cur = await conn.execute(_GENS, (cabinet, first_day, last_day))
    return {int(d): int(g) for d, g in await cur.fetchall()}


async def change_totals(conn: Conn, first_day: int, last_day: int) -> dict[str, int]:
    cur = await conn.execute(_TOTALS, (first_day, last_day))
    return {str(c): int(g) for c, g in await cur.fetchall()}


async def zones(conn: Conn) -> list[str]:
    cur = await conn.execute("SELECT DISTINCT tz FROM kpi_days ORDER BY tz")
    return [str(tz) for (tz,) in await cur.fetchall()]


async def put_days(cur: Cursor, rows: Sequence[KpiDayRow]) -> None:
    # Sorted by key: two writers of overlapping rows take their locks in one order.
    ordered = sorted(rows, key=lambda r: (r.tz, r.date, r.cabinet))
    await cur.executemany(
        _PUT,
        [
            (r.tz, r.date, r.cabinet, r.first_utc_day, r.last_utc_day, r.gen, r.shape, r.figures,
             r.computed_ms)
            for r in ordered
        ],
    )  # fmt: skip


async def counter_edges(conn: Conn, start_ms: int, end_ms: int) -> list[CounterEdge]:
    params = {
        "res": WIDTH_MS["15m"],
        "start": start_ms,
        "end": end_ms,
        "n": len(COUNTER_SUFFIX),
        "suffix": COUNTER_SUFFIX,
    }
    cur = await conn.execute(_EDGES, params)
    edges = []
    for cabinet, name, b_ts, b_wh, a_ts, a_wh in await cur.fetchall():
        before = None if b_ts is None or b_wh is None else (int(b_ts), float(b_wh))
        after = None if a_ts is None or a_wh is None else (int(a_ts), float(a_wh))
        edges.append(CounterEdge(str(cabinet), str(name), before, after))
    return edges
