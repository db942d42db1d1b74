"""The lighting runner's writes against simulated controllers over real sockets: all or nothing.

A dim writes the level, then the relay. When the relay fails, the level is put back; when it cannot be
put back, the agent says exactly what it left changed, and records what the output holds now.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer
from edge_agent.clock import ScaledClock
from edge_agent.lighting.runner import LightingRunner, lighting_outputs
from edge_agent.lighting.writes import PartialWrite, UndoneWrite
from protocols.driver import FieldDriver
from protocols.errors import DriverError
from protocols.fleet import Event, decode_record
from protocols.modbus.client import ModbusTcpDriver
from protocols.modbus.profile import Profile, default_profile_dirs, load_profile
from protocols.modbus.simulator import LightingControllerSimulator

pytestmark = pytest.mark.integration

CLOCK = ScaledClock(start_ms=1_790_000_000_000, factor=1.0)
HOUR_MS = 3_600_000


@dataclass
class Rig:
    sims: list[LightingControllerSimulator]
    buffer: Buffer
    runner: LightingRunner

    async def events(self, kind: str) -> list[Event]:
        await self.buffer.flush()
        batch = await self.buffer.read_batch(0, 100_000)
        events = [] if batch is None else [decode_record(Event, body) for body in batch.events]
        return [event for event in events if event.kind == kind]

    async def dim(self, names: list[str], level_pct: int) -> None:
        await self.runner.set_override(
            names, level_pct=level_pct, until_ms=CLOCK.now_ms() + HOUR_MS, issued_by="test"
        )


async def rig_for(stack: AsyncExitStack, tmp_path: Path, profile: Profile, count: int) -> Rig:
    sims = [LightingControllerSimulator(profile=profile, seed=i) for i in range(count)]
    devices: list[tuple[str, FieldDriver]] = []
    for index, sim in enumerate(sims):
        await stack.enter_async_context(sim)
        driver = ModbusTcpDriver(
            device=f"lc{index + 1}", host=sim.host, port=sim.port, unit=sim.unit, profile=profile
        )
        await stack.enter_async_context(driver)
        devices.append((f"lc{index + 1}", driver))
    buffer = await stack.enter_async_context(
        Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=CLOCK.now_ms)
    )
    runner = LightingRunner(
        outputs=lighting_outputs(devices, None), configured=None, buffer=buffer, clock=CLOCK
    )
    await runner.open()
    return Rig(sims, buffer, runner)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """Two single-circuit controllers (relay on a coil), both lit at 100 %."""
    async with AsyncExitStack() as stack:
        found = await rig_for(
            stack, tmp_path, load_profile("lighting-single-circuit", default_profile_dirs()), 2
        )
        for sim in found.sims:
            sim.set_point("relay", True)
        yield found


async def test_a_dim_that_fails_on_the_relay_puts_the_level_back(rig: Rig) -> None:
    lc1 = rig.sims[0]
    lc1.inject_write_fault("relay")
    with pytest.raises(UndoneWrite) as caught:
        await rig.dim(["lc1"], 50)
    assert (lc1.relay_on, lc1.dim_level) == (True, 100)
    assert "undone: lc1/dim_level_pct put back" in str(caught.value)
    assert "Modbus exception 4" in str(caught.value)
    assert await rig.events("lighting_state") == []  # nothing changed, nothing to show
    assert await rig.events("lighting_left_changed") == []
    assert rig.runner.overrides == {}


async def test_a_cabinet_wide_dim_failing_on_the_second_output_puts_the_first_back(rig: Rig) -> None:
    lc2 = rig.sims[1]
    lc2.inject_write_fault("relay")
    with pytest.raises(UndoneWrite) as caught:
        await rig.dim(["lc1", "lc2"], 40)
    assert [(sim.relay_on, sim.dim_level) for sim in rig.sims] == [(True, 100), (True, 100)]
    assert caught.value.device == "lc2"
    assert {change.name for change in caught.value.restored} == {"lc1/dim_level_pct", "lc2/dim_level_pct"}
    assert await rig.events("lighting_state") == []


async def test_what_cannot_be_put_back_is_named_and_shown(rig: Rig) -> None:
    lc1 = rig.sims[0]
    lc1.inject_write_fault(after_writes=1)  # the level is taken; the relay and the undo are refused
    with pytest.raises(PartialWrite) as caught:
        await rig.dim(["lc1"], 50)
    assert (lc1.relay_on, lc1.dim_level) == (True, 50)
    error = caught.value
    assert str(error).startswith("lc1: left changed: lc1/dim_level_pct=50; after: lc1: Modbus exception 4")
    [warning] = await rig.events("lighting_left_changed")
    assert (warning.severity, warning.source) == ("warning", "lc1")
    assert warning.data["points"] == "lc1/dim_level_pct=50"
    [state] = await rig.events("lighting_state")
    assert (state.source, state.data["on"], state.data["level_pct"]) == ("lc1", True, 50)
    assert state.data["reason"] == "left by a failed write: relay=on, dim_level_pct=50"
    assert "override_until_ms" not in state.data  # the failed command's override is not kept
    assert rig.runner.overrides == {}

    lc1.clear_write_fault()  # the runner drives the output again: the lamps go back to what it wants
    await rig.dim(["lc1"], 70)
    assert (lc1.relay_on, lc1.dim_level) == (True, 70)
    assert [e.data["level_pct"] for e in await rig.events("lighting_state")] == [50, 70]


async def test_a_write_without_an_answer_is_put_back_too(rig: Rig) -> None:
    """The relay's write times out: it may have been taken, so it is put back as well; read again,
    the device shows it was not, so nothing is left changed."""
    lc1 = rig.sims[0]
    lc1.inject_write_fault("relay", silent=True)
    with pytest.raises(UndoneWrite) as caught:
        await rig.dim(["lc1"], 0)  # switching off: the relay write is a change
    assert caught.value.reason == "timeout"
    assert (lc1.relay_on, lc1.dim_level) == (True, 100)
    assert await rig.events("lighting_left_changed") == []


async def test_a_device_that_cannot_be_read_is_not_written(rig: Rig) -> None:
    lc1 = rig.sims[0]
    lc1.inject_exception(4)  # every request refused: the read before the first write fails
    with pytest.raises(DriverError):
        await rig.dim(["lc1"], 50)
    lc1.inject_exception(None)
    assert (lc1.relay_on, lc1.dim_level) == (True, 100)


async def test_an_on_off_output_in_a_holding_register_is_switched(tmp_path: Path) -> None:
    """The lighting path end to end with a profile whose relay is a holding register (written 1/0)."""
    profile = load_profile("lighting-register-relay", default_profile_dirs())
    async with AsyncExitStack() as stack:
        rig = await rig_for(stack, tmp_path, profile, 1)
        sim = rig.sims[0]
        assert not sim.relay_on
        await rig.dim(["lc1"], 40)
        assert (sim.relay_on, sim.dim_level) == (True, 40)
        await rig.dim(["lc1"], 0)
        assert not sim.relay_on
        [on, off] = await rig.events("lighting_state")
        assert (on.data["on"], on.data["level_pct"], off.data["on"]) == (True, 40, False)
