"""Rollups and retention in SQLite: plain functions of a cursor (writes) or connection (reads).

``apply_rollups`` runs on the writer thread in the batch's transaction, after the batch's new
readings are inserted: the bucket maths are ``central.store.rollups``'; this module only loads and
stores rows. A row is keyed by (res, bucket, point_pk) so that a cabinet's points of one bucket sit
side by side (one page written per batch and resolution); the index by point serves reads.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from central.store import rollups as ru
from central.store.rows import RESOLUTIONS, Resolution, Rollup
from central.store.sqlite.blocks import buckets_of_point

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


# The order-free part of ``rollups.absorb`` (count, min, max, sum, last) as one statement, for points
# that are not counters: no row is read back into Python. min(a, b) is NULL when either is, hence
# the coalesce. Every expression reads the row as it was (SQL), so ``last_*`` move together.
_NEWER = (
    "(excluded.last_ts, excluded.last_stream, excluded.last_seq) > (r.last_ts, r.last_stream, r.last_seq)"
)
_UPSERT = f"""
INSERT INTO rollups AS r (res, bucket, point_pk, {_VALUES}) VALUES ({", ".join("?" * 22)})
ON CONFLICT (res, bucket, point_pk) DO UPDATE SET
    count = r.count + excluded.count,
    good = r.good + excluded.good,
    min = coalesce(min(r.min, excluded.min), r.min, excluded.min),
    max = coalesce(max(r.max, excluded.max), r.max, excluded.max),
    sum = r.sum + excluded.sum,
    last_ts = CASE WHEN {_NEWER} THEN excluded.last_ts ELSE r.last_ts END,
    last_stream = CASE WHEN {_NEWER} THEN excluded.last_stream ELSE r.last_stream END,
    last_seq = CASE WHEN {_NEWER} THEN excluded.last_seq ELSE r.last_seq END,
    last_value = CASE WHEN {_NEWER} THEN excluded.last_value ELSE r.last_value END,
    last_quality = CASE WHEN {_NEWER} THEN excluded.last_quality ELSE r.last_quality END
"""


def apply_rollups(cur: sqlite3.Cursor, new: Mapping[int, tuple[bool, list[ru.Sample]]]) -> None:
    """Add the readings just stored (point_pk -> (is a counter, samples)) to their buckets."""
    upserts: list[tuple[object, ...]] = []
    counters: dict[int, tuple[bool, list[ru.Sample]]] = {}
    quarter, day = width("15m"), width("1d")
    for pk, entry in new.items():
        counter, samples = entry
        if counter:
            counters[pk] = entry
            continue
        quarters = {
            bucket: ru.summarise(bucket, part, counter=False)
            for bucket, part in ru.by_bucket(samples, "15m").items()
        }
        upserts += [(quarter, bucket, pk, *_values(r)) for bucket, r in quarters.items()]
        if len(quarters) == 1:  # nearly always: the day's part of the batch is the quarter's
            (only,) = quarters.values()
            upserts.append((day, ru.bucket_of(only.bucket_ms, "1d"), pk, *_values(only)))
            continue
        for bucket, part in ru.by_bucket(samples, "1d").items():
            upserts.append((day, bucket, pk, *_values(ru.summarise(bucket, part, counter=False))))
    if upserts:
        cur.executemany(_UPSERT, upserts)
    if counters:
        _apply_counters(cur, counters)


def _apply_counters(cur: sqlite3.Cursor, new: Mapping[int, tuple[bool, list[ru.Sample]]]) -> None:
    """Counters: read, ``absorb``, write back (their energy needs the order of readings)."""
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
            old = existing.get((bucket, pk))
            rollup = ru.absorb(old, part, bucket, counter=True)
            if rollup is None:  # a reading among those counted: count the bucket again
                rollup = _recount(cur, resolution, pk, bucket)
            if old is None:
                inserts.append((res, bucket, pk, *_values(rollup)))
            else:
                updates.append((*_values(rollup), res, bucket, pk))
        # UPDATE, not REPLACE: a replaced row would rewrite its index entry too.
        if updates:
            cur.executemany(_UPDATE, updates)
        if inserts:
            cur.executemany(_INSERT, inserts)


def insert_rollups(cur: sqlite3.Cursor, resolution: Resolution, pk: int, rollups: Iterable[Rollup]) -> None:
    """New rows (rollups counted from scratch: the migration)."""
    res = width(resolution)
    cur.executemany(_INSERT, [(res, r.bucket_ms, pk, *_values(r)) for r in rollups])


def _recount(cur: sqlite3.Cursor, resolution: Resolution, pk: int, bucket: int) -> Rollup:
    """A counter's bucket from scratch: a quarter from its raw readings, a day from its quarters
    (written just before: the 15-minute resolution goes first), which merge into the same rollup."""
    if resolution == "1d":
        quarters = cur.execute(
            f"{_SELECT} WHERE point_pk = ? AND res = ? AND bucket >= ? AND bucket < ? ORDER BY bucket",
            (pk, width("15m"), bucket, bucket + width("1d")),
        )
        day = ru.merge_all([_rollup(r) for r in quarters])
        assert day is not None, "a day with readings has quarters"
        return dataclasses.replace(day, bucket_ms=bucket)
    raw = [
        ru.Sample(r.ts, r.stream, r.seq, r.value, r.quality)
        for part in buckets_of_point(cur, pk, bucket, bucket + width("15m"))
        for r in part
    ]
    return ru.summarise(bucket, raw, counter=True)


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
