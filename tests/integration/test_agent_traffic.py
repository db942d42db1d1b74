"""A traffic-light controller watched by the real agent: the OPC UA simulator over a real socket, the
agent's own alarm engine and buffer.

Each injected fault (flashing, dark, controller fault, detector fault) raises its alarm once and clears
it once; a controller restart mid-subscription is recovered with no operator action (a change made
after it still arrives pushed, long before the next poll).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.agent import Agent
from protocols.opcua.simulator import TrafficControllerSimulator
from protocols.testing import wait_until
from tests.integration.agent_buffer import alarm_events, buffered, running_agent

pytestmark = pytest.mark.integration

POLL_S = 3600  # only the first poll: whatever arrives after it was pushed by the subscription


def junction_cabinet(tmp_path: Path, controller: TrafficControllerSimulator, poll_s: float = POLL_S) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[cabinet]
id = "cab-junction"
[broker]
url = "mqtt://127.0.0.1:1"
[buffer]
commit_interval_s = 0.05
[[devices]]
name = "tc1"
driver = "opcua"
endpoint = "{controller.endpoint}"
profile = "traffic-controller-generic"
publishing_interval_ms = 100
reconnect_initial_s = 0.1
reconnect_max_s = 0.5
keepalive_s = 0.5
poll_interval_s = {poll_s}
timeout_s = 2
[devices.alarms]
raise_after = 1
clear_after = 1
"""
    )
    return path


async def modes(agent: Agent) -> list[object]:
    readings, _ = await buffered(agent)
    return [r.value for r in readings if r.point == "tc1/mode"]


async def test_each_injected_fault_raises_its_alarm_once_and_clears_it_once(tmp_path: Path) -> None:
    async with (
        TrafficControllerSimulator(tick_s=0.05) as controller,
        running_agent(junction_cabinet(tmp_path, controller, poll_s=0.3)) as agent,
    ):
        alarms = agent.alarms["tc1"]
        await wait_until(lambda: agent.pollers[0].stats.polls >= 1, timeout=15, what="the first poll")
        faults = [
            ("controller_flashing", controller.inject_flashing, controller.clear_mode),
            ("controller_dark", controller.inject_dark, controller.clear_mode),
            ("controller_fault", lambda: controller.set_fault(True), lambda: controller.set_fault(False)),
            (
                "detector_fault_d2",
                lambda: controller.set_detector_fault(2, True),
                lambda: controller.set_detector_fault(2, False),
            ),
        ]
        for alarm, inject, clear in faults:
            await inject()
            await wait_until(lambda a=alarm: a in alarms.active, timeout=10, what=f"{alarm} raised")
            polls = agent.pollers[0].stats.polls
            # Polls and pushes both see the fault for a while: still one raise.
            await wait_until(lambda p=polls: agent.pollers[0].stats.polls >= p + 3, timeout=10, what="polls")
            await clear()
            await wait_until(lambda a=alarm: a not in alarms.active, timeout=10, what=f"{alarm} cleared")
        found = [(kind, alarm) for kind, alarm, _ in await alarm_events(agent)]
        assert found == [
            (kind, alarm) for alarm, _, _ in faults for kind in ("alarm_raised", "alarm_cleared")
        ]


async def test_a_restarted_controller_is_subscribed_again_without_anyone(tmp_path: Path) -> None:
    async with (
        TrafficControllerSimulator(tick_s=0.05) as controller,
        running_agent(junction_cabinet(tmp_path, controller)) as agent,
    ):
        poller = agent.pollers[0]
        await wait_until(lambda: poller.stats.polls == 1, timeout=15, what="the first poll")
        await controller.inject_flashing()
        await wait_until(lambda: _has(agent, "flashing"), timeout=10, what="flashing pushed")
        await controller.restart()
        pushes = poller.pushes
        await controller.inject_dark()
        await wait_until(lambda: _has(agent, "dark"), timeout=20, what="dark pushed after the restart")
        assert poller.stats.polls == 1, "arrived by a poll, not by the re-created subscription"
        assert poller.pushes > pushes
        assert [(k, a) for k, a, _ in await alarm_events(agent)][-1] == ("alarm_raised", "controller_dark")


async def _has(agent: Agent, mode: str) -> bool:
    return mode in await modes(agent)
