"""Helpers for tests and benchmarks of the aggregator, shipped as real code.

Build wire payloads the way an edge would, listen for acknowledgements on a real broker, play the
part of an agent (``ScriptedEdge``: birth, records, command results, commands received), and wait on
a condition with a deadline instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import aiomqtt

from protocols.fleet import (
    PROTOCOL_VERSION,
    Ack,
    Command,
    CommandResult,
    DeviceInfo,
    Event,
    FleetError,
    Reading,
    Status,
    Topics,
    decode_ack,
    decode_command,
    encode,
    encode_data_batch,
)
from protocols.fleet.broker_url import parse_broker_url
from protocols.fleet.messages import CommandStatus, Scalar
from protocols.fleet.topics import all_cabinets, parse_topic
from protocols.quality import Quality
from protocols.testing import wait_until

TS0_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z


def make_readings(
    first: int, count: int, *, points: Sequence[str] = ("lc1/power_w",), ts0: int = TS0_MS
) -> list[Reading]:
    """``count`` readings with seq first.., cycling over ``points``, one millisecond apart."""
    return [
        Reading(
            seq=first + i,
            point=points[i % len(points)],
            ts=ts0 + first + i,
            value=float(first + i),
            quality=Quality.GOOD,
        )
        for i in range(count)
    ]


def batch_payload(
    cabinet: str,
    stream: str,
    first: int,
    count: int,
    *,
    points: Sequence[str] = ("lc1/power_w",),
    events: Sequence[Event] = (),
    results: Sequence[CommandResult] = (),
    backlog: int = 0,
    ts0: int = TS0_MS,
) -> bytes:
    """An encoded DataBatch of ``count`` readings seq first..first+count-1 (plus any records given)."""
    readings = make_readings(first, count, points=points, ts0=ts0)
    seqs = [r.seq for r in readings] + [e.seq for e in events] + [r.seq for r in results]
    return encode_data_batch(
        cabinet=cabinet,
        stream=stream,
        first=min(seqs),
        last=max(seqs),
        readings=[encode(r) for r in readings],
        events=[encode(e) for e in events],
        results=[encode(r) for r in results],
        backlog=backlog,
    )


def status_payload(cabinet: str, *, online: bool, ts: int = TS0_MS, **fields: object) -> bytes:
    return encode(Status(v=PROTOCOL_VERSION, cabinet=cabinet, online=online, ts=ts, **fields))  # type: ignore[arg-type]


class _Subscriber:
    """A broker client that subscribes to ``topics`` and hands every message to ``_on_message``."""

    def __init__(self, broker_url: str, topics: Sequence[str], name: str) -> None:
        self._address = parse_broker_url(broker_url)
        self._topics = list(topics)
        self._name = name
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._client = client = aiomqtt.Client(self._address.host, self._address.port)
        await client.__aenter__()
        for topic in self._topics:
            await client.subscribe(topic, qos=1)
        self._task = asyncio.create_task(self._collect(client), name=self._name)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.__aexit__(exc_type, exc, tb)

    async def _collect(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self._on_message(message.topic.value, message.payload)

    def _on_message(self, topic: str, payload: bytes) -> None:
        raise NotImplementedError


class AckListener(_Subscriber):
    """Subscribes to every cabinet's ack topic and keeps what arrives, decoded."""

    def __init__(self, broker_url: str) -> None:
        super().__init__(broker_url, [all_cabinets("ack")], "ack-listener")
        self.acks: list[Ack] = []
        self.bad: list[tuple[str, bytes]] = []

    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            cabinet, _ = parse_topic(topic)
            self.acks.append(decode_ack(payload, topic_cabinet=cabinet))
        except FleetError:
            self.bad.append((topic, payload))

    def count(self, cabinet: str, stream: str, first: int, last: int) -> int:
        return sum(
            1 for a in self.acks if (a.cabinet, a.stream, a.first, a.last) == (cabinet, stream, first, last)
        )


class ScriptedEdge(_Subscriber):
    """Plays an agent on a real broker, as a test tells it to: publishes its birth, batches of
    records numbered like the agent's log, and collects the commands sent to its cabinet.

    ``send`` returns once central acknowledged the batch: what it carried is committed.
    """

    def __init__(self, broker_url: str, cabinet: str, *, stream: str = "0123abcd", timeout: float = 10.0):
        self.topics = Topics(cabinet)
        super().__init__(broker_url, [self.topics.command, self.topics.ack], f"scripted-edge-{cabinet}")
        self.cabinet = cabinet
        self.stream = stream
        self.timeout = timeout
        self.commands: list[Command] = []
        self.acks: list[Ack] = []
        self._seq = 0

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.topics.command:
            self.commands.append(decode_command(payload, topic_cabinet=self.cabinet))
        else:
            self.acks.append(decode_ack(payload, topic_cabinet=self.cabinet))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def reading(self, point: str, ts: int, value: Scalar, quality: Quality = Quality.GOOD) -> Reading:
        reason = None if quality == Quality.GOOD else "test"
        return Reading(self._next_seq(), point, ts, value, quality, reason)

    def event(self, kind: str, data: dict[str, Scalar], *, ts: int = TS0_MS, source: str = "agent") -> Event:
        return Event(self._next_seq(), ts, source, kind, "info", kind, data)

    def result(
        self, command_id: str, status: CommandStatus, reason: str | None = None, *, ts: int = TS0_MS
    ) -> CommandResult:
        return CommandResult(self._next_seq(), ts, command_id, status, reason)

    async def birth(self, *, inventory: Sequence[DeviceInfo] = (), ts: int = TS0_MS) -> None:
        """Publish the retained online status (what makes central resend pending commands)."""
        client = self._connected()
        status = Status(
            v=PROTOCOL_VERSION,
            cabinet=self.cabinet,
            online=True,
            ts=ts,
            stream=self.stream,
            inventory=list(inventory),
        )
        payload = encode(status)
        await client.publish(self.topics.status, payload, qos=1, retain=True)

    async def send(self, *records: Reading | Event | CommandResult, resend_s: float | None = None) -> None:
        """Publish the records as one batch and wait for central's ack of it; with ``resend_s``,
        publish it again each time that passes without the ack, as an agent does."""
        client = self._connected()
        seqs = [r.seq for r in records]
        first, last = min(seqs), max(seqs)
        payload = encode_data_batch(
            cabinet=self.cabinet,
            stream=self.stream,
            first=first,
            last=last,
            readings=[encode(r) for r in records if isinstance(r, Reading)],
            events=[encode(r) for r in records if isinstance(r, Event)],
            results=[encode(r) for r in records if isinstance(r, CommandResult)],
        )
        what = f"central's ack of {self.cabinet} seq {first}..{last}"
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            await client.publish(self.topics.data, payload, qos=1)
            left = deadline - asyncio.get_running_loop().time()
            try:
                await wait_until(
                    lambda: any((a.first, a.last) == (first, last) for a in self.acks),
                    timeout=max(0.01, min(left, resend_s or left)),
                    what=what,
                )
                return
            except TimeoutError:
                if resend_s is None or asyncio.get_running_loop().time() >= deadline:
                    raise

    async def wait_command(self, command_id: str, *, count: int = 1) -> Command:
        """The command ``command_id`` once it arrived ``count`` times."""
        await wait_until(
            lambda: sum(c.id == command_id for c in self.commands) >= count,
            timeout=self.timeout,
            what=f"command {command_id} received {count} time(s) by {self.cabinet}",
        )
        return next(c for c in self.commands if c.id == command_id)

    def _connected(self) -> aiomqtt.Client:
        if self._client is None:
            raise RuntimeError("use ScriptedEdge in `async with`")
        return self._client
