"""What the PostgreSQL writer computes from a batch before it writes: its shape, its newest reading
of each point, its rollup samples, and why the database refused it. Pure: no database."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import NamedTuple

from psycopg import errors

from central.record_time import time_suspect
from central.store.rollups import Sample, is_counter
from protocols.fleet import Reading

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
