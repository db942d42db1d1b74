"""The bucket maths of central.store.rollups: hand-checked numbers, and properties over any readings."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from central.energy import EnergyMeter, local_days, point_energy
from central.store.rollups import (
    Sample,
    absorb,
    bucket_of,
    by_bucket,
    merge,
    merge_all,
    meter_quarters,
    summarise,
)
from protocols.quality import Quality

GOOD = Quality.GOOD
BAD = Quality.BAD
T0 = 1_714_521_600_000


def test_a_summary_by_hand() -> None:
    r = summarise(
        T0,
        [Sample(T0 + 3, 1, 3, 4, GOOD), Sample(T0 + 1, 1, 1, 10, GOOD), Sample(T0 + 2, 1, 2, 99, BAD)],
        counter=False,
    )
    assert (r.count, r.good, r.min, r.max, r.sum, r.mean) == (3, 2, 4.0, 10.0, 14.0, 7.0)
    assert (r.last_ts_ms, r.last_value, r.energy_wh, r.counted) == (T0 + 3, 4, 0.0, 0)


def test_a_merge_by_hand_joins_the_interval_between_the_parts() -> None:
    a = summarise(T0, [Sample(T0, 1, 1, 100, GOOD), Sample(T0 + 60_000, 1, 2, 110, GOOD)], counter=True)
    b = summarise(
        T0, [Sample(T0 + 120_000, 1, 3, 125, GOOD), Sample(T0 + 180_000, 1, 4, 5, GOOD)], counter=True
    )
    m = merge(a, b)
    # 10 + 15 (the interval joining them) + 5 (a reset: what was counted since)
    assert (m.energy_wh, m.energy_ms, m.resets, m.counted, m.count) == (30.0, 180_000, 1, 4, 4)
    assert (m.first_wh, m.last_wh, m.last_value) == (100.0, 5.0, 5)


def test_ties_of_time_are_broken_by_stream_then_seq() -> None:
    r = summarise(T0, [Sample(T0, 2, 1, "b", GOOD), Sample(T0, 1, 9, "a", GOOD)], counter=False)
    assert r.last_value == "b"


def test_bools_count_as_zero_and_one() -> None:
    r = summarise(T0, [Sample(T0, 1, 1, True, GOOD), Sample(T0 + 1, 1, 2, False, GOOD)], counter=False)
    assert (r.mean, r.min, r.max) == (0.5, 0.0, 1.0)


values = st.one_of(
    st.integers(min_value=0, max_value=10**6),
    st.none(),
    st.sampled_from(["on", "off"]),
    st.booleans(),
)
samples = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3 * 900_000),  # ts offset: a few quarters
        st.integers(min_value=1, max_value=2),  # stream
        values,
        st.sampled_from([GOOD, GOOD, GOOD, BAD]),
    ),
    min_size=1,
    max_size=60,
)


def _samples(raw: list[tuple[int, int, object, int]]) -> list[Sample]:
    return [Sample(T0 + ts, stream, seq, value, q) for seq, (ts, stream, value, q) in enumerate(raw)]  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(samples, st.lists(st.integers(min_value=1, max_value=3 * 900_000), max_size=4), st.booleans())
def test_the_rollup_of_the_whole_is_the_merge_of_the_rollups_of_its_parts(
    raw: list[tuple[int, int, object, int]], cuts: list[int], counter: bool
) -> None:
    everything = _samples(raw)
    edges = [T0, *sorted(T0 + c for c in cuts), T0 + 10**9]
    parts = [[s for s in everything if lo <= s.ts < hi] for lo, hi in itertools.pairwise(edges)]
    rollups = [summarise(T0, p, counter=counter) for p in parts if p]
    assert merge_all(rollups) == summarise(T0, everything, counter=counter)


@settings(max_examples=300, deadline=None)
@given(samples, st.randoms(use_true_random=False), st.integers(min_value=1, max_value=7), st.booleans())
def test_readings_absorbed_in_any_order_and_grouping_give_the_rollup_of_all(
    raw: list[tuple[int, int, object, int]], rnd: random.Random, size: int, counter: bool
) -> None:
    everything = _samples(raw)
    arrival = everything[:]
    rnd.shuffle(arrival)
    stored: list[Sample] = []
    rollup = None
    for i in range(0, len(arrival), size):
        batch = arrival[i : i + size]
        stored += batch
        rollup = absorb(rollup, batch, T0, counter=counter)
        if rollup is None:  # what a backend does: the bucket again from its raw readings
            assert counter
            rollup = summarise(T0, stored, counter=counter)
    assert rollup == summarise(T0, everything, counter=counter)


@given(st.integers(min_value=-(2**50), max_value=2**50))
def test_a_timestamp_is_in_its_bucket(ts: int) -> None:
    for resolution, width in (("15m", 900_000), ("1d", 86_400_000)):
        start = bucket_of(ts, resolution)  # type: ignore[arg-type]
        assert start <= ts < start + width and start % width == 0


counter_samples = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3 * 86_400_000 - 1),  # three UTC days
        st.one_of(st.integers(min_value=0, max_value=5_000), st.just(10**9), st.just(-1)),
        st.sampled_from([GOOD, GOOD, GOOD, BAD]),
    ),
    max_size=80,
    unique_by=lambda s: s[0],
)


@settings(max_examples=300, deadline=None)
@given(counter_samples)
def test_a_counters_energy_from_its_quarters_is_its_energy_from_its_readings(
    raw: list[tuple[int, int, int]],
) -> None:
    days = local_days(dt.date(2024, 5, 1), dt.date(2024, 5, 3), dt.UTC)
    readings = sorted((T0 + ts, value, quality) for ts, value, quality in raw)
    expected = point_energy(readings, days)
    meter = EnergyMeter(days)
    samples = [Sample(ts, 1, i, value, q) for i, (ts, value, q) in enumerate(readings)]
    quarters = [summarise(b, part, counter=True) for b, part in sorted(by_bucket(samples, "15m").items())]
    meter_quarters(meter, quarters)  # what the energy endpoint and the KPI report feed it
    got = meter.result
    assert (got.resets, got.absurd, got.readings, got.skipped) == (
        expected.resets,
        expected.absurd,
        expected.readings,
        expected.skipped,
    )
    for a, b in zip(got.days, expected.days, strict=True):
        assert math.isclose(a.wh, b.wh, rel_tol=1e-9, abs_tol=1e-6)
        assert (a.covered_ms, a.interpolated, a.reset, a.absurd) == (
            b.covered_ms,
            b.interpolated,
            b.reset,
            b.absurd,
        )
