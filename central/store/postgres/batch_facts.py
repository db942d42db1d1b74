"""What the PostgreSQL writer computes from a batch before it writes: its shape, its newest reading
of each point, its rollup samples, and why the database refused it. Pure: no database."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import NamedTuple, cast

from psycopg import errors

from central.record_time import time_suspect
from central.store.postgres.rollups import Plain, add_plain_values, good_floats_values
from central.store.rollups import WIDTH_MS, Sample, good_summary, is_counter
from protocols.fleet import Reading

_quality = operator.attrgetter("quality")

# One point's newest reading of a group: its point id -> (stream id, the reading).
Latest = dict[int, tuple[int, Reading]]


class Shape(NamedTuple):
    """What a batch's readings span, found with a few passes in C, to skip per-reading work."""

    lo_ts: int
    hi_ts: int
    ascending: bool

    @staticmethod
    def of(readings: Sequence[Reading]) -> Shape:
        seqs = [r.seq for r in readings]
        stamps = [r.ts for r in readings]
        return Shape(min(stamps), max(stamps), all(map(operator.lt, seqs, seqs[1:])))

    def no_suspect(self, received_ms: int) -> bool:
        """No reading is a time suspect (the rule is a bound on each side: the extremes tell)."""
        return not time_suspect(self.lo_ts, received_ms) and not time_suspect(self.hi_ts, received_ms)


def add_samples(
    samples: dict[int, tuple[bool, list[Sample]]],
    stream_pk: int,
    readings: Sequence[Reading],
    points: dict[str, int],
) -> None:
    """The readings stored now, as the rollups take them, by point id."""
    for r in readings:
        pk = points[r.point]
        entry = samples.get(pk)
        if entry is None:
            entry = samples[pk] = (is_counter(r.point), [])
        entry[1].append(Sample(r.ts, stream_pk, r.seq, r.value, r.quality))


def add_good_floats(
    plain: Plain, stream_pk: int, readings: Sequence[Reading], points: dict[str, int]
) -> list[Reading] | None:
    """Roll a batch's new readings up into ``plain`` point by point, without a Sample per reading, in
    the usual case: values all floats of good quality, seq and stamps ascending, one 15-minute
    bucket. The readings it left (counters', or a point with a value not finite) for the samples;
    None when it took nothing (not the usual case)."""
    if not readings:
        return []
    stamps = [r.ts for r in readings]
    seqs = [r.seq for r in readings]
    quarter, day = WIDTH_MS["15m"], WIDTH_MS["1d"]
    q0 = stamps[0] - stamps[0] % quarter
    if (
        stamps[-1] >= q0 + quarter
        or any(map(_quality, readings))
        or not all(type(r.value) is float for r in readings)
        or not all(map(operator.le, stamps, stamps[1:]))
        or not all(map(operator.lt, seqs, seqs[1:]))
    ):
        return None
    d0 = q0 - q0 % day
    by_point: dict[str, list[Reading]] = {}
    for r in readings:
        part = by_point.get(r.point)
        if part is None:
            by_point[r.point] = [r]
        else:
            part.append(r)
    left: list[Reading] = []
    for name, part in by_point.items():
        summary = None if is_counter(name) else good_summary(cast("list[float]", [r.value for r in part]))
        if summary is None:  # a counter's, or a value not finite
            left += part
            continue
        pk = points[name]
        row = good_floats_values(q0, len(part), summary, stream_pk, part[-1])  # in order: last is newest
        add_plain_values(plain, (quarter, q0, pk), row)
        add_plain_values(plain, (day, d0, pk), (d0, *row[1:]))
    return left


def newest_of(
    latest: Latest, stream_pk: int, readings: Sequence[Reading], points: dict[str, int], received_ms: int
) -> None:
    """Each point's newest reading in sequence order (not a time suspect) joins ``latest`` unless a
    newer one (by stream, then seq) is there: one row per point, whatever the group's size."""
    if not readings:
        return
    s = Shape.of(readings)
    if s.ascending and s.no_suspect(received_ms):  # the usual case: each point's last is its newest
        for name, r in {r.point: r for r in readings}.items():
            pk = points[name]
            held = latest.get(pk)
            if held is None or (stream_pk, r.seq) > (held[0], held[1].seq):
                latest[pk] = (stream_pk, r)
        return
    for r in readings:
        if time_suspect(r.ts, received_ms):
            continue
        pk = points[r.point]
        held = latest.get(pk)
        if held is None or (stream_pk, r.seq) > (held[0], held[1].seq):
            latest[pk] = (stream_pk, r)


def refusal_detail(exc: Exception) -> str:
    """Why PostgreSQL refused a batch, in words an operator reads in the quarantine."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, errors.NumericValueOutOfRange):
        return f"a number too large for its column: {text}"
    if "0x00" in text or "NUL" in text:  # said by the server, or by psycopg before sending
        return f"a text holding a NUL character, which PostgreSQL cannot store ({text})"
    return text
