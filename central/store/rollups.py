"""Rollups of a point's readings into 15-minute and daily buckets. Pure: samples in, rollups out.

Every backend keeps rollups with these functions, in the transaction that stores the readings:
``absorb`` adds a batch's new readings of one point to the bucket they fall in. What it cannot do
from the summary alone (a counter's reading that lands between two readings already counted: the
intervals it splits are not in the summary) it refuses (None): the backend then ``summarise``s the
bucket again from its raw readings when they are all still there, and ``absorb_without_raw`` when
retention took some (a late reading must never shrink a bucket to what is left of it).

Choices, shared by every backend:
- A bad or uncertain reading counts in ``count`` (and may be ``last``) but never in min/max/mean,
  nor in a counter's energy (``central.energy`` skips it the same way).
- Text and null values count; bools are 0 or 1 in min/max/mean (a mean of ``online`` is a fraction).
- Buckets are UTC: 15 minutes, or the UTC day. A time zone whose offset is a multiple of 15 minutes
  (every zone in use today) has local days made of whole 15-minute buckets.
- A counter's energy uses ``central.energy``'s rules with the default ``max_power_w``.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise
from typing import NamedTuple

from central.energy import DEFAULT_MAX_POWER_W, EnergyMeter, counter_value, interval_energy
from central.store.rows import Resolution, Rollup
from protocols.fleet.messages import Scalar
from protocols.quality import Quality

COUNTER_SUFFIX = "energy_wh"
# Sums saturate at this: the protocol allows floats up to 1.8e308, and two of them would overflow a
# sum (PostgreSQL then refuses the batch, on every resend). A mean that far out is garbage anyway.
MAX_SUM = 1e300
WIDTH_MS: dict[Resolution, int] = {"15m": 15 * 60 * 1000, "1d": 24 * 3600 * 1000}


class Sample(NamedTuple):
    """A reading as a rollup sees it; ``stream`` is the backend's number for the stream."""

    ts: int
    stream: int
    seq: int
    value: Scalar
    quality: int


def is_counter(point: str) -> bool:
    return point.endswith(COUNTER_SUFFIX)


def bucket_of(ts_ms: int, resolution: Resolution) -> int:
    """The start of the bucket ``ts_ms`` falls in (floor, also before 1970)."""
    width = WIDTH_MS[resolution]
    return ts_ms - ts_ms % width


def by_bucket(samples: Iterable[Sample], resolution: Resolution) -> dict[int, list[Sample]]:
    buckets: dict[int, list[Sample]] = {}
    width = WIDTH_MS[resolution]
    for sample in samples:
        buckets.setdefault(sample.ts - sample.ts % width, []).append(sample)
    return buckets


def bounded(total: float) -> float:
    """``total`` within [-MAX_SUM, MAX_SUM] (a NaN stays a NaN)."""
    if math.isnan(total) or -MAX_SUM <= total <= MAX_SUM:
        return total
    return math.copysign(MAX_SUM, total)


def bounded_sum(values: Sequence[float]) -> float:
    """The exact sum of finite ``values`` (``math.fsum``), saturated at ±MAX_SUM; added one by one,
    saturating each step, when the exact sum overflows."""
    try:
        return bounded(math.fsum(values))
    except OverflowError:
        total = 0.0
        for value in values:
            total = bounded(total + value)
        return total


def _number(value: Scalar, quality: int) -> float | None:
    if quality != Quality.GOOD or value is None or isinstance(value, str):
        return None
    return float(value)


def summarise(
    bucket_ms: int,
    samples: Sequence[Sample],
    *,
    counter: bool,
    max_power_w: float = DEFAULT_MAX_POWER_W,
) -> Rollup:
    """The rollup of ``samples`` (non-empty, any order) in the bucket starting at ``bucket_ms``."""
    if not samples:
        raise ValueError("a rollup needs at least one reading")
    if len(samples) == 1 and not counter:  # the common case at ingest: one reading per point
        s = samples[0]
        n = _number(s.value, s.quality)
        return Rollup(
            bucket_ms,
            1,
            int(n is not None),
            n,
            n,
            bounded(n or 0.0),
            s.ts,
            s.stream,
            s.seq,
            s.value,
            s.quality,
        )
    ordered = sorted(samples, key=lambda s: (s.ts, s.stream, s.seq))
    numbers = [n for s in ordered if (n := _number(s.value, s.quality)) is not None]
    last = ordered[-1]
    rollup = Rollup(
        bucket_ms=bucket_ms,
        count=len(ordered),
        good=len(numbers),
        min=min(numbers) if numbers else None,
        max=max(numbers) if numbers else None,
        sum=bounded_sum(numbers),
        last_ts_ms=last.ts,
        last_stream=last.stream,
        last_seq=last.seq,
        last_value=last.value,
        last_quality=last.quality,
    )
    return _with_energy(rollup, ordered, max_power_w) if counter else rollup


def summarise_good(bucket_ms: int, values: Sequence[float], last: Sample) -> Rollup | None:
    """``summarise`` of readings (not a counter's) all good and of float values, ``last`` the newest
    of them by (ts, stream, seq), without a Sample per reading. None when a value is not finite (a
    NaN makes min and max depend on order): summarise those."""
    summary = good_summary(values)
    if summary is None:
        return None
    total, low, high = summary
    n = len(values)
    return Rollup(
        bucket_ms,
        n,
        n,
        low,
        high,
        total,
        last.ts,
        last.stream,
        last.seq,
        last.value,
        last.quality,
    )


def good_summary(values: Sequence[float]) -> tuple[float, float, float] | None:
    """(sum, min, max) of ``summarise_good``'s values, the sum bounded; None when one is not finite."""
    try:
        total = math.fsum(values)
    except OverflowError:  # finite values whose exact sum overflows
        total = bounded_sum(values)
    if not math.isfinite(total):
        return None
    return bounded(total), min(values), max(values)


def in_bucket(r: Rollup, bucket_ms: int) -> Rollup:
    """A rollup that is not a counter's, as the part of the wider bucket ``bucket_ms``."""
    return Rollup(
        bucket_ms, r.count, r.good, r.min, r.max, r.sum, r.last_ts_ms, r.last_stream, r.last_seq,
        r.last_value, r.last_quality,
    )  # fmt: skip


def combine(a: Rollup, b: Rollup) -> Rollup:
    """The rollup of a's readings and b's, of one point that is not a counter (any order)."""
    return _combined(a, b)


def _with_energy(rollup: Rollup, ordered: Sequence[Sample], max_power_w: float) -> Rollup:
    counted = [(s.ts, wh) for s in ordered if (wh := counter_value(s.value, s.quality)) is not None]
    if not counted:
        return rollup
    energy, covered, resets, absurd = 0.0, 0, 0, 0
    for (t0, v0), (t1, v1) in pairwise(counted):
        wh, reset, glitch = interval_energy(t0, v0, t1, v1, max_power_w)
        if glitch:
            absurd += 1
            continue
        energy += wh
        covered += t1 - t0
        resets += reset
    return dataclasses.replace(
        rollup,
        counted=len(counted),
        first_wh_ts_ms=counted[0][0],
        first_wh=counted[0][1],
        last_wh_ts_ms=counted[-1][0],
        last_wh=counted[-1][1],
        energy_wh=energy,
        energy_ms=covered,
        resets=resets,
        absurd=absurd,
    )


def _combined(a: Rollup, b: Rollup) -> Rollup:
    """The parts that do not depend on order: counts, min, max, sum, last. Energy: a's."""
    newer = b if (b.last_ts_ms, b.last_stream, b.last_seq) > (a.last_ts_ms, a.last_stream, a.last_seq) else a
    return dataclasses.replace(
        a,
        bucket_ms=min(a.bucket_ms, b.bucket_ms),
        count=a.count + b.count,
        good=a.good + b.good,
        min=_pick(min, a.min, b.min),
        max=_pick(max, a.max, b.max),
        sum=bounded(a.sum + b.sum),
        last_ts_ms=newer.last_ts_ms,
        last_stream=newer.last_stream,
        last_seq=newer.last_seq,
        last_value=newer.last_value,
        last_quality=newer.last_quality,
    )


def _pick(fn: Callable[[float, float], float], x: float | None, y: float | None) -> float | None:
    if x is None:
        return y
    if y is None:
        return x
    return fn(x, y)


def merge(a: Rollup, b: Rollup, *, max_power_w: float = DEFAULT_MAX_POWER_W) -> Rollup:
    """The rollup of a's readings and b's, when a's counted readings all come before b's (time order).

    Rollups of consecutive parts of a period merge into the rollup of the whole (a day from its
    15-minute buckets); the interval between a's last counted reading and b's first joins them.
    """
    merged = _combined(a, b)
    if b.counted == 0:
        return merged
    if a.counted == 0:
        return _energy_from(merged, b)
    assert a.last_wh_ts_ms is not None and a.last_wh is not None
    assert b.first_wh_ts_ms is not None and b.first_wh is not None
    if b.first_wh_ts_ms <= a.last_wh_ts_ms:
        raise ValueError("merge needs a's counted readings before b's: summarise the readings instead")
    wh, reset, glitch = interval_energy(a.last_wh_ts_ms, a.last_wh, b.first_wh_ts_ms, b.first_wh, max_power_w)
    gap_ms = b.first_wh_ts_ms - a.last_wh_ts_ms
    return dataclasses.replace(
        merged,
        counted=a.counted + b.counted,
        last_wh_ts_ms=b.last_wh_ts_ms,
        last_wh=b.last_wh,
        energy_wh=a.energy_wh + b.energy_wh + wh,
        energy_ms=a.energy_ms + b.energy_ms + (0 if glitch else gap_ms),
        resets=a.resets + b.resets + (reset and not glitch),
        absurd=a.absurd + b.absurd + glitch,
    )


def _energy_from(target: Rollup, source: Rollup) -> Rollup:
    return dataclasses.replace(
        target,
        counted=source.counted,
        first_wh_ts_ms=source.first_wh_ts_ms,
        first_wh=source.first_wh,
        last_wh_ts_ms=source.last_wh_ts_ms,
        last_wh=source.last_wh,
        energy_wh=source.energy_wh,
        energy_ms=source.energy_ms,
        resets=source.resets,
        absurd=source.absurd,
    )


def absorb(
    existing: Rollup | None,
    new: Sequence[Sample],
    bucket_ms: int,
    *,
    counter: bool,
    max_power_w: float = DEFAULT_MAX_POWER_W,
) -> Rollup | None:
    """``existing`` with the ``new`` readings of its bucket added (each reading once: the backend
    passes only readings it stored now, never a duplicate).

    None when a counter's new readings interleave with those already counted: summarise the bucket
    from its raw readings instead.
    """
    part = summarise(bucket_ms, new, counter=counter, max_power_w=max_power_w)
    if existing is None:
        return part
    if not counter or part.counted == 0 or existing.counted == 0:
        merged = _combined(existing, part)
        return _energy_from(merged, part) if part.counted and not existing.counted else merged
    assert existing.first_wh_ts_ms is not None and existing.last_wh_ts_ms is not None
    assert part.first_wh_ts_ms is not None and part.last_wh_ts_ms is not None
    if part.first_wh_ts_ms > existing.last_wh_ts_ms:
        return merge(existing, part, max_power_w=max_power_w)
    if part.last_wh_ts_ms < existing.first_wh_ts_ms:
        return merge(part, existing, max_power_w=max_power_w)
    return None


def absorb_without_raw(existing: Rollup, new: Sequence[Sample], bucket_ms: int) -> Rollup:
    """What ``absorb`` refused (a counter's readings among those counted) when the bucket's raw
    readings are no longer all there (past retention): the new readings join count, min, max, sum and
    last; the energy stays what was counted. A counter's energy over an interval does not change when
    a reading inside it arrives late (only its split between buckets would), so nothing counted is
    lost, and a bucket is never recounted from what is left of its readings."""
    part = summarise(bucket_ms, new, counter=False)
    return _combined(existing, part)


def merge_all(rollups: Sequence[Rollup], *, max_power_w: float = DEFAULT_MAX_POWER_W) -> Rollup | None:
    """The rollup of consecutive buckets (in time order), or None when there are none."""
    if not rollups:
        return None
    whole = rollups[0]
    for part in rollups[1:]:
        whole = merge(whole, part, max_power_w=max_power_w)
    return whole


def spread_energy(
    rollups: Sequence[Rollup],
    resolution: Resolution,
    *,
    before: Rollup | None = None,
    after: Rollup | None = None,
    max_power_w: float = DEFAULT_MAX_POWER_W,
) -> list[float]:
    """The Wh consumed in each bucket of ``rollups`` (in time order) of a counter.

    A bucket's own intervals are its own; an interval between counted readings of two buckets
    (``before`` and ``after`` are the nearest such buckets outside the range) is spread by time over
    the buckets it crosses, as ``central.energy`` spreads intervals over days. Glitches count 0.
    """
    width = WIDTH_MS[resolution]
    shares = [r.energy_wh for r in rollups]
    starts = [r.bucket_ms for r in rollups]
    chain = [r for r in (before, *rollups, after) if r is not None and r.counted > 0]
    for a, b in pairwise(chain):
        assert a.last_wh_ts_ms is not None and a.last_wh is not None
        assert b.first_wh_ts_ms is not None and b.first_wh is not None
        t0, t1 = a.last_wh_ts_ms, b.first_wh_ts_ms
        if t1 <= t0:
            continue
        wh, _, glitch = interval_energy(t0, a.last_wh, t1, b.first_wh, max_power_w)
        if glitch or wh == 0:
            continue
        # Only the buckets listed get their share: the walk is bounded by them, not by the gap.
        i = bisect_left(starts, t0 - t0 % width)
        while i < len(starts) and starts[i] < t1:
            overlap = min(t1, starts[i] + width) - max(t0, starts[i])
            if overlap > 0:
                shares[i] += wh * overlap / (t1 - t0)
            i += 1
    return shares


def counted_ends(r: Rollup) -> tuple[tuple[int, float] | None, tuple[int, float] | None]:
    """A counter quarter's first and last counted readings, as (ts, Wh), where it has them."""
    first = None if r.first_wh_ts_ms is None or r.first_wh is None else (r.first_wh_ts_ms, r.first_wh)
    last = None if r.last_wh_ts_ms is None or r.last_wh is None else (r.last_wh_ts_ms, r.last_wh)
    return first, last


def meter_quarters(
    meter: EnergyMeter,
    quarters: Iterable[Rollup],
    *,
    before: Rollup | None = None,
    after: Rollup | None = None,
) -> None:
    """Feed ``meter`` a counter's 15-minute rollups as their readings would feed it, with the last
    counted reading of the quarter ``before`` them and the first of the one ``after`` (the
    intervals across the period's ends)."""
    if before is not None and before.last_wh_ts_ms is not None and before.last_wh is not None:
        meter.add([(before.last_wh_ts_ms, before.last_wh, Quality.GOOD)])
    for r in quarters:
        first, last = counted_ends(r)
        meter.add_summary(
            first=first,
            last=last,
            wh=r.energy_wh,
            covered_ms=r.energy_ms,
            resets=r.resets,
            absurd=r.absurd,
            readings=r.count,
            skipped=r.count - r.counted,
        )
    if after is not None and after.first_wh_ts_ms is not None and after.first_wh is not None:
        meter.add([(after.first_wh_ts_ms, after.first_wh, Quality.GOOD)])
