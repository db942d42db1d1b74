"""Lighting alarms (found by role) and points' own alarms: raised once and cleared once, with
hysteresis, never once per poll."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.alarms import DeviceAlarms
from edge_agent.buffer import Buffer
from edge_agent.lighting.state import LightingState
from protocols.device import AlarmSettings
from protocols.driver import AlarmRule, PointSpec, PointValue
from protocols.fleet import Event, decode_record
from protocols.quality import Quality

NIGHT = LightingState(on=True, level_pct=100, reason="night", since=None, next_change=datetime.now(UTC))
DAY = LightingState(on=False, level_pct=0, reason="day", since=None, next_change=datetime.now(UTC))


# The single-circuit controller's points as its driver declares them.
LIGHTING = (
    PointSpec("relay", "bool", writable=True, role="relay"),
    PointSpec("dim_level_pct", "int", "%", writable=True, role="dim_level"),
    PointSpec("power_w", "float", "W", role="power"),
    PointSpec("current_a", "float", "A", role="current"),
    PointSpec("lamp_failure", "bool", role="lamp_failure"),
    PointSpec("door_open", "bool", role="door"),
)
THREE_PHASE = (
    PointSpec("power_l1_w", "float", "W", role="power"),
    PointSpec("power_l2_w", "float", "W", role="power"),
    PointSpec("door_open", "bool", role="door"),
)


def poll(**values: float | bool | str) -> list[PointValue]:
    return [PointValue(name, value) for name, value in values.items()]


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    async with Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=lambda: 0) as b:
        yield b


async def alarm_events(buffer: Buffer) -> list[tuple[str, str]]:
    await buffer.flush()
    batch = await buffer.read_batch(0, 10_000)
    events = [decode_record(Event, body) for body in batch.events] if batch else []
    return [(e.kind, str(e.data["alarm"])) for e in events if e.kind.startswith("alarm_")]


async def test_lamp_failure_raised_after_three_polls_and_cleared_once(buffer: Buffer) -> None:
    alarms = DeviceAlarms(device="lc1", settings=AlarmSettings(), points=LIGHTING, buffer=buffer)
    for ts in range(2):
        alarms.observe(ts, poll(lamp_failure=True, power_w=150.0), NIGHT)
    assert await alarm_events(buffer) == []  # two polls are not enough: a glitch is not an alarm
    for ts in range(2, 10):
        alarms.observe(ts, poll(lamp_failure=True, power_w=150.0), NIGHT)
    assert await alarm_events(buffer) == [("alarm_raised", "lamp_failure")]
    assert alarms.active == ["lamp_failure"]
    flicker = [False, True, False, False, True] + [False] * 3
    for ts, failed in enumerate(flicker, start=10):
        alarms.observe(ts, poll(lamp_failure=failed, power_w=150.0), NIGHT)
    assert await alarm_events(buffer) == [
        ("alarm_raised", "lamp_failure"),
        ("alarm_cleared", "lamp_failure"),
    ]


async def test_power_threshold_has_hysteresis(buffer: Buffer) -> None:
    settings = AlarmSettings(power_max_w=200.0, hysteresis_pct=10, raise_after=1, clear_after=1)
    alarms = DeviceAlarms(device="lc1", settings=settings, points=LIGHTING, buffer=buffer)
    for power in (150.0, 210.0, 195.0, 205.0, 185.0, 179.0):
        alarms.observe(0, poll(power_w=power), NIGHT)
    # Raised above 200; 195 and 185 stay inside the 10 % band (cleared only under 180).
    assert await alarm_events(buffer) == [
        ("alarm_raised", "power_out_of_range"),
        ("alarm_cleared", "power_out_of_range"),
    ]


async def test_lit_in_daytime_and_dark_at_night_follow_the_schedule(buffer: Buffer) -> None:
    alarms = DeviceAlarms(
        device="lc1", settings=AlarmSettings(raise_after=1, clear_after=1), points=LIGHTING, buffer=buffer
    )
    alarms.observe(0, poll(power_w=150.0), DAY)  # lit while the schedule says day
    alarms.observe(1, poll(power_w=0.0), DAY)
    alarms.observe(2, poll(power_w=0.0), NIGHT)  # dark while the schedule says night
    alarms.observe(3, poll(power_w=140.0), NIGHT)
    assert await alarm_events(buffer) == [
        ("alarm_raised", "lit_in_daytime"),
        ("alarm_cleared", "lit_in_daytime"),
        ("alarm_raised", "dark_at_night"),
        ("alarm_cleared", "dark_at_night"),
    ]


async def test_bad_quality_values_and_no_schedule_raise_nothing(buffer: Buffer) -> None:
    alarms = DeviceAlarms(device="lc1", settings=AlarmSettings(raise_after=1), points=LIGHTING, buffer=buffer)
    for ts in range(5):
        alarms.observe(ts, [PointValue("lamp_failure", None, Quality.BAD, "timeout")], NIGHT)
        alarms.observe(ts, poll(power_w=500.0), None)
    assert await alarm_events(buffer) == []


async def test_door_open_on_a_three_phase_controller(buffer: Buffer) -> None:
    alarms = DeviceAlarms(
        device="cc1", settings=AlarmSettings(raise_after=1, clear_after=1), points=THREE_PHASE, buffer=buffer
    )
    alarms.observe(0, poll(door_open=True, power_l1_w=50.0, power_l2_w=60.0), NIGHT)
    alarms.observe(1, poll(door_open=False, power_l1_w=50.0, power_l2_w=60.0), NIGHT)
    assert await alarm_events(buffer) == [("alarm_raised", "door_open"), ("alarm_cleared", "door_open")]


async def test_an_alarm_raised_before_a_restart_is_cleared_after_it(buffer: Buffer) -> None:
    settings = AlarmSettings(raise_after=1, clear_after=1)
    before = DeviceAlarms(device="lc1", settings=settings, points=LIGHTING, buffer=buffer)
    before.observe(0, poll(door_open=True), NIGHT)
    await buffer.flush()
    assert await buffer.get_setting(before.setting_key) == "door_open"

    after = DeviceAlarms(
        device="lc1", settings=settings, points=LIGHTING, buffer=buffer
    )  # the agent restarted
    after.restore((await buffer.get_setting(after.setting_key) or "").split(","), 0)
    after.observe(1, poll(door_open=True), NIGHT)  # still open: nothing new to say
    after.observe(2, poll(door_open=False), NIGHT)
    assert await alarm_events(buffer) == [("alarm_raised", "door_open"), ("alarm_cleared", "door_open")]


async def test_lighting_alarms_follow_roles_not_names(buffer: Buffer) -> None:
    """A meter named ``watts`` with the role ``power`` is watched; a ``power_w`` with no role is not."""
    points = (PointSpec("watts", "float", "W", role="power"), PointSpec("power_w", "float", "W"))
    settings = AlarmSettings(power_max_w=100.0, raise_after=1, clear_after=1)
    alarms = DeviceAlarms(device="lc1", settings=settings, points=points, buffer=buffer)
    alarms.observe(0, poll(watts=50.0, power_w=500.0), NIGHT)
    assert await alarm_events(buffer) == []
    alarms.observe(1, poll(watts=150.0, power_w=0.0), NIGHT)
    assert await alarm_events(buffer) == [("alarm_raised", "power_out_of_range")]
    assert [kind.name for kind in alarms.kinds if kind.name == "lamp_failure"] == []  # no such role


MODE = PointSpec(
    "mode", "str", role="mode", alarm=AlarmRule("controller_flashing", when_in=("flashing", "dark"))
)
FAULT = PointSpec("fault", "bool", alarm=AlarmRule("controller_fault", severity="critical", when_true=True))
DRIFT = PointSpec("clock_drift_s", "float", "s", alarm=AlarmRule("clock_drift", above=2.0, hysteresis_pct=25))
LOW = PointSpec("battery_v", "float", "V", alarm=AlarmRule("battery_low", below=11.0, hysteresis_pct=10))


async def point_events(buffer: Buffer) -> list[tuple[str, dict[str, object]]]:
    await buffer.flush()
    batch = await buffer.read_batch(0, 10_000)
    events = [decode_record(Event, body) for body in batch.events] if batch else []
    return [(e.kind, dict(e.data)) for e in events if e.kind.startswith("alarm_")]


async def test_a_point_alarm_when_in_is_raised_and_cleared_once_with_its_data(buffer: Buffer) -> None:
    alarms = DeviceAlarms(
        device="tc1", settings=AlarmSettings(raise_after=2, clear_after=2), points=(MODE,), buffer=buffer
    )
    for ts, mode in enumerate(["normal", "flashing", "normal", "flashing", "dark", "flashing", "normal"]):
        alarms.observe(ts, poll(mode=mode), None)
    assert await point_events(buffer) == [
        ("alarm_raised", {"alarm": "controller_flashing", "device": "tc1", "point": "mode", "value": "dark"}),
    ]
    alarms.observe(7, poll(mode="manual"), None)
    assert [kind for kind, _ in await point_events(buffer)] == ["alarm_raised", "alarm_cleared"]
    assert alarms.active == []


async def test_point_alarms_when_true_above_and_below_with_hysteresis(buffer: Buffer) -> None:
    settings = AlarmSettings(raise_after=1, clear_after=1)
    alarms = DeviceAlarms(device="d1", settings=settings, points=(FAULT, DRIFT, LOW), buffer=buffer)
    alarms.observe(0, poll(fault=True, clock_drift_s=2.5, battery_v=10.5), None)
    assert sorted(alarms.active) == ["battery_low", "clock_drift", "controller_fault"]
    # Back inside the limits, but not past the hysteresis band: still raised.
    alarms.observe(1, poll(fault=True, clock_drift_s=1.8, battery_v=11.5), None)
    assert sorted(alarms.active) == ["battery_low", "clock_drift", "controller_fault"]
    alarms.observe(2, poll(fault=False, clock_drift_s=1.4, battery_v=12.2), None)
    assert alarms.active == []
    events = await point_events(buffer)
    assert [(kind, data["alarm"]) for kind, data in events] == [
        ("alarm_raised", "controller_fault"),
        ("alarm_raised", "clock_drift"),
        ("alarm_raised", "battery_low"),
        ("alarm_cleared", "controller_fault"),
        ("alarm_cleared", "clock_drift"),
        ("alarm_cleared", "battery_low"),
    ]


async def test_a_point_alarm_ignores_bad_values_and_survives_a_restart(buffer: Buffer) -> None:
    settings = AlarmSettings(raise_after=1, clear_after=1)
    before = DeviceAlarms(device="tc1", settings=settings, points=(MODE, FAULT), buffer=buffer)
    before.observe(0, [PointValue("fault", True, Quality.BAD, "timeout")], None)
    assert before.active == []
    before.observe(1, poll(fault=True), None)
    await buffer.flush()
    assert await buffer.get_setting(before.setting_key) == "controller_fault"
    after = DeviceAlarms(device="tc1", settings=settings, points=(MODE, FAULT), buffer=buffer)
    after.restore((await buffer.get_setting(after.setting_key) or "").split(","), 0)
    after.observe(2, poll(fault=True), None)
    after.observe(3, poll(mode="normal"), None)  # a push without the fault
    after.observe(4, poll(fault=False), None)
    assert [(kind, data["alarm"]) for kind, data in await point_events(buffer)] == [
        ("alarm_raised", "controller_fault"),
        ("alarm_cleared", "controller_fault"),
    ]


CONTROLLER = (
    PointSpec("phase", "int", role="phase"),
    PointSpec("d1_fault", "bool", alarm=AlarmRule("detector_fault_d1", severity="warning", when_true=True)),
)


async def test_a_pushed_change_of_other_points_leaves_an_alarms_count_alone(buffer: Buffer) -> None:
    """Polls see the fault; pushes of the phase between them carry no d1_fault: still raised on the
    third poll, and cleared on the third clean one (a partial batch is no evidence either way)."""
    alarms = DeviceAlarms(device="tc1", settings=AlarmSettings(), points=CONTROLLER, buffer=buffer)
    for ts in range(3):
        alarms.observe(ts * 2, poll(phase=1, d1_fault=True), None)
        alarms.observe(ts * 2 + 1, poll(phase=2 + ts), None)  # pushed: the phase alone
    assert alarms.active == ["detector_fault_d1"]
    for ts in range(3):
        alarms.observe(10 + ts * 2, poll(phase=1, d1_fault=False), None)
        alarms.observe(11 + ts * 2, poll(phase=2), None)
    assert alarms.active == []
    assert await alarm_events(buffer) == [
        ("alarm_raised", "detector_fault_d1"),
        ("alarm_cleared", "detector_fault_d1"),
    ]


async def test_an_alarm_the_device_no_longer_has_is_cleared_at_restart(buffer: Buffer) -> None:
    """A profile changed while its alarm was raised: the alarm is cleared once, not left for ever."""
    alarms = DeviceAlarms(device="tc1", settings=AlarmSettings(), points=CONTROLLER, buffer=buffer)
    alarms.restore(["detector_fault_d1", "detector_fault_d9", ""], 5)
    assert alarms.active == ["detector_fault_d1"]
    assert await alarm_events(buffer) == [("alarm_cleared", "detector_fault_d9")]
    assert await buffer.get_setting(alarms.setting_key) == "detector_fault_d1"
