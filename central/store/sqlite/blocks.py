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
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from itertools import accumulate
from typing import NamedTuple

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
    out = []
    previous = first
    for v in values:
        out.append(v - previous)
        previous = v
    return out


def pack(first_seq: int, rows: Sequence[tuple[int, int, int, Scalar, int, str | None]]) -> bytes:
    """Rows of (seq, point_pk, ts, value, quality, reason) as one block's data."""
    qualities = [r[4] for r in rows]
    reasons = [r[5] for r in rows]
    packed: _Packed = (
        _deltas([r[0] for r in rows], first_seq),
        _deltas([r[1] for r in rows], 0),
        _deltas([r[2] for r in rows], 0),
        [r[3] for r in rows],
        None if all(q == Quality.GOOD for q in qualities) else qualities,
        None if all(r is None for r in reasons) else reasons,
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


def held_ranges(cur: sqlite3.Cursor, stream_pk: int, low: int, high: int) -> list[tuple[int, int]]:
    """The held ranges of the stream that overlap or touch [low, high], in order."""
    before = cur.execute(
        "SELECT lo, hi FROM held WHERE stream_pk = ? AND lo < ? ORDER BY lo DESC LIMIT 1", (stream_pk, low)
    ).fetchall()
    inside = cur.execute(
        "SELECT lo, hi FROM held WHERE stream_pk = ? AND lo BETWEEN ? AND ? ORDER BY lo",
        (stream_pk, low, high + 1),
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
    ordered = sorted(set(seqs))
    existing = held_ranges(cur, stream_pk, ordered[0], ordered[-1])
    runs: list[list[int]] = []
    for seq in ordered:
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


def fresh_readings(cur: sqlite3.Cursor, stream_pk: int, readings: Sequence[Reading]) -> list[Reading]:
    """The readings of a batch not held yet (nor twice in the batch), in batch order."""
    low = min(r.seq for r in readings)
    high = max(r.seq for r in readings)
    ranges = held_ranges(cur, stream_pk, low, high)
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


def insert_blocks(
    cur: sqlite3.Cursor, stream_pk: int, rows: Sequence[tuple[int, int, int, Scalar, int, str | None]]
) -> None:
    """Store rows (seq, point_pk, ts, value, quality, reason) as one block per 15-minute bucket."""
    by_bucket: dict[int, list[tuple[int, int, int, Scalar, int, str | None]]] = {}
    for row in rows:
        ts = row[2]
        by_bucket.setdefault(ts - ts % QUARTER_MS, []).append(row)
    cur.executemany(
        _INSERT_BLOCK,
        [
            (stream_pk, bucket, part[0][0], len(part), pack(part[0][0], part))
            for bucket, part in by_bucket.items()
        ],
    )


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
