"""A batch's new readings cut into what each 15-minute rollup takes, point by point.

The usual batch (seq and stamps ascending, every reading good and a number) is summed up without a
step in Python per reading: each bucket's readings are ordered by point with one sort in C, and each
point's values are taken, summed (``math.fsum``) and compared (min, max) in C. What comes out is the
order-free part of the point's rollup, ready for ``rollups.add_plain``: the newest reading of a
point is its last in the batch (seq and stamps ascending). Counters, and every reading of a batch
that is not the usual one, go as ``Sample`` lists to ``rollups.summarise``/``absorb``, as before.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from itertools import repeat
from math import isnan
from typing import cast

from central.store import rollups as ru
from central.store.rows import Rollup
from central.store.sqlite.blocks import QUARTER_MS, take
from protocols.fleet.messages import Scalar
from protocols.quality import Quality

# (count, good, min, max, sum, last_ts, last_stream, last_seq, last_value, last_quality,
#  res, bucket, point_pk): the parameters of ``rollups.add_plain``'s statements.
PlainRow = tuple[int, int, float | None, float | None, float, int, int, int, Scalar, int, int, int, int]
# (bucket, point_pk) -> (is a counter, its samples in that bucket)
SampleParts = dict[tuple[int, int], tuple[bool, list[ru.Sample]]]
# (seqs, point pks, stamps, values, qualities), one item per reading
Columns = tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[Scalar], Sequence[int]]
_NUMBERS = {float, int}  # bool is a type of its own here: never a number of this path


def cut(
    parts: Sequence[tuple[int, list[int] | slice]],
    stream_pk: int,
    columns: Columns,
    counters: set[int],
    *,
    ascending: bool,
) -> tuple[list[PlainRow], SampleParts]:
    """``parts`` are ``blocks.bucket_slices`` of the stamps; ``columns`` (seqs, point pks, stamps,
    values, qualities) of the readings stored now; ``ascending``: their seqs are."""
    seqs, pks, stamps, values, qualities = columns
    usual = (
        ascending
        and all(isinstance(where, slice) for _, where in parts)  # slices: the stamps are in order
        and qualities.count(Quality.GOOD) == len(qualities)
        and set(map(type, values)) <= _NUMBERS
    )
    if not usual:
        return [], _samples(parts, stream_pk, columns, counters)
    numeric = cast("Sequence[float]", values)  # numbers: checked above
    floats = numeric if set(map(type, values)) == {float} else list(map(float, numeric))
    plain: list[PlainRow] = []
    left: SampleParts = {}
    for bucket, where in parts:
        assert isinstance(where, slice)
        part = pks[where]
        if len(set(part)) == len(part):  # each point once (live batches): a row per reading
            _add_singles(
                plain, left, bucket=bucket, where=where, stream_pk=stream_pk, columns=columns,
                floats=floats, counters=counters,
            )  # fmt: skip
            continue
        # Stable: by point, then in batch (seq) order.
        order = sorted(range(where.start, where.stop), key=pks.__getitem__)
        by_point = list(map(pks.__getitem__, order))
        lo = 0
        while lo < len(order):
            pk = by_point[lo]
            hi = bisect_right(by_point, pk, lo)
            at = order[lo:hi]
            numbers = list(map(floats.__getitem__, at))
            total = None if pk in counters else _bounded_total(numbers)
            if total is None:
                left[(bucket, pk)] = (pk in counters, _samples_at(at, stream_pk, columns))
            else:
                last = at[-1]
                plain.append(
                    (
                        hi - lo,
                        hi - lo,
                        min(numbers),
                        max(numbers),
                        total,
                        stamps[last],
                        stream_pk,
                        seqs[last],
                        values[last],
                        Quality.GOOD,
                        QUARTER_MS,
                        bucket,
                        pk,
                    )
                )
            lo = hi
    return plain, left


def _add_singles(
    plain: list[PlainRow],
    left: SampleParts,
    *,
    bucket: int,
    where: slice,
    stream_pk: int,
    columns: Columns,
    floats: Sequence[float],
    counters: set[int],
) -> None:
    """``cut`` of one bucket where each point has one reading: its value is min, max and sum."""
    seqs, pks, stamps, values, _ = columns
    top = ru.MAX_SUM
    rows = [
        (
            1,
            1,
            f,
            f,
            f if -top <= f <= top else math.copysign(top, f),
            ts,
            stream_pk,
            seq,
            value,
            Quality.GOOD,
            QUARTER_MS,
            bucket,
            pk,
        )
        for pk, f, ts, seq, value in zip(
            pks[where], floats[where], stamps[where], seqs[where], values[where], strict=True
        )
        if not isnan(f) and pk not in counters  # a NaN (never from the wire) takes the samples' way
    ]
    plain += rows
    if len(rows) < where.stop - where.start:
        for i in range(where.start, where.stop):
            pk, f = pks[i], floats[i]
            if isnan(f) or pk in counters:
                left[(bucket, pk)] = (pk in counters, _samples_at([i], stream_pk, columns))


def _bounded_total(numbers: list[float]) -> float | None:
    """``rollups.bounded_sum``, or None when the sum is not finite (a NaN: min and max would depend on
    order, so those readings take the samples' way)."""
    try:
        total = math.fsum(numbers)
    except OverflowError:  # finite values whose exact sum overflows
        total = ru.bounded_sum(numbers)
    return ru.bounded(total) if math.isfinite(total) else None


def plain_row(bucket: int, pk: int, r: Rollup) -> PlainRow:
    """The order-free part of a rollup that is not a counter's, as ``rollups.add_plain`` takes it."""
    return (
        r.count, r.good, r.min, r.max, r.sum, r.last_ts_ms, r.last_stream, r.last_seq, r.last_value,
        r.last_quality, QUARTER_MS, bucket, pk,
    )  # fmt: skip


def _samples_at(at: list[int], stream_pk: int, columns: Columns) -> list[ru.Sample]:
    seqs, _, stamps, values, qualities = columns
    return [ru.Sample(stamps[i], stream_pk, seqs[i], values[i], qualities[i]) for i in at]


def _samples(
    parts: Sequence[tuple[int, list[int] | slice]],
    stream_pk: int,
    columns: Columns,
    counters: set[int],
) -> SampleParts:
    seqs, pks, stamps, values, qualities = columns
    out: SampleParts = {}
    for bucket, where in parts:
        by_point: dict[int, list[ru.Sample]] = {}
        samples = map(
            ru.Sample,
            take(stamps, where),
            repeat(stream_pk),
            take(seqs, where),
            take(values, where),
            take(qualities, where),
        )
        for pk, sample in zip(take(pks, where), samples, strict=True):
            found = by_point.get(pk)
            if found is None:
                by_point[pk] = [sample]
            else:
                found.append(sample)
        for pk, part in by_point.items():
            out[(bucket, pk)] = (pk in counters, part)
    return out
