"""The journal tells the story: a real agent against simulators and a real Mosquitto, each story event
caused once, and found once in the journal (a datagram socket the test binds, read in journald's native
protocol) at its level, with its fields; never a secret."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from cityedge.broker import MosquittoBroker
from cityedge.testing import wait_until, write_agent_config
from edge_agent.buffer import Kind, read_file_records
from edge_agent.journal import JournalHandler
from protocols.fleet import PROTOCOL_VERSION, Command, Event, Topics, decode_record, decode_status, encode
from protocols.modbus.simulator import LightingControllerSimulator
from tests.integration.agent_buffer import running_agent
from tests.journal_socket import Entry, JournalSocket

pytestmark = pytest.mark.integration

CABINET = "cab-j"
SECRET = "s3cret-broker-pw"
WARNING, INFO, DEBUG = "4", "6", "7"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[JournalSocket]:
    """The agent's loggers send to a journal socket of the test's own, as under systemd."""
    listener = JournalSocket(tmp_path / "journal.sock")
    handler = JournalHandler(identifier="cityedge-agent", socket_path=listener.path)
    logger = logging.getLogger("edge_agent")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # the sync's retries at DEBUG show that they are not WARNINGs
    yield listener
    logger.removeHandler(handler)
    logger.setLevel(level)
    handler.close()
    listener.close()


def command(action: str, *, device: str | None = None, not_after_s: float = 60, **args: int) -> Command:
    return Command(
        v=PROTOCOL_VERSION,
        id=uuid.uuid4().hex,
        cabinet=CABINET,
        action=action,
        not_after=int((time.time() + not_after_s) * 1000),
        issued_by="test",
        device=device,
        args=dict(args),
    )


async def wait_online(broker: MosquittoBroker) -> None:
    """The cabinet's retained birth: connected and subscribed to its commands."""
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(Topics(CABINET).status, qos=1)
        async with asyncio.timeout(30):
            async for message in client.messages:
                if isinstance(message.payload, bytes) and decode_status(message.payload).online:
                    return


async def one(journal: JournalSocket, **fields: str) -> Entry:
    """The one entry with ``fields``, once it has come."""
    await wait_until(lambda: journal.where(**fields), timeout=20, what=f"a journal entry {fields}")
    [entry] = journal.where(**fields)
    return entry


@pytest.fixture
async def agent_config(
    tmp_path: Path, controllers: list[LightingControllerSimulator], mosquitto: MosquittoBroker
) -> AsyncIterator[Path]:
    config = write_agent_config(
        tmp_path,
        cabinet=CABINET,
        broker_url=mosquitto.url,
        devices=[("lc1", controllers[0].port), ("lc2", controllers[1].port)],
        max_mb=0.006,  # no central acknowledges anything: a small cap evicts within seconds
    )
    config.write_text(config.read_text().replace("[buffer]", f'password = "{SECRET}"\n[buffer]'))
    yield config


async def test_each_story_event_is_one_journal_line_with_its_fields(
    journal: JournalSocket,
    agent_config: Path,
    controllers: list[LightingControllerSimulator],
    mosquitto: MosquittoBroker,
) -> None:
    lc1, lc2 = controllers
    async with running_agent(agent_config):
        connected = await one(journal, EVENT="broker_connected")
        assert connected["PRIORITY"] == INFO and connected["CABINET"] == CABINET
        assert connected["BROKER"] == mosquitto.url and connected["SYSLOG_IDENTIFIER"] == "cityedge-agent"
        await wait_online(mosquitto)

        lc1.inject_lamp_failure(True)
        raised = await one(journal, EVENT="alarm_raised", ALARM="lamp_failure")
        assert (raised["PRIORITY"], raised["DEVICE"], raised["SEVERITY"]) == (WARNING, "lc1", "alarm")
        assert raised["MESSAGE"] == "lc1: lamp failure raised" and raised["LOGGER"] == "edge_agent.alarms"
        lc1.inject_lamp_failure(False)
        cleared = await one(journal, EVENT="alarm_cleared", ALARM="lamp_failure")
        assert (cleared["PRIORITY"], cleared["DEVICE"]) == (INFO, "lc1")

        await lc2.stop()
        lost = await one(journal, EVENT="device_lost")
        assert (lost["PRIORITY"], lost["DEVICE"], lost["REASON"]) == (WARNING, "lc2", "unreachable")
        await lc2.start()
        back = await one(journal, EVENT="device_back")
        assert (back["PRIORITY"], back["DEVICE"]) == (INFO, "lc2")

        dim, stray, late = (
            command("dim", device="lc1", level_pct=40),
            command("dim", device="nope", level_pct=40),
            command("dim", device="lc1", not_after_s=-60, level_pct=40),
        )
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            for cmd in (dim, stray, late):
                await client.publish(Topics(CABINET).command, encode(cmd), qos=1)
        executed = await one(journal, EVENT="command_result", COMMAND_ID=dim.id, STATUS="executed")
        assert (executed["PRIORITY"], executed["STATUS"], executed["ACTION"]) == (INFO, "executed", "dim")
        rejected = await one(journal, EVENT="command_result", COMMAND_ID=stray.id, STATUS="rejected")
        assert (rejected["PRIORITY"], rejected["STATUS"]) == (WARNING, "rejected")
        assert "is not a lighting output" in rejected["REASON"]
        expired = await one(journal, EVENT="command_result", COMMAND_ID=late.id, STATUS="expired")
        assert (expired["PRIORITY"], expired["STATUS"]) == (WARNING, "expired")

        await mosquitto.kill()
        gone = await one(journal, EVENT="broker_disconnected")
        assert gone["PRIORITY"] == WARNING and gone["REASON"]
        # Reconnecting fails every half second: said once, the retries only at DEBUG.
        await wait_until(
            lambda: len(journal.where(LOGGER="edge_agent.sync", PRIORITY=DEBUG)) >= 3,
            timeout=20,
            what="three failed reconnects",
        )
        [unreachable] = journal.where(EVENT="broker_unreachable")
        assert unreachable["PRIORITY"] == WARNING and "Connection refused" in unreachable["REASON"]
        await mosquitto.start()
        await wait_until(
            lambda: len(journal.where(EVENT="broker_connected")) == 2, timeout=20, what="connected again"
        )

        await wait_until(lambda: journal.where(EVENT="evicted"), timeout=30, what="an eviction")
    # Read once the agent has stopped (and committed all): a flush from here would evict outside it.
    buffer = agent_config.parent / "buffer.db"
    events = [decode_record(Event, body) for _, kind, body in read_file_records(buffer) if kind == Kind.EVENT]

    # One line per event the agent recorded, no more.
    for kind in ("alarm_raised", "alarm_cleared", "device_lost", "device_back"):
        assert len(journal.where(EVENT=kind)) == len([e for e in events if e.kind == kind]) == 1, kind
    evictions = [e for e in events if e.kind == "evicted"]
    logged = journal.where(EVENT="evicted")
    assert len(logged) == len(evictions) >= 1
    for event, entry in zip(evictions, logged, strict=True):
        seqs = re.findall(r"\d+", str(event.data["seq_ranges"]))  # "5-9,12,15-20"
        assert (entry["SEQ_FIRST"], entry["SEQ_LAST"]) == (seqs[0], seqs[-1])
        assert entry["COUNT"] == str(event.data["count"]) and entry["PRIORITY"] == WARNING
    results = [e for e in journal.where(EVENT="command_result") if e["PRIORITY"] != DEBUG]
    assert sorted(e["STATUS"] for e in results) == ["executed", "expired", "rejected"]
    # "accepted" comes just before a result: at DEBUG, under the INFO the agent logs at.
    assert [e["PRIORITY"] for e in journal.where(EVENT="command_result", STATUS="accepted")] == [DEBUG]
    assert [e for e in journal.entries if "EVENT" in e and e.get("CABINET") != CABINET] == []
    assert not [entry for entry in journal.entries if SECRET in str(entry)]
