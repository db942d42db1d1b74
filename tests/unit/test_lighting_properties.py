"""Properties over any schedule and any instant: desired_state agrees with transitions, invariants hold."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.lighting import HORIZON, LightingSchedule, desired_state, parse_schedule, transitions
from edge_agent.lighting.wallclock import wall_to_utc

SITES = [
    (47.32, 5.04, "Europe/Paris"),
    (60.17, 24.94, "Europe/Helsinki"),
    (-0.18, -78.47, "America/Guayaquil"),
    (69.65, 18.96, "Europe/Oslo"),
    (78.22, 15.65, "Arctic/Longyearbyen"),
    (-33.87, 151.21, "Australia/Sydney"),
    (-31.55, 159.08, "Australia/Lord_Howe"),
    (-13.83, -171.76, "Pacific/Apia"),
    (64.15, -21.94, "Atlantic/Reykjavik"),
    (-77.85, 166.67, "Antarctica/McMurdo"),
]
ZONES = sorted({zone for _, _, zone in SITES} | {"America/New_York", "America/Santiago", "Pacific/Chatham"})
DIMMINGS: list[list[tuple[str, str, int]]] = [
    [],
    [("22:00", "05:00", 70)],
    [("23:00", "02:30", 50), ("02:30", "05:00", 30)],
    [("01:00", "05:00", 0)],
    [("02:10", "02:40", 40), ("20:00", "21:00", 80)],
]
YEAR = (datetime(2026, 1, 1), datetime(2027, 1, 1))


@st.composite
def cases(draw: st.DrawFn) -> tuple[LightingSchedule, datetime]:
    """A schedule and an instant, with exceptions and override placed near the instant."""
    now = draw(st.datetimes(*YEAR, timezones=st.just(UTC)))
    located = st.sampled_from(SITES) | st.tuples(
        st.floats(-89.5, 89.5), st.floats(-180, 180), st.sampled_from(ZONES)
    )
    latitude, longitude, zone = draw(located)
    data: dict[str, Any] = {
        "latitude": latitude,
        "longitude": longitude,
        "timezone": zone,
        "switch_on": {
            "event": draw(st.sampled_from(["sunset", "civil_dusk"])),
            "offset_min": draw(st.integers(-120, 120)),
        },
        "switch_off": {
            "event": draw(st.sampled_from(["sunrise", "civil_dawn"])),
            "offset_min": draw(st.integers(-120, 120)),
        },
        "default_level_pct": draw(st.integers(0, 100)),
        "dimming": [{"start": a, "end": b, "level_pct": n} for a, b, n in draw(st.sampled_from(DIMMINGS))],
    }
    day = now.date()
    exceptions = []
    for first in sorted(draw(st.sets(st.integers(-2, 2), max_size=3))):
        mode = draw(st.sampled_from(["off", "on", "level"]))
        exceptions.append(
            {"date": str(day + timedelta(days=first)), "mode": mode}
            | ({"level_pct": draw(st.integers(1 if mode == "on" else 0, 100))} if mode != "off" else {})
        )
    data["exceptions"] = exceptions
    if draw(st.booleans()):
        until = now + timedelta(minutes=draw(st.integers(-48 * 60, 48 * 60)))
        data["override"] = {"level_pct": draw(st.integers(0, 100)), "until": until.isoformat()}
    return parse_schedule(data), now


def key(state: Any) -> tuple[bool, int, str]:
    return state.on, state.level_pct, state.reason


@settings(deadline=None)
@given(cases())
def test_state_invariants(case: tuple[LightingSchedule, datetime]) -> None:
    schedule, now = case
    state = desired_state(schedule, now)
    assert 0 <= state.level_pct <= 100
    assert state.on == (state.level_pct > 0)  # off means level 0, and level 0 means off
    assert now < state.next_change <= now + HORIZON
    assert state.since is None or now - HORIZON < state.since <= now
    assert state.reason


@settings(deadline=None)
@given(cases())
def test_desired_state_is_the_last_transition_before_it(case: tuple[LightingSchedule, datetime]) -> None:
    schedule, now = case
    start, end = now - timedelta(days=1), now + timedelta(days=1)
    changes = transitions(schedule, start, end)
    times = [t for t, _ in changes]
    assert times[0] == start
    assert times == sorted(set(times))
    assert all(key(a) != key(b) for (_, a), (_, b) in itertools.pairwise(changes))

    index = max(i for i, t in enumerate(times) if t <= now)
    state = desired_state(schedule, now)
    assert key(state) == key(changes[index][1])
    if index > 0:
        assert state.since == times[index]
        assert desired_state(schedule, times[index]) == changes[index][1]
    if index + 1 < len(changes):
        assert state.next_change == times[index + 1]
        assert desired_state(schedule, times[index + 1]) == changes[index + 1][1]
    else:
        assert state.next_change >= end


@given(
    st.sampled_from(ZONES),
    st.dates(date(2026, 1, 1), date(2026, 12, 31)),
    st.times().map(lambda t: time(t.hour, t.minute)),
)
def test_wall_time_maps_to_the_first_instant_the_clock_reaches_it(
    zone_name: str, day: date, at: time
) -> None:
    zone = ZoneInfo(zone_name)
    wall = datetime.combine(day, at)
    instant = wall_to_utc(day, at, zone)
    assert instant.tzinfo is UTC
    assert instant.astimezone(zone).replace(tzinfo=None) >= wall
    assert (instant - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None) < wall
