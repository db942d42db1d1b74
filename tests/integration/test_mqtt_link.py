"""Central's MQTT link on a real Mosquitto: what it publishes, and what it hands its receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from central.mqtt_link import MqttLink, Subscription
from cityedge.broker import MosquittoBroker
from protocols.mqtt_client import FastClient
from protocols.testing import wait_until

pytestmark = pytest.mark.integration

CMD = "cityedge/cab-1/cmd"


async def test_a_publish_is_qos_1_with_the_mqtt_5_expiry_and_false_without_a_session(
    mosquitto: MosquittoBroker,
) -> None:
    link = MqttLink(broker_url=mosquitto.url)
    assert await link.publish(CMD, b"early") is False  # not started: the caller sends again later
    assert link.stats.publish_failed == 1
    received: list[aiomqtt.Message] = []
    async with (
        aiomqtt.Client(mosquitto.host, mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5) as cabinet,
        link,
    ):
        await cabinet.subscribe(CMD, qos=1)
        await link.wait_subscribed()
        assert (link.stats.connected, link.stats.protocol, link.stats.shared_subscription) == (
            True,
            "5",
            False,
        )
        assert await link.publish(CMD, b"with expiry", expiry_s=30)
        assert await link.publish(CMD, b"without")
        async with asyncio.timeout(10):
            async for message in cabinet.messages:
                received.append(message)
                if len(received) == 2:
                    break
    first, second = received
    assert (first.payload, first.qos) == (b"with expiry", 1)
    assert first.properties is not None and 25 <= first.properties.MessageExpiryInterval <= 30
    assert (second.payload, second.qos) == (b"without", 1)
    assert second.properties is None or not hasattr(second.properties, "MessageExpiryInterval")
    assert link.stats.connected is False and link.stats.connects == 1


async def test_the_receiver_gets_what_its_gate_admits_through_a_shared_subscription(
    mosquitto: MosquittoBroker,
) -> None:
    link = MqttLink(broker_url=mosquitto.url, group="test-group")
    got: list[tuple[str, bytes]] = []

    def take(topic: str, payload: bytes) -> bool:
        got.append((topic, payload))
        return True

    subscriptions = [Subscription("cityedge/+/data", shared=True), Subscription("cityedge/+/status")]
    link.receive(subscriptions, gate=lambda _topic, payload: not payload.startswith(b"flood"), handler=take)
    with pytest.raises(RuntimeError, match="receiver"):
        link.receive(subscriptions, handler=take)
    async with link, aiomqtt.Client(mosquitto.host, mosquitto.port) as edge:
        await link.wait_subscribed()
        assert link.stats.shared_subscription is True
        for topic, payload in [
            ("cityedge/cab-1/data", b"batch"),
            ("cityedge/cab-1/data", b"flood, refused by the gate"),
            ("cityedge/cab-1/status", b"birth"),
            ("cityedge/cab-1/ack", b"not subscribed"),
        ]:
            await edge.publish(topic, payload, qos=1)
        await wait_until(lambda: len(got) == 2, what="the batch and the birth")
        await edge.publish("cityedge/cab-2/data", b"last", qos=1)  # all before it were handled
        await wait_until(lambda: len(got) == 3, what="the last batch")
    assert sorted(got) == [
        ("cityedge/cab-1/data", b"batch"),
        ("cityedge/cab-1/status", b"birth"),
        ("cityedge/cab-2/data", b"last"),
    ]


async def test_publishes_queued_in_one_turn_all_arrive_in_order_and_none_without_a_session(
    mosquitto: MosquittoBroker,
) -> None:
    link = MqttLink(broker_url=mosquitto.url)
    assert link.publish_nowait("cityedge/cab-1/ack", b"early") is False
    assert link.stats.publish_failed == 1
    # More than one write holds (protocols.mqtt_client.BUNDLE_BYTES): several bundles, one turn.
    payloads = [f"ack {i:04d} ".encode() * 20 for i in range(500)]
    received: list[bytes] = []
    async with (
        aiomqtt.Client(mosquitto.host, mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5) as cabinet,
        link,
    ):
        await cabinet.subscribe("cityedge/cab-1/ack", qos=0)
        await link.wait_subscribed()
        assert all([link.publish_nowait("cityedge/cab-1/ack", p) for p in payloads])
        async with asyncio.timeout(10):
            async for message in cabinet.messages:
                assert isinstance(message.payload, bytes)
                received.append(message.payload)
                if len(received) == len(payloads):
                    break
        assert await link.publish(CMD, b"a QoS 1 publish still completes after them")
    assert received == payloads
    assert link.stats.publish_failed == 1


async def test_what_the_handler_declines_is_queued_as_a_message_once(mosquitto: MosquittoBroker) -> None:
    taken: list[bytes] = []

    def take(_topic: str, payload: bytes) -> bool:
        taken.append(payload)
        return not payload.startswith(b"declined")

    async with (
        FastClient(mosquitto.host, mosquitto.port, message_handler=take) as central,
        aiomqtt.Client(mosquitto.host, mosquitto.port) as edge,
    ):
        await central.subscribe("cityedge/+/data", qos=1)
        for payload in (b"taken 1", b"declined", b"taken 2"):
            await edge.publish("cityedge/cab-1/data", payload, qos=1)
        async with asyncio.timeout(10):
            message = await anext(central.messages)
        await wait_until(lambda: len(taken) == 3, what="every message offered to the handler")
    assert message.payload == b"declined" and message.qos == 1
    assert taken == [b"taken 1", b"declined", b"taken 2"]


async def test_a_paused_reader_takes_nothing_until_resumed(mosquitto: MosquittoBroker) -> None:
    taken: list[bytes] = []

    def take(_topic: str, payload: bytes) -> bool:
        taken.append(payload)
        return True

    async with (
        FastClient(mosquitto.host, mosquitto.port, message_handler=take) as central,
        aiomqtt.Client(mosquitto.host, mosquitto.port) as edge,
        aiomqtt.Client(mosquitto.host, mosquitto.port) as witness,
    ):
        await central.subscribe("cityedge/+/data", qos=1)
        await witness.subscribe("cityedge/+/data", qos=1)
        await edge.publish("cityedge/cab-1/data", b"before", qos=1)
        await wait_until(lambda: taken == [b"before"], what="the first message")
        central.pause_reading()
        for i in range(20):
            await edge.publish("cityedge/cab-1/data", b"while paused %d" % i, qos=1)
        async with asyncio.timeout(10):  # the broker has sent them on: central's socket holds them
            seen = [m async for m in _first(witness.messages, 21)]
        assert len(seen) == 21 and taken == [b"before"]
        central.resume_reading()
        await wait_until(lambda: len(taken) == 21, what="what waited in the socket")
    assert taken == [b"before", *(b"while paused %d" % i for i in range(20))]


async def _first(messages: AsyncIterator[aiomqtt.Message], n: int) -> AsyncIterator[aiomqtt.Message]:
    async for message in messages:
        yield message
        n -= 1
        if n == 0:
            return
