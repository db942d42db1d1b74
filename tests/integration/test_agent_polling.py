"""The agent polls real Modbus TCP simulators; a dead or mute device never holds up the others."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cityedge.testing import wait_until, write_agent_config
from edge_agent.agent import Agent
from edge_agent.config import load_config
from protocols.fleet import Event, Reading, decode_record
from protocols.modbus.simulator import LightingControllerSimulator
from protocols.quality import Quality
from tests.clocks import synchronised_system_clock

pytestmark = pytest.mark.integration


async def buffered(agent: Agent) -> tuple[list[Reading], list[Event]]:
    batch = await agent.buffer.read_batch(0, 100_000)
    if batch is None:
        return [], []
    readings = [decode_record(Reading, body) for body in batch.readings]
    events = [decode_record(Event, body) for body in batch.events]
    return readings, events


async def test_dead_and_mute_devices_do_not_delay_the_healthy_one(
    tmp_path: Path, controllers: list[LightingControllerSimulator]
) -> None:
    healthy, failing = controllers
    config = write_agent_config(
        tmp_path,
        cabinet="cab-poll",
        broker_url="mqtt://127.0.0.1:1",  # nothing listens: records stay in the buffer
        devices=[("lc1", healthy.port), ("lc2", failing.port)],
        poll_interval_s=0.1,
        timeout_s=0.5,
    )
    agent = Agent(load_config(config), clock=synchronised_system_clock())
    task = asyncio.create_task(agent.run())
    lc1, lc2 = agent.pollers
    try:
        await wait_until(lambda: lc1.stats.polls >= 5 and lc2.stats.online, timeout=10, what="polls")

        # lc2 goes silent (answers nothing: every read costs its full timeout), then disappears.
        failing.set_unresponsive(True)
        await wait_until(lambda: lc2.stats.failures >= 2, timeout=10, what="lc2 timeouts")
        before = lc1.stats.polls
        await wait_until(lambda: lc2.stats.failures >= 4, timeout=10, what="more lc2 timeouts")
        # lc2 spent >= 2 timeouts of 0.5 s; lc1 kept its 0.1 s rhythm meanwhile (>= 70% of nominal).
        assert lc1.stats.polls - before >= 7
        failing.set_unresponsive(False)
        await failing.stop()
        await wait_until(lambda: lc2.stats.failures >= 8, timeout=10, what="lc2 refusals")
        await failing.start()
        # Back only after three good reads in a row (the alarm hysteresis), not on the first one.
        await wait_until(lambda: lc2.stats.online, timeout=10, what="lc2 answering")
        assert lc2.lost
        await wait_until(lambda: not lc2.lost, timeout=10, what="lc2 back")
        await agent.buffer.flush()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    readings, events = await _reopen_and_read(config)
    lost = [e for e in events if e.kind == "device_lost"]
    back = [e for e in events if e.kind == "device_back"]
    # One lost and one back event for the whole outage (timeouts then refusals), not one per poll.
    assert [e.source for e in lost] == ["lc2"]
    assert [e.source for e in back] == ["lc2"]
    assert lost[0].seq < back[0].seq
    bad = [r for r in readings if r.quality == Quality.BAD]
    assert bad and all(r.point.startswith("lc2/") and r.value is None and r.reason for r in bad)
    assert {r.reason for r in bad} >= {"timeout", "unreachable"}
    assert not [r for r in readings if r.point.startswith("lc1/") and r.quality != Quality.GOOD]


async def _reopen_and_read(config: Path) -> tuple[list[Reading], list[Event]]:
    agent = Agent(load_config(config), clock=synchronised_system_clock())
    await agent.buffer.open()
    try:
        return await buffered(agent)
    finally:
        await agent.buffer.close()


async def test_readings_follow_the_simulated_controller(
    tmp_path: Path, controllers: list[LightingControllerSimulator]
) -> None:
    sim = controllers[0]
    config = write_agent_config(
        tmp_path, cabinet="cab-values", broker_url="mqtt://127.0.0.1:1", devices=[("lc1", sim.port)]
    )
    agent = Agent(load_config(config), clock=synchronised_system_clock())
    task = asyncio.create_task(agent.run())
    try:
        await wait_until(lambda: agent.pollers[0].stats.polls >= 3, timeout=10, what="polls")
        await agent.buffer.flush()
        readings, events = await buffered(agent)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    points = {r.point for r in readings}
    assert {"lc1/power_w", "lc1/energy_wh", "lc1/relay", "lc1/dim_level_pct"} <= points
    assert [e.kind for e in events][:1] == ["agent_started"]
    seqs = [r.seq for r in readings] + [e.seq for e in events]
    assert sorted(seqs) == list(range(1, len(seqs) + 1))


async def test_a_device_lost_before_a_restart_is_reported_back_after_it(
    tmp_path: Path, controllers: list[LightingControllerSimulator]
) -> None:
    sim = controllers[0]
    config = write_agent_config(
        tmp_path, cabinet="cab-restart", broker_url="mqtt://127.0.0.1:1", devices=[("lc1", sim.port)]
    )
    await sim.stop()
    for _ in range(2):  # lost in the first run; back in the second, once the controller is repaired
        agent = Agent(load_config(config), clock=synchronised_system_clock())
        task = asyncio.create_task(agent.run())
        poller = agent.pollers[0]
        try:
            if sim.serving:
                await wait_until(
                    lambda poller=poller: poller.stats.polls >= 3 and not poller.lost,
                    timeout=10,
                    what="lc1 back",
                )
            else:
                await wait_until(lambda poller=poller: poller.lost, timeout=10, what="lc1 lost")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await sim.start()
    _, events = await _reopen_and_read(config)
    assert [e.kind for e in events if e.source == "lc1"] == ["device_lost", "device_back"]
