"""End to end on real parts: simulator -> agent -> Mosquitto -> central -> HTTP API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from central.server import CentralServer
from central.store.auth_rows import Role
from cityedge.broker import MosquittoBroker
from cityedge.testing import wait_until, write_agent_config
from edge_agent.agent import Agent
from edge_agent.config import load_config
from protocols.modbus.profile import default_profile_dirs, load_profile
from protocols.modbus.simulator import LightingControllerSimulator
from tests.clocks import synchronised_system_clock
from tests.integration.api_client import api_client

pytestmark = pytest.mark.integration


async def test_readings_polled_in_a_cabinet_appear_in_the_api(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    profile = load_profile("lighting-single-circuit", default_profile_dirs())
    async with (
        LightingControllerSimulator(profile=profile, seed=1) as controller,
        CentralServer(db=tmp_path / "central.db", broker_url=mosquitto.url, http_port=0) as central,
        api_client(central, Role.VIEWER) as api,
    ):
        controller.set_point("relay", True)
        controller.set_point("dim_level_pct", 60)
        config = write_agent_config(
            tmp_path / "cab", cabinet="cab-e2e", broker_url=mosquitto.url, devices=[("lc1", controller.port)]
        )
        agent = Agent(load_config(config), clock=synchronised_system_clock())
        task = asyncio.create_task(agent.run())
        try:

            async def power_visible() -> bool:
                response = await api.get("/cabinets/cab-e2e/points")
                if response.status_code != 200:
                    return False
                points = {p["point"]: p for p in response.json()["points"]}
                power = points.get("lc1/power_w")
                return power is not None and power["quality"] == "good" and power["value"] > 50

            await wait_until(power_visible, timeout=20, what="lc1/power_w at central")

            cabinets = (await api.get("/cabinets")).json()
            assert [(c["id"], c["online"], c["agent_version"]) for c in cabinets] == [
                ("cab-e2e", True, "0.1.0")
            ]
            page = (await api.get("/cabinets/cab-e2e/points/lc1/energy_wh/readings")).json()
            assert page["readings"] and all(r["quality"] == "good" for r in page["readings"])
            stamps = [r["ts_ms"] for r in page["readings"]]
            assert stamps == sorted(stamps)
            # Power follows the controller: 60 % of its 150 W nominal, give or take the noise.
            latest = {
                p["point"]: p["value"] for p in (await api.get("/cabinets/cab-e2e/points")).json()["points"]
            }
            assert 70 < latest["lc1/power_w"] < 110
            kinds = {
                e["kind"] for e in (await api.get("/events", params={"cabinet": "cab-e2e"})).json()["events"]
            }
            assert "agent_started" in kinds
            health = await api.get("/health")
            assert health.status_code == 200
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        # A clean stop says goodbye: central shows the cabinet offline.
        async def offline() -> bool:
            return not (await api.get("/cabinets")).json()[0]["online"]

        await wait_until(offline, timeout=10, what="cabinet offline after a clean stop")
