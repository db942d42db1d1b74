"""Three days without network, in accelerated time: the cabinet keeps the lights right on its own.

The broker is down from the start. The agent runs on a clock 7,200 times faster than real time (three
days in 36 s) across the night daylight saving time begins in Europe/Paris. The simulated controller
must be switched and dimmed exactly as the schedule says; once the broker is back, every reading and
event reaches central.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from central.server import CentralServer
from cityedge.broker import MosquittoBroker
from cityedge.testing import wait_until, write_agent_config
from edge_agent.agent import Agent
from edge_agent.clock import ScaledClock
from edge_agent.config import load_config
from edge_agent.lighting import parse_schedule, transitions
from protocols.modbus.profile import default_profile_dirs, load_profile
from protocols.modbus.simulator import LightingControllerSimulator
from tests.integration.fleet_rig import FleetRig

pytestmark = pytest.mark.integration

FACTOR = 7200.0
START = datetime(2026, 3, 27, 11, 0, tzinfo=UTC)  # noon in Paris, two nights before DST begins
DAYS = 3
# How far (simulated) a switching may lag the schedule: the runner wakes on time, the observer
# samples every 5 ms of real time (36 s simulated); a loaded CI machine adds some latency.
TOLERANCE = timedelta(minutes=4)
SCHEDULE = """
[lighting.schedule]
latitude = 47.32
longitude = 5.04
timezone = "Europe/Paris"
switch_on = { event = "sunset", offset_min = 10 }
switch_off = { event = "sunrise", offset_min = -10 }
dimming = [{ start = "22:00", end = "05:00", level_pct = 70 }]
exceptions = [{ date = "2026-03-28", mode = "level", level_pct = 100, note = "festival" }]
"""


async def test_three_days_offline_lights_follow_the_schedule_and_nothing_is_lost(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    await mosquitto.kill()  # no network for the whole run
    profile = load_profile("lighting-single-circuit", default_profile_dirs())
    clock = ScaledClock(start_ms=int(START.timestamp() * 1000), factor=FACTOR)
    async with LightingControllerSimulator(profile=profile, seed=3) as controller:
        config = write_agent_config(
            tmp_path / "cab",
            cabinet="cab-offline",
            broker_url=mosquitto.url,
            devices=[("lc1", controller.port)],
            poll_interval_s=0.5,  # an hour of simulated time between polls
            extra=SCHEDULE,
        )
        loaded = load_config(config)
        assert loaded.schedule is not None
        agent = Agent(loaded, clock=clock)
        end = START + timedelta(days=DAYS)
        observed: list[tuple[datetime, tuple[bool, int]]] = []

        def lamps() -> tuple[bool, int]:
            return (controller.relay_on, round(controller.dim_level) if controller.relay_on else 0)

        task = asyncio.create_task(agent.run())
        try:
            while clock.now_ms() < end.timestamp() * 1000:
                now = datetime.fromtimestamp(clock.now_ms() / 1000, UTC)
                if not observed or observed[-1][1] != lamps():
                    observed.append((now, lamps()))
                await asyncio.sleep(0.005)  # sampling the simulated lamps, not waiting for them
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    expected = [(at, (state.on, state.level_pct)) for at, state in transitions(loaded.schedule, START, end)]
    assert [state for _, state in observed] == [state for _, state in expected]
    for (seen_at, state), (due_at, _) in zip(observed[1:], expected[1:], strict=True):
        assert due_at <= seen_at + timedelta(seconds=1) and seen_at - due_at < TOLERANCE, (
            f"{state} due at {due_at}, seen at {seen_at}"
        )
    # Three nights: the festival night at 100 % all night, the others dimmed to 70 % from 22:00.
    assert sum(1 for _, (on, _) in expected if on) >= 3 and (True, 70) in [s for _, s in expected]
    assert parse_schedule(loaded.config.lighting.schedule or {}) == loaded.schedule

    # The network is back: everything the cabinet recorded while offline reaches central, once.
    await mosquitto.start()
    rig = FleetRig(
        tmp_path, broker_url=mosquitto.url, cabinet="cab-offline", device_port=0, agent_dir=tmp_path / "cab"
    )
    backlog_before = rig.produced_last_seq()
    assert backlog_before > 100
    async with CentralServer(db=rig.central_db, broker_url=mosquitto.url, http_port=0):
        drained = Agent(load_config(rig.write_config(with_devices=False)))
        task = asyncio.create_task(drained.run())
        try:
            await wait_until(rig.agent_drained, timeout=60, what="the offline backlog to drain")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        seqs = rig.central_seqs()
        assert sorted(seqs) == list(range(1, rig.produced_last_seq() + 1))
