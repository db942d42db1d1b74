"""KPI figures (central.kpi) on fixtures with known answers, checked by hand in the comments.

Rollups are made by the store's own code (``central.store.rollups.summarise``) from readings, so
the figures are those a store would give.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import pytest

from central.kpi.availability import (
    DeviceInput,
    Outage,
    availability,
    device_availability,
    device_available_ms,
)
from central.kpi.delays import delays, nearest_rank
from central.kpi.energy import CabinetEnergyInput, CounterQuarters, cabinet_energy, is_relay
from central.kpi.opendata import feature_collection, town_points, valid_coordinates
from central.kpi.period import SETTLE_MS, PeriodError, kpi_period
from central.kpi.report import KpiReport, csv_cell, csv_table, energy_report
from central.kpi.traffic import controller_hours
from central.store.rollups import Sample, by_bucket, summarise
from central.store.rows import AlarmEpisode, Rollup
from protocols.fleet.messages import Scalar
from protocols.quality import Quality

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
MIN = 60_000
QUARTER = 15 * MIN
HOUR = 3_600_000
DAY = 24 * HOUR
MAY1 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
FAR = MAY1 + 400 * DAY  # "now", long after every period here
GOOD, BAD = int(Quality.GOOD), int(Quality.BAD)


def rollups(
    readings: Sequence[tuple[int, Scalar] | tuple[int, Scalar, int]], *, counter: bool = False
) -> list[Rollup]:
    """15-minute rollups of one point's readings (ts, value[, quality]), as a store keeps them."""
    samples = [Sample(r[0], 1, i, r[1], r[2] if len(r) == 3 else GOOD) for i, r in enumerate(readings)]  # type: ignore[misc]
    return [summarise(b, s, counter=counter) for b, s in sorted(by_bucket(samples, "15m").items())]


# -- period ------------------------------------------------------------------------------------------


def test_the_period_is_snapped_to_quarters_cut_at_now_and_into_local_days() -> None:
    period = kpi_period(MAY1 + 7 * MIN, MAY1 + DAY + 1, PARIS, now_ms=FAR)
    # 00:07 goes down to 00:00, 24:00:00.001 up to 24:15; Paris is UTC+2 in May: 02:00 local.
    assert (period.start_ms, period.end_ms) == (MAY1, MAY1 + DAY + QUARTER)
    assert [(d.date.isoformat(), d.length_ms // MIN, d.full_ms // HOUR) for d in period.days] == [
        ("2024-05-01", 22 * 60, 24),  # 00:00Z = 02:00 local -> 24:00 local: 22 h of the day
        ("2024-05-02", 2 * 60 + 15, 24),  # 00:00 local -> 02:15 local
    ]
    now = kpi_period(MAY1, MAY1 + DAY, UTC, now_ms=MAY1 + HOUR + 5 * MIN)
    assert now.end_ms == MAY1 + HOUR  # the quarter under way (01:00-01:15) is not complete
    settling = kpi_period(MAY1, MAY1 + DAY, UTC, now_ms=MAY1 + HOUR + SETTLE_MS - 1)
    assert settling.end_ms == MAY1 + 45 * MIN  # 00:45-01:00 ended less than a minute ago: in flight
    for start, end, field in [(MAY1, MAY1, "to"), (MAY1, MAY1 + 367 * DAY, "to"), (FAR, FAR + DAY, "from")]:
        with pytest.raises(PeriodError) as caught:
            kpi_period(start, end, UTC, now_ms=FAR)
        assert caught.value.field == field


# -- energy ------------------------------------------------------------------------------------------


def _cabinet_a() -> CabinetEnergyInput:
    counter = rollups(
        [
            (MAY1, 1000.0),
            (MAY1 + 1 * HOUR, 1500.0),  # +500
            (MAY1 + 2 * HOUR, 2000.0),  # +500
            (MAY1 + 3 * HOUR, 200.0),  # reset: the 200 counted since it count, what came before is lost
            (MAY1 + 4 * HOUR, 700.0),  # +500
            (MAY1 + DAY + 4 * HOUR, 12_700.0),  # a 24 h gap: +12 000 spread by time, 20 h on May 1
            (MAY1 + DAY + 5 * HOUR, 13_200.0),  # +500; nothing after 05:00 on May 2
        ],
        counter=True,
    )
    relay: list[tuple[int, Scalar]] = []
    for q in range(96):  # May 1: lit 00:00-06:00 (24 quarters), half of the 06:00 quarter, then off
        relay.append((MAY1 + q * QUARTER, q < 25))
    relay.append((MAY1 + 24 * QUARTER + 7 * MIN, False))  # the 06:00 quarter: True, False -> mean 0.5
    relay += [(MAY1 + DAY + q * QUARTER, True) for q in range(20)]  # May 2: lit 00:00-05:00, then no data
    return CabinetEnergyInput(
        cabinet="cab-a",
        town="Dijon",
        counters=[CounterQuarters("lc1/energy_wh", counter)],
        relays=[rollups(relay)],
        rated_power_w=2000.0,
        baseline_kwh_per_day=20.0,
    )


def _cabinet_b() -> CabinetEnergyInput:
    # One reading at the start and the next one after the period (its neighbour): 4800 Wh over 48 h.
    counter = rollups([(MAY1, 0.0)], counter=True)
    [after] = rollups([(MAY1 + 2 * DAY, 4800.0)], counter=True)
    return CabinetEnergyInput(
        cabinet="cab-b",
        town="Chenôve",
        counters=[CounterQuarters("m/import_energy_wh", counter, after=after)],
        baseline_kwh_per_day=3.0,
    )


def test_energy_with_a_counter_reset_and_a_gap_against_both_baselines() -> None:
    period = kpi_period(MAY1, MAY1 + 2 * DAY, UTC, now_ms=FAR)
    a = cabinet_energy(_cabinet_a(), period)
    day1, day2 = (d.figures for d in a.days)
    # May 1: 500 + 500 + 200 (after the reset) + 500 + 10 000 (20 h of the 24 h gap's 12 000) = 11 700 Wh
    assert day1.kwh == pytest.approx(11.7)
    # May 2: 2 000 (4 h of the gap) + 500 = 2 500 Wh
    assert day2.kwh == pytest.approx(2.5)
    assert (day1.reset, day1.interpolated, day2.reset, day2.interpolated) == (True, True, False, True)
    assert (a.resets, a.absurd) == (1, 0)
    assert day1.coverage == pytest.approx(1.0)
    assert day2.coverage == pytest.approx(5 / 24)  # readings account for 00:00-05:00 only
    # Hours lit: May 1 24 quarters + half a quarter = 6.125 h, all 96 quarters known; May 2 5 h of 5 known.
    assert (day1.lit_hours, day1.lit_known_hours) == (pytest.approx(6.125), pytest.approx(24.0))
    assert (day2.lit_hours, day2.lit_known_hours) == (pytest.approx(5.0), pytest.approx(5.0))
    # Full power: 2 000 W x 6.125 h = 12.25 kWh, and 2 000 W x 5 h = 10 kWh.
    assert (day1.full_power_kwh, day2.full_power_kwh) == (pytest.approx(12.25), pytest.approx(10.0))
    assert day1.full_power_saved_pct == pytest.approx((12.25 - 11.7) / 12.25 * 100)  # 4.49 %
    total = a.total
    assert total.kwh == pytest.approx(14.2)
    assert total.full_power_kwh == pytest.approx(22.25)
    assert total.full_power_saved_pct == pytest.approx((22.25 - 14.2) / 22.25 * 100)  # 36.18 %
    # Historical: 20 kWh a day x 2 days = 40 kWh; (40 - 14.2) / 40 = 64.5 %
    assert total.historical_kwh == pytest.approx(40.0)
    assert total.historical_saved_pct == pytest.approx(64.5)


def test_energy_is_summed_per_town_and_each_baseline_compares_its_own_cabinets() -> None:
    period = kpi_period(MAY1, MAY1 + 2 * DAY, UTC, now_ms=FAR)
    report = energy_report([cabinet_energy(c, period) for c in (_cabinet_b(), _cabinet_a())], period)
    assert [c.cabinet for c in report.cabinets] == ["cab-a", "cab-b"]
    chenove, dijon = report.towns
    assert (chenove.town, dijon.town) == ("Chenôve", "Dijon")
    # cab-b: 4 800 Wh over 48 h, all inside: 2.4 kWh a day, interpolated; no relay, no rated power.
    assert [d.figures.kwh for d in chenove.days] == [pytest.approx(2.4), pytest.approx(2.4)]
    assert chenove.total.full_power_kwh is None and chenove.total.full_power_saved_pct is None
    assert chenove.total.historical_saved_pct == pytest.approx((6 - 4.8) / 6 * 100)  # 20 %
    total = report.total.total
    assert total.kwh == pytest.approx(14.2 + 4.8)  # 19 kWh
    # Full power is cab-a's only: 22.25 kWh against cab-a's 14.2, not against 19.
    assert (total.full_power_kwh, total.full_power_compared_kwh) == (
        pytest.approx(22.25),
        pytest.approx(14.2),
    )
    # Historical: 40 + 6 = 46 kWh against 19 kWh: 58.70 %
    assert total.historical_saved_pct == pytest.approx((46 - 19) / 46 * 100)
    assert report.total.days[0].figures.kwh == pytest.approx(11.7 + 2.4)


def test_relay_points_are_found_by_the_profiles_names() -> None:
    assert [
        is_relay(p) for p in ("lc1/relay", "lc1/relay_c3", "lc1/relay_state_x", "lc1/relays", "lc1/power_w")
    ] == [
        True,
        True,
        True,
        False,
        False,
    ]


# -- availability ------------------------------------------------------------------------------------


def test_availability_with_an_outage_silence_and_bad_readings() -> None:
    start, end = MAY1, MAY1 + 2 * HOUR  # 8 quarters, 120 min
    mode: list[tuple[int, Scalar] | tuple[int, Scalar, int]] = []
    for q in (0, 1, 2, 3, 6):
        mode.append((start + q * QUARTER + MIN, "normal"))
    mode.append((start + 7 * QUARTER + MIN, None, BAD))  # quarter 7: the controller did not answer
    tc1 = DeviceInput(
        "cab-a",
        "Dijon",
        "tc1",
        "traffic_controller",
        rollups(mode),
        [Outage(start + 90 * MIN, start + 100 * MIN)],
    )
    # Quarters 0-3 good: 60 min. 4-5 (01:00-01:30): nothing arrived: 0. Quarter 6 read good, but the
    # device_lost episode 01:30-01:40 takes 10 of its 15 min: 5 min. Quarter 7 bad: 0. 65 of 120 min.
    assert device_available_ms(tc1, start, end) == 65 * MIN
    power: list[tuple[int, Scalar] | tuple[int, Scalar, int]] = []
    for q in range(8):
        for k in range(3):
            bad = q == 2 and k > 0  # quarter 2: 1 good reading of 3
            power.append((start + q * QUARTER + k * 5 * MIN, None if bad else 100.0, BAD if bad else GOOD))
    lc1 = DeviceInput("cab-a", "Dijon", "lc1", "lighting", rollups(power))
    # 7 quarters x 15 min + 1/3 x 15 min = 105 + 5 = 110 min
    assert device_available_ms(lc1, start, end) == 110 * MIN
    reachable = [(start + q * QUARTER, True) for q in range(8)]
    cam1 = DeviceInput("cab-b", None, "cam1", "camera", rollups(reachable), [Outage(start + HOUR, None)])
    # Lost from 01:00 and never back: 60 of 120 min.
    assert device_available_ms(cam1, start, end) == 60 * MIN

    report = availability([device_availability(d, start, end) for d in (tc1, lc1, cam1)], end - start)
    shares = {name: f.share for name, f in report.by_class.items()}
    assert shares == {
        "lighting": pytest.approx(110 / 120),  # 91.67 %
        "traffic_controller": pytest.approx(65 / 120),  # 54.17 %
        "camera": pytest.approx(60 / 120),  # 50 %
    }
    assert [(k, f.devices, f.available_ms // MIN) for k, f in report.by_town.items()] == [
        (("Dijon", "lighting"), 1, 110),
        (("Dijon", "traffic_controller"), 1, 65),
        ((None, "camera"), 1, 60),  # not registered: no town, last
    ]


# -- delays ------------------------------------------------------------------------------------------

T10 = MAY1 + 10 * HOUR


def episode(
    id: int, raised: int, *, acked: int | None = None, cleared: int | None = None, severity: str = "warning",
    cabinet: str = "cab-a", alarm: str = "door_open",
) -> AlarmEpisode:  # fmt: skip
    return AlarmEpisode(
        id,
        cabinet,
        "lc1",
        alarm,
        severity,
        "",
        raised,
        cleared,
        acked,
        "op" if acked else None,
        None,
        None,
        raised,
    )


def test_delays_of_two_episodes_of_one_alarm_are_two_figures() -> None:
    door = [
        # A door opened twice: 10 s then 18 s, each its own episode (not one 5 min 18 s alarm).
        episode(1, T10, acked=T10 + 120_000, cleared=T10 + 10_000),
        episode(2, T10 + 300_000, cleared=T10 + 318_000),  # not acknowledged
    ]
    report = delays(door, {"cab-a": "Dijon"}, MAY1, MAY1 + DAY)
    warning = report.by_severity["warning"]
    assert (warning.episodes, sorted(warning.to_clear_s), warning.to_ack_s) == (2, [10.0, 18.0], [120.0])
    # Nearest rank of n = 2: median rank ceil(0.5 x 2) = 1 -> 10 s; p90 rank ceil(0.9 x 2) = 2 -> 18 s.
    assert (warning.percentile("clear", 50), warning.percentile("clear", 90)) == (10.0, 18.0)
    assert (warning.percentile("ack", 50), warning.percentile("ack", 90)) == (120.0, 120.0)
    assert list(report.by_town) == ["Dijon"]


def test_delay_percentiles_are_nearest_rank_per_severity_and_town() -> None:
    acks_s = [60, 30, 300, 120, 90, 45, 600, 15, 240, 75]  # sorted: 15 30 45 60 75 90 120 240 300 600
    critical = [
        episode(10 + i, T10 + i * HOUR, acked=T10 + i * HOUR + s * 1000, severity="critical", cabinet="cab-b")
        for i, s in enumerate(acks_s)
    ]
    outside = [
        episode(90, MAY1 - 1, acked=MAY1 + 5000, severity="critical"),  # raised before the period
        episode(91, MAY1 + DAY, acked=MAY1 + DAY + 5000, severity="critical"),  # raised at its end
    ]
    # Cleared "before" it was raised (the cabinet's clock against central's): counts as 0 s.
    skewed = [episode(92, T10, cleared=T10 - 2000, severity="info", cabinet="cab-x")]
    report = delays([*critical, *outside, *skewed, critical[0]], {"cab-b": "Chenôve"}, MAY1, MAY1 + DAY)
    figures = report.by_severity["critical"]
    # n = 10 (the duplicate of id 10 counts once): median rank 5 -> 75 s; p90 rank 9 -> 300 s.
    assert (figures.episodes, figures.percentile("ack", 50), figures.percentile("ack", 90)) == (
        10,
        75.0,
        300.0,
    )
    assert figures.to_clear_s == [] and figures.percentile("clear", 50) is None
    assert report.by_severity["info"].to_clear_s == [0.0]
    assert report.total.episodes == 11
    assert list(report.by_town) == ["Chenôve", None]
    assert report.by_town_severity[("Chenôve", "critical")].episodes == 10
    assert nearest_rank([1.0, 2.0, 3.0], 100) == 3.0
    with pytest.raises(ValueError, match="percentile"):
        nearest_rank([1.0], 0)


# -- traffic controllers -----------------------------------------------------------------------------


def test_traffic_controller_hours_per_state_at_quarter_resolution() -> None:
    period = kpi_period(MAY1, MAY1 + DAY, UTC, now_ms=FAR)
    mode: list[tuple[int, Scalar] | tuple[int, Scalar, int]] = [
        (MAY1 + q * QUARTER, "normal") for q in range(40)
    ]
    mode += [(MAY1 + q * QUARTER, "flashing") for q in range(40, 48)]  # 2 h flashing
    mode += [(MAY1 + q * QUARTER, "dark") for q in range(48, 52)]  # 1 h dark
    mode += [(MAY1 + 52 * QUARTER, "normal"), (MAY1 + 52 * QUARTER + MIN, None, BAD)]  # last reading bad
    fault = [(MAY1 + q * QUARTER, q in (0, 1)) for q in range(52)]  # faulty in the first 2 quarters
    [day] = controller_hours(rollups(mode), rollups(fault), period.days)
    # normal: 40 quarters minus the 2 faulty = 38 x 0.25 = 9.5 h; fault 0.5 h; flashing 2 h; dark 1 h;
    # unknown: 24 - 13 = 11 h (the quarter whose last reading was bad, and 43 quarters without data).
    assert day.hours == pytest.approx(
        {
            "normal": 9.5,
            "flashing": 2.0,
            "dark": 1.0,
            "manual": 0.0,
            "fault": 0.5,
            "other": 0.0,
            "unknown": 11.0,
        }
    )


# -- CSV ---------------------------------------------------------------------------------------------


def test_csv_tables_parse_with_one_header_and_the_documented_columns() -> None:
    period = kpi_period(MAY1, MAY1 + 2 * DAY, UTC, now_ms=FAR)
    energy = energy_report([cabinet_energy(c, period) for c in (_cabinet_a(), _cabinet_b())], period)
    report = KpiReport(period, "UTC", energy, availability([], period.length_ms), delays([], {}, 0, 1))
    header, rows = csv_table(report, "energy")
    text = io.StringIO()
    csv.writer(text).writerows([header, *rows])
    parsed = list(csv.DictReader(io.StringIO(text.getvalue())))
    # 2 cabinets x (total + 2 days) + 2 towns x 3 + total x 3 = 15 rows
    assert len(parsed) == 15
    totals = [r for r in parsed if r["scope"] == "total" and r["date"] == ""]
    assert [float(totals[0]["kwh"]), float(totals[0]["historical_saved_pct"])] == [19.0, 58.7]
    cab_b = next(r for r in parsed if r["cabinet"] == "cab-b" and r["date"] == "")
    assert (cab_b["full_power_kwh"], cab_b["interpolated"]) == ("", "1")
    header, rows = csv_table(report, "availability")
    assert [r[2] for r in rows] == ["lighting", "traffic_controller", "camera"]
    header, rows = csv_table(report, "delays")
    assert list(rows) == [("total", None, None, 0, 0, None, None, 0, None, None)]


def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_is_quoted() -> None:
    cells = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "Dijon", None, -5.25, 3]
    assert [csv_cell(c) for c in cells] == [
        '\'=HYPERLINK("http://x")',
        "'+1",
        "'-2",
        "'@SUM(A1)",
        "Dijon",
        "",
        -5.25,
        3,
    ]


def test_open_data_points_are_lon_lat_means_and_bad_coordinates_are_no_point() -> None:
    dijon = [valid_coordinates(47.3, 5.0), valid_coordinates(47.4, 5.1), None]
    # The mean of (5.0, 47.3) and (5.1, 47.4), [lon, lat]: (5.05, 47.35); a cabinet without any is left out.
    assert town_points([("Dijon", p) for p in dijon]) == {"Dijon": (5.05, 47.35)}
    wrong = [(91.0, 5.0), (47.0, 181.0), (float("nan"), 5.0), (47.0, None)]
    assert [valid_coordinates(*c) for c in wrong] == [None, None, None, None]
    doc = feature_collection(
        [{"town": "Dijon", "kwh": 1.5}, {"town": "Nowhere", "kwh": 0.0}], {"Dijon": (5.05, 47.35)}, "town"
    )
    assert [f["geometry"] for f in doc["features"]] == [{"type": "Point", "coordinates": [5.05, 47.35]}, None]
