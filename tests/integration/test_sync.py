"""Store-and-forward on a real broker, with a scripted central: window, resend, ack matching."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from cityedge.broker import MosquittoBroker
from edge_agent.buffer import Buffer
from edge_agent.config import SyncSection
from edge_agent.sync import Sync
from protocols.fleet import PROTOCOL_VERSION, Ack, DataBatch, Status, Topics, decode_data_batch, encode
from protocols.fleet.broker_url import parse_broker_url
from protocols.testing import wait_until

pytestmark = pytest.mark.integration

CABINET = "cab-sync"


class ScriptedCentral:
    """Receives the cabinet's batches and acknowledges only what the test says."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.batches: list[DataBatch] = []

    async def listen(self) -> None:
        async for message in self.client.messages:
            assert isinstance(message.payload, bytes)
            self.batches.append(decode_data_batch(message.payload))

    async def ack(self, stream: str, first: int, last: int) -> None:
        ack = Ack(v=PROTOCOL_VERSION, cabinet=CABINET, stream=stream, first=first, last=last)
        await self.client.publish(Topics(CABINET).ack, encode(ack), qos=1)


@pytest.fixture
async def central(mosquitto: MosquittoBroker) -> AsyncIterator[ScriptedCentral]:
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        await client.subscribe(Topics(CABINET).data, qos=1)
        scripted = ScriptedCentral(client)
        task = asyncio.create_task(scripted.listen())
        yield scripted
        task.cancel()


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    async with Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=lambda: 1) as b:
        yield b


def status(online: bool) -> Status:
    return Status(v=PROTOCOL_VERSION, cabinet=CABINET, online=online, ts=1)


async def run_sync(buffer: Buffer, broker: MosquittoBroker, **settings: float) -> asyncio.Task[None]:
    sync = Sync(
        cabinet=CABINET,
        broker=parse_broker_url(broker.url),
        keepalive_s=30,
        buffer=buffer,
        settings=SyncSection(batch_max_records=10, **settings),  # type: ignore[arg-type]
        birth=lambda: status(True),
        death=lambda: status(False),
        clock_ms=lambda: 1,
        on_command=lambda payload: None,
    )
    return asyncio.create_task(sync.run())


async def fill(buffer: Buffer, count: int) -> None:
    for i in range(count):
        buffer.append_reading("lc1/power_w", i, float(i))
    await buffer.flush()


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_window_bounds_what_is_in_flight_and_acks_free_it(
    buffer: Buffer, mosquitto: MosquittoBroker, central: ScriptedCentral
) -> None:
    await fill(buffer, 100)  # ten batches of ten
    task = await run_sync(buffer, mosquitto, window=3, ack_timeout_s=60)
    try:
        await wait_until(lambda: len(central.batches) == 3, timeout=10, what="a full window")
        await asyncio.sleep(0.3)  # nothing may follow without an ack: give it the chance to misbehave
        assert [(b.first, b.last) for b in central.batches] == [(1, 10), (11, 20), (21, 30)]
        await central.ack(buffer.stream, 11, 20)
        await wait_until(lambda: len(central.batches) == 4, timeout=10, what="one more batch")
        assert (central.batches[3].first, central.batches[3].last) == (31, 40)
        await buffer.flush()  # acknowledged records are deleted at the next commit
        assert buffer.backlog == 90
    finally:
        await stop(task)


async def test_unacknowledged_batch_is_sent_again_after_the_timeout(
    buffer: Buffer, mosquitto: MosquittoBroker, central: ScriptedCentral
) -> None:
    await fill(buffer, 5)
    task = await run_sync(buffer, mosquitto, window=2, ack_timeout_s=0.3)
    try:
        await wait_until(lambda: len(central.batches) >= 3, timeout=10, what="two resends")
        assert {(b.first, b.last) for b in central.batches} == {(1, 5)}
        await central.ack(buffer.stream, 1, 5)
        sent = len(central.batches)
        await asyncio.sleep(1.0)  # three timeouts' worth: an acknowledged batch is never resent
        assert len(central.batches) <= sent + 1
    finally:
        await stop(task)


async def test_a_shorter_ack_does_not_settle_a_longer_batch(
    buffer: Buffer, mosquitto: MosquittoBroker, central: ScriptedCentral
) -> None:
    await fill(buffer, 10)
    task = await run_sync(buffer, mosquitto, window=1, ack_timeout_s=0.5)
    try:
        await wait_until(lambda: len(central.batches) == 1, timeout=10, what="the batch")
        await central.ack(buffer.stream, 1, 4)  # e.g. a late ack of an earlier session's batch
        await wait_until(lambda: len(central.batches) >= 2, timeout=10, what="the resend")
        resent = central.batches[1]
        assert (resent.first, resent.last) == (1, 10)  # still in flight: its range is resent whole
        assert [r.seq for r in resent.readings] == list(range(5, 11))  # without what was acknowledged
    finally:
        await stop(task)
