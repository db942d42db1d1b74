"""Rollups and retention in SQLite: plain functions of a cursor (writes) or connection (reads).

``apply_rollups`` runs on the writer thread in the batch's transaction, after the batch's new
readings are inserted: the bucket maths are ``central.store.rollups``'; this module only loads and
stores rows. A row is keyed by (res, bucket, point_pk) so that a cabinet's points of one bucket sit
side by side (one page written per batch and resolution); the index by point serves reads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from central.store import rollups as ru
from central.store.rows import RESOLUTIONS, Resolution, Rollup

_VALUES = """
    count, good, min, max, sum, last_ts, last_stream, last_seq, last_value, last_quality,
    counted, first_wh_ts, first_wh, last_wh_ts, last_wh, energy_wh, energy_ms, resets, absurd
"""
_INSERT = f"INSERT INTO rollups (res, bucket, point_pk, {_VALUES}) VALUES ({', '.join('?' * 22)})"
_UPDATE = (
    "UPDATE rollups SET "
    + ", ".join(f"{name.strip()} = ?" for name in _VALUES.split(","))
    + " WHERE res = ? AND bucket = ? AND point_pk = ?"
)
_SELECT = f"SELECT bucket, {_VALUES} FROM rollups"
_RAW = """
SELECT ts, stream_pk, seq, value, quality FROM readings WHERE point_pk = ? AND ts >= ? AND ts < ?
"""
_POINT = "(SELECT id FROM points WHERE cabinet = ? AND name = ?)"
_CHUNK = 500


def width(resolution: Resolution) -> int:
    return ru.WIDTH_MS[resolution]


def _rollup(row: Sequence[Any]) -> Rollup:
    return Rollup(*row)


def _values(r: Rollup) -> tuple[object, ...]:
    return (
        r.count,
        r.good,
        r.min,
        r.max,
        r.sum,
        r.last_ts_ms,
        r.last_stream,
        r.last_seq,
        r.last_value,
        r.last_quality,
        r.counted,
        r.first_wh_ts_ms,
        r.first_wh,
        r.last_wh_ts_ms,
        r.last_wh,
        r.energy_wh,
        r.energy_ms,
        r.resets,
        r.absurd,
    )


# -- writes (writer thread, inside the batch's transaction) ------------------------------------------


def apply_rollups(cur: sqlite3.Cursor, new: Mapping[int, tuple[bool, list[ru.Sample]]]) -> None:
    """Add the readings just stored (point_pk -> (is a counter, samples)) to their buckets."""
    for resolution in RESOLUTIONS:
        res = width(resolution)
        keyed: dict[tuple[int, int], list[ru.Sample]] = {}
        for pk, (_, samples) in new.items():
            for bucket, part in ru.by_bucket(samples, resolution).items():
                keyed[(bucket, pk)] = part
        existing = _load(cur, res, keyed)
        inserts: list[tuple[object, ...]] = []
        updates: list[tuple[object, ...]] = []
        for (bucket, pk), part in keyed.items():
            counter = new[pk][0]
            old = existing.get((bucket, pk))
            rollup = ru.absorb(old, part, bucket, counter=counter)
            if rollup is None:  # a counter's reading among those counted: from the raw readings
                raw = [ru.Sample(*row) for row in cur.execute(_RAW, (pk, bucket, bucket + res))]
                rollup = ru.summarise(bucket, raw, counter=counter)
            if old is None:
                inserts.append((res, bucket, pk, *_values(rollup)))
            else:
                updates.append((*_values(rollup), res, bucket, pk))
        # UPDATE, not REPLACE: a replaced row would rewrite its index entry too.
        if updates:
            cur.executemany(_UPDATE, updates)
        if inserts:
            cur.executemany(_INSERT, inserts)


def _load(cur: sqlite3.Cursor, res: int, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], Rollup]:
    by_bucket: dict[int, list[int]] = {}
    for bucket, pk in keys:
        by_bucket.setdefault(bucket, []).append(pk)
    found: dict[tuple[int, int], Rollup] = {}
    for bucket, pks in by_bucket.items():
        for i in range(0, len(pks), _CHUNK):
            chunk = pks[i : i + _CHUNK]
            rows = cur.execute(
                f"SELECT point_pk, bucket, {_VALUES} FROM rollups"
                f" WHERE res = ? AND bucket = ? AND point_pk IN ({', '.join('?' * len(chunk))})",
                (res, bucket, *chunk),
            )
            for row in rows:
                found[(bucket, int(row[0]))] = _rollup(row[1:])
    return found


# -- reads -------------------------------------------------------------------------------------------


def rollups(
    conn: sqlite3.Connection,
    cabinet: str,
    point: str,
    *,
    resolution: Resolution,
    start_ms: int,
    end_ms: int,
    limit: int,
) -> list[Rollup]:
    rows = conn.execute(
        f"{_SELECT} WHERE point_pk = {_POINT} AND res = ? AND bucket >= ? AND bucket < ?"
        " ORDER BY bucket LIMIT ?",
        (cabinet, point, width(resolution), start_ms, end_ms, limit),
    )
    return [_rollup(r) for r in rows]


def rollup_neighbours(
    conn: sqlite3.Connection, cabinet: str, point: str, *, resolution: Resolution, start_ms: int, end_ms: int
) -> tuple[Rollup | None, Rollup | None]:
    if not ru.is_counter(point):  # only counters have counted readings
        return None, None
    res = width(resolution)
    where = f"WHERE point_pk = {_POINT} AND res = ? AND counted > 0"
    before = conn.execute(
        f"{_SELECT} {where} AND bucket < ? ORDER BY bucket DESC LIMIT 1", (cabinet, point, res, start_ms)
    ).fetchone()
    after = conn.execute(
        f"{_SELECT} {where} AND bucket >= ? ORDER BY bucket LIMIT 1", (cabinet, point, res, end_ms)
    ).fetchone()
    return (None if before is None else _rollup(before)), (None if after is None else _rollup(after))


# -- retention (writer thread, one short transaction per call) ---------------------------------------

# Each point's latest reading is kept, whatever its age: it is the point's current value.
_PURGE = """
DELETE FROM readings WHERE (stream_pk, seq) IN (
    SELECT r.stream_pk, r.seq FROM readings AS r
    WHERE r.point_pk = :pk AND r.ts < :before
        AND NOT EXISTS (
            SELECT 1 FROM latest_readings AS l
            WHERE l.point_pk = :pk AND (l.stream_pk, l.seq) = (r.stream_pk, r.seq)
        )
    LIMIT :limit
)
RETURNING stream_pk, seq
"""
_POINTS_FROM = "SELECT id FROM points WHERE id >= ? ORDER BY id LIMIT ?"
# Points probed per call at most: a call stays short even when most points have nothing to delete.
PURGE_POINTS_PER_CALL = 512


def purge(cur: sqlite3.Cursor, *, before_ms: int, limit: int, from_point: int) -> tuple[int, int | None]:
    """Delete up to ``limit`` readings before ``before_ms``, walking points from ``from_point``.

    Returns how many went and the point to go on from, or None when the walk passed the last point.
    """
    deleted = 0
    pks = [int(pk) for (pk,) in cur.execute(_POINTS_FROM, (from_point, PURGE_POINTS_PER_CALL))]
    for pk in pks:
        keys = cur.execute(_PURGE, {"pk": pk, "before": before_ms, "limit": limit - deleted}).fetchall()
        # Records stamped ahead lose their flag with them (events keep theirs).
        cur.executemany("DELETE FROM time_suspect WHERE stream_pk = ? AND seq = ?", keys)
        deleted += len(keys)
        if deleted >= limit:
            return deleted, pk  # this point may hold more
    if len(pks) < PURGE_POINTS_PER_CALL:
        return deleted, None
    return deleted, pks[-1] + 1
