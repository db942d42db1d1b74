"""Whether the agent trusts its clock: the window, the system's NTP status, jumps, and what they miss."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from cityedge.testing import wait_until
from edge_agent.buffer import Buffer
from edge_agent.clock import ScaledClock
from edge_agent.clock_alarm import ClockAlarm
from edge_agent.clock_sync import BUILD_FLOOR_MS, ClockTrust, kernel_status, system_status, timesyncd_status
from edge_agent.config import LightingSection
from edge_agent.lighting import parse_schedule
from edge_agent.lighting.runner import FAILSAFE_REASON, LightingRunner
from protocols.fleet import Event, decode_record
from protocols.fleet.schedule import Override
from protocols.quality import CLOCK_UNSYNCHRONISED

AFTER_FLOOR = BUILD_FLOOR_MS + 86_400_000
HOUR_MS = 3_600_000
MID_WINDOW = BUILD_FLOOR_MS + 365 * 86_400_000  # a year after the floor: a jump either way stays in it
NOON_2099 = int(datetime(2099, 6, 21, 10, tzinfo=UTC).timestamp() * 1000)  # a flat RTC battery


def _years_after_floor(years: int) -> int:
    floor = datetime.fromtimestamp(BUILD_FLOOR_MS / 1000, UTC)
    return int(floor.replace(year=floor.year + years).timestamp() * 1000)


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


@pytest.mark.parametrize("says", [None, True], ids=["cannot-tell", "synchronised"])
def test_a_clock_at_2099_is_never_synchronised_whatever_the_system_says(says: bool | None) -> None:
    # Where nothing can tell (a unit whose sandbox refuses adjtimex, no timesyncd marker), the floor
    # alone let 2099 through: the lights followed the 2099 schedule, commands were judged by it.
    trust = ClockTrust(status=Says(says), recheck_s=0)
    assert not trust.synchronised(NOON_2099)


def test_the_window_is_from_the_floor_to_15_years_after_it() -> None:
    ceiling = _years_after_floor(15)  # a cabinet's contract runs 12 years

    def synchronised(now_ms: int) -> bool:  # a trust of its own each: far apart readings are jumps
        return ClockTrust(status=Says(None), recheck_s=0).synchronised(now_ms)

    assert not synchronised(BUILD_FLOOR_MS - 1)
    assert synchronised(BUILD_FLOOR_MS)
    assert synchronised(_years_after_floor(12))
    assert synchronised(ceiling)
    assert not synchronised(ceiling + 1)
    assert not synchronised(NOON_2099)


@pytest.mark.parametrize(
    "jump_ms", [2 * HOUR_MS, -2 * HOUR_MS, 200 * 86_400_000], ids=["+2h", "-2h", "+200d"]
)
@pytest.mark.parametrize("says_after", [False, None], ids=["unsynchronised", "cannot-tell"])
def test_a_jump_of_the_wall_clock_withdraws_trust_until_the_system_says_synchronised_again(
    jump_ms: int, says_after: bool | None
) -> None:
    # The monotonic clock barely moves between these checks: the wall clock jumped.
    says = Says(True)
    trust = ClockTrust(status=says, recheck_s=0)
    assert trust.synchronised(MID_WINDOW)
    says.value = says_after  # once trusted, neither would withdraw trust by itself
    assert trust.synchronised(MID_WINDOW + 1000)
    assert not trust.synchronised(MID_WINDOW + jump_ms)
    assert not trust.synchronised(MID_WINDOW + jump_ms + 1000)  # not even "cannot tell" restores it
    says.value = True
    assert trust.synchronised(MID_WINDOW + jump_ms + 2000)
    says.value = says_after
    assert trust.synchronised(MID_WINDOW + jump_ms + 3000)  # trusted again, as before the jump


def test_a_step_under_an_hour_keeps_trust() -> None:
    says = Says(True)
    trust = ClockTrust(status=says, recheck_s=0)
    assert trust.synchronised(MID_WINDOW)
    says.value = None
    assert trust.synchronised(MID_WINDOW + 59 * 60_000)  # NTP correcting a drift, a leap second
    assert trust.synchronised(MID_WINDOW)


class Monotonic:
    def __init__(self) -> None:
        self.ms = 10_000_000

    def __call__(self) -> int:
        return self.ms


def test_a_clock_drifting_offline_for_days_keeps_trust_and_a_jump_asks_at_once_since_when() -> None:
    says = Says(True)
    asked_since: list[int] = []

    def resync(since_ms: int) -> bool | None:
        asked_since.append(since_ms)
        return None

    mono = Monotonic()
    trust = ClockTrust(status=says, resync=resync, recheck_s=3600, monotonic_ms=mono)
    wall = MID_WINDOW
    assert trust.synchronised(wall)
    says.value = False
    for _ in range(72):  # three days offline, checked hourly: trusted throughout
        mono.ms += HOUR_MS
        wall += HOUR_MS + 200  # a drift of 200 ms an hour
        assert trust.synchronised(wall)
    assert asked_since == []
    mono.ms += 60_000
    wall += 60_000 + 3 * HOUR_MS  # set three hours ahead within this minute
    assert not trust.synchronised(wall)
    assert asked_since == [wall - 60_000]  # asked at once, though asked a minute ago: since the jump
    assert says.asked == 1 + 72  # the plain status was asked every hour, and not since the jump


def test_a_timesyncd_marker_proves_a_resync_only_if_touched_since_the_jump(tmp_path: Path) -> None:
    marker = tmp_path / "synchronized"
    now_ms = time.time_ns() // 1_000_000
    assert timesyncd_status(marker, since_ms=now_ms - HOUR_MS) is None  # absent
    marker.touch()
    assert timesyncd_status(marker, since_ms=now_ms - HOUR_MS) is True
    touched_before = (now_ms - 2 * HOUR_MS) * 1_000_000
    os.utime(marker, ns=(touched_before, touched_before))
    assert timesyncd_status(marker, since_ms=now_ms - HOUR_MS) is None  # before a forward jump
    assert timesyncd_status(marker) is True  # since boot: it still counts when no jump was seen
    touched_ahead = (now_ms + 2 * HOUR_MS) * 1_000_000
    os.utime(marker, ns=(touched_ahead, touched_ahead))
    # Touched on the old clock, then the clock jumped back: after now on the new one.
    assert timesyncd_status(marker, since_ms=now_ms - HOUR_MS) is None


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


AGENT_UNIT = Path(__file__).resolve().parents[2] / "packaging" / "systemd" / "cityedge-agent.service"


def test_the_shipped_unit_lets_the_agent_read_the_ntp_status_but_not_set_the_clock() -> None:
    settings = [line.partition("=") for line in AGENT_UNIT.read_text().splitlines() if "=" in line]
    values = {key: [v for k, _, v in settings if k == key] for key, _, _ in settings}
    # ProtectClock= denies adjtimex and clock_adjtime whole, reads (modes 0) included.
    assert values.get("ProtectClock", ["no"])[-1] in ("no", "false", "off", "0")
    # glibc's adjtimex() makes the clock_adjtime system call (clock_adjtime64 on 32-bit ARM): each is
    # denied with @privileged (it holds @clock), then allowed back by a later, positive filter.
    # A filter is (deny, names): "~a b" denies a and b.
    filters = [(v.startswith("~"), v.removeprefix("~").split()) for v in values["SystemCallFilter"]]
    assert filters[0] == (False, ["@system-service"])  # an allow list: later entries add or take away
    denied_at = filters.index((True, ["@privileged", "@resources"]))
    for call in ("adjtimex", "clock_adjtime", "clock_adjtime64"):
        last = max((i for i, (_, names) in enumerate(filters) if call in names), default=-1)
        assert last > denied_at and not filters[last][0], call
    # Setting the clock needs CAP_SYS_TIME, which the empty bounding set leaves out.
    assert values["CapabilityBoundingSet"] == [""]
    assert values["AmbientCapabilities"] == [""]
    assert values["NoNewPrivileges"] == ["yes"]


SCHEDULE = parse_schedule({"latitude": 47.32, "longitude": 5.04, "timezone": "Europe/Paris"})
NOON_1970 = 15_000_000_000  # 1970-06-23T14:40Z: daytime in Dijon


@pytest.mark.parametrize(
    ("failsafe", "expected"),
    [("on", (True, FAILSAFE_REASON)), ("off", (False, FAILSAFE_REASON)), ("schedule", (False, "day"))],
)
def test_the_failsafe_replaces_the_schedule_while_the_clock_is_wrong(
    tmp_path: Path, failsafe: str, expected: tuple[bool, str]
) -> None:
    section = msgspec.convert({"clock_failsafe": failsafe}, LightingSection)
    clock = ScaledClock(start_ms=NOON_1970, factor=1.0, trust=ClockTrust(status=Says(None)))
    buffer = Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=clock.now_ms)
    runner = LightingRunner(
        outputs=[], configured=SCHEDULE, buffer=buffer, clock=clock, failsafe=section.clock_failsafe
    )
    state = runner.desired("lc1", NOON_1970)
    assert state is not None and (state.on, state.reason) == expected


def test_the_failsafe_replaces_the_schedule_on_a_2099_clock_where_nothing_can_tell(tmp_path: Path) -> None:
    clock = ScaledClock(start_ms=NOON_2099, factor=1.0, trust=ClockTrust(status=Says(None)))
    buffer = Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=clock.now_ms)
    runner = LightingRunner(outputs=[], configured=SCHEDULE, buffer=buffer, clock=clock)
    state = runner.desired("lc1", NOON_2099)  # noon in Dijon: the schedule says off
    assert state is not None and (state.on, state.reason) == (True, FAILSAFE_REASON)


def test_the_failsafe_is_on_by_default_and_a_bad_value_is_refused() -> None:
    assert LightingSection().clock_failsafe == "on"
    with pytest.raises(msgspec.ValidationError, match="clock_failsafe"):
        msgspec.convert({"clock_failsafe": "dark"}, LightingSection)


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
