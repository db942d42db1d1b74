"""The light stand-in's wire behaviour with no central to ack: retained birth, batches of the plan's
size with contiguous seqs, the unacked batch sent again after the ack timeout, the last will."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from cityedge.broker import MosquittoBroker
from cityedge.fleet_sim.light import LightCabinet
from cityedge.fleet_sim.plan import FleetPlan
from cityedge.fleet_sim.stats import FleetCounters
from protocols.fleet import Topics, decode_data_batch, decode_status
from protocols.fleet.broker_url import parse_broker_url

pytestmark = pytest.mark.integration


async def test_light_cabinet_births_batches_and_resends_unacked(mosquitto: MosquittoBroker) -> None:
    plan = FleetPlan(cabinets=1, points=6, interval_s=0.2, prefix="light", ack_timeout_s=0.5)
    cabinet = LightCabinet(
        "light-00001", plan=plan, broker=parse_broker_url(mosquitto.url), counters=FleetCounters()
    )
    topics = Topics("light-00001")
    firsts: list[int] = []
    seen: dict[int, int] = {}
    async with aiomqtt.Client("127.0.0.1", parse_broker_url(mosquitto.url).port) as watcher:
        await watcher.subscribe(topics.data, qos=1)
        await watcher.subscribe(topics.status, qos=1)
        run = asyncio.create_task(cabinet.run())
        births = []
        try:
            async with asyncio.timeout(20):
                async for message in watcher.messages:
                    assert isinstance(message.payload, bytes)
                    if message.topic.matches(topics.status):
                        births.append(decode_status(message.payload, topic_cabinet="light-00001"))
                        continue
                    batch = decode_data_batch(message.payload, topic_cabinet="light-00001")
                    assert len(batch.readings) == 6
                    assert [r.seq for r in batch.readings] == list(range(batch.first, batch.last + 1))
                    firsts.append(batch.first)
                    seen[batch.first] = seen.get(batch.first, 0) + 1
                    if seen[1] >= 2 and len(seen) >= 3:
                        break  # the first batch went again, unacked
        finally:
            run.cancel()
            await asyncio.wait((run,), timeout=10)
        assert births and births[0].online and births[0].stream == cabinet.stream
        assert sorted(seen)[:3] == [1, 7, 13]  # contiguous seqs across batches
        assert cabinet.resends >= 1 and cabinet.backlog >= 6 * len(seen)
        # A clean stop says goodbye with a retained offline status.
        async with asyncio.timeout(10):
            async for message in watcher.messages:
                if message.topic.matches(topics.status):
                    assert isinstance(message.payload, bytes)
                    if not decode_status(message.payload).online:
                        break
