"""A cabinet whose clock is wrong (a board without RTC at 1970, or at 2099) is not fooled by it.

Until the clock is synchronised the lights follow the fail-safe (on), readings say
``clock_unsynchronised``, and a command is executed instead of refused on a time the cabinet cannot
tell. When NTP sets the clock, everything returns to the schedule by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cityedge.broker import MosquittoBroker
from cityedge.testing import wait_until, write_agent_config
from edge_agent.agent import Agent
from edge_agent.clock import MAX_SLEEP_S
from edge_agent.clock_sync import ClockTrust, SyncStatus
from edge_agent.config import load_config
from edge_agent.lighting.runner import FAILSAFE_REASON
from protocols.fleet import Event, Reading, decode_record
from protocols.modbus.simulator import LightingControllerSimulator
from protocols.quality import CLOCK_UNSYNCHRONISED, Quality
from tests.integration.test_agent_commands import CABINET, command, publish, statuses, wait_online

pytestmark = pytest.mark.integration

SCHEDULE = """
[lighting.schedule]
latitude = 47.32
longitude = 5.04
timezone = "Europe/Paris"
"""


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# Noon in Dijon (10:00 UTC in summer time, 11:00 local in 1970, when France kept no summer time).
NOON_1970 = _ms("1970-06-21T10:00:00")
NOON_2099 = _ms("2099-06-21T10:00:00")
NOON_RIGHT = _ms("2027-06-21T10:00:00")
NIGHT_RIGHT = _ms("2027-06-21T22:30:00")
FINAL = {"executed", "failed", "expired", "rejected"}


class SteppedClock:
    """A wall clock running at real speed from where it is set, as NTP steps a real one."""

    def __init__(self, start_ms: int, status: SyncStatus) -> None:
        self._offset_ms = start_ms - time.monotonic_ns() // 1_000_000
        self.trust = ClockTrust(status=status, recheck_s=0)

    def step(self, to_ms: int) -> None:
        self._offset_ms = to_ms - time.monotonic_ns() // 1_000_000

    def now_ms(self) -> int:
        return self._offset_ms + time.monotonic_ns() // 1_000_000

    def seconds_until(self, when_ms: int) -> float:
        return min(max((when_ms - self.now_ms()) / 1000, 0.0), MAX_SLEEP_S)

    def synchronised(self) -> bool:
        return self.trust.synchronised(self.now_ms())


class Ntp:
    """What the system says of the clock; None: nothing can tell (then the window alone decides)."""

    def __init__(self, says: bool | None) -> None:
        self.says = says

    def __call__(self) -> bool | None:
        return self.says


async def _readings(agent: Agent) -> list[Reading]:
    batch = await agent.buffer.read_batch(0, 100_000)
    return [] if batch is None else [decode_record(Reading, body) for body in batch.readings]


async def _clock_alarms(agent: Agent) -> list[str]:
    batch = await agent.buffer.read_batch(0, 100_000)
    events = [] if batch is None else [decode_record(Event, body) for body in batch.events]
    return [e.kind for e in events if e.data.get("alarm") == CLOCK_UNSYNCHRONISED]


@asynccontextmanager
async def _running(agent: Agent) -> AsyncIterator[Agent]:
    task = asyncio.create_task(agent.run())
    try:
        await wait_until(lambda: agent.pollers[0].stats.polls > 0, timeout=10, what="the agent polling")
        yield agent
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def _agent(
    tmp_path: Path, broker_url: str, sims: list[LightingControllerSimulator], clock: SteppedClock
) -> Agent:
    config = write_agent_config(
        tmp_path,
        cabinet=CABINET,
        broker_url=broker_url,
        devices=[(f"lc{i + 1}", sim.port) for i, sim in enumerate(sims)],
        poll_interval_s=0.1,
        extra=SCHEDULE,
    )
    return Agent(load_config(config), clock=clock)


WRONG_CLOCKS = pytest.mark.parametrize(
    ("wrong_ms", "ntp_says"),
    [
        pytest.param(NOON_1970, None, id="1970-below-the-floor"),
        pytest.param(NOON_2099, False, id="2099-ntp-unsynchronised"),
        pytest.param(NOON_2099, None, id="2099-nothing-can-tell"),  # above the ceiling
    ],
)


def _ntp_sets_the_clock(clock: SteppedClock, ntp: Ntp) -> int:
    """Step the clock to the right time, then the system says so; returns when it did (ms)."""
    clock.step(NOON_RIGHT)
    ntp.says = True if ntp.says is not None else None  # where nothing can tell, the window decides
    return clock.now_ms()


@WRONG_CLOCKS
async def test_a_wrong_clock_keeps_the_lights_on_at_noon_until_ntp_sets_it(
    tmp_path: Path, controllers: list[LightingControllerSimulator], wrong_ms: int, ntp_says: bool | None
) -> None:
    lc1 = controllers[0]
    ntp = Ntp(ntp_says)
    clock = SteppedClock(wrong_ms, ntp)
    agent = _agent(tmp_path, "mqtt://127.0.0.1:1", [lc1], clock)
    async with _running(agent):
        # At noon the schedule says off; a clock that cannot be trusted gets the fail-safe: on.
        await wait_until(lambda: lc1.relay_on, timeout=10, what="lights on by the fail-safe")
        assert agent.lighting.current["lc1"].reason == FAILSAFE_REASON
        _ntp_sets_the_clock(clock, ntp)
        await wait_until(lambda: not lc1.relay_on, timeout=10, what="lights off: the schedule says day")
        assert agent.lighting.current["lc1"].reason == "day"

        async def alarm_cleared() -> bool:
            return "alarm_cleared" in await _clock_alarms(agent)

        await wait_until(alarm_cleared, timeout=10, what="the clock alarm cleared")
        assert await _clock_alarms(agent) == ["alarm_raised", "alarm_cleared"]


@WRONG_CLOCKS
async def test_readings_on_a_wrong_clock_say_clock_unsynchronised_until_ntp_sets_it(
    tmp_path: Path, controllers: list[LightingControllerSimulator], wrong_ms: int, ntp_says: bool | None
) -> None:
    ntp = Ntp(ntp_says)
    clock = SteppedClock(wrong_ms, ntp)
    agent = _agent(tmp_path, "mqtt://127.0.0.1:1", controllers[:1], clock)
    async with _running(agent):

        async def some_readings() -> bool:
            return len(await _readings(agent)) >= 10

        await wait_until(some_readings, timeout=10, what="readings on the wrong clock")
        before_ntp = await _readings(agent)
        assert {(r.quality, r.reason) for r in before_ntp} == {(Quality.BAD, CLOCK_UNSYNCHRONISED)}
        assert all(r.value is not None for r in before_ntp)  # the value is kept: only its time is doubtful

        synchronised_at = _ntp_sets_the_clock(clock, ntp)

        async def after_ntp() -> list[Reading]:
            return [r for r in await _readings(agent) if synchronised_at < r.ts < NOON_2099]

        async def some_after_ntp() -> bool:
            return len(await after_ntp()) >= 3

        await wait_until(some_after_ntp, timeout=10, what="readings on the right clock")
        assert {(r.quality, r.reason) for r in await after_ntp()} == {(Quality.GOOD, None)}


async def test_a_clock_at_2099_executes_a_command_instead_of_refusing_it_as_expired(
    tmp_path: Path, mosquitto: MosquittoBroker, controllers: list[LightingControllerSimulator]
) -> None:
    lc1 = controllers[0]
    clock = SteppedClock(NOON_2099, Ntp(False))
    agent = _agent(tmp_path, mosquitto.url, [lc1], clock)
    async with _running(agent):
        await wait_online(mosquitto)
        off = command("switch", device="lc1", on=False, not_after_s=60)  # valid for a minute, real time
        await publish(mosquitto, off)
        await wait_until(
            lambda: FINAL & set(statuses(agent.buffer.path, off.id)), timeout=10, what="a final result"
        )
        assert statuses(agent.buffer.path, off.id) == ["accepted", "executed"]
        # The operator's order holds over the fail-safe while the clock cannot tell when it ends.
        assert not lc1.relay_on
        assert agent.lighting.current["lc1"].reason != FAILSAFE_REASON

        # An end the operator gave (an hour from now, real time) is not judged past on 2099 either.
        dim = command("dim", device="lc1", level_pct=40, until=int(time.time() * 1000) + 3_600_000)
        await publish(mosquitto, dim)
        await wait_until(
            lambda: FINAL & set(statuses(agent.buffer.path, dim.id)), timeout=10, what="a final result"
        )
        assert statuses(agent.buffer.path, dim.id) == ["accepted", "executed"]
        assert (lc1.relay_on, lc1.dim_level) == (True, 40)


async def test_an_override_given_no_end_on_a_2099_clock_ends_when_ntp_sets_it_across_a_restart(
    tmp_path: Path, mosquitto: MosquittoBroker, controllers: list[LightingControllerSimulator]
) -> None:
    lc1 = controllers[0]
    ntp = Ntp(False)
    clock = SteppedClock(NOON_2099, ntp)
    async with _running(_agent(tmp_path, mosquitto.url, [lc1], clock)) as agent:
        await wait_online(mosquitto)
        off = command("switch", device="lc1", on=False)  # its end: the schedule's next change, in 2099
        await publish(mosquitto, off)
        await wait_until(
            lambda: "executed" in statuses(agent.buffer.path, off.id), timeout=10, what="executed"
        )
        assert not lc1.relay_on
    async with _running(_agent(tmp_path, mosquitto.url, [lc1], clock)) as agent:  # a reboot
        clock.step(NIGHT_RIGHT)
        ntp.says = True
        # The schedule says on at night; the override's end, reckoned on 2099, would hold it off.
        await wait_until(lambda: lc1.relay_on, timeout=10, what="lights on: the schedule says night")
        assert agent.lighting.overrides == {}
