"""The agent on an RS-485 line: two controllers of different models share one serial port (a pty)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cityedge.testing import wait_until
from edge_agent.agent import Agent
from edge_agent.config import load_config
from protocols.fleet import Reading, decode_record
from protocols.modbus.bus_simulator import SerialBusSimulator
from protocols.modbus.profile import default_profile_dirs, load_profile
from protocols.modbus.pty_pair import PtyPair
from protocols.modbus.simulator import LightingControllerSimulator
from protocols.quality import Quality
from tests.clocks import synchronised_system_clock

pytestmark = pytest.mark.integration


def config(port: Path) -> str:
    devices = ""
    for name, unit, profile in (
        ("lc1", 1, "lighting-single-circuit"),
        ("cab1", 7, "lighting-cabinet-3phase"),
    ):
        devices += f"""
[[devices]]
name = "{name}"
driver = "modbus-rtu"
port = "{port}"
baudrate = 19200
parity = "N"
unit = {unit}
profile = "{profile}"
poll_interval_s = 0.3
timeout_s = 0.3
"""
    return f"""
[cabinet]
id = "cab-rs485"
[broker]
url = "mqtt://127.0.0.1:1"
[buffer]
commit_interval_s = 0.1
{devices}"""


async def test_two_models_on_one_serial_line_are_polled_and_switched(tmp_path: Path) -> None:
    dirs = default_profile_dirs()
    units = {
        1: LightingControllerSimulator(profile=load_profile("lighting-single-circuit", dirs), seed=1),
        7: LightingControllerSimulator(profile=load_profile("lighting-cabinet-3phase", dirs), seed=2),
    }
    async with (
        PtyPair(tmp_path) as pty,
        SerialBusSimulator(port=pty.server_path, units=units, baudrate=19_200),
    ):
        path = tmp_path / "agent.toml"
        path.write_text(config(pty.client_path))
        agent = Agent(load_config(path), clock=synchronised_system_clock())
        task = asyncio.create_task(agent.run())
        try:
            await wait_until(
                lambda: all(p.stats.polls >= 3 and p.stats.online for p in agent.pollers),
                timeout=20,
                what="both units polled",
            )
            assert sorted(agent.lighting.outputs) == ["cab1", "lc1"]
            await agent.lighting.set_override(["lc1", "cab1"], level_pct=60, until_ms=None, issued_by="test")
            assert units[1].relay_on and units[1].dim_level == 60
            assert all(units[7].circuit_on(n) and units[7].circuit_dim_level(n) == 60 for n in (1, 2, 3, 4))
            await agent.buffer.flush()
            batch = await agent.buffer.read_batch(0, 100_000)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert batch is not None
    readings = [decode_record(Reading, body) for body in batch.readings]
    points = {r.point for r in readings if r.quality == Quality.GOOD}
    assert {"lc1/power_w", "cab1/power_l1_w", "cab1/energy_wh", "cab1/door_open"} <= points
