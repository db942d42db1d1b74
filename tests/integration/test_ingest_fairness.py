"""Per-cabinet fairness at central: one cabinet's backlog does not hold the others' batches behind it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from central.ingest import Ingestor
from central.ingest_limits import RateLimit, TopicLimits
from central.store.sqlite import SqliteStore
from central.testing import AckListener, batch_payload, wait_until
from cityedge.broker import MosquittoBroker

pytestmark = pytest.mark.integration

BIG, SMALL = "cab-big", "cab-small"
STREAM = "0123abcd"
BIG_BATCHES = 100
BATCH = 1000

# Capacity, not policy: the big cabinet sends far more than one cabinet may a second.
UNLIMITED = RateLimit(rate=1e12, burst=1e12)


async def test_a_small_cabinet_is_acked_while_a_big_backlog_drains(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    big = [batch_payload(BIG, STREAM, 1 + BATCH * i, BATCH) for i in range(BIG_BATCHES)]
    small = batch_payload(SMALL, STREAM, 1, 10)
    limits = TopicLimits(messages=UNLIMITED, bytes=UNLIMITED, records=UNLIMITED)
    async with (
        SqliteStore(tmp_path / "central.db") as store,
        # Groups of two big batches: the backlog takes fifty commits to drain.
        Ingestor(
            store=store, broker_url=mosquitto.url, max_group_records=2 * BATCH, limits=limits
        ) as ingestor,
        AckListener(mosquitto.url) as acks,
        aiomqtt.Client(mosquitto.host, mosquitto.port, max_inflight_messages=1000) as edge,
    ):
        await ingestor.wait_subscribed()
        # All at once (each waits for its PUBACK concurrently): the backlog reaches central faster
        # than the store can write it, whatever the store's speed.
        await asyncio.gather(*(edge.publish(f"cityedge/{BIG}/data", payload, qos=1) for payload in big))
        # The backlog is at central before the small cabinet's batch: first come would be last served.
        await wait_until(lambda: ingestor.stats.batches_received == BIG_BATCHES, what="the backlog queued")
        stored_then = ingestor.stats.batches_stored
        assert stored_then < BIG_BATCHES // 2, (
            "the backlog must still be waiting for this test to mean anything"
        )
        await edge.publish(f"cityedge/{SMALL}/data", small, qos=1)
        await wait_until(
            lambda: acks.count(SMALL, STREAM, 1, 10) == 1, timeout=30, what="the small one's ack"
        )
        big_before = sum(1 for ack in acks.acks[: _index(acks, SMALL)] if ack.cabinet == BIG)
        # In the group being written then, the next or the one after: not behind the whole backlog.
        assert big_before <= stored_then + 3 * 2, (stored_then, big_before)
        await wait_until(lambda: ingestor.stats.batches_stored == BIG_BATCHES + 1, timeout=60, what="all")
        assert (await store.totals()).readings == BIG_BATCHES * BATCH + 10


def _index(acks: AckListener, cabinet: str) -> int:
    return next(i for i, ack in enumerate(acks.acks) if ack.cabinet == cabinet)
