"""Whether the agent trusts its clock: the build floor, the system's NTP status, and what they miss."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cityedge.testing import wait_until
from edge_agent.buffer import Buffer
from edge_agent.clock import ScaledClock
from edge_agent.clock_alarm import ClockAlarm
from edge_agent.clock_sync import BUILD_FLOOR_MS, ClockTrust, kernel_status, system_status, timesyncd_status
from edge_agent.config import LightingSection
from edge_agent.lighting import parse_schedule
from edge_agent.lighting.runner import FAILSAFE_REASON, LightingRunner
from edge_agent.lighting.schedule import Override
from protocols.fleet import Event, decode_record
from protocols.quality import CLOCK_UNSYNCHRONISED

AFTER_FLOOR = BUILD_FLOOR_MS + 86_400_000


class Says:
    def __init__(self, value: bool | None) -> None:
        self.value = value
        self.asked = 0

    def __call__(self) -> bool | None:
        self.asked += 1
        return self.value


def test_a_clock_before_the_floor_is_never_synchronised_whatever_the_system_says() -> None:
    trust = ClockTrust(status=Says(True), recheck_s=0)
    assert not trust.synchronised(0)  # 1970
    assert not trust.synchronised(BUILD_FLOOR_MS - 1)
    assert trust.synchronised(AFTER_FLOOR)


def test_the_system_status_decides_above_the_floor_and_the_floor_alone_where_it_cannot_tell() -> None:
    says = Says(False)
    trust = ClockTrust(status=says, recheck_s=0)
    assert not trust.synchronised(AFTER_FLOOR)
    says.value = None
    assert trust.synchronised(AFTER_FLOOR)


def test_once_synchronised_the_clock_stays_trusted_when_ntp_is_no_longer_heard() -> None:
    # The kernel flags the clock unsynchronised hours after its server was last heard: a cabinet
    # offline for days keeps its schedule.
    says = Says(False)
    trust = ClockTrust(status=says, recheck_s=0)
    assert not trust.synchronised(AFTER_FLOOR)
    says.value = True
    assert trust.synchronised(AFTER_FLOOR)
    says.value = False
    assert trust.synchronised(AFTER_FLOOR)
    assert not trust.synchronised(0)  # but never below the floor


def test_the_system_is_asked_at_most_once_per_recheck_interval() -> None:
    says = Says(False)
    trust = ClockTrust(status=says, recheck_s=3600)
    for _ in range(100):
        trust.synchronised(AFTER_FLOOR)
    assert says.asked == 1


def test_system_sources_answer_without_raising(tmp_path: Path) -> None:
    assert kernel_status() in (True, False, None)
    assert system_status() in (True, False, None)
    marker = tmp_path / "synchronized"
    assert timesyncd_status(marker) is None  # absent proves nothing (chrony keeps no marker)
    marker.touch()
    assert timesyncd_status(marker) is True


SCHEDULE = parse_schedule({"latitude": 47.32, "longitude": 5.04, "timezone": "Europe/Paris"})
NOON_1970 = 15_000_000_000  # 1970-06-23T14:40Z: daytime in Dijon


@pytest.mark.parametrize(
    ("failsafe", "expected"),
    [("on", (True, FAILSAFE_REASON)), ("off", (False, FAILSAFE_REASON)), ("schedule", (False, "day"))],
)
def test_the_failsafe_replaces_the_schedule_while_the_clock_is_wrong(
    tmp_path: Path, failsafe: str, expected: tuple[bool, str]
) -> None:
    section = LightingSection.model_validate({"clock_failsafe": failsafe})
    clock = ScaledClock(start_ms=NOON_1970, factor=1.0, trust=ClockTrust(status=Says(None)))
    buffer = Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=clock.now_ms)
    runner = LightingRunner(
        outputs=[], configured=SCHEDULE, buffer=buffer, clock=clock, failsafe=section.clock_failsafe
    )
    state = runner.desired("lc1", NOON_1970)
    assert state is not None and (state.on, state.reason) == expected


def test_the_failsafe_is_on_by_default_and_a_bad_value_is_refused() -> None:
    assert LightingSection().clock_failsafe == "on"
    with pytest.raises(ValueError, match="clock_failsafe"):
        LightingSection.model_validate({"clock_failsafe": "dark"})


async def test_the_clock_alarm_is_raised_and_cleared_once_each_across_a_restart(tmp_path: Path) -> None:
    says = Says(False)
    clock = ScaledClock(start_ms=AFTER_FLOOR, factor=1.0, trust=ClockTrust(status=says, recheck_s=0))

    async def kinds() -> list[str]:
        batch = await buffer.read_batch(0, 1000)
        events = [] if batch is None else [decode_record(Event, body) for body in batch.events]
        return [e.kind for e in events if e.data.get("alarm") == CLOCK_UNSYNCHRONISED]

    for synchronised in (False, False, True, True):  # a restart between each
        says.value = synchronised
        buffer = Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=clock.now_ms)
        await buffer.open()
        alarm = ClockAlarm(clock=clock, buffer=buffer)
        await alarm.restore()
        alarm.check()
        alarm.check()
        await buffer.flush()
        seen = await kinds()
        await buffer.close()
    assert seen == ["alarm_raised", "alarm_cleared"]


async def test_an_ended_override_does_not_come_back_when_the_clock_goes_wrong(tmp_path: Path) -> None:
    says = Says(True)
    clock = ScaledClock(start_ms=AFTER_FLOOR, factor=1.0, trust=ClockTrust(status=says, recheck_s=0))
    buffer = Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=clock.now_ms)
    await buffer.open()
    runner = LightingRunner(outputs=[], configured=SCHEDULE, buffer=buffer, clock=clock)
    ended = datetime.fromtimestamp((AFTER_FLOOR - 3_600_000) / 1000, UTC)
    runner.overrides = {"lc1": Override(level_pct=0, until=ended, issued_by="ops")}  # stored last week
    task = asyncio.create_task(runner.run())
    try:
        await wait_until(lambda: not runner.overrides, timeout=5, what="the ended override forgotten")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await buffer.get_setting("lighting.overrides") is None
    says.value = False
    clock.start_ms = 0  # the board rebooted at 1970: the old override's end is "in the future"
    state = runner.desired("lc1", clock.now_ms())
    assert state is not None and state.reason == FAILSAFE_REASON
    await buffer.close()
