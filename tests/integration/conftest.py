"""Fixtures of the integration tests: a running aggregator, simulated lighting controllers, a notify
socket standing in for systemd's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from central.server import CentralServer
from cityedge.broker import MosquittoBroker
from protocols.modbus.profile import default_profile_dirs, load_profile
from protocols.modbus.simulator import LightingControllerSimulator
from tests.integration.notify_socket import NotifySocket


@pytest.fixture
async def central(tmp_path: Path, mosquitto: MosquittoBroker) -> AsyncIterator[CentralServer]:
    """Central on a fresh SQLite file and the test's Mosquitto, subscribed and serving HTTP."""
    async with CentralServer(db=tmp_path / "central.db", broker_url=mosquitto.url, http_port=0) as server:
        async with asyncio.timeout(10):
            await server.ingestor.wait_subscribed()
        yield server


@pytest.fixture
async def controllers() -> AsyncIterator[list[LightingControllerSimulator]]:
    """Two single-circuit lighting controllers serving Modbus TCP on free ports."""
    profile = load_profile("lighting-single-circuit", default_profile_dirs())
    sims = [LightingControllerSimulator(profile=profile, seed=i) for i in range(2)]
    for sim in sims:
        await sim.start()
    yield sims
    for sim in sims:
        await sim.stop()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify")
    yield listener
    listener.close()
