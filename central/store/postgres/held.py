"""Exactly-once by (stream, seq): the seq ranges of each stream that central holds, in ``held``.

A unique key on the partitioned readings table must hold its partition key (ts), so it cannot say
"this seq is stored" alone: a record re-sent with another stamp (a stolen cabinet, a clock stepped
between two sends) would be stored twice. ``held`` says it instead, as SQLite's does
(``central.store.sqlite.blocks``): one row (stream_pk, lo, hi) per contiguous run of seqs of
readings, events and results, so one row per stream while its seqs are contiguous.

A group loads the ranges that overlap or touch its batches' seqs (one statement), filters its
readings against them and the seqs of its earlier batches, and writes back the ranges that changed
(one statement), in its transaction. Every held row belongs to a stream of a cabinet whose row the
transaction locked first (``writer``): two workers never check or extend one stream's ranges at once.
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

Cursor = psycopg.AsyncCursor[tuple[Any, ...]]
Range = tuple[int, int]

_INT8_MIN, _INT8_MAX = -(2**63), 2**63 - 1

# Per probe (a stream and the seqs its batch spans): the range that starts before it and may reach
# into it, and those that start inside it or just after.
LOAD = """
SELECT DISTINCT h.stream_pk, h.lo, h.hi
FROM unnest(%b::int4[], %b::int8[], %b::int8[]) AS b (stream_pk, lo, hi)
JOIN LATERAL (
    (SELECT stream_pk, lo, hi FROM held WHERE stream_pk = b.stream_pk AND lo < b.lo
     ORDER BY lo DESC LIMIT 1)
    UNION ALL
    SELECT stream_pk, lo, hi FROM held WHERE stream_pk = b.stream_pk AND lo BETWEEN b.lo AND b.hi
) AS h ON true
"""
# The ranges that merged into others go; the new and grown ones are written. No key is in both.
SAVE = """
WITH gone AS (
    DELETE FROM held AS h USING unnest(%b::int4[], %b::int8[]) AS g (stream_pk, lo)
    WHERE h.stream_pk = g.stream_pk AND h.lo = g.lo
)
INSERT INTO held (stream_pk, lo, hi)
SELECT * FROM unnest(%b::int4[], %b::int8[], %b::int8[]) AS u (stream_pk, lo, hi) ORDER BY 1, 2
ON CONFLICT (stream_pk, lo) DO UPDATE SET hi = excluded.hi
"""


def runs(seqs: Iterable[int]) -> list[Range]:
    """Contiguous runs of ``seqs`` (any order, repeats allowed)."""
    out: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return [(lo, hi) for lo, hi in out]


def span_runs(seqs: Sequence[int]) -> list[Range]:
    """``runs``, without sorting in the usual case: ascending and contiguous, one run."""
    if not seqs:
        return []
    first, last = seqs[0], seqs[-1]
    if last - first + 1 == len(seqs) and all(map(operator.lt, seqs, seqs[1:])):
        return [(first, last)]
    return runs(seqs)


class HeldSeqs:
    """The held ranges of a group's streams, as loaded, and as the group extends them."""

    def __init__(self, loaded: dict[int, list[Range]]) -> None:
        self._loaded = {pk: sorted(ranges) for pk, ranges in loaded.items()}
        self._now = {pk: list(ranges) for pk, ranges in self._loaded.items()}

    @staticmethod
    async def load(cur: Cursor, probes: Sequence[tuple[int, int, int]]) -> HeldSeqs:
        """The ranges of each probe's stream (stream_pk, lowest seq, highest seq) that overlap or
        touch its seqs."""
        loaded: dict[int, list[Range]] = {}
        if probes:
            columns = (
                [p[0] for p in probes],
                [max(p[1] - 1, _INT8_MIN) for p in probes],
                [min(p[2] + 1, _INT8_MAX) for p in probes],
            )
            await cur.execute(LOAD, columns)
            for stream_pk, lo, hi in await cur.fetchall():
                loaded.setdefault(int(stream_pk), []).append((int(lo), int(hi)))
        return HeldSeqs(loaded)

    def fresh(self, stream_pk: int, seqs: Sequence[int]) -> list[int] | None:
        """Indices of ``seqs`` not held (nor repeated among them, the first kept); None for all."""
        ranges = self._now.get(stream_pk)
        if not seqs:
            return None
        lo, hi = min(seqs), max(seqs)
        if not ranges or not _overlaps(ranges, lo, hi):
            if len(set(seqs)) == len(seqs):
                return None  # the usual case: nothing held there, no repeat
            ranges = []
        starts = [r[0] for r in ranges]
        seen: set[int] = set()
        chosen = []
        for i, seq in enumerate(seqs):
            if seq in seen:
                continue
            seen.add(seq)
            j = bisect_right(starts, seq) - 1
            if j >= 0 and ranges[j][1] >= seq:
                continue
            chosen.append(i)
        return chosen

    def hold(self, stream_pk: int, new: Sequence[Range]) -> None:
        """Add runs of seqs to the stream's ranges."""
        ranges = self._now.setdefault(stream_pk, [])
        for run in new:
            lo, hi = run
            starts = [r[0] for r in ranges]
            # The ranges that overlap or touch [lo, hi] are ranges[i:j].
            i = bisect_left(starts, lo)
            if i > 0 and ranges[i - 1][1] >= lo - 1:
                i -= 1
            j = bisect_right(starts, hi + 1)
            if i < j:
                lo, hi = min(lo, ranges[i][0]), max(hi, ranges[j - 1][1])
            ranges[i:j] = [(lo, hi)]

    def ranges(self, stream_pk: int) -> list[Range]:
        return list(self._now.get(stream_pk, ()))

    async def save(self, cur: Cursor) -> None:
        """Write the ranges that changed (in the group's transaction)."""
        if (statement := self.save_statement()) is not None:
            await cur.execute(*statement)

    def save_statement(self) -> tuple[str, tuple[list[int], ...]] | None:
        """The statement that writes the ranges that changed; None when none did."""
        gone: list[tuple[int, int]] = []
        put: list[tuple[int, int, int]] = []
        for pk, now in self._now.items():
            before = dict(self._loaded.get(pk, ()))
            starts = {lo for lo, _ in now}
            gone += [(pk, lo) for lo in before if lo not in starts]
            put += [(pk, lo, hi) for lo, hi in now if before.get(lo) != hi]
        if not gone and not put:
            return None
        return (
            SAVE,
            (
                [g[0] for g in gone],
                [g[1] for g in gone],
                [p[0] for p in put],
                [p[1] for p in put],
                [p[2] for p in put],
            ),
        )


def _overlaps(ranges: Sequence[Range], lo: int, hi: int) -> bool:
    """Whether sorted disjoint ``ranges`` hold any seq in [lo, hi]."""
    i = bisect_right([r[0] for r in ranges], hi) - 1
    return i >= 0 and ranges[i][1] >= lo
