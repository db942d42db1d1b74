"""A 1,000-cabinet fleet-sim against a real central and Mosquitto: a quiet start, and a group command
to every cabinet executed by every one of them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from central.server import CentralServer
from cityedge.broker import MosquittoBroker
from cityedge.fleet_sim import Fleet, FleetPlan
from cityedge.fleet_sim.device import LEVEL
from cityedge.fleet_sim.run import raise_descriptor_limit
from cityedge.testing import wait_until
from protocols.fleet.broker_url import parse_broker_url
from tests.integration.api_client import api_client

pytestmark = pytest.mark.integration

CABINETS = 1000


@contextlib.asynccontextmanager
async def running(fleet: Fleet) -> AsyncIterator[None]:
    task = asyncio.create_task(fleet.run(), name="fleet")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_group_command_to_1000_cabinets_executes_on_all_and_the_start_raises_no_alarm(
    central: CentralServer, mosquitto: MosquittoBroker
) -> None:
    raise_descriptor_limit(CABINETS)
    plan = FleetPlan(cabinets=CABINETS, points=40, interval_s=10.0, prefix="big")
    fleet = Fleet(plan, broker=parse_broker_url(mosquitto.url))
    ids = set(plan.cabinet_ids)
    started_ms = time.time_ns() // 1_000_000
    async with running(fleet), api_client(central) as api:

        async def all_online() -> bool:
            try:
                cabinets = (await api.get("/cabinets")).json()
            except (httpx.HTTPError, ValueError):
                return False
            return {c["id"] for c in cabinets if c["online"]} >= ids

        await wait_until(all_online, timeout=60, what=f"{CABINETS} cabinets online at central")

        members = [{"cabinet": cabinet} for cabinet in sorted(ids)]
        put = await api.put("/groups/everyone", json={"members": members})
        assert put.status_code == 201, put.text
        sent = await api.post(
            "/commands", json={"target": {"group": "everyone"}, "action": "dim", "args": {"level_pct": 40}}
        )
        assert sent.status_code == 201, sent.text
        parent = sent.json()["id"]

        async def done() -> bool:
            await asyncio.sleep(0.5)  # a thousand children per answer: ask twice a second, not 50 times
            return bool((await api.get(f"/commands/{parent}")).json()["status"] == "done")

        await wait_until(done, timeout=90, what="the group command answered by every cabinet")
        final = (await api.get(f"/commands/{parent}")).json()
        executed = [c for c in final["children"] if c["status"] == "executed"]
        others = [(c["target"]["cabinet"], c["status"], c.get("result")) for c in final["children"]]
        assert len(executed) == CABINETS, [o for o in others if o[1] != "executed"][:5]
        # What each cabinet's lighting output holds now: the level asked for.
        assert {cabinet.driver.values[LEVEL] for cabinet in fleet.cabinets} == {40}

        alarms = (await api.get("/alarms")).json()["alarms"]
        assert alarms == [], alarms[:5]
        events = (await api.get("/events", params={"since": started_ms, "limit": 100_000})).json()["events"]
        loud = [e for e in events if e["severity"] in ("warning", "alarm", "critical")]
        assert loud == [], loud[:5]
