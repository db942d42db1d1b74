"""The shared parts of the fleet contract: command args, event data, limits. Both sides use these."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from central.api.command_models import CommandIn
from protocols.fleet import FleetError, decode_command, encode
from protocols.fleet.commands import (
    ACTIONS,
    ClearOverrideArgs,
    CommandArgsError,
    DimArgs,
    SetConfigArgs,
    SetScheduleArgs,
    SwitchArgs,
    parse_posted,
    parse_wire,
    to_wire,
)
from protocols.fleet.events import (
    ALARM_KINDS,
    DATA_OF,
    EVENT_KINDS,
    LIGHTING_STATE,
    EventDataError,
    LightingStateData,
    ScheduleActive,
    event_data,
    read_event_data,
)
from protocols.fleet.limits import MAX_COMMAND_BYTES, clip, is_valid_name
from protocols.fleet.messages import PROTOCOL_VERSION, Command
from protocols.fleet.problems import loc_of, path_of
from protocols.fleet.schedule import parse_schedule, schedule_json

DIJON = {"latitude": 47.32, "longitude": 5.04, "timezone": "Europe/Paris"}


def test_every_action_has_one_definition_for_both_forms() -> None:
    assert ACTIONS == ("switch", "dim", "set_schedule", "clear_override", "set_config")
    config = '[cabinet]\nid = "cab-1"\n'
    posted: dict[str, dict[str, Any]] = {
        "switch": {"on": True, "until": "2026-03-29T01:00:00Z"},
        "dim": {"level_pct": 30},
        "set_schedule": {
            "schedule": {**DIJON, "dimming": [{"start": "23:00", "end": "05:00", "level_pct": 50}]}
        },
        "clear_override": {},
        "set_config": {"config": config, "sha256": hashlib.sha256(config.encode()).hexdigest()},
    }
    kinds = {
        "switch": SwitchArgs,
        "dim": DimArgs,
        "set_schedule": SetScheduleArgs,
        "clear_override": ClearOverrideArgs,
        "set_config": SetConfigArgs,
    }
    for action, args in posted.items():
        parsed = parse_posted(action, args)
        assert isinstance(parsed, kinds[action])
        wire = to_wire(parsed)
        # What central sends, the agent reads back to the same args, through the real envelope.
        command = Command(
            v=PROTOCOL_VERSION,
            id="c1",
            cabinet="cab-1",
            action=action,
            not_after=1,
            issued_by="ops",
            args=wire,
        )
        assert parse_wire(action, decode_command(encode(command)).args) == parsed
    assert to_wire(parse_posted("switch", posted["switch"])) == {"on": True, "until": 1_774_746_000_000}


@pytest.mark.parametrize(
    ("action", "args", "field", "words"),
    [
        (
            "switch",
            {"on": True, "level_pct": 50},
            "level_pct",
            "switch takes on, until (level_pct is for dim)",
        ),
        ("switch", {}, "on", "required"),
        ("dim", {"level_pct": 101}, "level_pct", "expected an integer less than or equal to 100, got 101"),
        ("dim", {"level_pct": 5, "until": "soon"}, "until", "ISO 8601 text, got 'soon'"),
        ("dim", {"level_pct": 5, "until": 2**60}, "until", "milliseconds, not microseconds?"),
        ("dim", {"level_pct": 5, "until": True}, "until", "got True"),
        (
            "clear_override",
            {"level_pct": 5},
            "level_pct",
            "clear_override takes no args (level_pct is for dim)",
        ),
        (
            "set_schedule",
            {"schedule": {**DIJON, "latitude": 91}},
            "schedule.latitude",
            "less than or equal to 90",
        ),
        ("reboot", {}, "action", "expected switch or dim or set_schedule or clear_override"),
    ],
)
def test_bad_args_are_refused_naming_the_field(
    action: str, args: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(CommandArgsError) as caught:
        parse_posted(action, args)
    assert isinstance(caught.value, FleetError)
    found = dict(caught.value.problems)
    assert field in found and words in found[field], found


def test_a_schedule_is_an_object_when_posted_and_one_json_text_on_the_wire() -> None:
    text = json.dumps(DIJON)
    assert parse_wire("set_schedule", {"schedule": text}) == parse_posted("set_schedule", {"schedule": DIJON})
    with pytest.raises(CommandArgsError, match="expected a JSON object"):
        parse_posted("set_schedule", {"schedule": text})
    with pytest.raises(CommandArgsError, match="expected the schedule as one JSON text"):
        parse_wire("set_schedule", {"schedule": 3})
    with pytest.raises(CommandArgsError) as caught:
        parse_wire("set_schedule", {"schedule": '{"latitude": '})
    assert caught.value.problems[0][0] == "schedule" and caught.value.problems[0][1].startswith(
        "Invalid JSON"
    )


def test_a_schedule_text_nested_thousands_deep_is_refused_not_a_crash() -> None:
    cases = [
        ('{"a":' * 8000 + "1" + "}" * 8000, "nested too deeply"),
        ("[" * 8000 + "]" * 8000, "JSON object"),
    ]
    for text, words in cases:
        with pytest.raises(CommandArgsError) as caught:
            parse_wire("set_schedule", {"schedule": text})
        assert caught.value.problems[0][0] == "schedule"
        assert words in caught.value.problems[0][1]


def test_the_schedule_json_is_stable_so_its_hash_survives_an_upgrade() -> None:
    """The agent keys a stored schedule by this text's hash: its bytes are part of the contract."""
    schedule = parse_schedule(
        {
            **DIJON,
            "dimming": [{"start": "22:00", "end": "05:00", "level_pct": 70}],
            "exceptions": [{"date": "2026-12-24", "mode": "level", "level_pct": 100, "note": "festival"}],
            "override": {"level_pct": 0, "until": "2026-03-29T02:00:00.123+01:00", "issued_by": "ops"},
        }
    )
    assert schedule_json(schedule) == (
        b'{"latitude":47.32,"longitude":5.04,"timezone":"Europe/Paris",'
        b'"switch_on":{"event":"sunset","offset_min":10},"switch_off":{"event":"sunrise","offset_min":-10},'
        b'"default_level_pct":100,"dimming":[{"start":"22:00","end":"05:00","level_pct":70}],'
        b'"exceptions":[{"date":"2026-12-24","until":null,"mode":"level","level_pct":100,"note":"festival"}],'
        b'"override":{"level_pct":0,"until":"2026-03-29T01:00:00.123000Z","issued_by":"ops"}}'
    )


def test_event_data_round_trips_and_a_bad_shape_names_the_field() -> None:
    state = LightingStateData(on=True, level_pct=70, reason="dimming 22:00-05:00", devices="lc1, lc2")
    data = event_data(state)
    assert "override_until_ms" not in data
    assert read_event_data(LIGHTING_STATE, data, LightingStateData) == state
    assert state.device_list == ["lc1", "lc2"]
    # A newer agent may say more: what this side does not read is left out, not refused.
    assert read_event_data(LIGHTING_STATE, {**data, "colour": "amber"}, LightingStateData) == state
    with pytest.raises(EventDataError) as caught:
        read_event_data(LIGHTING_STATE, {**data, "level_pct": 150}, LightingStateData)
    assert (caught.value.field, caught.value.kind) == ("level_pct", LIGHTING_STATE)
    assert "less than or equal to 100, got 150" in caught.value.problem
    with pytest.raises(EventDataError, match="source: expected 'command' or 'config'"):
        read_event_data("schedule_active", {"schedule": "", "source": "cli"}, ScheduleActive)


def test_every_kind_with_a_shape_or_an_alarm_is_a_known_kind() -> None:
    assert set(DATA_OF) <= set(EVENT_KINDS)
    assert set(ALARM_KINDS) <= set(EVENT_KINDS)
    assert len(set(EVENT_KINDS)) == len(EVENT_KINDS)


def test_paths_and_locs_are_one_another_s_inverse() -> None:
    for loc in [("dimming", 0, "start"), ("schedule", "exceptions", 12), ("latitude",)]:
        assert loc_of(path_of(loc)) == loc
    assert path_of(("dimming", 0, "start")) == "dimming[0].start"


def test_clip_marks_what_it_cut_and_keeps_within_the_limit() -> None:
    assert clip("short", 10) == "short"
    assert clip("x" * 20, 10) == "x" * 7 + "..."
    assert len(clip("y" * (MAX_COMMAND_BYTES * 2), MAX_COMMAND_BYTES)) == MAX_COMMAND_BYTES


def test_the_api_documents_each_action_s_args_from_the_fleet_s_own_models() -> None:
    schema = CommandIn.model_json_schema()["properties"]["args"]
    titles = [shape["title"] for shape in schema["anyOf"]]
    assert titles == [
        "switch args",
        "dim args",
        "clear_override args",
        "set_config args",
        "set_schedule args",
    ]
    switch = schema["anyOf"][0]
    assert (switch["required"], switch["additionalProperties"]) == (["on"], False)
    assert "level_pct" not in switch["properties"]
    config = schema["anyOf"][3]
    assert config["required"] == ["config", "sha256"]
    assert config["properties"]["config"]["maxLength"] == MAX_COMMAND_BYTES
    schedule = schema["anyOf"][4]["properties"]["schedule"]
    assert schedule["required"] == ["latitude", "longitude", "timezone"]
    start = schedule["properties"]["dimming"]["items"]["properties"]["start"]
    assert start["pattern"] == "^([01][0-9]|2[0-3]):[0-5][0-9]$"


@pytest.mark.parametrize(
    ("text", "valid"), [("lc1", True), ("a" * 64, True), ("a" * 65, False), ("", False), ("a/b", False)]
)
def test_a_name_is_one_rule_for_both_sides(text: str, valid: bool) -> None:
    """What central's API checks a device or group name with is what the wire decoder holds it to."""
    assert is_valid_name(text) is valid
    command = Command(
        v=PROTOCOL_VERSION, id=text, cabinet="cab-1", action="dim", not_after=1, issued_by="ops"
    )
    if valid:
        assert decode_command(encode(command)).id == text
    else:
        with pytest.raises(FleetError):
            decode_command(encode(command))
