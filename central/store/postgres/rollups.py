"""Rollups and retention in PostgreSQL: plain functions of a cursor (writes) or connection (reads).

``apply_rollups`` runs in the write transaction after the group's new readings are stored; the bucket
maths are ``central.store.rollups``' (shared with SQLite), this module only loads and stores rows,
with one statement to load and one to upsert per group.

Retention: ``purge`` deletes old raw readings in bounded steps (the ``RetentionStore`` contract).
``drop_day`` is what a large database wants instead: a whole day partition past retention goes at
once, no row by row. Each point's latest value is a copy in latest_readings: it outlives both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from central.store import rollups as ru
from central.store.postgres import partitions as parts
from central.store.postgres import stage
from central.store.postgres.values import join
from central.store.rows import RESOLUTIONS, Resolution, Rollup
from protocols.fleet import Reading

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
WHERE (res, bucket, point_pk) IN (SELECT * FROM unnest(%b::int4[], %b::int8[], %b::int4[]))
"""
_UPSERT = (
    f"INSERT INTO rollups (res, point_pk, {_COLUMNS}) SELECT * FROM unnest(%b::int4[], %b::int4[], "
    + ", ".join(f"%b::{t}[]" for t in _TYPES)
    + ") ON CONFLICT (res, bucket, point_pk) DO UPDATE SET "
    + ", ".join(f"{n} = excluded.{n}" for n in _NAMES if n != "bucket")
)
_LAST = ("last_ts", "last_stream", "last_seq", "last_vf", "last_vi", "last_vb", "last_vs", "last_quality")


def _merged(new: str) -> str:
    """The SET list that adds the rollup ``new`` (a row alias) to the stored one ``r``: the
    order-free part of ``rollups.absorb`` (count, min, max, sum, last), so no row is read back."""
    newer = f"({new}.last_ts, {new}.last_stream, {new}.last_seq) > (r.last_ts, r.last_stream, r.last_seq)"
    return ",\n    ".join(
        [
            f"count = r.count + {new}.count",
            f"good = r.good + {new}.good",
            f"min = least(r.min, {new}.min)",
            f"max = greatest(r.max, {new}.max)",
            f"sum = least(greatest(r.sum + {new}.sum, -1e300), 1e300)",
            *(f"{n} = CASE WHEN {newer} THEN {new}.{n} ELSE r.{n} END" for n in _LAST),
        ]
    )


# The staged rollups of points that are not counters, merged: the stage is emptied as it is read (a
# group may merge more than once in its transaction). Each row finds its bucket by the key's index
# (ON CONFLICT), whatever the size of the table: a join's plan is made once for the prepared
# statement, when the tables may still be small.
MERGE_PLAIN = f"""
WITH s AS (DELETE FROM {stage.ROLLUP_STAGE} RETURNING *)
INSERT INTO rollups AS r (res, point_pk, {_COLUMNS})
SELECT res, point_pk, {_COLUMNS} FROM s
ORDER BY res, bucket, point_pk
ON CONFLICT (res, bucket, point_pk) DO UPDATE SET {_merged("excluded")}
"""
_STAGE_COLUMNS = f"res, point_pk, {_COLUMNS}"
_STAGE_TYPES = ["int4", "int4", *_TYPES]
_RAW = """
SELECT ts, stream_pk, seq, vf, vi, vb, vs, quality FROM readings WHERE point_pk = %s AND ts >= %s AND ts < %s
"""
_POINT = "(SELECT id FROM points WHERE cabinet = %s AND name = %s)"

# A point's new readings of a group: (is it an energy counter, its samples).
NewSamples = Mapping[int, tuple[bool, list[ru.Sample]]]


def width(resolution: Resolution) -> int:
    return ru.WIDTH_MS[resolution]


def rollup_of(row: Sequence[Any]) -> Rollup:
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


def row_values(r: Rollup) -> tuple[object, ...]:
    vf, vi, vb, vs = ((r.last_value if type(r.last_value) is t else None) for t in (float, int, bool, str))
    return (
        r.bucket_ms, r.count, r.good, r.min, r.max, r.sum, r.last_ts_ms, r.last_stream, r.last_seq,
        vf, vi, vb, vs, r.last_quality, r.counted, r.first_wh_ts_ms, r.first_wh, r.last_wh_ts_ms,
        r.last_wh, r.energy_wh, r.energy_ms, r.resets, r.absurd,
    )  # fmt: skip


# -- writes (inside the write transaction) -----------------------------------------------------------


async def apply_rollups(
    cur: Cursor, new: NewSamples, *, plain: list[tuple[object, ...]] | None = None
) -> None:
    """Add the readings just stored to their buckets, at both resolutions. ``plain``: the rows of
    ``plain_rows(new)`` when the caller computed them already (while a COPY was being taken in)."""
    if await stage_plain(cur, plain_rows(new) if plain is None else plain):
        await cur.execute(MERGE_PLAIN)
    await apply_counters(cur, new)


async def stage_plain(cur: Cursor, rows: list[tuple[object, ...]]) -> bool:
    """Stage the rows of ``plain_rows`` for ``MERGE_PLAIN``; whether there were any."""
    if not rows:
        return False
    await stage.put(cur, stage.ROLLUP_STAGE, _STAGE_COLUMNS, _STAGE_TYPES, rows)
    return True


async def apply_counters(cur: Cursor, new: NewSamples) -> None:
    """Add the readings just stored of energy counters to their buckets (read, absorb, write)."""
    counters = {pk: entry for pk, entry in new.items() if entry[0]}
    if counters:
        await _apply_counters(cur, counters)


# The rollups of a group's new readings of points that are not counters, each as the values of its
# row (``_COLUMNS`` order, as ``row_values``: no Rollup object per point in the usual case):
# (res, bucket, point_pk) ->.
Plain = dict[tuple[int, int, int], tuple[object, ...]]


def add_plain(plain: Plain, key: tuple[int, int, int], rollup: Rollup) -> None:
    add_plain_values(plain, key, row_values(rollup))


def add_plain_values(plain: Plain, key: tuple[int, int, int], values: tuple[object, ...]) -> None:
    held = plain.get(key)
    plain[key] = values if held is None else _combined(held, values)


def _combined(a: Sequence[Any], b: Sequence[Any]) -> tuple[object, ...]:
    """``ru.combine`` of two rows of ``row_values`` (one point's readings that are not a counter's, in
    two batches of a group: a cabinet draining its backlog), without a Rollup object."""
    newer = b if (b[6], b[7], b[8]) > (a[6], a[7], a[8]) else a
    return (
        min(a[0], b[0]), a[1] + b[1], a[2] + b[2], _pick(min, a[3], b[3]), _pick(max, a[4], b[4]),
        ru.bounded(a[5] + b[5]), *newer[6:14], *a[14:],
    )  # fmt: skip


def _pick(fn: Callable[[float, float], float], x: float | None, y: float | None) -> float | None:
    return y if x is None else x if y is None else fn(x, y)


def good_floats_values(
    bucket: int, n: int, summary: tuple[float, float, float], stream: int, last: Reading
) -> tuple[object, ...]:
    """``row_values`` of ``ru.summarise_good``'s rollup: ``n`` good float readings in ``bucket``, their
    ``ru.good_summary``, ``last`` the newest (of the stream numbered ``stream``)."""
    total, low, high = summary
    return (
        bucket, n, n, low, high, total, last.ts, stream, last.seq, last.value, None, None, None,
        last.quality, 0, None, None, None, None, 0.0, 0, 0, 0,
    )  # fmt: skip


def plain_rollups(new: NewSamples, plain: Plain | None = None) -> Plain:
    """Add the rollups of ``new``'s points that are not counters to ``plain``. Pure."""
    out: Plain = {} if plain is None else plain
    quarter, day = width("15m"), width("1d")
    for pk, (counter, samples) in new.items():
        if counter:
            continue
        quarters = [
            ru.summarise(bucket, part, counter=False) for bucket, part in ru.by_bucket(samples, "15m").items()
        ]
        for r in quarters:
            add_plain(out, (quarter, r.bucket_ms, pk), r)
        if len(quarters) == 1:  # nearly always: the quarter is also its day's part, summarised once
            only = quarters[0]
            bucket = ru.bucket_of(only.bucket_ms, "1d")
            add_plain(out, (day, bucket, pk), ru.in_bucket(only, bucket))
            continue
        for bucket, part in ru.by_bucket(samples, "1d").items():
            add_plain(out, (day, bucket, pk), ru.summarise(bucket, part, counter=False))
    return out


def plain_rows_of(plain: Plain) -> list[tuple[object, ...]]:
    """The rows of the upsert that merges ``plain`` with what is stored (the order-free part of
    ``rollups.absorb``: count, min, max, sum, last), so no row is read back."""
    # The key's order: the lock order of every worker.
    return [(res, pk, *plain[(res, bucket, pk)]) for res, bucket, pk in sorted(plain)]


def plain_rows(new: NewSamples) -> list[tuple[object, ...]]:
    """The rollup rows of the points that are not counters (``plain_rollups``, ``plain_rows_of``)."""
    return plain_rows_of(plain_rollups(new))


async def _apply_counters(cur: Cursor, new: NewSamples) -> None:
    """Energy counters: read, ``absorb``, write back (their energy needs the order of readings)."""
    keyed: dict[tuple[int, int, int], list[ru.Sample]] = {}
    for resolution in RESOLUTIONS:
        res = width(resolution)
        for pk, (_, samples) in new.items():
            for bucket, part in ru.by_bucket(samples, resolution).items():
                keyed[(res, bucket, pk)] = part
    keys = sorted(keyed)
    await cur.execute(_LOAD, ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]))
    existing = {(int(r[0]), int(r[2]), int(r[1])): rollup_of(r[2:]) for r in await cur.fetchall()}
    rows: list[tuple[object, ...]] = []
    for key in keys:
        res, bucket, pk = key
        old = existing.get(key)
        rollup = ru.absorb(old, keyed[key], bucket, counter=True)
        if rollup is None:  # a reading among those counted: count the bucket again, from the raw ones
            assert old is not None  # absorb refuses only to merge into what exists
            await cur.execute(_RAW, (pk, bucket, bucket + res))
            raw = [ru.Sample(r[0], r[1], r[2], join(*r[3:7]), r[7]) for r in await cur.fetchall()]
            if len(raw) < old.count + len(keyed[key]):  # retention took some: never shrink the bucket
                rollup = ru.absorb_without_raw(old, keyed[key], bucket)
            else:
                rollup = ru.summarise(bucket, raw, counter=True)
        rows.append((res, pk, *row_values(rollup)))
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
    return [rollup_of(r) for r in await cur.fetchall()]


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
    return (None if before is None else rollup_of(before)), (None if after is None else rollup_of(after))


# -- retention -----------------------------------------------------------------------------------

# Each point's latest value stays in latest_readings (a copy of it), rollups and events stay. Rows
# are picked by their unique key, so two purges at once delete each row once (the second finds it
# gone and counts nothing for it).
_PURGE = """
WITH doomed AS (
    SELECT r.stream_pk, r.seq, r.ts FROM readings AS r WHERE r.ts < %(before)s LIMIT %(limit)s
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
    """Drop the partition of ``day`` (its points' latest values stay in latest_readings); how many
    readings went (0 when another process dropped it first)."""
    dropped = await _drop(conn, day, only_if_empty=False)
    return dropped or 0


async def _drop(conn: Conn, day: int, *, only_if_empty: bool) -> int | None:
    """Drop the day's partition; the readings it held, or None when it was not dropped (gone
    already, or holding readings when ``only_if_empty``). Decided under the partition lock, so two
    purges at once cannot race."""
    name = parts.partition_name(day)
    table = sql.Identifier(name)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (parts.PARTITION_LOCK,))
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
        found = await cur.fetchone()
        if found is None or not found[0]:
            return None
        cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
        total = await cur.fetchone()
        held = int(total[0]) if total is not None else 0
        if only_if_empty and held:
            return None
        # Detached first: from here the day is no partition's, and nothing new lands in the table.
        await conn.execute(sql.SQL("ALTER TABLE readings DETACH PARTITION {}").format(table))
        await conn.execute(
            sql.SQL(
                "DELETE FROM time_suspect AS t USING {} AS p"
                " WHERE (t.stream_pk, t.seq) = (p.stream_pk, p.seq)"
            ).format(table)
        )
        await conn.execute(sql.SQL("DROP TABLE {}").format(table))
    return held


async def drop_empty_days(conn: Conn, before_ms: int) -> int:
    """Drop the day partitions that end at or before ``before_ms`` and hold no reading; how many."""
    dropped = 0
    for day in sorted(await parts.existing_days(conn)):
        if (day + 1) * parts.DAY_MS > before_ms:
            break
        if await _drop(conn, day, only_if_empty=True) is not None:
            dropped += 1
    return dropped
