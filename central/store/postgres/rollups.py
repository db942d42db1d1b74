"""Rollups and retention in PostgreSQL: plain functions of a cursor (writes) or connection (reads).

``apply_rollups`` runs in the write transaction after the group's new readings are stored; the bucket
maths are ``central.store.rollups``' (shared with SQLite), this module only loads and stores rows,
with one statement to load and one to upsert per group.

Retention: ``purge`` deletes old raw readings in bounded steps (the ``RetentionStore`` contract),
each point's latest reading kept. ``drop_days`` is what a large database wants instead: a whole day
partition past retention goes at once (its latest readings moved to the default partition first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from central.store import rollups as ru
from central.store.postgres import partitions as parts
from central.store.postgres.values import join
from central.store.rows import RESOLUTIONS, Resolution, Rollup

Cursor = psycopg.AsyncCursor[tuple[Any, ...]]
Conn = psycopg.AsyncConnection[tuple[Any, ...]]

_COLUMNS = """
    bucket, count, good, min, max, sum, last_ts, last_stream, last_seq, last_vf, last_vi, last_vb,
    last_vs, last_quality, counted, first_wh_ts, first_wh, last_wh_ts, last_wh, energy_wh, energy_ms,
    resets, absurd
"""
_NAMES = [name.strip() for name in _COLUMNS.split(",")]
_TYPES = [
    "int8", "int8", "int8", "float8", "float8", "float8", "int8", "int4", "int8", "float8", "int8",
    "bool", "text", "int2", "int8", "int8", "float8", "int8", "float8", "float8", "int8", "int8", "int8",
]  # fmt: skip
_LOAD = f"""
SELECT res, point_pk, {_COLUMNS} FROM rollups
WHERE (res, bucket, point_pk) IN (SELECT * FROM unnest(%s::int4[], %s::int8[], %s::int4[]))
"""
_UPSERT = (
    f"INSERT INTO rollups (res, point_pk, {_COLUMNS}) SELECT * FROM unnest(%s::int4[], %s::int4[], "
    + ", ".join(f"%s::{t}[]" for t in _TYPES)
    + ") ON CONFLICT (res, bucket, point_pk) DO UPDATE SET "
    + ", ".join(f"{n} = excluded.{n}" for n in _NAMES if n != "bucket")
)
_RAW = """
SELECT ts, stream_pk, seq, vf, vi, vb, vs, quality FROM readings WHERE point_pk = %s AND ts >= %s AND ts < %s
"""
_POINT = "(SELECT id FROM points WHERE cabinet = %s AND name = %s)"

# A point's new readings of a group: (is it an energy counter, its samples).
NewSamples = Mapping[int, tuple[bool, list[ru.Sample]]]


def width(resolution: Resolution) -> int:
    return ru.WIDTH_MS[resolution]


def _rollup(row: Sequence[Any]) -> Rollup:
    """A row in _COLUMNS order."""
    return Rollup(
        bucket_ms=row[0],
        count=row[1],
        good=row[2],
        min=row[3],
        max=row[4],
        sum=row[5],
        last_ts_ms=row[6],
        last_stream=row[7],
        last_seq=row[8],
        last_value=join(row[9], row[10], row[11], row[12]),
        last_quality=row[13],
        counted=row[14],
        first_wh_ts_ms=row[15],
        first_wh=row[16],
        last_wh_ts_ms=row[17],
        last_wh=row[18],
        energy_wh=row[19],
        energy_ms=row[20],
        resets=row[21],
        absurd=row[22],
    )


def _values(r: Rollup) -> tuple[object, ...]:
    vf, vi, vb, vs = ((r.last_value if type(r.last_value) is t else None) for t in (float, int, bool, str))
    return (
        r.bucket_ms, r.count, r.good, r.min, r.max, r.sum, r.last_ts_ms, r.last_stream, r.last_seq,
        vf, vi, vb, vs, r.last_quality, r.counted, r.first_wh_ts_ms, r.first_wh, r.last_wh_ts_ms,
        r.last_wh, r.energy_wh, r.energy_ms, r.resets, r.absurd,
    )  # fmt: skip


# -- writes (inside the write transaction) -----------------------------------------------------------


async def apply_rollups(cur: Cursor, new: NewSamples) -> None:
    """Add the readings just stored to their buckets, at both resolutions."""
    if not new:
        return
    keyed: dict[tuple[int, int, int], list[ru.Sample]] = {}
    for resolution in RESOLUTIONS:
        res = width(resolution)
        for pk, (_, samples) in new.items():
            for bucket, part in ru.by_bucket(samples, resolution).items():
                keyed[(res, bucket, pk)] = part
    keys = sorted(keyed)
    await cur.execute(_LOAD, ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]))
    existing = {(int(r[0]), int(r[2]), int(r[1])): _rollup(r[2:]) for r in await cur.fetchall()}
    rows: list[tuple[object, ...]] = []
    for key in keys:
        res, bucket, pk = key
        counter = new[pk][0]
        rollup = ru.absorb(existing.get(key), keyed[key], bucket, counter=counter)
        if rollup is None:  # a counter's reading among those counted: from the raw readings
            await cur.execute(_RAW, (pk, bucket, bucket + res))
            raw = [ru.Sample(r[0], r[1], r[2], join(*r[3:7]), r[7]) for r in await cur.fetchall()]
            rollup = ru.summarise(bucket, raw, counter=counter)
        rows.append((res, pk, *_values(rollup)))
    await cur.execute(_UPSERT, [list(column) for column in zip(*rows, strict=True)])


# -- reads -------------------------------------------------------------------------------------------


async def rollups(
    conn: Conn, cabinet: str, point: str, *, resolution: Resolution, start_ms: int, end_ms: int, limit: int
) -> list[Rollup]:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM rollups WHERE point_pk = {_POINT} AND res = %s"
        " AND bucket >= %s AND bucket < %s ORDER BY bucket LIMIT %s",
        (cabinet, point, width(resolution), start_ms, end_ms, limit),
    )
    return [_rollup(r) for r in await cur.fetchall()]


async def rollup_neighbours(
    conn: Conn, cabinet: str, point: str, *, resolution: Resolution, start_ms: int, end_ms: int
) -> tuple[Rollup | None, Rollup | None]:
    if not ru.is_counter(point):  # only counters have counted readings
        return None, None
    where = f"WHERE point_pk = {_POINT} AND res = %s AND counted > 0"
    res = width(resolution)
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM rollups {where} AND bucket < %s ORDER BY bucket DESC LIMIT 1",
        (cabinet, point, res, start_ms),
    )
    before = await cur.fetchone()
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM rollups {where} AND bucket >= %s ORDER BY bucket LIMIT 1",
        (cabinet, point, res, end_ms),
    )
    after = await cur.fetchone()
    return (None if before is None else _rollup(before)), (None if after is None else _rollup(after))


# -- retention -----------------------------------------------------------------------------------

# Each point's latest reading is kept, whatever its age: it is the point's current value. Rows are
# picked by their unique key, so two purges at once delete each row once (the second finds it gone).
_PURGE = """
WITH doomed AS (
    SELECT r.stream_pk, r.seq, r.ts FROM readings AS r
    WHERE r.ts < %(before)s
        AND NOT EXISTS (
            SELECT 1 FROM latest_readings AS l
            WHERE l.point_pk = r.point_pk AND l.stream_pk = r.stream_pk AND l.seq = r.seq
        )
    LIMIT %(limit)s
), gone AS (
    DELETE FROM readings AS r USING doomed AS d
    WHERE r.stream_pk = d.stream_pk AND r.seq = d.seq AND r.ts = d.ts
    RETURNING r.stream_pk, r.seq
), unflagged AS (
    DELETE FROM time_suspect AS t USING gone AS g WHERE t.stream_pk = g.stream_pk AND t.seq = g.seq
)
SELECT (SELECT count(*) FROM doomed), (SELECT count(*) FROM gone)
"""


async def purge(cur: Cursor, *, before_ms: int, limit: int) -> tuple[int, bool]:
    """Delete up to ``limit`` raw readings stamped before ``before_ms``: (how many, none left)."""
    await cur.execute(_PURGE, {"before": before_ms, "limit": limit})
    row = await cur.fetchone()
    assert row is not None
    found, deleted = int(row[0]), int(row[1])
    return deleted, found < limit


async def drop_day(conn: Conn, day: int) -> int:
    """Drop the partition of ``day``; its points' latest readings move to the default partition.
    How many readings went (0 when another process dropped it first)."""
    name = parts.partition_name(day)
    table = sql.Identifier(name)
    lo, hi = day * parts.DAY_MS, (day + 1) * parts.DAY_MS
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (parts.PARTITION_LOCK,))
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
        found = await cur.fetchone()
        if found is None or not found[0]:
            return 0
        await conn.execute(sql.SQL("ALTER TABLE readings DETACH PARTITION {}").format(table))
        # The day is no partition's now: what is inserted for it goes to the default partition.
        await conn.execute(
            sql.SQL(
                "INSERT INTO readings SELECT p.* FROM {} AS p JOIN latest_readings AS l"
                " ON (l.point_pk, l.stream_pk, l.seq) = (p.point_pk, p.stream_pk, p.seq)"
            ).format(table)
        )
        cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
        total = await cur.fetchone()
        kept = await conn.execute(
            "SELECT count(*) FROM readings_default WHERE ts >= %s AND ts < %s", (lo, hi)
        )
        moved = await kept.fetchone()
        await conn.execute(
            sql.SQL(
                "DELETE FROM time_suspect AS t USING {} AS p"
                " WHERE (t.stream_pk, t.seq) = (p.stream_pk, p.seq)"
                " AND NOT EXISTS (SELECT 1 FROM readings_default AS d"
                " WHERE (d.stream_pk, d.seq) = (p.stream_pk, p.seq))"
            ).format(table)
        )
        await conn.execute(sql.SQL("DROP TABLE {}").format(table))
    return int(total[0] if total else 0) - int(moved[0] if moved else 0)
