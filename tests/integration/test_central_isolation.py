"""Ingest isolates each message: whatever goes wrong with one (a store fault, a bug in a callback) is
that message's alone. The faults are injected into a real SQLite store, on a real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiomqtt
import pytest

from central.ingest import Ingestor
from central.store.rows import BatchOutcome, QuarantineEntry, ReceivedBatch, ReceivedStatus
from central.store.sqlite import SqliteStore
from central.testing import AckListener, batch_payload, status_payload, wait_until
from cityedge.broker import MosquittoBroker

pytestmark = pytest.mark.integration

STREAM = "0123abcd"
BUGGY = "cab-bug"


class FaultyStore(SqliteStore):
    """A real store that fails, not with StoreError, on anything of cabinet ``cab-bug``."""

    async def write(
        self,
        batches: Sequence[ReceivedBatch],
        statuses: Sequence[ReceivedStatus] = (),
        quarantine: Sequence[QuarantineEntry] = (),
    ) -> list[BatchOutcome]:
        if any(b.batch.cabinet == BUGGY for b in batches) or any(s.status.cabinet == BUGGY for s in statuses):
            raise RuntimeError("injected fault")
        return await super().write(batches, statuses, quarantine)


def birth_callback_with_a_bug(cabinet: str) -> None:
    if cabinet == "cab-birth-bug":
        raise KeyError(cabinet)


@pytest.fixture
async def ingestor(tmp_path: Path, mosquitto: MosquittoBroker) -> AsyncIterator[Ingestor]:
    async with (
        FaultyStore(tmp_path / "central.db") as store,
        Ingestor(store=store, broker_url=mosquitto.url, on_birth=birth_callback_with_a_bug) as ingest,
    ):
        await wait_until(lambda: ingest.stats.mqtt_connected, what="ingest connected")
        await ingest.wait_subscribed()
        yield ingest


async def test_a_message_that_breaks_the_store_or_a_callback_is_quarantined_alone(
    ingestor: Ingestor, mosquitto: MosquittoBroker
) -> None:
    async with AckListener(mosquitto.url) as acks, aiomqtt.Client(mosquitto.host, mosquitto.port) as edge:
        # Interleaved, so that the writer groups good and bad messages in one transaction.
        for i in range(20):
            await edge.publish("cityedge/cab-1/data", batch_payload("cab-1", STREAM, 1 + 10 * i, 10), qos=1)
            await edge.publish(f"cityedge/{BUGGY}/data", batch_payload(BUGGY, STREAM, 1 + 10 * i, 10), qos=1)
        await edge.publish(f"cityedge/{BUGGY}/status", status_payload(BUGGY, online=True), qos=1)
        await edge.publish(
            "cityedge/cab-birth-bug/status", status_payload("cab-birth-bug", online=True), qos=1
        )
        await edge.publish("cityedge/cab-2/data", batch_payload("cab-2", STREAM, 1, 10), qos=1)
        await wait_until(
            lambda: (
                {a.cabinet for a in acks.acks} >= {"cab-1", "cab-2"}
                and sum(a.cabinet == "cab-1" for a in acks.acks) == 20
            ),
            what="every good batch acknowledged",
        )
        await wait_until(
            lambda: ingestor.stats.rejected.get("ingest_fault", 0) == 22,
            what=f"20 batches, a status and a birth quarantined as faults, not {ingestor.stats.rejected}",
        )
    assert not any(a.cabinet == BUGGY for a in acks.acks)  # never acknowledged: the edge keeps them
    assert ingestor.stats.readings_stored == 210
