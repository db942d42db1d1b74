"""Pure parts behind commands and views: action args, times, alarm keys, the lighting view."""

from __future__ import annotations

import json

import pytest

from central.alarms import alarm_change
from central.command_args import ARGS_NOT_SHOWN, operator_args, wire_args
from central.errors import InvalidRequest
from central.lighting_view import schedule_view, state_view
from central.store.rows import EventRow
from central.times import to_ms
from protocols.fleet import Event
from protocols.fleet.commands import deeper_than
from protocols.fleet.limits import MAX_SCHEDULE_DEPTH
from protocols.fleet.schedule import parse_schedule, schedule_json

NOW = 1_714_557_600_000
DIJON = {"latitude": 47.32, "longitude": 5.04, "timezone": "Europe/Paris"}


def test_wire_args_normalise_times_and_the_schedule() -> None:
    assert wire_args("switch", {"on": True}, now_ms=NOW) == {"on": True}
    assert wire_args("dim", {"level_pct": 0, "until": "2024-05-01T11:00:00Z"}, now_ms=NOW) == {
        "level_pct": 0,
        "until": NOW + 3_600_000,
    }
    assert wire_args("dim", {"level_pct": 100, "until": NOW + 1}, now_ms=NOW)["until"] == NOW + 1
    posted = {"latitude": 47.3, "longitude": 5, "timezone": "Europe/Paris", "dimming": []}
    wire = wire_args("set_schedule", {"schedule": posted}, now_ms=NOW)
    # The schedule as the cabinet will run it: validated, defaults filled in, in one JSON text.
    assert wire == {"schedule": schedule_json(parse_schedule(posted)).decode()}
    assert json.loads(str(wire["schedule"]))["longitude"] == 5.0
    assert operator_args("set_schedule", wire) == {"schedule": json.loads(str(wire["schedule"]))}
    assert wire_args("clear_override", {}, now_ms=NOW) == {}


@pytest.mark.parametrize(
    ("action", "args", "loc"),
    [
        ("dim", {"level_pct": -1}, ("body", "args", "level_pct")),
        ("dim", {"level_pct": 50.0}, ("body", "args", "level_pct")),
        ("dim", {"level_pct": True}, ("body", "args", "level_pct")),
        ("dim", {"level_pct": 5, "until": NOW}, ("body", "args", "until")),
        ("dim", {"level_pct": 5, "until": 1.5}, ("body", "args", "until")),
        ("switch", {"on": 1}, ("body", "args", "on")),
        ("switch", {"on": True, "until": "next week"}, ("body", "args", "until")),
        ("switch", {"on": True, "level_pct": 3}, ("body", "args", "level_pct")),
        ("set_schedule", {"schedule": "{}"}, ("body", "args", "schedule")),
        ("set_schedule", {}, ("body", "args", "schedule")),
        ("set_schedule", {"schedule": {"latitude": 47.3}}, ("body", "args", "schedule", "longitude")),
        (
            "set_schedule",
            {"schedule": {**DIJON, "dimming": [{"start": "22:00", "end": "05:00", "level_pct": 170}]}},
            ("body", "args", "schedule", "dimming", 0, "level_pct"),
        ),
        ("set_schedule", {"schedule": DIJON, "at": 1}, ("body", "args", "at")),
        ("clear_override", {"devices": ["lc1"]}, ("body", "args", "devices")),
    ],
)
def test_wire_args_refuse_naming_the_field(
    action: str, args: dict[str, object], loc: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidRequest) as info:
        wire_args(action, args, now_ms=NOW)
    assert info.value.errors[0]["loc"] == loc
    assert ".".join(map(str, loc)) in str(info.value)


def test_switch_takes_no_level_and_says_that_dim_does() -> None:
    with pytest.raises(InvalidRequest) as info:
        wire_args("switch", {"on": True, "level_pct": 3}, now_ms=NOW)
    [error] = info.value.errors
    assert (error["type"], error["loc"]) == ("extra_forbidden", ("body", "args", "level_pct"))
    assert error["msg"] == "unknown key: switch takes on, until (level_pct is for dim)"


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (1, 0),
        ({}, 1),
        ([], 1),
        ({"a": 1}, 1),
        ({"a": [1, {}]}, 3),
        ([[], [[[]]], {}], 4),
        ({"a": {"b": []}}, 3),
    ],
)
def test_deeper_than_counts_objects_and_lists_within_one_another(value: object, depth: int) -> None:
    assert not deeper_than(value, depth)
    assert deeper_than(value, depth - 1) == (depth > 0)


def test_a_schedule_is_refused_past_the_depth_bound_and_a_stored_one_never_fails_to_read() -> None:
    schedule: dict[str, object] = {"exceptions": [{"date": "2026-12-24"}]}
    for _ in range(MAX_SCHEDULE_DEPTH - 3):
        schedule = {"a": schedule}
    # 16 levels: as deep as allowed, so it is read as a schedule, and refused as one.
    with pytest.raises(InvalidRequest) as info:
        wire_args("set_schedule", {"schedule": schedule}, now_ms=NOW)
    assert ("body", "args", "schedule", "a") in [error["loc"] for error in info.value.errors]
    with pytest.raises(InvalidRequest) as info:
        wire_args("set_schedule", {"schedule": {"a": schedule}}, now_ms=NOW)
    [error] = info.value.errors
    assert (error["type"], error["loc"]) == ("too_deep", ("body", "args", "schedule"))
    assert f"nested more than {MAX_SCHEDULE_DEPTH} levels" in error["msg"]
    deep = {"schedule": json.dumps({"a": schedule})}
    assert operator_args("set_schedule", deep).keys() == {ARGS_NOT_SHOWN}
    assert operator_args("set_schedule", {"schedule": "{"}).keys() == {ARGS_NOT_SHOWN}
    assert operator_args("set_schedule", {"schedule": "[" * 10_000}).keys() == {ARGS_NOT_SHOWN}
    damaged = "the stored args are damaged"
    assert operator_args("dim", {}, damaged) == {ARGS_NOT_SHOWN: damaged}


@pytest.mark.parametrize("raw", [True, -1, "soon", 2**60])
def test_to_ms_refuses_what_is_not_a_time(raw: str | int) -> None:
    with pytest.raises(ValueError, match="not_after"):
        to_ms("not_after", raw)


def event(kind: str, source: str = "agent", **data: object) -> Event:
    return Event(seq=1, ts=NOW, source=source, kind=kind, severity="alarm", message="m", data=data)  # type: ignore[arg-type]


def test_alarm_keys() -> None:
    raised = alarm_change(event("alarm_raised", alarm="lamp_failure", device="lc2"))
    assert raised is not None and (raised.device, raised.alarm, raised.active) == (
        "lc2",
        "lamp_failure",
        True,
    )
    cleared = alarm_change(event("alarm_cleared", alarm="lamp_failure", device="lc2"))
    assert cleared is not None and not cleared.active
    lost = alarm_change(event("device_lost", source="lc1"))
    assert lost is not None and (lost.device, lost.alarm, lost.active) == ("lc1", "device_lost", True)
    back = alarm_change(event("device_back", source="lc1"))
    assert back is not None and (back.device, back.alarm, back.active) == ("lc1", "device_lost", False)
    vague = alarm_change(event("alarm_raised", source="lc3", alarm=7))
    assert vague is not None and (vague.device, vague.alarm) == ("lc3", "unspecified")
    assert alarm_change(event("door_open")) is None


def row(kind: str, data: dict[str, object]) -> EventRow:
    return EventRow("cab-1", "0123abcd", 1, NOW, "agent", kind, "info", "m", data)


def test_the_lighting_view_reads_the_agents_events() -> None:
    schedule, problem = schedule_view(
        row("schedule_active", {"schedule": '{"latitude": 47.3}', "hash": "ab12", "source": "command"})
    )
    assert problem is None and schedule is not None
    assert (schedule.schedule, schedule.hash, schedule.source, schedule.ts_ms) == (
        {"latitude": 47.3},
        "ab12",
        "command",
        NOW,
    )
    state, problem = state_view(
        row(
            "lighting_state",
            {
                "on": True,
                "level_pct": 70,
                "reason": "dimming",
                "next_change_ms": NOW + 5,
                "devices": "lc1, lc2,",
            },
        )
    )
    assert problem is None and state is not None
    assert (state.on, state.level_pct, state.devices, state.override_until_ms) == (
        True,
        70,
        ["lc1", "lc2"],
        None,
    )


def test_a_malformed_event_is_a_problem_not_an_error() -> None:
    schedule, problem = schedule_view(
        row("schedule_active", {"schedule": "[1, 2]", "hash": "x", "source": "config"})
    )
    assert schedule is not None and schedule.schedule is None
    assert problem is not None and "not a JSON object" in problem
    state, problem = state_view(row("lighting_state", {"on": "yes", "level_pct": 70}))
    assert state is None
    assert problem is not None and "data: on: expected true or false" in problem
    missing, problem = schedule_view(row("schedule_active", {"hash": "x"}))
    assert missing is None and problem is not None and "schedule" in problem


def test_a_schedule_too_large_for_an_event_or_none_at_all_is_said_so() -> None:
    large, problem = schedule_view(
        row("schedule_active", {"schedule": None, "hash": "ab", "source": "config"})
    )
    assert problem is None and large is not None
    assert (large.schedule, large.hash) == (None, "ab")
    assert large.detail is not None and "only its hash" in large.detail
    none, problem = schedule_view(row("schedule_active", {"schedule": "", "hash": "e3", "source": "config"}))
    assert problem is None and none is not None and none.detail == "the cabinet runs no schedule"
