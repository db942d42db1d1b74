"""Bad input published straight to a real Mosquitto: counted, quarantined, and never in the way."""

from __future__ import annotations

import asyncio

import aiomqtt
import msgspec
import paho.mqtt.client as paho
import pytest

from central.server import CentralServer
from central.testing import AckListener, batch_payload, wait_until
from cityedge.broker import MosquittoBroker
from protocols.fleet.limits import MAX_DATA_BYTES
from tests.integration.api_client import api_client

pytestmark = pytest.mark.integration

CAB = "cab-1"
STREAM = "0123abcd"
DATA = f"cityedge/{CAB}/data"


def bad_messages() -> list[tuple[str, bytes, str]]:
    """(topic, payload, the reason it must be counted under)."""
    future = msgspec.msgpack.encode(
        {"v": 2, "cabinet": CAB, "stream": STREAM, "first": 1, "last": 1, "readings": [], "signed": "x"}
    )
    return [
        (DATA, b"\xc1 this is not msgpack", "malformed"),
        (DATA, b"\x00" * (MAX_DATA_BYTES + 1), "too_large"),
        (DATA, future, "unsupported_version"),
        (DATA, batch_payload("cab-2", STREAM, 1, 5), "wrong_cabinet"),
        ("cityedge/bad$cabinet/data", batch_payload(CAB, STREAM, 1, 5), "bad_topic"),
        (f"cityedge/{CAB}/status", b"\x92\x01\x02", "malformed"),
    ]


async def test_bad_payloads_are_counted_and_quarantined_good_ones_still_flow(
    central: CentralServer, mosquitto: MosquittoBroker
) -> None:
    bad = bad_messages()
    good = [batch_payload(CAB, STREAM, 1 + 10 * i, 10) for i in range(len(bad) + 1)]
    async with (
        AckListener(mosquitto.url) as acks,
        aiomqtt.Client(mosquitto.host, mosquitto.port) as edge,
        api_client(central, prefix="") as http,
    ):
        for i, payload in enumerate(good):
            await edge.publish(DATA, payload, qos=1)
            if i < len(bad):
                topic, bad_payload, _ = bad[i]
                await edge.publish(topic, bad_payload, qos=1)
            # The API keeps answering while bad input flows.
            assert (await http.get("/api/v1/cabinets")).status_code == 200

        await wait_until(lambda: len(acks.acks) >= len(good), what="an ack for every good batch")
        assert sorted((a.first, a.last) for a in acks.acks) == [
            (1 + 10 * i, 10 + 10 * i) for i in range(len(good))
        ]
        assert {a.cabinet for a in acks.acks} == {CAB}  # nothing acknowledged for the other cabinet

        stats = central.ingestor.stats
        expected = {
            "malformed": 2,
            "too_large": 1,
            "unsupported_version": 1,
            "wrong_cabinet": 1,
            "bad_topic": 1,
        }
        await wait_until(lambda: dict(central.ingestor.stats.rejected) == expected, what="rejection counters")
        stats = central.ingestor.stats
        assert stats.readings_stored == 10 * len(good)

        quarantine = (await http.get("/api/v1/quarantine")).json()
        assert quarantine["counts"] == expected
        items = quarantine["items"]
        assert {(i["topic"], i["reason"]) for i in items} == {(t, r) for t, _, r in bad}
        assert all("payload" not in item for item in items)
        oversized = next(i for i in items if i["reason"] == "too_large")
        assert oversized["size"] == MAX_DATA_BYTES + 1
        wrong = next(i for i in items if i["reason"] == "wrong_cabinet")
        assert "cab-2" in wrong["detail"] and CAB in wrong["detail"]

        health = await http.get("/api/v1/health")
        assert health.status_code == 200
        assert health.json()["ingest"]["rejected"] == expected
        cabinets = (await http.get("/api/v1/cabinets")).json()
        assert [c["id"] for c in cabinets] == [CAB]
        readings = await http.get(f"/api/v1/cabinets/{CAB}/points/lc1/power_w/readings", params={"start": 0})
        assert len(readings.json()["readings"]) == 10 * len(good)


async def test_a_flood_of_garbage_does_not_delay_a_good_batch(
    central: CentralServer, mosquitto: MosquittoBroker
) -> None:
    async with AckListener(mosquitto.url) as acks, aiomqtt.Client(mosquitto.host, mosquitto.port) as edge:
        for i in range(300):
            await edge.publish(DATA, b"\xc1" * (i + 1), qos=0)
        await edge.publish(DATA, batch_payload(CAB, STREAM, 1, 3), qos=1)
        await wait_until(lambda: acks.count(CAB, STREAM, 1, 3) == 1, what="the good batch's ack")
    await wait_until(lambda: central.ingestor.stats.rejected.get("malformed") == 300, what="300 rejections")
    counts = await central.store.quarantine_counts()
    assert counts.by_reason == {"malformed": 300}


async def test_a_flooding_topic_is_refused_before_decoding_counted_once_and_sampled(
    central: CentralServer, mosquitto: MosquittoBroker
) -> None:
    """Past its burst, a topic's messages are refused unread: each counted once, one kept as a sample,
    and the good cabinet's batch goes through (QoS 1 junk is acknowledged to the broker all the same)."""
    limits = central.ingestor._limiter.limits
    flood = int(limits.messages.burst) + 2000
    flooder = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    flooder.max_inflight_messages_set(1000)
    flooder.connect(mosquitto.host, mosquitto.port)
    flooder.loop_start()  # its own thread: as fast as it goes, not paced by this test's loop
    try:
        sent = [
            flooder.publish("cityedge/flooder/data", b"\xc1" * 10, qos=1 if i % 2 else 0)
            for i in range(flood)
        ]
        await wait_until(lambda: all(info.is_published() for info in sent), what="the flood out")
    finally:
        await asyncio.to_thread(flooder.loop_stop)
    async with AckListener(mosquitto.url) as acks, aiomqtt.Client(mosquitto.host, mosquitto.port) as edge:
        await edge.publish(DATA, batch_payload(CAB, STREAM, 1, 3), qos=1)
        await wait_until(lambda: acks.count(CAB, STREAM, 1, 3) == 1, what="the good batch's ack")
    await wait_until(
        lambda: sum(central.ingestor.stats.rejected.values()) == flood, what="every junk counted"
    )
    rejected = dict(central.ingestor.stats.rejected)
    assert rejected["rate_limited"] >= 1500  # the burst and a little refill were decoded
    assert rejected["malformed"] + rejected["rate_limited"] == flood
    counts = await central.store.quarantine_counts()
    assert counts.by_reason.get("rate_limited") == 1  # one sample a minute, not one per message
