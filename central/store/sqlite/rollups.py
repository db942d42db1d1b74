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
from central.store.rows import Resolution, Rollup
from central.store.sqlite.blocks import buckets_of_point
from central.store.sqlite.quarter_parts import PlainRow, plain_row

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
# A point's buckets: without statistics SQLite walks the primary key (res, bucket, point_pk) over the
# range, every point of the city, instead of this index (seconds instead of milliseconds).
_OF_POINT = f"SELECT bucket, {_VALUES} FROM rollups INDEXED BY rollups_point"
_POINT = "(SELECT id FROM points WHERE cabinet = ? AND name = ?)"
_CHUNK = 500
# A day's rollup is merged from its quarters when read, and kept once the day ended this long ago
# (readings later than that are rare); the write side looks for a kept day only for readings older
# than DAY_CACHE_PROBE_MS, a day less: clocks of two workers may differ by that much.
DAY_CACHE_AFTER_MS = 7 * 86_400_000
DAY_CACHE_PROBE_MS = 6 * 86_400_000


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


# The order-free part of ``rollups.absorb`` (count, min, max, sum, last) for points that are not
# counters, with no row read back into Python: an UPDATE of the rows there (the usual case: a point's
# quarter has readings already), then an INSERT of those it did not find. Cheaper than one upsert
# (INSERT ... ON CONFLICT DO UPDATE), which first tries the insert. min(a, b) is NULL when either is,
# hence the coalesce. Every expression reads the row as it was (SQL), so ``last_*`` move together.
# Both take a ``quarter_parts.PlainRow``.
_NEWER = "(?6, ?7, ?8) > (last_ts, last_stream, last_seq)"
_ADD_PLAIN = f"""
UPDATE rollups SET
    count = count + ?1,
    good = good + ?2,
    min = coalesce(min(min, ?3), min, ?3),
    max = coalesce(max(max, ?4), max, ?4),
    sum = min(max(sum + ?5, -1e300), 1e300),
    last_ts = CASE WHEN {_NEWER} THEN ?6 ELSE last_ts END,
    last_stream = CASE WHEN {_NEWER} THEN ?7 ELSE last_stream END,
    last_seq = CASE WHEN {_NEWER} THEN ?8 ELSE last_seq END,
    last_value = CASE WHEN {_NEWER} THEN ?9 ELSE last_value END,
    last_quality = CASE WHEN {_NEWER} THEN ?10 ELSE last_quality END
WHERE res = ?11 AND bucket = ?12 AND point_pk = ?13
"""
_INSERT_PLAIN = f"""
INSERT INTO rollups (res, bucket, point_pk, {_VALUES})
VALUES (?11, ?12, ?13, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, NULL, NULL, NULL, NULL, 0.0, 0, 0, 0)
ON CONFLICT (res, bucket, point_pk) DO NOTHING
"""


def add_plain(cur: sqlite3.Cursor, rows: Sequence[PlainRow]) -> None:
    """Add the order-free parts of quarters that are not counters' (keys distinct) to their rows."""
    if not rows:
        return
    cur.executemany(_ADD_PLAIN, rows)
    if cur.rowcount < len(rows):  # some quarters are new: insert those (the others are done)
        cur.executemany(_INSERT_PLAIN, rows)


def apply_quarters(
    cur: sqlite3.Cursor,
    plain: list[PlainRow],
    new: Mapping[tuple[int, int], tuple[bool, list[ru.Sample]]],
    *,
    now_ms: int,
) -> None:
    """Add the readings just stored to their quarters: ``plain``, quarters of points that are not
    counters already summed up (``quarter_parts.cut``), and ``new``, (quarter, point_pk) -> (is a
    counter, its samples in that quarter), keys distinct from ``plain``'s; a day they land in whose
    rollup is cached (an old day: a late reading) loses its cache."""
    probe = now_ms - DAY_CACHE_PROBE_MS
    counters: dict[tuple[int, int], list[ru.Sample]] = {}
    # A quarter that starts before the probe may hold a reading of a cached day (one that ends after
    # it cannot be cached yet, so dropping its cache too costs nothing).
    stale = {(ru.bucket_of(bucket, "1d"), pk) for bucket, pk in new if bucket < probe}
    stale.update((ru.bucket_of(row[11], "1d"), row[12]) for row in plain if row[11] < probe)
    for (bucket, pk), (counter, samples) in new.items():
        if counter:
            counters[(bucket, pk)] = samples
        else:
            plain.append(plain_row(bucket, pk, ru.summarise(bucket, samples, counter=False)))
    add_plain(cur, plain)
    if counters:
        _apply_counters(cur, counters)
    if stale:
        cur.executemany(
            "DELETE FROM rollups WHERE res = ? AND bucket = ? AND point_pk = ?",
            [(width("1d"), *k) for k in stale],
        )


def _apply_counters(cur: sqlite3.Cursor, keyed: Mapping[tuple[int, int], list[ru.Sample]]) -> None:
    """Counters: read, ``absorb``, write back (their energy needs the order of readings)."""
    res = width("15m")
    existing = _load(cur, res, keyed)
    inserts: list[tuple[object, ...]] = []
    updates: list[tuple[object, ...]] = []
    for (bucket, pk), part in keyed.items():
        old = existing.get((bucket, pk))
        rollup = ru.absorb(old, part, bucket, counter=True)
        if rollup is None:  # a reading among those counted: count the quarter again
            assert old is not None  # absorb refuses only to merge into what exists
            rollup = _recount(cur, pk, bucket, old, part)
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


def _recount(cur: sqlite3.Cursor, pk: int, bucket: int, old: Rollup, new: Sequence[ru.Sample]) -> Rollup:
    """A counter's quarter from scratch, from its raw readings, when they are all still there."""
    raw = [
        ru.Sample(r.ts, r.stream, r.seq, r.value, r.quality)
        for part in buckets_of_point(cur, pk, bucket, bucket + width("15m"))
        for r in part
    ]
    if len(raw) < old.count + len(new):  # retention took some: never shrink the bucket to the rest
        return ru.absorb_without_raw(old, new, bucket)
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


def point_pk(conn: sqlite3.Connection | sqlite3.Cursor, cabinet: str, point: str) -> int | None:
    found = conn.execute("SELECT id FROM points WHERE cabinet = ? AND name = ?", (cabinet, point)).fetchone()
    return None if found is None else int(found[0])


def quarters(
    conn: sqlite3.Connection | sqlite3.Cursor, pk: int, start_ms: int, end_ms: int, limit: int = -1
) -> list[Rollup]:
    rows = conn.execute(
        f"{_OF_POINT} WHERE point_pk = ? AND res = ? AND bucket >= ? AND bucket < ? ORDER BY bucket LIMIT ?",
        (pk, width("15m"), start_ms, end_ms, limit),
    )
    return [_rollup(r) for r in rows]


def days(
    cur: sqlite3.Cursor, pk: int, start_ms: int, end_ms: int, limit: int, *, now_ms: int
) -> list[Rollup]:
    """Daily rollups of days starting in [start_ms, end_ms): each the merge of the day's quarters.

    Runs on the writer thread, in a transaction: a day that ended more than ``DAY_CACHE_AFTER_MS``
    ago is kept (cached) once merged, and a reading that lands in it later deletes it in the
    transaction that stores the reading, so a cached day is always the merge of its quarters.
    """
    day = width("1d")
    first = -(-start_ms // day) * day
    cached = {
        int(r[0]): _rollup(r)
        for r in cur.execute(
            f"{_OF_POINT} WHERE point_pk = ? AND res = ? AND bucket >= ? AND bucket < ? ORDER BY bucket",
            (pk, day, first, end_ms),
        )
    }
    found: list[Rollup] = []
    new: list[Rollup] = []
    gap_from = first
    last = -(-end_ms // day) * day  # past the last day that starts before end_ms: all its quarters
    for bucket in [*sorted(cached), None]:
        gap_to = last if bucket is None else bucket
        if gap_from < gap_to:  # days not cached: from their quarters
            by_day: dict[int, list[Rollup]] = {}
            for q in quarters(cur, pk, gap_from, gap_to):
                by_day.setdefault(ru.bucket_of(q.bucket_ms, "1d"), []).append(q)
            for start, parts in by_day.items():
                merged = ru.merge_all(parts)
                assert merged is not None
                rollup = dataclasses.replace(merged, bucket_ms=start)
                found.append(rollup)
                if start + day <= now_ms - DAY_CACHE_AFTER_MS:
                    new.append(rollup)
        if bucket is not None:
            found.append(cached[bucket])
            gap_from = bucket + day
        if len(found) >= limit:
            break
    if new:
        cur.executemany(_INSERT, [(day, r.bucket_ms, pk, *_values(r)) for r in new])
    return found[:limit]


def rollups(
    conn: sqlite3.Connection,
    cabinet: str,
    point: str,
    *,
    start_ms: int,
    end_ms: int,
    limit: int,
) -> list[Rollup]:
    """15-minute rollups (the daily ones are ``days``)."""
    pk = point_pk(conn, cabinet, point)
    return [] if pk is None else quarters(conn, pk, start_ms, end_ms, limit)


def quarter_neighbours(
    conn: sqlite3.Connection | sqlite3.Cursor, pk: int, start_ms: int, end_ms: int
) -> tuple[Rollup | None, Rollup | None]:
    """The nearest quarters before ``start_ms`` and from ``end_ms`` with a counted reading."""
    where = "WHERE point_pk = ? AND res = ? AND counted > 0"
    res = width("15m")
    before = conn.execute(
        f"{_OF_POINT} {where} AND bucket < ? ORDER BY bucket DESC LIMIT 1", (pk, res, start_ms)
    ).fetchone()
    after = conn.execute(
        f"{_OF_POINT} {where} AND bucket >= ? ORDER BY bucket LIMIT 1", (pk, res, end_ms)
    ).fetchone()
    return (None if before is None else _rollup(before)), (None if after is None else _rollup(after))


def day_neighbours(
    cur: sqlite3.Cursor, pk: int, start_ms: int, end_ms: int, *, now_ms: int
) -> tuple[Rollup | None, Rollup | None]:
    """The nearest days before ``start_ms`` and from ``end_ms`` with a counted reading: the days of
    the nearest such quarters (``start_ms`` and ``end_ms`` are day starts)."""
    day = width("1d")
    before, after = quarter_neighbours(cur, pk, start_ms, end_ms)
    out: list[Rollup | None] = []
    for q in (before, after):
        if q is None:
            out.append(None)
            continue
        start = ru.bucket_of(q.bucket_ms, "1d")
        found = days(cur, pk, start, start + day, 1, now_ms=now_ms)
        out.append(found[0] if found else None)
    return out[0], out[1]
