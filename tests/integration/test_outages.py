"""Outages, each repeated in one test: afterwards central holds exactly what the agent produced.

The agent numbers every record it commits (seq 1, 2, 3, ... in one stream). "Zero lost" is: central
holds every seq from 1 to the agent's last. "Zero duplicated" is: central holds each seq once, and no
reading (point, timestamp) twice. Broker, central and agent are killed with SIGKILL, mid-run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from cityedge.broker import MosquittoBroker
from cityedge.testing import wait_until
from protocols.modbus.profile import default_profile_dirs, load_profile
from protocols.modbus.simulator import LightingControllerSimulator
from tests.integration.fleet_rig import FleetRig

pytestmark = pytest.mark.integration

ROUNDS = 3
# Records the agent must produce while a part is down, and central must gain after it is back.
PROGRESS = 60
TIMEOUT_S = 60.0


@pytest.fixture
async def rig(tmp_path: Path, mosquitto: MosquittoBroker) -> AsyncIterator[FleetRig]:
    profile = load_profile("lighting-single-circuit", default_profile_dirs())
    async with LightingControllerSimulator(profile=profile, seed=7) as controller:
        fleet = FleetRig(
            tmp_path, broker_url=mosquitto.url, cabinet="cab-outage", device_port=controller.port
        )
        await fleet.start_central()
        fleet.agent.start()
        try:
            await wait_until(
                lambda: len(fleet.central_seqs()) >= PROGRESS, timeout=TIMEOUT_S, what="first data"
            )
            yield fleet
        except BaseException:
            print(fleet.logs())
            raise
        finally:
            fleet.agent.kill()
            fleet.central.kill()


async def produce_during(rig: FleetRig, what: str) -> None:
    """Wait until the agent has committed PROGRESS more records (it keeps working while X is down)."""
    target = rig.produced_last_seq() + PROGRESS
    await wait_until(lambda: rig.produced_last_seq() >= target, timeout=TIMEOUT_S, what=what)


async def central_catches_up(rig: FleetRig, what: str) -> None:
    """Wait until central holds everything the agent had produced when the part came back."""
    target = rig.produced_last_seq()
    await wait_until(lambda: max(rig.central_seqs(), default=0) >= target, timeout=TIMEOUT_S, what=what)


async def drain_and_check(rig: FleetRig) -> None:
    """Stop polling (restart the agent without devices), let it drain, then compare both sides."""
    rig.agent.terminate()
    rig.write_config(with_devices=False)
    rig.agent.start()

    # Drained: the agent holds nothing central has not acknowledged (its records were all deleted).
    await wait_until(rig.agent_drained, timeout=TIMEOUT_S, what="the agent's buffer to drain")
    last = rig.produced_last_seq()
    seqs = rig.central_seqs()
    missing = sorted(set(range(1, last + 1)) - set(seqs))
    assert not missing, f"{len(missing)} records lost, e.g. seq {missing[:10]}"
    assert len(seqs) == last, "central holds records the agent never produced"
    assert rig.central_streams() == 1
    repeated = [key for key, n in Counter(rig.central_reading_keys()).items() if n > 1]
    assert not repeated, f"readings stored twice: {repeated[:5]}"
    assert last >= ROUNDS * 2 * PROGRESS


Outage = Callable[[FleetRig, MosquittoBroker], Awaitable[None]]


async def test_broker_killed_and_restarted(rig: FleetRig, mosquitto: MosquittoBroker) -> None:
    for round_ in range(ROUNDS):
        await mosquitto.kill()
        await produce_during(rig, f"records during broker outage {round_}")
        await mosquitto.start()
        await central_catches_up(rig, f"catch-up after broker outage {round_}")
    await drain_and_check(rig)


async def test_central_killed_and_restarted(rig: FleetRig) -> None:
    for round_ in range(ROUNDS):
        rig.central.kill()
        await produce_during(rig, f"records during central outage {round_}")
        await rig.start_central()
        await central_catches_up(rig, f"catch-up after central outage {round_}")
    await drain_and_check(rig)


async def test_agent_killed_and_restarted(rig: FleetRig) -> None:
    for round_ in range(ROUNDS):
        await produce_during(rig, f"records before agent kill {round_}")
        rig.agent.kill()
        rig.agent.start()
        await produce_during(rig, f"records after agent restart {round_}")
        await central_catches_up(rig, f"catch-up after agent restart {round_}")
    await drain_and_check(rig)
