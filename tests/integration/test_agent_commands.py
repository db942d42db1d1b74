"""Commands at the cabinet, published on the broker as central does: each id runs at most once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from cityedge.broker import MosquittoBroker
from cityedge.testing import wait_until, write_agent_config
from edge_agent.agent import Agent
from edge_agent.buffer import Kind, read_file_records
from edge_agent.config import load_config
from protocols.fleet import (
    PROTOCOL_VERSION,
    Command,
    CommandResult,
    Topics,
    decode_record,
    decode_status,
    encode,
)
from protocols.fleet.messages import Scalar
from protocols.modbus.simulator import LightingControllerSimulator
from tests.clocks import synchronised_system_clock
from tests.integration.fleet_rig import Process

pytestmark = pytest.mark.integration

CABINET = "cab-cmd"


def command(action: str, *, device: str | None = None, not_after_s: float = 60, **args: Scalar) -> Command:
    return Command(
        v=PROTOCOL_VERSION,
        id=uuid.uuid4().hex,
        cabinet=CABINET,
        action=action,
        not_after=int((time.time() + not_after_s) * 1000),
        issued_by="test",
        device=device,
        args=args,
    )


async def publish(broker: MosquittoBroker, *commands: Command) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        for cmd in commands:
            await client.publish(Topics(CABINET).command, encode(cmd), qos=1)


async def wait_online(broker: MosquittoBroker) -> None:
    """Wait for the cabinet's retained birth: it is connected and subscribed to its commands."""
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(Topics(CABINET).status, qos=1)
        async with asyncio.timeout(30):
            async for message in client.messages:
                if isinstance(message.payload, bytes) and decode_status(message.payload).online:
                    return


def results_in(buffer_db: Path) -> list[CommandResult]:
    """Command results still in the agent's buffer (no central here: nothing is acknowledged)."""
    if not buffer_db.exists():
        return []
    records = read_file_records(buffer_db)
    return [decode_record(CommandResult, body) for _, kind, body in records if kind == Kind.RESULT]


def statuses(buffer_db: Path, command_id: str) -> list[str]:
    return [r.status for r in results_in(buffer_db) if r.command_id == command_id]


def config_for(tmp_path: Path, broker: MosquittoBroker, sims: list[LightingControllerSimulator]) -> Path:
    return write_agent_config(
        tmp_path,
        cabinet=CABINET,
        broker_url=broker.url,
        devices=[(f"lc{i + 1}", sim.port) for i, sim in enumerate(sims)],
        poll_interval_s=0.2,
        timeout_s=1.0,
        # An agent run as a subprocess reads the host's NTP status, which these tests are not about:
        # on a host that reports its clock unsynchronised, the lights keep to what the test drives.
        extra='[lighting]\nclock_failsafe = "schedule"\n',
    )


@pytest.fixture
async def agent(
    tmp_path: Path, mosquitto: MosquittoBroker, controllers: list[LightingControllerSimulator]
) -> AsyncIterator[Agent]:
    running = Agent(
        load_config(config_for(tmp_path, mosquitto, controllers)), clock=synchronised_system_clock()
    )
    task = asyncio.create_task(running.run())
    await wait_until(lambda: running.sync.stats.connected, timeout=10, what="agent connected")
    yield running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_executed_once_when_delivered_twice(
    agent: Agent, mosquitto: MosquittoBroker, controllers: list[LightingControllerSimulator]
) -> None:
    lc1 = controllers[0]
    switch_on = command("switch", device="lc1", on=True)
    await publish(mosquitto, switch_on)
    db = agent.buffer.path
    await wait_until(lambda: "executed" in statuses(db, switch_on.id), timeout=10, what="executed")
    assert lc1.relay_on
    lc1.set_point("relay", False)  # someone switches it off by hand: a re-run would switch it on
    await publish(mosquitto, switch_on)
    await wait_until(lambda: agent.commands.duplicates == 1, timeout=10, what="duplicate seen")
    assert statuses(db, switch_on.id) == ["accepted", "executed"]
    assert not lc1.relay_on


async def test_dim_and_switch_are_verified_on_the_device(
    agent: Agent, mosquitto: MosquittoBroker, controllers: list[LightingControllerSimulator]
) -> None:
    dim = command("dim", level_pct=40)  # the whole cabinet: both controllers
    await publish(mosquitto, dim)
    db = agent.buffer.path
    await wait_until(lambda: "executed" in statuses(db, dim.id), timeout=10, what="dim executed")
    assert [(c.relay_on, c.dim_level) for c in controllers] == [(True, 40), (True, 40)]
    off = command("switch", device="lc2", on=False)
    await publish(mosquitto, off)
    await wait_until(lambda: "executed" in statuses(db, off.id), timeout=10, what="off executed")
    assert [c.relay_on for c in controllers] == [True, False]


async def test_refused_when_expired_and_rejected_when_invalid(
    agent: Agent, mosquitto: MosquittoBroker, controllers: list[LightingControllerSimulator]
) -> None:
    late = command("switch", on=True, not_after_s=-5)
    unknown_device = command("switch", device="lc9", on=True)
    bad_level = command("dim", level_pct=140)
    bad_schedule = command("set_schedule", schedule='{"latitude": 95}')
    # switch takes no level (dim does): what central refuses, a cabinet refuses too.
    switch_with_level = command("switch", on=True, level_pct=50)
    refused = (late, unknown_device, bad_level, bad_schedule, switch_with_level)
    await publish(mosquitto, *refused)
    db = agent.buffer.path

    def finished() -> bool:
        return all(len(statuses(db, c.id)) == 1 for c in refused)

    await wait_until(finished, timeout=10, what="five refusals")
    by_id = {r.command_id: r for r in results_in(db)}
    assert by_id[late.id].status == "expired" and "not_after" in (by_id[late.id].reason or "")
    assert by_id[unknown_device.id].status == "rejected" and "lc9" in (by_id[unknown_device.id].reason or "")
    assert by_id[bad_level.id].status == "rejected" and "less than or equal to 100, got 140" in (
        by_id[bad_level.id].reason or ""
    )
    assert by_id[bad_schedule.id].status == "rejected"
    assert "schedule.latitude: expected a number less than or equal to 90, got 95" in (
        by_id[bad_schedule.id].reason or ""
    )
    assert by_id[switch_with_level.id].status == "rejected"
    assert "level_pct: unknown key: switch takes on, until (level_pct is for dim)" in (
        by_id[switch_with_level.id].reason or ""
    )
    assert not any(c.relay_on for c in controllers)


async def test_failed_with_a_reason_when_the_device_does_not_answer(
    agent: Agent, mosquitto: MosquittoBroker, controllers: list[LightingControllerSimulator]
) -> None:
    await controllers[1].stop()
    switch = command("switch", device="lc2", on=True)
    await publish(mosquitto, switch)
    db = agent.buffer.path
    await wait_until(lambda: len(statuses(db, switch.id)) == 2, timeout=10, what="a final result")
    [accepted, failed] = [r for r in results_in(db) if r.command_id == switch.id]
    assert (accepted.status, failed.status) == ("accepted", "failed")
    assert failed.reason is not None and "lc2" in failed.reason


async def test_survives_an_agent_crash_between_delivery_and_execution(
    tmp_path: Path, mosquitto: MosquittoBroker, controllers: list[LightingControllerSimulator]
) -> None:
    lc1, lc2 = controllers
    config = config_for(tmp_path, mosquitto, controllers)
    db = tmp_path / "buffer.db"
    agent = Process("agent", ["agent", "run", "--config", str(config)], tmp_path / "agent.log")
    agent.start()
    try:
        await wait_online(mosquitto)
        lc2.set_unresponsive(True)  # the first command hangs on lc2 for its whole timeout
        first = command("switch", device="lc2", on=True)
        second = command("switch", device="lc1", on=True)
        await publish(mosquitto, first, second)

        def both_claimed() -> bool:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                try:
                    rows = dict(conn.execute("SELECT id, state FROM commands").fetchall())
                except sqlite3.OperationalError:
                    return False
            return rows.get(first.id) == "executing" and rows.get(second.id) == "accepted"

        await wait_until(both_claimed, timeout=10, what="first executing, second claimed")
        agent.kill()  # delivered, claimed, not executed: a power cut now
        lc2.set_unresponsive(False)
        agent.start()
        await wait_until(lambda: "executed" in statuses(db, second.id), timeout=30, what="second runs")
        # The interrupted one is reported failed, never run twice; the waiting one ran after restart.
        [*_, interrupted] = [r for r in results_in(db) if r.command_id == first.id]
        assert interrupted.status == "failed" and "restart" in (interrupted.reason or "")
        assert lc1.relay_on and not lc2.relay_on
    finally:
        agent.kill()
