"""The KPI figures put together from day summaries are those made from the quarters, and the JSON
written from the figures is the models' JSON."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.api.kpi import report_out
from central.api.kpi_json import report_json
from central.kpi.availability import DeviceAvailability, DeviceInput, device_available_ms
from central.kpi.days import (
    CabinetDay,
    CabinetPlan,
    ProbedDevice,
    cabinet_day,
    cabinet_energy_of_days,
    decode_day,
    device_available_of_days,
    encode_day,
    in_day,
)
from central.kpi.energy import CabinetEnergyInput, CabinetMeta, CounterQuarters, cabinet_energy
from central.kpi.period import QUARTER_MS, Period, kpi_period
from central.kpi.report import kpi_report
from central.store.kpi_days import CounterEdge
from central.store.rollups import Sample, by_bucket, summarise
from central.store.rows import AlarmEpisode, Rollup
from protocols.quality import Quality

HOUR = 3_600_000
# 2024-03-30 00:00 Paris: the period runs over the night the clocks go forward (a 23-hour day).
START = 1_711_753_200_000
PARIS = ZoneInfo("Europe/Paris")
COUNTER, RELAY, PROBE = "lc1/energy_wh", "lc1/relay", "tc1/mode"


def quarters_of(samples: list[Sample], *, counter: bool) -> list[Rollup]:
    return [summarise(b, part, counter=counter) for b, part in sorted(by_bucket(samples, "15m").items())]


def edge_of(quarters: list[Rollup], period: Period) -> CounterEdge:
    """What ``RollupStore.rollup_neighbours`` finds, as the store's counter edges give it."""
    before = [r for r in quarters if r.bucket_ms < period.start_ms and r.counted > 0]
    after = [r for r in quarters if r.bucket_ms >= period.end_ms and r.counted > 0]
    b, a = (before[-1] if before else None), (after[0] if after else None)
    return CounterEdge(
        "cab",
        COUNTER,
        None if b is None or b.last_wh_ts_ms is None or b.last_wh is None else (b.last_wh_ts_ms, b.last_wh),
        None
        if a is None or a.first_wh_ts_ms is None or a.first_wh is None
        else (a.first_wh_ts_ms, a.first_wh),
    )


def inside(quarters: list[Rollup], period: Period) -> list[Rollup]:
    return [r for r in quarters if period.start_ms <= r.bucket_ms < period.end_ms]


# Readings of a counter: steps forward in time with a consumption, sometimes a reset (back to a small
# value), a glitch (a huge jump), a bad reading, or a long gap; some fall on midnight exactly.
step = st.tuples(
    st.sampled_from([7 * 60_000, 15 * 60_000, 61 * 60_000, 5 * HOUR, 26 * HOUR, QUARTER_MS * 4]),
    st.sampled_from(["use", "use", "use", "reset", "glitch", "bad"]),
    st.floats(min_value=0, max_value=400, allow_nan=False),
)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(step, min_size=1, max_size=40),
    first_offset_h=st.integers(min_value=-30, max_value=20),
    from_q=st.integers(min_value=0, max_value=200),
    days=st.integers(min_value=1, max_value=4),
    relay_every=st.integers(min_value=1, max_value=9),
)
def test_days_put_together_give_the_figures_of_the_quarters(
    steps: list[tuple[int, str, float]], first_offset_h: int, from_q: int, days: int, relay_every: int
) -> None:
    ts, value = START + first_offset_h * HOUR, 1000.0
    samples, relays = [], []
    for seq, (gap, kind, wh) in enumerate(steps):
        ts += gap
        quality = Quality.GOOD
        if kind == "reset":
            value = wh
        elif kind == "glitch":
            value += 1e9
        elif kind == "bad":
            quality = Quality.BAD
        else:
            value += wh
        samples.append(Sample(ts, 1, seq, value, quality))
        if seq % relay_every == 0:
            relays.append(Sample(ts, 1, 10_000 + seq, kind != "bad", quality))
    counter_q = quarters_of(samples, counter=True)
    relay_q = quarters_of(relays, counter=False) if relays else []
    start = START + from_q * QUARTER_MS
    period = kpi_period(start, start + days * 24 * HOUR, PARIS, now_ms=START + 100 * 24 * HOUR)

    expected = cabinet_energy(
        CabinetEnergyInput(
            "cab",
            "Dijon",
            [CounterQuarters(COUNTER, inside(counter_q, period), *_neighbours(counter_q, period))],
            [inside(relay_q, period)],
            rated_power_w=1500.0,
            baseline_kwh_per_day=12.0,
        ),
        period,
    )
    plan = CabinetPlan(relays=(RELAY,), devices=(ProbedDevice("lc1", RELAY, "lighting"),))
    made = [
        cabinet_day(d, plan, {COUNTER: in_day(counter_q, d)}, {RELAY: in_day(relay_q, d)})
        for d in period.days
    ]
    # As the cache keeps them: encoded and read back.
    cached = [decode_day(encode_day(d)) for d in made]
    assert all(d is not None for d in cached)
    got = cabinet_energy_of_days(
        CabinetMeta("cab", "Dijon", 1500.0, 12.0),
        [edge_of(counter_q, period)],
        [d for d in cached if d is not None],
        1,
        period,
    )
    assert (got.counters, got.resets, got.absurd) == (expected.counters, expected.resets, expected.absurd)
    for mine, theirs in [(got.total, expected.total)] + [
        (a.figures, b.figures) for a, b in zip(got.days, expected.days, strict=True)
    ]:
        assert mine.kwh == pytest.approx(theirs.kwh, rel=1e-12, abs=1e-12)
        assert mine.full_power_kwh == pytest.approx(theirs.full_power_kwh, rel=1e-12)
        assert mine.historical_kwh == pytest.approx(theirs.historical_kwh, rel=1e-12)
        assert (mine.lit_hours, mine.lit_known_hours) == (theirs.lit_hours, theirs.lit_known_hours)
        assert (mine.covered_ms, mine.length_ms, mine.cabinets) == (
            theirs.covered_ms,
            theirs.length_ms,
            theirs.cabinets,
        )
        assert (mine.reset, mine.interpolated, mine.absurd) == (
            theirs.reset,
            theirs.interpolated,
            theirs.absurd,
        )
    probe = DeviceInput("cab", "Dijon", "lc1", "lighting", inside(relay_q, period))
    assert device_available_of_days("lc1", made) == device_available_ms(probe, period.start_ms, period.end_ms)


def _neighbours(quarters: list[Rollup], period: Period) -> tuple[Rollup | None, Rollup | None]:
    before = [r for r in quarters if r.bucket_ms < period.start_ms and r.counted > 0]
    after = [r for r in quarters if r.bucket_ms >= period.end_ms and r.counted > 0]
    return (before[-1] if before else None), (after[0] if after else None)


def test_a_row_that_does_not_read_is_computed_again() -> None:
    assert decode_day(b"\x00not msgpack") is None
    assert decode_day(encode_day(CabinetDay(lit_hours=2.5))) == CabinetDay(lit_hours=2.5)


def test_the_shape_changes_with_the_inventory() -> None:
    one = CabinetPlan(relays=(RELAY,), devices=(ProbedDevice("lc1", RELAY, "lighting"),))
    other = CabinetPlan(relays=(RELAY,), devices=(ProbedDevice("lc1", "lc1/power_w", "lighting"),))
    assert one.shape == CabinetPlan(one.relays, one.devices).shape
    assert one.shape != other.shape


def test_the_json_written_from_the_figures_is_the_models_json() -> None:
    samples = [Sample(START + k * 20 * 60_000, 1, k, 1000.0 + 37.5 * k, Quality.GOOD) for k in range(200)]
    period = kpi_period(START + 5 * QUARTER_MS, START + 2 * 24 * HOUR, PARIS, now_ms=START + 9 * 24 * HOUR)
    counter_q = quarters_of(samples, counter=True)
    energy = [
        cabinet_energy(
            CabinetEnergyInput(
                cab, town, [CounterQuarters(COUNTER, inside(counter_q, period))], rated_power_w=rated
            ),
            period,
        )
        for cab, town, rated in (("a", "Dijon", 900.0), ("b", None, None), ("c", "=cmd", 12.5))
    ]
    devices = [DeviceAvailability("a", "Dijon", "lc1", "lighting", 3_600_000)]
    episode = AlarmEpisode(
        id=1,
        cabinet="a",
        device="lc1",
        alarm="door_open",
        severity="warning",
        message="door",
        raised_ms=period.start_ms + 1000,
        acked_ms=period.start_ms + 61_000,
        acked_by="op",
        cleared_ms=None,
        assigned_to=None,
        assigned_ms=None,
        updated_ms=period.start_ms + 61_000,
        notes=(),
    )
    report = kpi_report(
        period, "Europe/Paris", cabinets=energy, devices=devices, episodes=[episode], towns={"a": "Dijon"}
    )
    assert json.loads(report_json(report)) == report_out(report).model_dump(mode="json")
    assert report.period.days[0].date == dt.date(2024, 3, 30)


def test_the_days_computed_are_read_as_runs_of_days_that_follow_one_another() -> None:
    from central.api.kpi_days import runs_of

    period = kpi_period(START, START + 5 * 24 * HOUR, PARIS, now_ms=START + 400 * 24 * HOUR)
    d = period.days
    assert runs_of([d[4], d[0], d[1]]) == [(d[0].start_ms, d[1].end_ms), (d[4].start_ms, d[4].end_ms)]
    assert runs_of([]) == []
