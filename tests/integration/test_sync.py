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

    async def ack(
        self, stream: str, first: int, last: int, held: list[tuple[int, int]] | None = None
    ) -> None:
        """Ack batch first..last; ``held`` defaults to every seq of it, as central would say it."""
        held = [(first, last)] if held is None else held
        ack = Ack(v=PROTOCOL_VERSION, cabinet=CABINET, stream=stream, first=first, last=last, held=held)
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
    return (await start_sync(buffer, broker, **settings))[1]


async def start_sync(
    buffer: Buffer, broker: MosquittoBroker, **settings: float
) -> tuple[Sync, asyncio.Task[None]]:
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
    return sync, asyncio.create_task(sync.run())


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


async def test_an_ack_of_a_range_never_sent_deletes_nothing(
    buffer: Buffer, mosquitto: MosquittoBroker, central: ScriptedCentral
) -> None:
    """A forged ack (or a late one of an earlier session's batch) names a batch this agent did not
    send as such: nothing of it is trusted, however many records it claims."""
    await fill(buffer, 10)
    sync, task = await start_sync(buffer, mosquitto, window=1, ack_timeout_s=0.5)
    try:
        await wait_until(lambda: len(central.batches) == 1, timeout=10, what="the batch")
        await central.ack(buffer.stream, 1, 4)  # shorter than the batch sent
        await central.ack(buffer.stream, 1, 10**6)  # the whole backlog and more
        await central.ack("0123456789abcdef", 1, 10)  # another stream
        await wait_until(lambda: sync.stats.stale_acks == 3, timeout=10, what="three acks refused")
        await wait_until(lambda: len(central.batches) >= 2, timeout=10, what="the resend")
        resent = central.batches[-1]
        assert (resent.first, resent.last) == (1, 10)
        assert [r.seq for r in resent.readings] == list(range(1, 11))
        await buffer.flush()
        assert buffer.backlog == 10
        assert sync.stats.acks == 0
    finally:
        await stop(task)


async def test_an_ack_naming_records_the_batch_did_not_carry_is_ignored(
    buffer: Buffer, mosquitto: MosquittoBroker, central: ScriptedCentral
) -> None:
    await fill(buffer, 10)
    sync, task = await start_sync(buffer, mosquitto, window=1, ack_timeout_s=0.5)
    try:
        await wait_until(lambda: len(central.batches) == 1, timeout=10, what="the batch")
        await central.ack(buffer.stream, 1, 10, held=[(1, 5)])  # central holds part of it
        await wait_until(lambda: sync.stats.acks == 1, timeout=10, what="the partial ack")
        await wait_until(lambda: len(central.batches) >= 2, timeout=10, what="the resend of the rest")
        resent = central.batches[-1]
        assert (resent.first, resent.last) == (1, 10)
        assert [r.seq for r in resent.readings] == list(range(6, 11))
        # 1..5 are no longer part of what this batch carries: an ack naming them is over-wide.
        await central.ack(buffer.stream, 1, 10, held=[(1, 10)])
        await wait_until(lambda: sync.stats.bad_acks == 1, timeout=10, what="the over-wide ack refused")
        await buffer.flush()
        assert buffer.backlog == 5
        await central.ack(buffer.stream, 1, 10, held=[(6, 10)])
        await wait_until(lambda: sync.stats.acks == 2, timeout=10, what="the ack of the rest")
        await buffer.flush()
        assert buffer.backlog == 0
    finally:
        await stop(task)


class _SessionLostWhileStopping(Sync):
    """A stop that arrives as the connection breaks: the session ends with the MQTT error."""

    sessions = 0
    run_task: asyncio.Task[None] | None = None

    async def _session(self) -> None:
        self.sessions += 1
        if self.sessions > 1:
            await asyncio.Event().wait()  # a healthy connection: runs until stopped
        assert self.run_task is not None
        self.run_task.cancel()  # the stop...
        raise ExceptionGroup("session", [aiomqtt.MqttError("connection reset")])  # ...and the break


async def test_a_stop_that_meets_a_broken_connection_still_stops(buffer: Buffer) -> None:
    sync = _SessionLostWhileStopping(
        cabinet=CABINET,
        broker=parse_broker_url("mqtt://127.0.0.1:1"),
        keepalive_s=30,
        buffer=buffer,
        settings=SyncSection(reconnect_min_s=0.01, reconnect_max_s=0.01),
        birth=lambda: status(True),
        death=lambda: status(False),
        clock_ms=lambda: 1,
        on_command=lambda payload: None,
    )
    sync.run_task = task = asyncio.create_task(sync.run())
    done, _ = await asyncio.wait([task], timeout=5)  # without the fix: reconnected, still running
    assert task in done and task.cancelled()
    assert sync.sessions == 1


async def test_sync_reconnects_after_the_broker_went_away(buffer: Buffer, mosquitto: MosquittoBroker) -> None:
    sync, task = await start_sync(buffer, mosquitto, reconnect_min_s=0.05, reconnect_max_s=0.2)
    try:
        await wait_until(lambda: sync.stats.connects == 1 and sync.stats.connected, what="connected")
        await mosquitto.kill()
        await wait_until(lambda: not sync.stats.connected, what="the loss noticed")
        await mosquitto.start()
        await wait_until(lambda: sync.stats.connects == 2, timeout=20, what="connected again")
    finally:
        await stop(task)


async def test_slow_acks_shrink_the_window_in_flight(
    buffer: Buffer, mosquitto: MosquittoBroker, central: ScriptedCentral
) -> None:
    await fill(buffer, 100)  # ten batches of ten
    sync, task = await start_sync(buffer, mosquitto, window=4, ack_timeout_s=60, ack_target_s=0.05)
    try:
        await wait_until(lambda: len(central.batches) == 4, timeout=10, what="a full window")
        await asyncio.sleep(0.2)  # the acks below come back four times later than the target
        await central.ack(buffer.stream, 1, 10)
        await wait_until(lambda: sync.flow.decreases == 1, timeout=10, what="the window halved")
        assert sync.flow.batches == 2
        await asyncio.sleep(0.3)  # three still in flight, two allowed: nothing may follow
        assert len(central.batches) == 4
        # A round trip later, still slow: halved again; the next acks, of the same round trip, not.
        await central.ack(buffer.stream, 11, 20)
        await wait_until(lambda: sync.flow.decreases == 2, timeout=10, what="the window halved again")
        await central.ack(buffer.stream, 21, 30)
        await central.ack(buffer.stream, 31, 40)
        await wait_until(lambda: len(central.batches) == 5, timeout=10, what="one more batch")
        assert (sync.flow.batches, sync.flow.decreases) == (1, 2)
        assert (central.batches[4].first, central.batches[4].last) == (41, 50)
        await asyncio.sleep(0.3)  # one in flight, one allowed: nothing may follow
        assert len(central.batches) == 5
    finally:
        await stop(task)
