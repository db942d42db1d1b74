"""A command that fails part way, from central to simulated controllers and back: what central shows.

Central (its command service, as the HTTP API uses it), a real Mosquitto, a real agent and two Modbus
simulators in this event loop. A dim writes the level, then the relay; the simulator refuses the relay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from central.auth import Identity
from central.commands import CommandService
from central.lighting_view import StateView, state_view
from central.server import CentralServer
from central.store.auth_rows import Role
from central.store.rows import CommandRow
from cityedge.broker import MosquittoBroker
from cityedge.testing import wait_until, write_agent_config
from edge_agent.agent import Agent
from edge_agent.config import load_config
from protocols.fleet.events import LIGHTING_STATE
from protocols.modbus.simulator import LightingControllerSimulator
from tests.clocks import synchronised_system_clock

pytestmark = pytest.mark.integration

CAB = "cab-partial"


@pytest.fixture
async def service(
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    central: CentralServer,
    controllers: list[LightingControllerSimulator],
) -> AsyncIterator[CommandService]:
    for sim in controllers:
        sim.set_point("relay", True)  # lit at 100 %
    config = write_agent_config(
        tmp_path / CAB,
        cabinet=CAB,
        broker_url=mosquitto.url,
        devices=[(f"lc{i + 1}", sim.port) for i, sim in enumerate(controllers)],
        poll_interval_s=0.2,
        timeout_s=1.0,
    )
    # The host's NTP status is not under test: with no schedule, only the commands drive the lights.
    agent = Agent(load_config(config), clock=synchronised_system_clock())
    task = asyncio.create_task(agent.run())
    try:

        async def online() -> bool:
            row = await central.store.cabinet(CAB)
            return row is not None and row.online

        await wait_until(online, timeout=20, what="the cabinet online at central")
        yield CommandService(store=central.store, sender=central.dispatcher)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def dim(
    service: CommandService, central: CentralServer, level_pct: int, device: str | None
) -> CommandRow:
    submitted = await service.submit(
        cabinet=CAB,
        device=device,
        group=None,
        action="dim",
        args={"level_pct": level_pct},
        not_after=None,
        issued_by=Identity("ops", Role.OPERATOR),
    )
    assert isinstance(submitted, CommandRow)

    async def final() -> bool:
        row = await central.store.command(submitted.id)
        return row is not None and row.status not in ("pending", "delivered")

    await wait_until(final, timeout=20, what=f"command {submitted.id} finished")
    row = await central.store.command(submitted.id)
    assert row is not None
    return row


async def lighting_view(central: CentralServer) -> dict[str, StateView]:
    views = {}
    for event in await central.store.latest_events(CAB, LIGHTING_STATE):
        view, problem = state_view(event)
        assert problem is None and view is not None
        views[view.source] = view
    return views


async def test_a_dim_failing_on_the_relay_is_undone_and_says_so(
    service: CommandService, central: CentralServer, controllers: list[LightingControllerSimulator]
) -> None:
    controllers[1].inject_write_fault("relay")  # the second output refuses its relay
    row = await dim(service, central, 40, None)  # the whole cabinet
    assert row.status == "failed"
    assert row.reason is not None and row.reason.startswith("lc2: Modbus exception 4")
    assert "undone: " in row.reason and "lc1/dim_level_pct" in row.reason
    assert [(sim.relay_on, sim.dim_level) for sim in controllers] == [(True, 100), (True, 100)]
    assert await lighting_view(central) == {}  # nothing changed, and the view shows nothing changed


async def test_what_a_failed_dim_left_changed_is_in_its_result_and_the_lighting_view(
    service: CommandService, central: CentralServer, controllers: list[LightingControllerSimulator]
) -> None:
    lc1 = controllers[0]
    lc1.inject_write_fault(after_writes=1)  # the level is taken; the relay and putting it back are not
    row = await dim(service, central, 50, "lc1")
    assert row.status == "failed"
    assert row.reason is not None and row.reason.startswith("lc1: left changed: lc1/dim_level_pct=50; after:")
    assert (lc1.relay_on, lc1.dim_level) == (True, 50)

    async def shown() -> bool:
        return "lc1" in await lighting_view(central)

    await wait_until(shown, timeout=20, what="lc1 in the lighting view")
    view = (await lighting_view(central))["lc1"]
    assert (view.on, view.level_pct) == (True, 50)
    assert view.reason == "left by a failed write: relay=on, dim_level_pct=50"
    [warning] = await central.store.latest_events(CAB, "lighting_left_changed")
    assert warning.severity == "warning" and "lc1/dim_level_pct=50" in warning.message
