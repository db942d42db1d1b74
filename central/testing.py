"""Helpers for tests and benchmarks of the aggregator, shipped as real code.

Build wire payloads the way an edge would, listen for acknowledgements on a real broker, and wait on
a condition with a deadline instead of sleeping.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Self

import aiomqtt

from protocols.fleet import (
    PROTOCOL_VERSION,
    Ack,
    CommandResult,
    Event,
    FleetError,
    Reading,
    Status,
    decode_ack,
    encode,
    encode_data_batch,
)
from protocols.fleet.broker_url import parse_broker_url
from protocols.fleet.topics import all_cabinets, parse_topic
from protocols.quality import Quality

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


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``condition`` (sync or async) until it is true; TimeoutError naming ``what`` otherwise."""
    try:
        async with asyncio.timeout(within):
            while True:
                result = condition()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise TimeoutError(f"{what} not reached within {within} s") from None


class AckListener:
    """Subscribes to every cabinet's ack topic and keeps what arrives, decoded."""

    def __init__(self, broker_url: str) -> None:
        self._address = parse_broker_url(broker_url)
        self.acks: list[Ack] = []
        self.bad: list[tuple[str, bytes]] = []
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._client = aiomqtt.Client(self._address.host, self._address.port)
        await self._client.__aenter__()
        await self._client.subscribe(all_cabinets("ack"), qos=1)
        self._task = asyncio.create_task(self._collect(self._client), name="ack-listener")
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
            payload = message.payload
            topic = message.topic.value
            try:
                cabinet, _ = parse_topic(topic)
                self.acks.append(decode_ack(payload, topic_cabinet=cabinet))
            except FleetError:
                self.bad.append((topic, payload))

    def count(self, cabinet: str, stream: str, first: int, last: int) -> int:
        return sum(
            1 for a in self.acks if (a.cabinet, a.stream, a.first, a.last) == (cabinet, stream, first, last)
        )
