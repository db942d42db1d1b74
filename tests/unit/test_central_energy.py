"""Daily energy from cumulative counters (central.energy): examples and properties."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.energy import EnergySettings, Sample, local_days, point_energy
from protocols.quality import Quality

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
HOUR = 3_600_000
GOOD, BAD, UNCERTAIN = int(Quality.GOOD), int(Quality.BAD), int(Quality.UNCERTAIN)
DAYS = local_days(dt.date(2024, 3, 29), dt.date(2024, 4, 2), PARIS)  # includes a 23 h day
T0 = DAYS[0].start_ms


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def test_local_days_follow_daylight_saving_time() -> None:
    spring = local_days(dt.date(2024, 3, 30), dt.date(2024, 4, 1), PARIS)
    assert [(d.end_ms - d.start_ms) // HOUR for d in spring] == [24, 23, 24]
    autumn = local_days(dt.date(2024, 10, 27), dt.date(2024, 10, 27), PARIS)
    assert [(d.end_ms - d.start_ms) // HOUR for d in autumn] == [25]
    [day] = local_days(dt.date(2024, 5, 1), dt.date(2024, 5, 1), PARIS)
    assert day.start_ms == 1_714_514_400_000  # 2024-04-30T22:00:00Z
    with pytest.raises(ValueError, match="before the first"):
        local_days(dt.date(2024, 5, 2), dt.date(2024, 5, 1), UTC)


def test_deltas_within_a_day_add_up() -> None:
    readings = [(T0 + HOUR, 100.0, GOOD), (T0 + 2 * HOUR, 150.0, GOOD), (T0 + 3 * HOUR, 175, GOOD)]
    energy = point_energy(readings, DAYS)
    assert energy.days[0].wh == 75.0
    assert energy.days[0].covered_ms == 2 * HOUR
    assert not (energy.days[0].interpolated or energy.days[0].reset or energy.days[0].absurd)
    assert energy.total_wh == 75.0


def test_a_gap_across_midnight_is_split_by_time_and_flagged() -> None:
    midnight = DAYS[1].start_ms
    readings = [(midnight - 6 * HOUR, 0.0, GOOD), (midnight + 2 * HOUR, 800.0, GOOD)]
    energy = point_energy(readings, DAYS)
    assert [d.wh for d in energy.days[:2]] == [600.0, 200.0]
    assert [d.interpolated for d in energy.days[:3]] == [True, True, False]


def test_the_short_interval_of_regular_polling_across_midnight_is_split_but_not_flagged() -> None:
    midnight = DAYS[1].start_ms
    readings = [(midnight - 5_000, 10.0, GOOD), (midnight + 5_000, 12.0, GOOD)]
    energy = point_energy(readings, DAYS)
    assert [d.wh for d in energy.days[:2]] == [1.0, 1.0]
    assert not any(d.interpolated for d in energy.days)


def test_a_reset_counts_the_value_after_it_and_is_flagged() -> None:
    readings = [
        (T0, 1_000.0, GOOD),
        (T0 + HOUR, 1_500.0, GOOD),
        (T0 + 2 * HOUR, 30.0, GOOD),
        (T0 + 3 * HOUR, 80.0, GOOD),
    ]
    energy = point_energy(readings, DAYS)
    assert energy.days[0].wh == 500.0 + 30.0 + 50.0
    assert (energy.resets, energy.days[0].reset) == (1, True)


def test_an_absurd_jump_is_left_out_and_flagged() -> None:
    readings = [
        (T0, 0.0, GOOD),
        (T0 + HOUR, 100.0, GOOD),
        (T0 + HOUR + 1_000, 1e9, GOOD),
        (T0 + 2 * HOUR, 1e9 + 50, GOOD),
    ]
    energy = point_energy(readings, DAYS, EnergySettings(max_power_w=100_000))
    assert energy.days[0].wh == 150.0
    assert (energy.absurd, energy.days[0].absurd, energy.days[1].absurd) == (1, True, False)
    assert energy.days[0].covered_ms == 2 * HOUR - 1_000  # the absurd second is not accounted for


def test_a_jump_at_the_same_instant_is_absurd() -> None:
    energy = point_energy([(T0, 0.0, GOOD), (T0, 5.0, GOOD), (T0, 5.0, GOOD)], DAYS)
    assert (energy.absurd, energy.total_wh, energy.days[0].absurd) == (1, 0.0, True)


def test_bad_readings_and_values_that_are_not_counters_are_skipped() -> None:
    readings: list[Sample] = [
        (T0, 10.0, GOOD),
        (T0 + 1, 999.0, BAD),
        (T0 + 2, 999.0, UNCERTAIN),
        (T0 + 3, "12", GOOD),
        (T0 + 4, True, GOOD),
        (T0 + 5, None, GOOD),
        (T0 + 6, math.nan, GOOD),
        (T0 + 7, -4.0, GOOD),
        (T0 + HOUR, 20, GOOD),
    ]
    energy = point_energy(readings, DAYS)
    assert (energy.total_wh, energy.skipped, energy.readings, energy.resets) == (10.0, 7, 9, 0)


def test_readings_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match="sorted"):
        point_energy([(T0 + 2, 1.0, GOOD), (T0 + 1, 2.0, GOOD)], DAYS)


def test_settings_and_days_are_checked() -> None:
    with pytest.raises(ValueError, match="max_power_w"):
        EnergySettings(max_power_w=0)
    with pytest.raises(ValueError, match="contiguous"):
        point_energy([], [DAYS[0], DAYS[2]])


def test_only_the_share_inside_the_days_counts() -> None:
    [day] = local_days(dt.date(2024, 5, 1), dt.date(2024, 5, 1), UTC)
    readings = [(day.start_ms - 12 * HOUR, 0.0, GOOD), (day.end_ms + 12 * HOUR, 480.0, GOOD)]
    energy = point_energy(readings, [day])
    assert (energy.total_wh, energy.days[0].covered_ms, energy.days[0].interpolated) == (
        240.0,
        24 * HOUR,
        True,
    )


# -- properties ---------------------------------------------------------------------------------------

gaps = st.integers(min_value=1, max_value=40 * HOUR)
fractions = st.floats(min_value=0, max_value=1, allow_nan=False)


@st.composite
def counter_series(draw: st.DrawFn, *, max_power_w: float = 100_000.0) -> list[Sample]:
    """A monotone counter, readings inside DAYS, never faster than max_power_w."""
    start = draw(st.integers(min_value=T0, max_value=T0 + 24 * HOUR))
    value = draw(st.floats(min_value=0, max_value=1e9, allow_nan=False))
    series: list[Sample] = [(start, value, GOOD)]
    for gap, fraction in draw(st.lists(st.tuples(gaps, fractions), max_size=30)):
        ts = series[-1][0] + gap
        if ts > DAYS[-1].end_ms:
            break
        value += fraction * max_power_w * gap / HOUR * 0.999
        series.append((ts, value, GOOD))
    return series


@given(counter_series())
def test_without_resets_or_glitches_the_days_add_up_to_the_counters_increase(series: list[Sample]) -> None:
    energy = point_energy(series, DAYS)
    first, last = float(series[0][1]), float(series[-1][1])  # type: ignore[arg-type]
    assert math.isclose(energy.total_wh, last - first, rel_tol=1e-9, abs_tol=1e-3)
    assert (energy.resets, energy.absurd, energy.skipped) == (0, 0, 0)
    assert sum(d.covered_ms for d in energy.days) == series[-1][0] - series[0][0]


@given(
    t0=st.integers(min_value=T0, max_value=DAYS[-1].end_ms),
    length=st.integers(min_value=1, max_value=5 * 24 * HOUR),
    wh=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_splitting_an_interval_conserves_its_energy_in_proportion_to_time(
    t0: int, length: int, wh: float
) -> None:
    t1 = min(t0 + length, DAYS[-1].end_ms)
    if t1 == t0:
        return
    energy = point_energy([(t0, 0.0, GOOD), (t1, wh, GOOD)], DAYS, EnergySettings(max_power_w=1e15))
    assert math.isclose(energy.total_wh, wh, rel_tol=1e-9, abs_tol=1e-9)
    for day, result in zip(DAYS, energy.days, strict=True):
        overlap = max(0, min(t1, day.end_ms) - max(t0, day.start_ms))
        assert math.isclose(result.wh, wh * overlap / (t1 - t0), rel_tol=1e-9, abs_tol=1e-9)
        assert result.covered_ms == overlap
        crosses = t0 < day.start_ms < t1 or t0 < day.end_ms < t1
        assert result.interpolated == (overlap > 0 and crosses and t1 - t0 > 15 * 60 * 1000)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=6 * HOUR),
            st.floats(min_value=0, max_value=1e6, allow_nan=False),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_every_drop_is_a_reset_that_counts_the_value_after_it(steps: list[tuple[int, float]]) -> None:
    series: list[Sample] = [(T0, 500.0, GOOD)]
    expected, drops = 0.0, 0
    for gap, value in steps:
        before = float(series[-1][1])  # type: ignore[arg-type]
        drops += value < before
        expected += value if value < before else value - before
        series.append((series[-1][0] + gap, value, GOOD))
    energy = point_energy(series, DAYS, EnergySettings(max_power_w=1e15))
    assert math.isclose(energy.total_wh, expected, rel_tol=1e-9, abs_tol=1e-6)
    assert energy.resets == drops
    assert any(d.reset for d in energy.days) == (drops > 0)


@given(
    counter_series(),
    st.lists(st.tuples(st.integers(min_value=0, max_value=29), st.sampled_from([BAD, UNCERTAIN]))),
)
@settings(max_examples=50)
def test_bad_readings_change_nothing_but_the_skipped_count(
    series: list[Sample], bad: list[tuple[int, int]]
) -> None:
    with_bad = list(series)
    for position, quality in bad:
        i = min(position, len(with_bad) - 1)
        with_bad.insert(i, (with_bad[i][0], 1e12, quality))  # same time as a good reading: still sorted
    clean, noisy = point_energy(series, DAYS), point_energy(with_bad, DAYS)
    assert noisy.skipped == len(bad)
    assert [d.wh for d in noisy.days] == [d.wh for d in clean.days]


@given(counter_series(max_power_w=1_000.0), st.integers(min_value=1, max_value=10))
@settings(max_examples=50)
def test_a_jump_beyond_max_power_is_never_counted(series: list[Sample], factor: int) -> None:
    ts, value, _ = series[-1]
    jump = (ts + HOUR, float(value) + 1_000.0 * (1 + factor), GOOD)  # type: ignore[arg-type]
    if jump[0] > DAYS[-1].end_ms:
        return
    before, after = (
        point_energy(series, DAYS, EnergySettings(1_000.0)),
        point_energy([*series, jump], DAYS, EnergySettings(1_000.0)),
    )
    assert close(after.total_wh, before.total_wh)
    assert after.absurd == 1
