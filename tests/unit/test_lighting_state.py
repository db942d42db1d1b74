"""desired_state and transitions: dimming across daylight-saving changes, exceptions, override, three days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from astral import Observer
from astral.sun import sunrise, sunset

from edge_agent.lighting import (
    HORIZON,
    LightingSchedule,
    LightingState,
    Override,
    desired_state,
    parse_schedule,
    transitions,
)
from edge_agent.lighting.wallclock import wall_to_utc

PARIS = ZoneInfo("Europe/Paris")
NIGHT = "night (sunset+10min .. sunrise-10min)"
DIM = "dimming 22:00-05:00"
SECOND = timedelta(seconds=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def dijon(**fields: Any) -> LightingSchedule:
    """Dijon, sunset+10min .. sunrise-10min, 70% from 22:00 to 05:00 unless ``dimming`` is given."""
    fields.setdefault("dimming", [{"start": "22:00", "end": "05:00", "level_pct": 70}])
    return parse_schedule({"latitude": 47.32, "longitude": 5.04, "timezone": "Europe/Paris", **fields})


def dimming(*periods: tuple[str, str, int]) -> list[dict[str, Any]]:
    return [{"start": a, "end": b, "level_pct": level} for a, b, level in periods]


def summary(changes: list[tuple[datetime, LightingState]]) -> list[tuple[bool, int, str]]:
    return [(s.on, s.level_pct, s.reason) for _, s in changes]


def at(changes: list[tuple[datetime, LightingState]], reason: str) -> list[datetime]:
    return [t for t, s in changes if s.reason == reason]


def level(schedule: LightingSchedule, instant: datetime) -> tuple[int, str]:
    state = desired_state(schedule, instant)
    return state.level_pct, state.reason


# --- wall clock to UTC across daylight-saving changes --------------------------------------------------


@pytest.mark.parametrize(
    ("day", "wall", "expected"),
    [
        (date(2026, 3, 29), time(1, 59), utc(2026, 3, 29, 0, 59)),
        (date(2026, 3, 29), time(2, 0), utc(2026, 3, 29, 1, 0)),  # skipped: at the jump
        (date(2026, 3, 29), time(2, 30), utc(2026, 3, 29, 1, 0)),  # skipped: at the jump
        (date(2026, 3, 29), time(3, 0), utc(2026, 3, 29, 1, 0)),
        (date(2026, 3, 29), time(5, 0), utc(2026, 3, 29, 3, 0)),
        (date(2026, 10, 25), time(2, 0), utc(2026, 10, 25, 0, 0)),  # repeated: first occurrence
        (date(2026, 10, 25), time(2, 30), utc(2026, 10, 25, 0, 30)),  # repeated: first occurrence
        (date(2026, 10, 25), time(3, 0), utc(2026, 10, 25, 2, 0)),
        (date(2026, 10, 25), time(5, 0), utc(2026, 10, 25, 4, 0)),
    ],
)
def test_wall_time_takes_effect_at_the_first_instant_the_clock_reads_it(
    day: date, wall: time, expected: datetime
) -> None:
    assert wall_to_utc(day, wall, PARIS) == expected


def test_half_hour_daylight_saving_gap_is_handled_too() -> None:
    # Lord Howe Island moves from +10:30 to +11:00 at 02:00 on 2026-10-04 (15:30 UTC the day before).
    assert wall_to_utc(date(2026, 10, 4), time(2, 15), ZoneInfo("Australia/Lord_Howe")) == utc(
        2026, 10, 3, 15, 30
    )


# --- dimming on the nights of the daylight-saving changes ----------------------------------------------


def test_dimming_on_the_spring_forward_night_ends_at_0300_utc() -> None:
    schedule = dijon()
    changes = transitions(schedule, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    assert summary(changes) == [
        (False, 0, "day"),
        (True, 100, NIGHT),
        (True, 70, DIM),
        (True, 100, NIGHT),
        (False, 0, "day"),
    ]
    assert at(changes, DIM) == [utc(2026, 3, 28, 21)]  # 22:00 CET
    assert changes[3][0] == utc(2026, 3, 29, 3)  # 05:00 CEST
    assert level(schedule, utc(2026, 3, 29, 3) - SECOND) == (70, DIM)
    assert level(schedule, utc(2026, 3, 29, 3)) == (100, NIGHT)
    assert desired_state(schedule, utc(2026, 3, 29, 19)).next_change == utc(2026, 3, 29, 20)  # 22:00 CEST


def test_dimming_on_the_fall_back_night_ends_at_0400_utc() -> None:
    schedule = dijon()
    changes = transitions(schedule, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))
    assert summary(changes) == [
        (False, 0, "day"),
        (True, 100, NIGHT),
        (True, 70, DIM),
        (True, 100, NIGHT),
        (False, 0, "day"),
    ]
    assert at(changes, DIM) == [utc(2026, 10, 24, 20)]  # 22:00 CEST
    assert changes[3][0] == utc(2026, 10, 25, 4)  # 05:00 CET
    assert level(schedule, utc(2026, 10, 25, 4) - SECOND) == (70, DIM)
    assert level(schedule, utc(2026, 10, 25, 4)) == (100, NIGHT)
    assert desired_state(schedule, utc(2026, 10, 25, 19)).next_change == utc(2026, 10, 25, 21)  # 22:00 CET


def test_a_boundary_in_the_skipped_hour_takes_effect_at_the_jump() -> None:
    schedule = dijon(dimming=dimming(("23:00", "02:30", 50), ("02:30", "05:00", 30)))
    changes = transitions(schedule, utc(2026, 3, 28, 21), utc(2026, 3, 29, 4))
    assert [(t, s.level_pct) for t, s in changes] == [
        (utc(2026, 3, 28, 21), 100),
        (utc(2026, 3, 28, 22), 50),  # 23:00 CET
        (utc(2026, 3, 29, 1), 30),  # 02:30 does not exist: at the jump, 03:00 CEST
        (utc(2026, 3, 29, 3), 100),  # 05:00 CEST
    ]


def test_a_period_wholly_inside_the_skipped_hour_does_not_happen_that_night() -> None:
    schedule = dijon(dimming=dimming(("02:10", "02:40", 40)))
    assert [s.level_pct for _, s in transitions(schedule, utc(2026, 3, 28, 21), utc(2026, 3, 29, 4))] == [100]
    next_night = transitions(schedule, utc(2026, 3, 29, 21), utc(2026, 3, 30, 4))
    assert [(t, s.level_pct) for t, s in next_night] == [
        (utc(2026, 3, 29, 21), 100),
        (utc(2026, 3, 30, 0, 10), 40),
        (utc(2026, 3, 30, 0, 40), 100),
    ]


def test_a_boundary_in_the_repeated_hour_takes_effect_at_its_first_occurrence() -> None:
    schedule = dijon(dimming=dimming(("23:00", "02:30", 50), ("02:30", "05:00", 30)))
    changes = transitions(schedule, utc(2026, 10, 24, 20), utc(2026, 10, 25, 5))
    assert [(t, s.level_pct) for t, s in changes] == [
        (utc(2026, 10, 24, 20), 100),
        (utc(2026, 10, 24, 21), 50),  # 23:00 CEST
        (utc(2026, 10, 25, 0, 30), 30),  # the first 02:30 (CEST)
        (utc(2026, 10, 25, 4), 100),  # 05:00 CET: the 30% period lasted 3h30
    ]


def test_a_period_inside_the_repeated_hour_happens_once() -> None:
    schedule = dijon(dimming=dimming(("02:10", "02:40", 40)))
    changes = transitions(schedule, utc(2026, 10, 24, 20), utc(2026, 10, 25, 5))
    assert [(t, s.level_pct) for t, s in changes] == [
        (utc(2026, 10, 24, 20), 100),
        (utc(2026, 10, 25, 0, 10), 40),
        (utc(2026, 10, 25, 0, 40), 100),
    ]
    assert level(schedule, utc(2026, 10, 25, 1, 20)) == (100, NIGHT)  # 02:20 CET, the second pass


def test_dimming_to_zero_switches_off_in_the_middle_of_the_night() -> None:
    schedule = dijon(dimming=dimming(("01:00", "05:00", 0)))
    state = desired_state(schedule, utc(2026, 1, 10, 2))
    assert (state.on, state.level_pct, state.reason) == (False, 0, "dimming 01:00-05:00")
    assert state.next_change == utc(2026, 1, 10, 4)


def test_dimming_applies_only_while_the_lights_are_on() -> None:
    schedule = dijon(dimming=dimming(("17:00", "19:00", 50)))
    assert level(schedule, utc(2026, 6, 21, 16)) == (0, "day")  # 18:00 CEST, sun up
    assert level(schedule, utc(2026, 12, 21, 17)) == (50, "dimming 17:00-19:00")


def test_default_level_applies_outside_dimming() -> None:
    schedule = dijon(default_level_pct=80)
    assert level(schedule, utc(2026, 1, 10, 19)) == (80, NIGHT)
    assert level(schedule, utc(2026, 1, 10, 23)) == (70, DIM)


# --- calendar exceptions ------------------------------------------------------------------------------

FESTIVAL = "exception 2026-12-24 festival"


def test_festival_night_stays_at_full_level_and_dimming_returns_the_next_night() -> None:
    schedule = dijon(
        exceptions=[{"date": "2026-12-24", "mode": "level", "level_pct": 100, "note": "festival"}]
    )
    assert level(schedule, utc(2026, 12, 24, 2)) == (
        70,
        DIM,
    )  # the early hours of the 24th: night of the 23rd
    changes = transitions(schedule, utc(2026, 12, 24, 12), utc(2026, 12, 26, 12))
    assert summary(changes) == [
        (False, 0, "day"),
        (True, 100, FESTIVAL),
        (False, 0, "day"),
        (True, 100, NIGHT),
        (True, 70, DIM),
        (True, 100, NIGHT),
        (False, 0, "day"),
    ]
    assert at(changes, DIM) == [utc(2026, 12, 25, 21)]
    assert level(schedule, utc(2026, 12, 25, 2)) == (
        100,
        FESTIVAL,
    )  # 03:00 on the 25th: still the 24th's night


def test_forced_off_date_keeps_its_night_dark_and_no_other() -> None:
    schedule = dijon(exceptions=[{"date": "2026-07-14", "mode": "off", "note": "works"}])
    changes = transitions(schedule, utc(2026, 7, 14, 12), utc(2026, 7, 15, 12))
    assert summary(changes) == [
        (False, 0, "day"),
        (False, 0, "exception 2026-07-14 works"),
        (False, 0, "day"),
    ]
    assert level(schedule, utc(2026, 7, 14, 1)) == (70, DIM)  # night of the 13th
    assert level(schedule, utc(2026, 7, 15, 23)) == (70, DIM)  # night of the 15th


def test_an_exception_until_covers_every_night_through_that_date() -> None:
    schedule = dijon(
        exceptions=[{"date": "2026-08-01", "until": "2026-08-02", "mode": "level", "level_pct": 50}]
    )
    reason = "exception 2026-08-01..2026-08-02"
    assert level(schedule, utc(2026, 8, 1, 1)) == (70, DIM)
    assert level(schedule, utc(2026, 8, 1, 23)) == (50, reason)
    assert level(schedule, utc(2026, 8, 2, 23)) == (50, reason)
    assert level(schedule, utc(2026, 8, 3, 2)) == (50, reason)
    assert level(schedule, utc(2026, 8, 3, 23)) == (70, DIM)


def test_mode_on_lights_the_whole_window_from_noon_to_noon() -> None:
    schedule = dijon(exceptions=[{"date": "2026-05-04", "mode": "on", "level_pct": 60, "note": "burn test"}])
    reason = "exception 2026-05-04 burn test"
    assert level(schedule, utc(2026, 5, 4, 10) - SECOND) == (0, "day")  # 11:59:59 CEST
    state = desired_state(schedule, utc(2026, 5, 4, 10))
    assert (state.on, state.level_pct, state.reason, state.since) == (True, 60, reason, utc(2026, 5, 4, 10))
    assert state.next_change == utc(2026, 5, 5, 10)
    assert level(schedule, utc(2026, 5, 4, 23)) == (60, reason)  # no dimming
    assert level(schedule, utc(2026, 5, 5, 10)) == (0, "day")


# --- operator override --------------------------------------------------------------------------------


def test_override_wins_until_its_end_then_the_schedule_resumes() -> None:
    until = utc(2026, 12, 24, 22)
    schedule = dijon(
        exceptions=[{"date": "2026-12-24", "mode": "level", "level_pct": 100, "note": "festival"}],
        override={"level_pct": 0, "until": "2026-12-24T22:00:00Z", "issued_by": "ops"},
    )
    before = desired_state(schedule, utc(2026, 12, 24, 20))
    assert (before.on, before.level_pct) == (False, 0)
    assert before.reason == "override until 2026-12-24T22:00:00Z by ops"
    assert before.next_change == until
    assert desired_state(schedule, until - SECOND).reason == before.reason
    after = desired_state(schedule, until)
    assert (after.on, after.level_pct, after.reason, after.since) == (True, 100, FESTIVAL, until)


def test_override_can_light_the_day_and_an_expired_one_changes_nothing() -> None:
    schedule = dijon()
    lit = schedule.with_override(Override(level_pct=100, until=utc(2026, 6, 1, 12)))
    assert level(lit, utc(2026, 6, 1, 11)) == (100, "override until 2026-06-01T12:00:00Z")
    assert level(lit, utc(2026, 6, 1, 12)) == (0, "day")
    assert desired_state(lit, utc(2026, 6, 2, 1)) == desired_state(schedule, utc(2026, 6, 2, 1))


def test_override_beats_a_mode_on_exception() -> None:
    schedule = dijon(
        exceptions=[{"date": "2026-05-04", "mode": "on"}],
        override={"level_pct": 20, "until": "2026-05-04T15:00:00Z"},
    )
    assert level(schedule, utc(2026, 5, 4, 14)) == (20, "override until 2026-05-04T15:00:00Z")
    assert level(schedule, utc(2026, 5, 4, 15)) == (100, "exception 2026-05-04")


# --- three days, since and next_change ---------------------------------------------------------------


def test_three_days_give_exactly_the_expected_sequence() -> None:
    schedule = dijon()
    changes = transitions(schedule, utc(2026, 1, 9, 12), utc(2026, 1, 12, 12))
    one_night = [(True, 100, NIGHT), (True, 70, DIM), (True, 100, NIGHT), (False, 0, "day")]
    assert summary(changes) == [(False, 0, "day"), *one_night * 3]
    assert at(changes, DIM) == [utc(2026, 1, 9, 21), utc(2026, 1, 10, 21), utc(2026, 1, 11, 21)]
    observer = Observer(47.32, 5.04)
    for n, evening in enumerate(date(2026, 1, 9 + k) for k in range(3)):
        switch_on, _ = changes[1 + 4 * n]
        back_to_full, _ = changes[3 + 4 * n]
        switch_off, _ = changes[4 + 4 * n]
        expected_on = sunset(observer, evening, tzinfo=PARIS) + timedelta(minutes=10)
        expected_off = sunrise(observer, evening + timedelta(days=1), tzinfo=PARIS) - timedelta(minutes=10)
        assert abs(switch_on - expected_on) < timedelta(minutes=2)
        assert back_to_full == datetime.combine(evening + timedelta(days=1), time(4), UTC)  # 05:00 CET
        assert abs(switch_off - expected_off) < timedelta(minutes=2)


def test_stepping_by_next_change_finds_every_transition() -> None:
    """What the agent does offline, in accelerated time: sleep until next_change, ask again."""
    schedule = dijon(exceptions=[{"date": "2026-03-28", "mode": "level", "level_pct": 90}])
    start, end = utc(2026, 3, 27, 6), utc(2026, 3, 30, 6)
    seen: list[tuple[datetime, LightingState]] = []
    now = start
    while now < end:
        state = desired_state(schedule, now)
        if not seen or (seen[-1][1].on, seen[-1][1].level_pct, seen[-1][1].reason) != (
            state.on,
            state.level_pct,
            state.reason,
        ):
            seen.append((now, state))
        now = state.next_change
    assert seen == transitions(schedule, start, end)
    one_night = [(True, 100, NIGHT), (True, 70, DIM), (True, 100, NIGHT), (False, 0, "day")]
    festival = [(True, 90, "exception 2026-03-28"), (False, 0, "day")]
    assert summary(seen) == [(False, 0, "day"), *one_night, *festival, *one_night]


def test_since_and_next_change_bracket_the_current_state() -> None:
    schedule = dijon()
    state = desired_state(schedule, utc(2026, 1, 10, 20))
    assert state.reason == NIGHT
    assert state.since is not None
    assert utc(2026, 1, 10, 16) < state.since < utc(2026, 1, 10, 17)
    assert state.next_change == utc(2026, 1, 10, 21)
    assert desired_state(schedule, state.since) == state.__class__(
        True, 100, NIGHT, state.since, state.next_change
    )


def test_instants_must_be_aware_and_results_are_utc() -> None:
    schedule = dijon()
    with pytest.raises(ValueError, match="now must be an aware datetime"):
        desired_state(schedule, datetime(2026, 1, 10, 20))
    with pytest.raises(ValueError, match="start must be an aware datetime"):
        transitions(schedule, datetime(2026, 1, 10), utc(2026, 1, 11))
    paris_evening = datetime(2026, 1, 10, 21, tzinfo=PARIS)
    state = desired_state(schedule, paris_evening)
    assert state == desired_state(schedule, utc(2026, 1, 10, 20))
    assert state.next_change.tzinfo is UTC
    assert transitions(schedule, utc(2026, 1, 11), utc(2026, 1, 11)) == []


def test_next_change_is_capped_by_the_horizon_when_nothing_changes() -> None:
    schedule = dijon(override={"level_pct": 40, "until": "2026-02-01T00:00:00Z"})
    state = desired_state(schedule, utc(2026, 1, 10))
    assert state.next_change == utc(2026, 1, 10) + HORIZON
    assert state.since is None
