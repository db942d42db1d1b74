"""Switching at dusk and dawn: several latitudes and dates, polar night and midnight sun, the right evening.

References: astral's own per-date ``sunset``/``sunrise``/``dusk``/``dawn`` (a different code path from the
elevation search the schedule uses), and a published almanac (Ouest-France's solar calendar for Dijon).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest
from astral import Observer
from astral.sun import dawn, dusk, sunrise, sunset

from edge_agent.lighting import (
    HORIZON,
    CalendarException,
    LightingSchedule,
    SwitchOff,
    SwitchOn,
    desired_state,
    parse_schedule,
    transitions,
)
from edge_agent.lighting.sun import SolarClock

TOLERANCE = timedelta(minutes=2)
SECOND = timedelta(seconds=1)

SITES = {
    "dijon": (47.32, 5.04, "Europe/Paris"),
    "helsinki": (60.17, 24.94, "Europe/Helsinki"),
    "quito": (-0.18, -78.47, "America/Guayaquil"),
    "tromso": (69.65, 18.96, "Europe/Oslo"),
    "sydney": (-33.87, 151.21, "Australia/Sydney"),
    "apia": (-13.83, -171.76, "Pacific/Apia"),  # UTC+13, west longitude: local date ahead of the sun
    "kashgar": (39.47, 75.99, "Asia/Shanghai"),  # UTC+8 at 76E: sunset near local midnight
    "reykjavik": (64.15, -21.94, "Atlantic/Reykjavik"),  # June sunset after local midnight
}

AstralEvent = Callable[..., datetime]
EVENTS: dict[str, tuple[str, str, AstralEvent, AstralEvent]] = {
    "sun": ("sunset", "sunrise", sunset, sunrise),
    "civil": ("civil_dusk", "civil_dawn", dusk, dawn),
}


def schedule_at(
    site: str, events: str = "sun", on_min: int = 10, off_min: int = -5, **extra: object
) -> LightingSchedule:
    latitude, longitude, zone = SITES[site]
    on_event, off_event, _, _ = EVENTS[events]
    return parse_schedule(
        {
            "latitude": latitude,
            "longitude": longitude,
            "timezone": zone,
            "switch_on": SwitchOn(event=on_event, offset_min=on_min),
            "switch_off": SwitchOff(event=off_event, offset_min=off_min),
            **extra,
        }
    )


def assert_switches_at(schedule: LightingSchedule, instant: datetime, *, on: bool) -> None:
    """Just before ``instant`` the lights are the other way; from ``instant`` they are ``on``."""
    assert desired_state(schedule, instant - SECOND).on is not on
    after = desired_state(schedule, instant)
    assert after.on is on
    assert after.since == instant


NIGHTS = [
    ("dijon", date(2026, 3, 20), "sun"),
    ("dijon", date(2026, 6, 21), "sun"),
    ("dijon", date(2026, 6, 21), "civil"),
    ("dijon", date(2026, 12, 21), "civil"),
    ("helsinki", date(2026, 1, 15), "sun"),
    ("helsinki", date(2026, 1, 15), "civil"),
    ("helsinki", date(2026, 6, 21), "sun"),
    ("helsinki", date(2026, 9, 23), "civil"),
    ("quito", date(2026, 3, 20), "sun"),
    ("quito", date(2026, 12, 21), "civil"),
    ("tromso", date(2026, 3, 20), "sun"),
    ("tromso", date(2026, 10, 1), "civil"),
    ("sydney", date(2026, 6, 21), "sun"),
    ("sydney", date(2026, 12, 21), "civil"),
    ("sydney", date(2026, 4, 4), "sun"),  # daylight saving ends in Sydney during the night of 4-5 April
    ("apia", date(2026, 7, 10), "sun"),
    ("kashgar", date(2026, 6, 21), "sun"),
]


@pytest.mark.parametrize(("site", "evening", "events"), NIGHTS)
def test_switch_on_and_off_match_astral_within_two_minutes(site: str, evening: date, events: str) -> None:
    schedule = schedule_at(site, events, on_min=10, off_min=-5)
    _, _, dusk_of, dawn_of = EVENTS[events]
    observer, zone = Observer(schedule.latitude, schedule.longitude), schedule.zone
    expected_on = dusk_of(observer, evening, tzinfo=zone) + timedelta(minutes=10)
    expected_off = dawn_of(observer, evening + timedelta(days=1), tzinfo=zone) - timedelta(minutes=5)

    changes = transitions(schedule, expected_on - timedelta(minutes=30), expected_off + timedelta(minutes=30))

    assert [(state.on, state.reason) for _, state in changes] == [
        (False, "day"),
        (True, schedule.night_reason),
        (False, "day"),
    ]
    (switch_on, _), (switch_off, _) = changes[1], changes[2]
    assert abs(switch_on - expected_on) <= TOLERANCE
    assert abs(switch_off - expected_off) <= TOLERANCE
    assert_switches_at(schedule, switch_on, on=True)
    assert_switches_at(schedule, switch_off, on=False)
    assert switch_on.astimezone(zone).date() == evening  # the night starts on its evening's date


@pytest.mark.parametrize(
    ("day", "sunrise_local", "sunset_local"),
    [(date(2025, 9, 1), time(6, 59), time(20, 20)), (date(2025, 9, 7), time(7, 7), time(20, 8))],
)
def test_dijon_matches_a_published_almanac(day: date, sunrise_local: time, sunset_local: time) -> None:
    """Ouest-France's solar calendar for Dijon, September 2025 (CEST), to the minute."""
    schedule = schedule_at("dijon", on_min=0, off_min=0)
    zone = schedule.zone
    changes = transitions(
        schedule, datetime.combine(day, time(0), zone), datetime.combine(day, time(23), zone)
    )
    assert [state.on for _, state in changes] == [True, False, True]
    for (instant, _), published in zip(changes[1:], (sunrise_local, sunset_local), strict=True):
        assert abs(instant - datetime.combine(day, published, zone)) <= TOLERANCE


def test_quito_nights_last_about_twelve_hours_all_year() -> None:
    schedule = schedule_at("quito", on_min=0, off_min=0)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    changes = transitions(schedule, start, start + timedelta(days=365))[1:]
    nights = [b - a for (a, sa), (b, _) in itertools.pairwise(changes) if sa.on]
    assert len(nights) == 364  # complete nights: the last one ends in 2027
    assert all(timedelta(hours=11, minutes=40) < n < timedelta(hours=12, minutes=5) for n in nights)


def test_tromso_polar_night_keeps_the_lights_on_day_after_day() -> None:
    schedule = schedule_at("tromso", "sun")
    start = datetime(2026, 12, 10, tzinfo=UTC)
    changes = transitions(schedule, start, start + timedelta(days=20))
    assert len(changes) == 1
    _, state = changes[0]
    assert (state.on, state.level_pct, state.reason) == (True, 100, schedule.night_reason)
    noon_on_solstice = datetime(2026, 12, 21, 10, 45, tzinfo=UTC)
    solstice = desired_state(schedule, noon_on_solstice)
    assert solstice.on
    assert solstice.since is None  # it has been night for longer than the horizon
    assert solstice.next_change == noon_on_solstice + HORIZON  # nothing changes: look again then


def test_tromso_enters_polar_night_after_days_of_shrinking_daylight() -> None:
    schedule = schedule_at("tromso", "sun")
    start = datetime(2026, 11, 15, tzinfo=UTC)
    changes = transitions(schedule, start, datetime(2026, 12, 10, tzinfo=UTC))
    days = [(a, b) for (a, sa), (b, _) in itertools.pairwise(changes) if not sa.on]
    assert len(days) >= 10
    assert all(b - a < timedelta(hours=5) for a, b in days)
    last_day_ends = days[-1][1]
    assert date(2026, 11, 25) <= last_day_ends.date() <= date(2026, 11, 28)
    assert changes[-1][1].on


def test_tromso_civil_twilight_at_noon_still_gives_a_short_dark_free_spell_in_december() -> None:
    schedule = schedule_at("tromso", "civil", on_min=0, off_min=0)
    observer, zone = Observer(schedule.latitude, schedule.longitude), schedule.zone
    solstice = date(2026, 12, 21)
    off_at = desired_state(schedule, datetime(2026, 12, 21, 6, tzinfo=UTC)).next_change
    on_at = desired_state(schedule, off_at).next_change
    assert abs(off_at - dawn(observer, solstice, tzinfo=zone)) <= TOLERANCE
    assert abs(on_at - dusk(observer, solstice, tzinfo=zone)) <= TOLERANCE
    assert not desired_state(schedule, datetime(2026, 12, 21, 10, 45, tzinfo=UTC)).on


def test_tromso_midnight_sun_keeps_the_lights_off() -> None:
    schedule = schedule_at("tromso", "civil")
    start = datetime(2026, 6, 10, tzinfo=UTC)
    changes = transitions(schedule, start, start + timedelta(days=20))
    assert [(s.on, s.level_pct, s.reason) for _, s in changes] == [(False, 0, "day")]
    assert changes[0][1].since is None


@pytest.mark.parametrize(
    ("site", "earliest", "latest"), [("apia", time(17), time(20)), ("kashgar", time(20), time(23, 59))]
)
def test_far_from_the_zone_meridian_each_local_evening_gets_its_own_night(
    site: str, earliest: time, latest: time
) -> None:
    schedule = schedule_at(site)
    zone = schedule.zone
    first = date(2026, 6, 1)
    changes = transitions(
        schedule,
        datetime.combine(first, time(12), zone),
        datetime.combine(first, time(12), zone) + timedelta(days=7),
    )
    switch_ons = [t.astimezone(zone) for t, state in changes[1:] if state.on]
    assert [t.date() for t in switch_ons] == [first + timedelta(days=n) for n in range(7)]
    assert all(earliest <= t.time() <= latest for t in switch_ons)


def test_a_sunset_after_local_midnight_belongs_to_the_previous_evening() -> None:
    """In Reykjavik in June the sun sets around 00:04 local time: that night is the 20th's."""
    base = schedule_at("reykjavik", "sun")
    switch_on = desired_state(base, datetime(2026, 6, 20, 20, tzinfo=UTC)).next_change
    assert datetime(2026, 6, 21, 0, 5, tzinfo=UTC) < switch_on < datetime(2026, 6, 21, 0, 30, tzinfo=UTC)

    off_on_20th = msgspec.structs.replace(
        base, exceptions=(CalendarException(date=date(2026, 6, 20), mode="off"),)
    )
    state = desired_state(off_on_20th, switch_on + timedelta(minutes=5))
    assert (state.on, state.reason) == (False, "exception 2026-06-20")

    off_on_21st = msgspec.structs.replace(
        base, exceptions=(CalendarException(date=date(2026, 6, 21), mode="off"),)
    )
    assert desired_state(off_on_21st, switch_on + timedelta(minutes=5)).on
    next_night = switch_on + timedelta(days=1, minutes=5)
    assert desired_state(off_on_21st, next_night).reason == "exception 2026-06-21"


def test_solar_noon_and_elevation_come_from_astral() -> None:
    clock = SolarClock(47.32, 5.04)
    noon = datetime.fromtimestamp(clock.noon(date(2026, 6, 21)), UTC)
    assert noon.astimezone(ZoneInfo("Europe/Paris")).time().replace(second=0) == time(13, 41)
    assert clock.elevation(int(noon.timestamp())) == pytest.approx(90 - 47.32 + 23.44, abs=0.05)
