"""The LightingSchedule model: its JSON shape, defaults, and errors naming the field and what was expected."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from typing import Any

import pytest

from edge_agent.lighting import (
    CalendarException,
    DimmingPeriod,
    Override,
    ScheduleError,
    parse_schedule,
)
from protocols.fleet import FleetError
from protocols.fleet.schedule import schedule_builtins, schedule_json

EXAMPLE = {
    "latitude": 47.32,
    "longitude": 5.04,
    "timezone": "Europe/Paris",
    "switch_on": {"event": "civil_dusk", "offset_min": 10},
    "switch_off": {"event": "civil_dawn", "offset_min": -5},
    "default_level_pct": 100,
    "dimming": [{"start": "22:00", "end": "05:00", "level_pct": 70}],
    "exceptions": [
        {"date": "2026-12-24", "until": None, "mode": "level", "level_pct": 100, "note": "festival"},
        {"date": "2026-07-14", "until": "2026-07-15", "mode": "off", "level_pct": None, "note": None},
    ],
    "override": {"level_pct": 0, "until": "2026-03-29T01:00:00Z", "issued_by": "ops"},
}


def minimal(**fields: Any) -> dict[str, Any]:
    return {"latitude": 47.32, "longitude": 5.04, "timezone": "Europe/Paris", **fields}


def problems(data: Any) -> dict[str, str]:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(data)
    return dict(caught.value.problems)


def test_json_round_trip_keeps_the_documented_shape() -> None:
    schedule = parse_schedule(json.dumps(EXAMPLE))
    assert schedule_builtins(schedule) == EXAMPLE
    assert parse_schedule(schedule_json(schedule)) == schedule
    assert parse_schedule(schedule_builtins(schedule)) == schedule


def test_fields_are_typed_values() -> None:
    schedule = parse_schedule(EXAMPLE)
    assert schedule.dimming[0].start == time(22, 0)
    assert schedule.dimming[0].crosses_midnight
    assert schedule.exceptions[1].last_date == date(2026, 7, 15)
    assert schedule.override is not None
    assert schedule.override.until == datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert schedule.zone.key == "Europe/Paris"


def test_defaults_switch_near_sunset_and_sunrise_at_full_level() -> None:
    schedule = parse_schedule(minimal())
    assert (schedule.switch_on.event, schedule.switch_on.offset_min) == ("sunset", 10)
    assert (schedule.switch_off.event, schedule.switch_off.offset_min) == ("sunrise", -10)
    assert schedule.default_level_pct == 100
    assert schedule.dimming == ()
    assert schedule.exceptions == ()
    assert schedule.override is None
    assert schedule.night_reason == "night (sunset+10min .. sunrise-10min)"


def test_schedule_is_frozen_and_with_override_makes_a_new_one() -> None:
    schedule = parse_schedule(minimal())
    with pytest.raises(AttributeError):
        schedule.default_level_pct = 50  # type: ignore[misc]
    override = Override(level_pct=30, until=datetime(2026, 1, 1, tzinfo=UTC))
    assert schedule.with_override(override).override == override
    assert schedule.override is None
    assert schedule.with_override(override).with_override(None) == schedule


def test_override_until_is_normalised_to_utc() -> None:
    schedule = parse_schedule(minimal(override={"level_pct": 50, "until": "2026-12-24T23:00:00+01:00"}))
    assert schedule.override is not None
    assert schedule.override.until == datetime(2026, 12, 24, 22, tzinfo=UTC)
    assert schedule.override.until.tzinfo is UTC
    assert schedule_builtins(schedule)["override"]["until"] == "2026-12-24T22:00:00Z"


def test_exception_levels_and_reasons() -> None:
    festival = CalendarException(date=date(2026, 12, 24), mode="level", level_pct=100, note="festival")
    burn_test = CalendarException(date=date(2026, 5, 4), until=date(2026, 5, 6), mode="on")
    dark = CalendarException(date=date(2026, 7, 14), mode="off")
    assert (festival.level, festival.reason) == (100, "exception 2026-12-24 festival")
    assert (burn_test.level, burn_test.reason) == (100, "exception 2026-05-04..2026-05-06")
    assert (dark.level, dark.reason) == (0, "exception 2026-07-14")


def test_dimming_period_minutes_cover_the_wall_clock_span() -> None:
    night = DimmingPeriod(start=time(22, 0), end=time(5, 0), level_pct=70)
    evening = DimmingPeriod(start=time(20, 0), end=time(21, 30), level_pct=80)
    assert len(night.minutes()) == 7 * 60
    assert len(evening.minutes()) == 90
    assert not night.minutes() & evening.minutes()


@pytest.mark.parametrize(
    ("fields", "where", "expected"),
    [
        ({"latitude": 91}, "latitude", "expected a number less than or equal to 90, got 91"),
        ({"longitude": -180.5}, "longitude", "greater than or equal to -180, got -180.5"),
        ({"latitude": "47.3"}, "latitude", "expected a number, got '47.3'"),
        ({"timezone": "Europe/Pariss"}, "timezone", "IANA time zone name such as 'Europe/Paris'"),
        ({"timezone": "../etc/passwd"}, "timezone", "IANA time zone name"),
        (
            {"switch_on": {"event": "dusk"}},
            "switch_on.event",
            "expected 'civil_dusk' or 'sunset', got 'dusk'",
        ),
        ({"switch_off": {"offset_min": 300}}, "switch_off.offset_min", "less than or equal to 240"),
        ({"default_level_pct": True}, "default_level_pct", "expected an integer, got True"),
        (
            {"dimming": [{"start": "25:00", "end": "05:00", "level_pct": 70}]},
            "dimming[0].start",
            "expected HH:MM (00:00 to 23:59), got '25:00'",
        ),
        ({"dimming": [{"start": "22:00", "end": "5:00", "level_pct": 70}]}, "dimming[0].end", "HH:MM"),
        (
            {"dimming": [{"start": "22:00", "end": "05:00", "level_pct": 170}]},
            "dimming[0].level_pct",
            "less than or equal to 100, got 170",
        ),
        ({"dimming": [{"start": "22:00", "end": "22:00", "level_pct": 70}]}, "dimming[0]", "both 22:00"),
        (
            {
                "dimming": [
                    {"start": "22:00", "end": "05:00", "level_pct": 70},
                    {"start": "04:00", "end": "06:00", "level_pct": 50},
                ]
            },
            "dimming",
            "dimming[1] (04:00-06:00) overlaps dimming[0] (22:00-05:00)",
        ),
        ({"exceptions": [{"date": "2026-12-24", "mode": "level"}]}, "exceptions[0]", "level_pct is required"),
        ({"exceptions": [{"date": "2026-12-32", "mode": "off"}]}, "exceptions[0].date", "got '2026-12-32'"),
        (
            {"exceptions": [{"date": "2026-12-24", "mode": "off", "level_pct": 20}]},
            "exceptions[0]",
            "level_pct must be absent when mode is 'off'",
        ),
        ({"exceptions": [{"date": "2026-05-04", "mode": "on", "level_pct": 0}]}, "exceptions[0]", "1..100"),
        (
            {"exceptions": [{"date": "2026-12-20", "until": "2026-12-19", "mode": "off"}]},
            "exceptions[0]",
            "until (2026-12-19) must be on or after date (2026-12-20)",
        ),
        (
            {
                "exceptions": [
                    {"date": "2026-12-24", "until": "2026-12-26", "mode": "on"},
                    {"date": "2026-12-25", "mode": "off"},
                ]
            },
            "exceptions",
            "exceptions[1] (exception 2026-12-25) overlaps exceptions[0] (exception 2026-12-24..2026-12-26)",
        ),
        ({"exceptions": [{"date": "2026-12-24", "mode": "dim"}]}, "exceptions[0].mode", "got 'dim'"),
        (
            {"override": {"level_pct": 50, "until": "2026-12-24T22:00:00"}},
            "override.until",
            "with timezone info (its UTC offset, e.g. 2026-03-29T01:00:00Z), got '2026-12-24T22:00:00'",
        ),
        ({"override": {"level_pct": 50}}, "override.until", "required"),
        ({"colour": "red"}, "colour", "unknown key"),
        ({"switch_on": {"offset": 3}}, "switch_on.offset", "unknown key"),
    ],
)
def test_invalid_field_is_named_with_what_was_expected(
    fields: dict[str, Any], where: str, expected: str
) -> None:
    found = problems(minimal(**fields))
    assert where in found, found
    assert expected in found[where]


def test_every_problem_is_reported_at_once_in_one_readable_message() -> None:
    data = minimal(latitude=95, dimming=[{"start": "7:00", "end": "08:00", "level_pct": 50}])
    del data["timezone"]
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(data)
    error = caught.value
    assert isinstance(error, FleetError)
    assert [where for where, _ in error.problems] == ["latitude", "timezone", "dimming[0].start"]
    assert str(error).startswith(
        "invalid lighting schedule: latitude: expected a number less than or equal to 90, got 95"
    )
    assert "timezone: required" in str(error)


def test_malformed_json_is_a_schedule_error_without_echoing_the_document() -> None:
    found = problems('{"latitude": 47.3,')
    assert list(found) == ["schedule"]
    assert found["schedule"].startswith("Invalid JSON")
    assert "got" not in found["schedule"]
