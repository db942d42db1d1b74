"""Central and a real agent: commands from the HTTP API to the Modbus device and back, the lighting view.

The agent, the Modbus simulators and central run in this event loop; the broker is a real Mosquitto.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.server import CentralServer
from central.testing import wait_until
from cityedge.broker import MosquittoBroker
from cityedge.testing import write_agent_config
from edge_agent.agent import Agent
from edge_agent.config import load_config
from protocols.modbus.simulator import LightingControllerSimulator
from tests.clocks import synchronised_system_clock
from tests.integration.api_client import api_client

pytestmark = pytest.mark.integration

CAB = "cab-live"


@pytest.fixture
async def api(
    tmp_path: Path, mosquitto: MosquittoBroker, controllers: list[LightingControllerSimulator]
) -> AsyncIterator[httpx.AsyncClient]:
    config = write_agent_config(
        tmp_path / CAB,
        cabinet=CAB,
        broker_url=mosquitto.url,
        devices=[(f"lc{i + 1}", sim.port) for i, sim in enumerate(controllers)],
        poll_interval_s=0.2,
        timeout_s=1.0,
    )
    async with (
        CentralServer(db=tmp_path / "central.db", broker_url=mosquitto.url, http_port=0) as central,
        api_client(central) as client,
    ):
        agent = Agent(load_config(config), clock=synchronised_system_clock())
        task = asyncio.create_task(agent.run())
        try:

            async def online() -> bool:
                response = await client.get(f"/cabinets/{CAB}")
                return response.status_code == 200 and response.json()["online"]

            await wait_until(online, timeout=20, what="the cabinet online at central")
            yield client
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def finished(api: httpx.AsyncClient, command_id: str) -> dict[str, Any]:
    async def final() -> bool:
        status = (await api.get(f"/commands/{command_id}")).json()["status"]
        return status not in ("pending", "delivered")

    await wait_until(final, timeout=20, what=f"command {command_id} finished")
    found: dict[str, Any] = (await api.get(f"/commands/{command_id}")).json()
    return found


async def test_a_dim_command_reaches_the_controller_and_the_lighting_view(
    api: httpx.AsyncClient, controllers: list[LightingControllerSimulator]
) -> None:
    response = await api.post(
        "/commands",
        json={
            "target": {"cabinet": CAB, "device": "lc1"},
            "action": "dim",
            "args": {"level_pct": 40},
        },
    )
    assert response.status_code == 201, response.text
    command = await finished(api, response.json()["id"])
    assert (command["status"], command["finished_by"]) == ("executed", "cabinet"), command
    assert command["delivered_ms"] is not None
    assert (controllers[0].relay_on, controllers[0].dim_level) == (True, 40)

    async def lc1_at_40() -> bool:
        view = (await api.get(f"/cabinets/{CAB}/lighting")).json()
        return any(o["source"] == "lc1" and o["level_pct"] == 40 for o in view["outputs"])

    await wait_until(lc1_at_40, timeout=20, what="lc1 at 40 % in the lighting view")
    view = (await api.get(f"/cabinets/{CAB}/lighting")).json()
    assert view["problems"] == []
    assert view["schedule"] is not None and view["schedule"]["source"] == "config"


async def test_a_schedule_the_agent_could_not_run_is_refused_when_posted_and_a_good_one_runs_there(
    api: httpx.AsyncClient,
) -> None:
    def post(schedule: dict[str, object]) -> Awaitable[httpx.Response]:
        body = {"target": {"cabinet": CAB}, "action": "set_schedule", "args": {"schedule": schedule}}
        return api.post("/commands", json=body)

    # Central checks it as the cabinet would: the operator learns now, not from a rejection later.
    refused = await post({"latitude": 123, "longitude": 5, "timezone": "Europe/Paris"})
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["detail"]
    assert error["loc"] == ["body", "args", "schedule", "latitude"]
    assert error["msg"] == "expected a number less than or equal to 90, got 123"
    listed = (await api.get("/commands")).json()["commands"]
    assert [c for c in listed if c["action"] == "set_schedule"] == []

    accepted = await post({"latitude": 47.32, "longitude": 5.04, "timezone": "Europe/Paris"})
    assert accepted.status_code == 201, accepted.text
    command = await finished(api, accepted.json()["id"])
    assert command["status"] == "executed", command

    async def from_the_command() -> bool:
        view = (await api.get(f"/cabinets/{CAB}/lighting")).json()
        return view["schedule"] is not None and view["schedule"]["source"] == "command"

    await wait_until(from_the_command, timeout=20, what="the posted schedule running on the cabinet")


async def test_the_energy_of_today_comes_from_the_controllers_counters(api: httpx.AsyncClient) -> None:
    today = dt.datetime.now(dt.UTC).date()
    # Yesterday to tomorrow: the test may run across midnight.
    days = {
        "start": (today - dt.timedelta(days=1)).isoformat(),
        "end": (today + dt.timedelta(days=1)).isoformat(),
    }

    async def counted() -> bool:
        body = (await api.get(f"/cabinets/{CAB}/energy", params=days)).json()
        return [p["point"] for p in body["points"]] == ["lc1/energy_wh", "lc2/energy_wh"] and all(
            sum(d["coverage"] for d in p["days"]) > 0 for p in body["points"]
        )

    await wait_until(counted, timeout=20, what="two energy counters with readings today")
