"""Rollups and retention, the same on every backend: numbers checked by hand, late and duplicate
readings, counters' energy against ``central.energy``, the purge of old raw readings."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Sequence

import pytest

from central.energy import Day, local_days, point_energy
from central.store import Store
from central.store.rollups import spread_energy
from central.store.rows import ReceivedBatch, Resolution, Rollup
from protocols.fleet import Reading, decode_data_batch, encode, encode_data_batch
from protocols.quality import Quality
from tests.contract.backends import Backend

CAB = "cab-1"
STREAM = "0123abcd"
DAY = 86_400_000
Q = 900_000
T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z, a bucket start of both resolutions
BAD = Quality.BAD


def received(
    readings: Sequence[Reading], *, stream: str = STREAM, received_ms: int | None = None
) -> ReceivedBatch:
    seqs = [r.seq for r in readings]
    payload = encode_data_batch(
        cabinet=CAB, stream=stream, first=min(seqs), last=max(seqs), readings=[encode(r) for r in readings]
    )
    ts = received_ms if received_ms is not None else max(r.ts for r in readings) + 1000
    return ReceivedBatch(decode_data_batch(payload), ts, f"cityedge/{CAB}/data", payload)


def reading(
    seq: int, ts: int, value: object, point: str = "lc1/power_w", quality: int = Quality.GOOD
) -> Reading:
    reason = None if quality == Quality.GOOD else "timeout"
    return Reading(seq=seq, point=point, ts=ts, value=value, quality=quality, reason=reason)  # type: ignore[arg-type]


async def buckets(
    store: Store, point: str, resolution: Resolution, start: int = T0 - 10 * DAY, end: int = T0 + 10 * DAY
) -> list[Rollup]:
    return await store.rollups(CAB, point, resolution=resolution, start_ms=start, end_ms=end, limit=10_000)


def summary(r: Rollup) -> tuple[object, ...]:
    return (r.bucket_ms, r.count, r.good, r.min, r.max, r.mean, r.last_ts_ms, r.last_value)


async def test_a_bucket_by_hand_bad_readings_count_but_not_in_min_max_mean(store: Store) -> None:
    await store.write(
        [
            received(
                [
                    reading(1, T0 + 1_000, 10.0),
                    reading(2, T0 + 2_000, 999.0, quality=BAD),  # counted, not in min/max/mean
                    reading(3, T0 + 3_000, 30.0),
                    reading(4, T0 + 4_000, 20.0),
                    reading(5, T0 + Q, 7.0),  # the next quarter, the same day
                ]
            )
        ]
    )
    quarters = await buckets(store, "lc1/power_w", "15m")
    assert [summary(r) for r in quarters] == [
        (T0, 4, 3, 10.0, 30.0, 20.0, T0 + 4_000, 20.0),
        (T0 + Q, 1, 1, 7.0, 7.0, 7.0, T0 + Q, 7.0),
    ]
    [day] = await buckets(store, "lc1/power_w", "1d")
    assert summary(day) == (T0, 5, 4, 7.0, 30.0, 16.75, T0 + Q, 7.0)


async def test_the_last_reading_may_be_bad_and_text_counts_only(store: Store) -> None:
    await store.write(
        [
            received(
                [
                    reading(1, T0 + 1_000, 5, point="tc1/plan"),
                    reading(2, T0 + 2_000, "night", point="tc1/mode"),
                    reading(3, T0 + 3_000, None, point="tc1/plan", quality=BAD),
                ]
            )
        ]
    )
    [plan] = await buckets(store, "tc1/plan", "15m")
    assert summary(plan) == (T0, 2, 1, 5.0, 5.0, 5.0, T0 + 3_000, None)
    assert plan.last_quality == BAD
    [mode] = await buckets(store, "tc1/mode", "15m")
    assert summary(mode) == (T0, 1, 0, None, None, None, T0 + 2_000, "night")


async def test_a_duplicate_is_never_counted_twice(store: Store) -> None:
    first = received([reading(s, T0 + s * 1000, float(s)) for s in range(1, 11)])
    overlap = received([reading(s, T0 + s * 1000, float(s)) for s in range(6, 16)])
    # In one transaction (group commit) and in separate ones: each seq counts once.
    await store.write([first, overlap, first])
    await store.write([overlap])
    [quarter] = await buckets(store, "lc1/power_w", "15m")
    assert (quarter.count, quarter.good, quarter.sum, quarter.min, quarter.max) == (15, 15, 120.0, 1.0, 15.0)
    [day] = await buckets(store, "lc1/power_w", "1d")
    assert (day.count, day.sum) == (15, 120.0)


async def test_the_same_seq_in_another_stream_is_another_reading(store: Store) -> None:
    await store.write(
        [received([reading(1, T0 + 1000, 1.0)]), received([reading(1, T0 + 2000, 2.0)], stream="ffff0000")]
    )
    [quarter] = await buckets(store, "lc1/power_w", "15m")
    assert (quarter.count, quarter.sum, quarter.last_value) == (2, 3.0, 2.0)


async def test_a_backlog_of_three_days_lands_in_its_own_buckets(store: Store) -> None:
    now = T0 + 3 * DAY
    await store.write([received([reading(1000 + i, now + i * 60_000, 1.0) for i in range(5)])])
    today_before = await buckets(store, "lc1/power_w", "1d", start=now, end=now + DAY)
    # The cabinet was offline: its three days of readings arrive now, an hour apart.
    backlog = [reading(1 + i, T0 + i * 3_600_000, float(i)) for i in range(72)]
    for part in range(0, 72, 24):
        await store.write([received(backlog[part : part + 24], received_ms=now + 10 * 60_000)])
    days = await buckets(store, "lc1/power_w", "1d")
    assert [(d.bucket_ms, d.count, d.min, d.max) for d in days] == [
        (T0, 24, 0.0, 23.0),
        (T0 + DAY, 24, 24.0, 47.0),
        (T0 + 2 * DAY, 24, 48.0, 71.0),
        (now, 5, 1.0, 1.0),
    ]
    assert days[-1] == today_before[0]
    quarters = await buckets(store, "lc1/power_w", "15m", start=T0, end=T0 + DAY)
    assert [(r.bucket_ms, r.count, r.sum) for r in quarters] == [
        (T0 + i * 3_600_000, 1, float(i)) for i in range(24)
    ]


async def test_a_late_reading_older_than_the_last_does_not_become_last(store: Store) -> None:
    await store.write([received([reading(2, T0 + 5_000, 2.0)])])
    await store.write([received([reading(1, T0 + 1_000, 1.0)])])  # re-sent later, older stamp
    [quarter] = await buckets(store, "lc1/power_w", "15m")
    assert (quarter.count, quarter.last_ts_ms, quarter.last_value, quarter.min) == (2, T0 + 5_000, 2.0, 1.0)


async def test_a_counters_energy_by_hand_resets_and_glitches(store: Store) -> None:
    point = "m1/energy_wh"
    values = [100, 150, 50, 80, 10**9, 90, None]  # a reset (150 -> 50), a glitch, a bad reading
    rows = [reading(i + 1, T0 + (i + 1) * 10_000, v, point=point) for i, v in enumerate(values[:-1])]
    rows.append(reading(7, T0 + 70_000, None, point=point, quality=BAD))
    await store.write([received(rows)])
    [quarter] = await buckets(store, point, "15m")
    # 100->150: 50; 150->50: reset, 50 counted; 50->80: 30; 80->1e9 in 10 s: a glitch (0);
    # 1e9->90: a reset, 90 counted.
    assert (quarter.energy_wh, quarter.resets, quarter.absurd, quarter.counted) == (220.0, 2, 1, 6)
    assert (quarter.energy_ms, quarter.count) == (40_000, 7)
    assert (quarter.first_wh_ts_ms, quarter.first_wh, quarter.last_wh_ts_ms, quarter.last_wh) == (
        T0 + 10_000,
        100.0,
        T0 + 60_000,
        90.0,
    )


async def test_a_counter_reading_that_arrives_between_two_counted_gives_the_same_bucket(
    backend: Backend,
) -> None:
    point = "m1/energy_wh"
    rows = [reading(i, T0 + i * 10_000, float(i * i), point=point) for i in range(1, 9)]
    async with backend.store() as store:
        await store.write([received(rows[0::2])])  # 1, 3, 5, 7 first
        await store.write([received(rows[1::2])])  # then 2, 4, 6, 8, each between two counted
        await store.write([received([rows[3]])])  # and a duplicate
        late = await buckets(store, point, "15m") + await buckets(store, point, "1d")
    async with backend.store() as store:
        await store.write([received(rows)])  # the same readings into the same store: all duplicates
        assert await buckets(store, point, "15m") + await buckets(store, point, "1d") == late
    [quarter] = late[:1]
    assert (quarter.energy_wh, quarter.count, quarter.resets) == (63.0, 8, 0)


async def test_daily_rollups_give_the_energy_of_central_energy(store: Store) -> None:
    point = "m1/energy_wh"
    # Five days of a counter read every 20 minutes, a reset on day 2, a 5-hour hole across midnight.
    rows: list[Reading] = []
    value = 0
    for i in range(5 * 72):
        ts = T0 - DAY + i * 1_200_000 + 7_000
        if T0 + DAY - 3 * 3_600_000 < ts < T0 + DAY + 2 * 3_600_000:
            continue
        value = 40 if i == 130 else value + 100 + i % 7
        rows.append(reading(i + 1, ts, value, point=point))
    for part in range(0, len(rows), 50):
        await store.write([received(rows[part : part + 50])])
    days = local_days(dt.date(2024, 5, 1), dt.date(2024, 5, 3), dt.UTC)
    start, end = days[0].start_ms, days[-1].end_ms
    expected = point_energy([(r.ts, r.value, r.quality) for r in _with_neighbours(rows, start, end)], days)
    daily = await buckets(store, point, "1d", start=start, end=end)
    before, after = await store.rollup_neighbours(CAB, point, resolution="1d", start_ms=start, end_ms=end)
    got = spread_energy(daily, "1d", before=before, after=after)
    assert [round(wh, 6) for wh in got] == [round(d.wh, 6) for d in expected.days]
    assert math.isclose(sum(got), expected.total_wh)
    quarters = await buckets(store, point, "15m", start=start, end=end)
    q_before, q_after = await store.rollup_neighbours(
        CAB, point, resolution="15m", start_ms=start, end_ms=end
    )
    per_quarter = spread_energy(quarters, "15m", before=q_before, after=q_after)
    # central.energy over quarters as if they were days: a listed quarter gets what it computes (an
    # empty quarter, not listed, keeps its share of the interval that crosses it).
    as_days = [Day(dt.date.fromordinal(1 + i), t, t + Q) for i, t in enumerate(range(start, end, Q))]
    by_quarter = point_energy(
        [(r.ts, r.value, r.quality) for r in _with_neighbours(rows, start, end)], as_days
    )
    expected_q = {day.start_ms: e.wh for day, e in zip(as_days, by_quarter.days, strict=True)}
    assert [round(wh, 6) for wh in per_quarter] == [round(expected_q[r.bucket_ms], 6) for r in quarters]
    assert len(quarters) < len(as_days)


def _with_neighbours(rows: list[Reading], start: int, end: int) -> list[Reading]:
    inside = [r for r in rows if start <= r.ts < end]
    before = [r for r in rows if r.ts < start][-1:]
    after = [r for r in rows if r.ts >= end][:1]
    return before + inside + after


async def test_a_point_without_counted_readings_has_no_neighbours(store: Store) -> None:
    await store.write([received([reading(1, T0, 1.0)])])
    assert await store.rollup_neighbours(
        CAB, "lc1/power_w", resolution="1d", start_ms=T0 + DAY, end_ms=T0 + 2 * DAY
    ) == (None, None)


# -- retention ---------------------------------------------------------------------------------------


async def _purge_all(store: Store, before_ms: int, limit: int) -> list[int]:
    deleted: list[int] = []
    for _ in range(10_000):
        purged = await store.purge_readings(before_ms=before_ms, limit=limit)
        deleted.append(purged.deleted)
        if purged.done:
            return deleted
    raise AssertionError("the purge never said done")


async def test_retention_deletes_old_raw_readings_in_bounded_steps_and_keeps_rollups(
    backend: Backend,
) -> None:
    points = [f"lc{i}/power_w" for i in range(3)]
    rows = [reading(i + 1, T0 + i * 600_000, float(i), point=points[i % 3]) for i in range(30 * 24)]  # 5 days
    async with backend.store() as store:
        for part in range(0, len(rows), 10):
            await store.write([received(rows[part : part + 10])])
        before = {p: (await buckets(store, p, "15m"), await buckets(store, p, "1d")) for p in points}
        latest = await store.latest_values(CAB)
        horizon = T0 + 3 * DAY  # a day's start: every backend's unit of deletion ends there

        steps = await _purge_all(store, horizon, limit=50)
        assert sum(steps) == sum(1 for r in rows if r.ts < horizon)
        if backend.name == "sqlite":  # whole batches: at most one batch (10 readings) beyond the limit
            assert max(steps) <= 60  # (PostgreSQL drops a day's partition at once)
        for p in points:
            raw = await store.readings(CAB, p, start_ms=0, end_ms=2**62, limit=10_000)
            assert min(r.ts_ms for r in raw) >= horizon
            assert (await buckets(store, p, "15m"), await buckets(store, p, "1d")) == before[p]
        assert await store.latest_values(CAB) == latest
        assert await _purge_all(store, horizon, limit=50) == [0]  # idempotent


async def test_the_latest_value_of_a_silent_point_survives_the_purge(store: Store) -> None:
    await store.write(
        [received([reading(1, T0, 1.0, point="old/x"), reading(2, T0 + 1, 2.0, point="old/x")])]
    )
    await _purge_all(store, T0 + DAY, limit=10)
    assert [(v.point, v.value) for v in await store.latest_values(CAB)] == [("old/x", 2.0)]
    assert await store.readings(CAB, "old/x", start_ms=0, end_ms=2**62, limit=10) == []
    assert [r.count for r in await buckets(store, "old/x", "1d")] == [2]


async def test_two_purges_at_once_are_safe(backend: Backend) -> None:
    rows = [reading(i + 1, T0 + i * 100_000, float(i), point=f"p{i % 7}/v") for i in range(2000)]
    async with backend.store() as a, backend.store() as b:
        for part in range(0, len(rows), 500):
            await a.write([received(rows[part : part + 500])])
        # On a day's start: every backend deletes up to there (a bucket, a partition).
        steps = await asyncio.gather(_purge_all(a, T0 + DAY, 100), _purge_all(b, T0 + DAY, 100))
        assert sum(map(sum, steps)) == 864
        left = [
            r
            for p in range(7)
            for r in await a.readings(CAB, f"p{p}/v", start_ms=0, end_ms=2**62, limit=10_000)
        ]
        assert sorted(r.ts_ms for r in left) == [T0 + i * 100_000 for i in range(864, 2000)]


@pytest.mark.parametrize("resolution", ["15m", "1d"])
async def test_rollups_of_an_unknown_point_are_none(store: Store, resolution: Resolution) -> None:
    assert await buckets(store, "no/such", resolution) == []


async def test_a_late_reading_into_a_day_already_read_updates_that_day(backend: Backend) -> None:
    point, counter = "lc1/power_w", "m1/energy_wh"
    async with backend.store() as store:
        await store.write(
            [received([reading(1, T0 + 1000, 5.0, point=point), reading(2, T0 + 1000, 100, point=counter)])]
        )
        [first] = await buckets(store, point, "1d")  # a day read (and, where a backend keeps them, kept)
        [energy] = await buckets(store, counter, "1d")
        assert (first.count, energy.energy_wh) == (1, 0.0)
    async with backend.store() as store:  # later, maybe another worker: three days of backlog arrive
        await store.write(
            [received([reading(3, T0 + 5 * Q, 9.0, point=point), reading(4, T0 + 5 * Q, 160, point=counter)])]
        )
        [day] = await buckets(store, point, "1d")
        [energy] = await buckets(store, counter, "1d")
        assert (day.count, day.max, day.last_value) == (2, 9.0, 9.0)
        assert (energy.energy_wh, energy.counted) == (60.0, 2)


async def test_a_day_that_starts_before_the_end_of_the_range_is_whole(store: Store) -> None:
    await store.write([received([reading(1, T0 + 1000, 1.0), reading(2, T0 + 20 * 3_600_000, 3.0)])])
    [day] = await buckets(store, "lc1/power_w", "1d", start=T0, end=T0 + 3_600_000)
    assert (day.count, day.sum) == (2, 4.0)


async def test_a_late_counter_reading_after_the_purge_keeps_what_was_counted(store: Store) -> None:
    # Two readings counted (1 Wh), their raw readings purged, then one arrives between them (another
    # stream of the cabinet: a replaced SD card): the bucket keeps its energy and counts one more.
    point = "m1/energy_wh"
    await store.write(
        [received([reading(1, T0 + 60_000, 100.0, point), reading(2, T0 + 120_000, 101.0, point)])]
    )
    await _purge_all(store, T0 + DAY, limit=1_000)
    assert await store.readings(CAB, point, start_ms=0, end_ms=2**62, limit=10) == []
    late = reading(1, T0 + 90_000, 100.5, point)
    await store.write([received([late], stream="feedbeef", received_ms=T0 + 2 * DAY)])
    for resolution in ("15m", "1d"):
        [bucket] = await buckets(store, point, resolution)
        assert (bucket.count, bucket.energy_wh, bucket.min, bucket.max) == (3, 1.0, 100.0, 101.0)


async def test_huge_finite_values_never_make_a_batch_unstorable(store: Store) -> None:
    # The protocol allows floats up to 1.8e308: their sums saturate instead of overflowing, so the
    # batch (and the other points in it) is stored, and so is the next one into the same bucket.
    big = 1e308
    first = [reading(1, T0, big, "ai1/raw"), reading(2, T0 + 1_000, big, "ai1/raw"), reading(3, T0, 7.0)]
    [outcome] = await store.write([received(first)])
    assert (outcome.readings_new, outcome.unstorable) == (3, None)
    [outcome] = await store.write([received([reading(4, T0 + 2_000, big, "ai1/raw")])])
    assert (outcome.readings_new, outcome.unstorable) == (1, None)
    [bucket] = await buckets(store, "ai1/raw", "15m")
    assert (bucket.count, bucket.max) == (3, big) and math.isfinite(bucket.sum)
    assert {v.point: v.value for v in await store.latest_values(CAB)} == {"ai1/raw": big, "lc1/power_w": 7.0}
