"""Raw readings in SQLite as blocks: one row per batch and 15-minute bucket, its readings packed.

Why: a row per reading with an index by (point, ts) writes two b-trees at random places, one page
per point of every batch (each point's rows sit apart), so ~40 pages for a 40-point batch. A block
is one row appended to the table's tail (shared by every batch of a transaction) and one entry in
the index by (stream, bucket, first seq): about one page per batch. bench/central_wear.py measures it.

Exactly-once is kept by ``held``: the seq ranges of each stream that central holds (readings, events
and results alike), one row per contiguous range, so one row per stream while seqs are contiguous. A
reading whose (stream, seq) is held is a duplicate, whatever else it says.

A block's readings are packed with msgpack as columns, each delta-coded against the previous
reading (seq, point, ts), so that a reading of a cabinet's batch costs ~12 bytes; values keep their
type (bool, int, float, text, null).

A point's readings over a range are read bucket by bucket from the blocks of its cabinet's streams,
each bucket sorted by (ts, stream, seq): that is the order every read of readings gives.
"""

from __future__ import annotations

import heapq
import sqlite3
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from itertools import accumulate
from operator import le, sub
from typing import NamedTuple, TypeVar

import msgspec

from central.store.rollups import WIDTH_MS
from protocols.fleet import Reading
from protocols.fleet.messages import Scalar
from protocols.quality import Quality

QUARTER_MS = WIDTH_MS["15m"]

BLOCKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY,
    stream_pk INTEGER NOT NULL,
    bucket INTEGER NOT NULL,  -- the 15-minute bucket all its readings fall in
    first_seq INTEGER NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_stream_bucket ON blocks (stream_pk, bucket, first_seq);
CREATE TABLE IF NOT EXISTS held (
    stream_pk INTEGER NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    PRIMARY KEY (stream_pk, lo)
) WITHOUT ROWID;
"""

_V = TypeVar("_V")
_INSERT_BLOCK = "INSERT INTO blocks (stream_pk, bucket, first_seq, n, data) VALUES (?, ?, ?, ?, ?)"


class RawReading(NamedTuple):
    """A stored reading as reads see it: (ts, stream_pk, seq) orders them."""

    ts: int
    stream: int
    seq: int
    point: int
    value: Scalar
    quality: int
    reason: str | None


# (seq deltas, point deltas, ts deltas, values, qualities or None when all good, reasons or None)
_Packed = tuple[list[int], list[int], list[int], list[Scalar], list[int] | None, list[str | None] | None]
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Packed)


def _deltas(values: Sequence[int], first: int) -> list[int]:
    # map over two lists runs in C: no Python step per value.
    return list(map(sub, values, [first, *values[:-1]])) if values else []


Row = tuple[int, int, int, Scalar, int, str | None]
# (seqs, point pks, stamps, values, qualities, reasons), one item per reading
Columns = tuple[
    Sequence[int], Sequence[int], Sequence[int], Sequence[Scalar], Sequence[int], Sequence[str | None]
]


def _columns(rows: Sequence[Row]) -> Columns:
    return (
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        [r[5] for r in rows],
    )


def pack(first_seq: int, rows: Sequence[Row]) -> bytes:
    """Rows of (seq, point_pk, ts, value, quality, reason) as one block's data."""
    return pack_columns(first_seq, _columns(rows))


def pack_columns(first_seq: int, columns: Columns) -> bytes:
    """The same as ``pack``, from one sequence per column (what the writer has at hand)."""
    seqs, points, stamps, values, qualities, reasons = columns
    packed: _Packed = (
        _deltas(seqs, first_seq),
        _deltas(points, 0),
        _deltas(stamps, 0),
        list(values),
        None if qualities.count(Quality.GOOD) == len(qualities) else list(qualities),
        None if reasons.count(None) == len(reasons) else list(reasons),
    )
    return _encoder.encode(packed)


def unpack(stream_pk: int, first_seq: int, data: bytes) -> list[RawReading]:
    seq_d, point_d, ts_d, values, qualities, reasons = _decoder.decode(data)
    n = len(values)
    seqs = accumulate(seq_d, initial=first_seq)
    next(seqs)
    quality = qualities or [Quality.GOOD] * n
    reason = reasons or [None] * n
    return [
        RawReading(ts, stream_pk, seq, point, value, q, why)
        for seq, point, ts, value, q, why in zip(
            seqs, accumulate(point_d), accumulate(ts_d), values, quality, reason, strict=True
        )
    ]


# -- held seqs ---------------------------------------------------------------------------------------

_MAX_SEQ = 2**63 - 1


def held_ranges(cur: sqlite3.Cursor, stream_pk: int, low: int, high: int) -> list[tuple[int, int]]:
    """The held ranges of the stream that overlap or touch [low, high], in order."""
    before = cur.execute(
        "SELECT lo, hi FROM held WHERE stream_pk = ? AND lo < ? ORDER BY lo DESC LIMIT 1", (stream_pk, low)
    ).fetchall()
    inside = cur.execute(
        "SELECT lo, hi FROM held WHERE stream_pk = ? AND lo BETWEEN ? AND ? ORDER BY lo",
        (stream_pk, low, min(high + 1, _MAX_SEQ)),  # the protocol's last seq is SQLite's last integer
    ).fetchall()
    ranges = [(int(lo), int(hi)) for lo, hi in before if hi >= low - 1]
    ranges += [(int(lo), int(hi)) for lo, hi in inside]
    return ranges


def is_held(ranges: Sequence[tuple[int, int]], starts: Sequence[int], seq: int) -> bool:
    i = bisect_right(starts, seq) - 1
    return i >= 0 and ranges[i][1] >= seq


def hold(cur: sqlite3.Cursor, stream_pk: int, seqs: Sequence[int]) -> None:
    """Add ``seqs`` (any order, repeats allowed) to the stream's held ranges."""
    if not seqs:
        return
    low, high = min(seqs), max(seqs)
    existing = held_ranges(cur, stream_pk, low, high)
    runs: list[list[int]] = []
    if high - low + 1 == len(seqs) and len(set(seqs)) == len(seqs):
        runs.append([low, high])  # contiguous (the common case): no walk of the seqs
    else:
        for seq in sorted(set(seqs)):
            if runs and seq == runs[-1][1] + 1:
                runs[-1][1] = seq
            else:
                runs.append([seq, seq])
    merged: list[list[int]] = []
    for lo, hi in sorted([[lo, hi] for lo, hi in existing] + runs):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    old = dict(existing)
    new = {lo: hi for lo, hi in merged}
    gone = [(stream_pk, lo) for lo in old if lo not in new]
    if gone:
        cur.executemany("DELETE FROM held WHERE stream_pk = ? AND lo = ?", gone)
    changed = [(hi, stream_pk, lo) for lo, hi in new.items() if lo in old and old[lo] != hi]
    if changed:
        cur.executemany("UPDATE held SET hi = ? WHERE stream_pk = ? AND lo = ?", changed)
    added = [(stream_pk, lo, hi) for lo, hi in new.items() if lo not in old]
    if added:
        cur.executemany("INSERT INTO held VALUES (?, ?, ?)", added)


def fresh_readings(
    cur: sqlite3.Cursor, stream_pk: int, readings: Sequence[Reading], seqs: Sequence[int] | None = None
) -> list[Reading]:
    """The readings of a batch not held yet (nor twice in the batch), in batch order; ``seqs`` are
    theirs, in the same order, when the caller has them."""
    if seqs is None:
        seqs = [r.seq for r in readings]
    low, high = min(seqs), max(seqs)
    ranges = held_ranges(cur, stream_pk, low, high)
    # No held range overlaps the batch (ranges that only touch it are the usual case while a
    # backlog drains) and no seq is there twice: every reading is fresh, no walk of them needed.
    if all(lo > high or hi < low for lo, hi in ranges) and len(set(seqs)) == len(seqs):
        return list(readings)
    starts = [lo for lo, _ in ranges]
    seen: set[int] = set()
    fresh: list[Reading] = []
    for r in readings:
        if r.seq in seen or (ranges and is_held(ranges, starts, r.seq)):
            continue
        seen.add(r.seq)
        fresh.append(r)
    return fresh


# -- writes ------------------------------------------------------------------------------------------


def insert_blocks(cur: sqlite3.Cursor, stream_pk: int, rows: Sequence[Row]) -> None:
    """Store rows (seq, point_pk, ts, value, quality, reason) as one block per 15-minute bucket."""
    if rows:
        insert_columns(cur, stream_pk, _columns(rows))


def bucket_slices(stamps: Sequence[int]) -> list[tuple[int, list[int] | slice]]:
    """(bucket, where its readings are) for each 15-minute bucket the stamps fall in, in order of
    first appearance: a slice when the stamps are in time order (a batch always is, but for a clock
    set back), else the indices."""
    if all(map(le, stamps, stamps[1:])):
        out: list[tuple[int, list[int] | slice]] = []
        start = 0
        while start < len(stamps):
            bucket = stamps[start] - stamps[start] % QUARTER_MS
            end = bisect_left(stamps, bucket + QUARTER_MS, start)
            out.append((bucket, slice(start, end)))
            start = end
        return out
    by_bucket: dict[int, list[int]] = {}
    for i, ts in enumerate(stamps):
        by_bucket.setdefault(ts - ts % QUARTER_MS, []).append(i)
    return list(by_bucket.items())


def take(column: Sequence[_V], where: list[int] | slice) -> Sequence[_V]:
    return column[where] if isinstance(where, slice) else [column[i] for i in where]


def insert_columns(
    cur: sqlite3.Cursor,
    stream_pk: int,
    columns: Columns,
    parts: list[tuple[int, list[int] | slice]] | None = None,
) -> None:
    """``insert_blocks`` from one sequence per column; ``parts`` are ``bucket_slices`` of the stamps."""
    blocks = []
    for bucket, where in bucket_slices(columns[2]) if parts is None else parts:
        part = tuple(take(column, where) for column in columns)
        first_seq = part[0][0]
        data = pack_columns(first_seq, part)  # type: ignore[arg-type]  # the same six columns
        blocks.append((stream_pk, bucket, first_seq, len(part[0]), data))
    cur.executemany(_INSERT_BLOCK, blocks)


# -- reads -------------------------------------------------------------------------------------------


def cabinet_streams(conn: sqlite3.Connection | sqlite3.Cursor, point_pk: int) -> list[int]:
    rows = conn.execute(
        "SELECT s.id FROM streams AS s JOIN points AS p ON p.cabinet = s.cabinet WHERE p.id = ?", (point_pk,)
    )
    return [int(pk) for (pk,) in rows]


def buckets_of_point(
    conn: sqlite3.Connection | sqlite3.Cursor,
    point_pk: int,
    start_ms: int,
    end_ms: int,
    streams: Sequence[int] | None = None,
) -> Iterator[list[RawReading]]:
    """The point's readings with start_ms <= ts < end_ms, one sorted list per 15-minute bucket that
    has any, oldest bucket first."""
    if streams is None:
        streams = cabinet_streams(conn, point_pk)
    if not streams or start_ms >= end_ms:
        return
    first = start_ms - start_ms % QUARTER_MS
    # One walk of the index per stream, merged by bucket: no sort of the blocks.
    rows = heapq.merge(
        *(
            conn.execute(
                "SELECT bucket, stream_pk, first_seq, data FROM blocks"
                " WHERE stream_pk = ? AND bucket >= ? AND bucket < ? ORDER BY bucket",
                (stream, first, end_ms),
            )
            for stream in streams
        ),
        key=lambda row: int(row[0]),
    )
    current: int | None = None
    found: list[RawReading] = []
    for bucket, stream_pk, first_seq, data in rows:
        if bucket != current:
            if found:
                yield sorted(found)
            current, found = bucket, []
        found += [
            r for r in unpack(stream_pk, first_seq, data) if r.point == point_pk and start_ms <= r.ts < end_ms
        ]
    if found:
        yield sorted(found)


def good_before(
    conn: sqlite3.Connection, point_pk: int, start_ms: int, quarters: Iterator[int]
) -> RawReading | None:
    """The last good reading of the point before ``start_ms``, looking in ``quarters`` (the buckets
    that may hold one, newest first: those its rollups count)."""
    streams = cabinet_streams(conn, point_pk)
    for bucket in quarters:
        if not _has_blocks(conn, streams, bucket):
            return None  # purged from here on back
        for part in buckets_of_point(conn, point_pk, bucket, min(bucket + QUARTER_MS, start_ms), streams):
            good = [r for r in part if r.quality == Quality.GOOD]
            if good:
                return good[-1]
    return None


def good_from(
    conn: sqlite3.Connection, point_pk: int, end_ms: int, quarters: Iterator[int]
) -> RawReading | None:
    """The first good reading of the point from ``end_ms`` on, looking in ``quarters`` (oldest first)."""
    streams = cabinet_streams(conn, point_pk)
    for bucket in quarters:
        for part in buckets_of_point(conn, point_pk, max(bucket, end_ms), bucket + QUARTER_MS, streams):
            good = [r for r in part if r.quality == Quality.GOOD]
            if good:
                return good[0]
    return None


def _has_blocks(conn: sqlite3.Connection, streams: Sequence[int], bucket: int) -> bool:
    marks = ", ".join("?" * len(streams))
    row = conn.execute(
        f"SELECT 1 FROM blocks WHERE stream_pk IN ({marks}) AND bucket = ? LIMIT 1", (*streams, bucket)
    ).fetchone()
    return row is not None


# -- retention ---------------------------------------------------------------------------------------

_STREAMS_FROM = "SELECT id FROM streams WHERE id >= ? ORDER BY id LIMIT ?"
# Streams probed per call at most: a call stays short even when most have nothing to delete.
PURGE_STREAMS_PER_CALL = 256


def purge(cur: sqlite3.Cursor, *, before_ms: int, limit: int, from_stream: int) -> tuple[int, int | None]:
    """Delete the blocks of whole 15-minute buckets before ``before_ms``, about ``limit`` readings
    (whole blocks: one more block at most), walking streams from ``from_stream``.

    Returns how many readings went and the stream to go on from, or None past the last stream.
    """
    horizon = before_ms - before_ms % QUARTER_MS
    deleted = 0
    pks = [int(pk) for (pk,) in cur.execute(_STREAMS_FROM, (from_stream, PURGE_STREAMS_PER_CALL))]
    for pk in pks:
        while deleted < limit:
            rows = cur.execute(
                "SELECT id, n FROM blocks WHERE stream_pk = ? AND bucket < ? ORDER BY bucket LIMIT 64",
                (pk, horizon),
            ).fetchall()
            if not rows:
                break
            ids: list[tuple[int]] = []
            for block_id, n in rows:
                if ids and deleted + n > limit:
                    break
                ids.append((block_id,))
                deleted += n
            cur.executemany("DELETE FROM blocks WHERE id = ?", ids)
        if deleted >= limit:
            return deleted, pk  # this stream may hold more
    if len(pks) < PURGE_STREAMS_PER_CALL:
        return deleted, None
    return deleted, pks[-1] + 1
