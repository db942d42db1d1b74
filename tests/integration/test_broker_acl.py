"""The fleet's broker config and accounts, on a real Mosquitto: a cabinet's credentials reach only its
own topics, under its own client id, and cannot take central's data or another cabinet's place.

The broker runs the production snippet (packaging/mosquitto/cityedge.conf) with its port and paths
swapped for the test's own, and the accounts made from config/broker/dynamic-security.template.json
(see shipped_broker.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest
from aiomqtt import ProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from protocols.fleet.topics import Topics, all_cabinets, shared
from tests.integration.shipped_broker import BROKER_CONF, PASSWORDS, WAIT_S, ShippedBroker, shipped_broker

pytestmark = pytest.mark.integration

A, B = Topics("cab-a"), Topics("cab-b")
MESSAGE_SIZE_LIMIT = 512 * 1024


@pytest.fixture
async def acl_broker(tmp_path: Path) -> AsyncIterator[ShippedBroker]:
    async with shipped_broker(tmp_path) as broker:
        yield broker


@asynccontextmanager
async def _subscribed(
    broker: ShippedBroker, username: str, *topic_filters: str
) -> AsyncIterator[aiomqtt.Client]:
    async with broker.client(username) as client:
        for topic_filter in topic_filters:
            assert _codes(await client.subscribe(topic_filter, qos=1)) == [1], topic_filter
        yield client


async def _receive_until(
    client: aiomqtt.Client, last: bytes, *, timeout: float = WAIT_S
) -> list[tuple[str, bytes]]:
    """Every message up to and including the one whose payload is ``last``."""
    received: list[tuple[str, bytes]] = []
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            received.append((message.topic.value, message.payload))
            if message.payload == last:
                return received
    raise AssertionError("unreachable: the message iterator does not end while connected")


def _codes(suback: tuple[int, ...] | list[ReasonCode]) -> list[int]:
    """SUBACK codes as ints (granted QoS, or >= 0x80 when refused), whatever the MQTT version."""
    return [code if isinstance(code, int) else code.value for code in suback]


@pytest.mark.parametrize("protocol", [ProtocolVersion.V311, ProtocolVersion.V5], ids=["mqtt3.1.1", "mqtt5"])
async def test_cabinet_publishes_on_its_own_topics_only(
    acl_broker: ShippedBroker, protocol: ProtocolVersion
) -> None:
    async with _subscribed(acl_broker, "central", all_cabinets("data"), all_cabinets("status")) as central:
        async with acl_broker.client("cab-a", protocol=protocol) as cabinet:
            await cabinet.publish(B.data, b"forged data", qos=1)
            await cabinet.publish(B.status, b"forged status", qos=1)
            await cabinet.publish(A.status, b"own status", qos=1, retain=True)
            await cabinet.publish(A.data, b"own data", qos=1)
        # Messages of one client arrive in the order it sent them: a forged one would come first.
        received = await _receive_until(central, b"own data")
    assert received == [(A.status, b"own status"), (A.data, b"own data")]


async def test_cabinet_cannot_publish_acks_or_commands_even_to_itself(
    acl_broker: ShippedBroker,
) -> None:
    async with _subscribed(acl_broker, "cab-a", A.ack, A.command) as cabinet:
        await cabinet.publish(A.ack, b"self ack", qos=1)
        await cabinet.publish(A.command, b"self command", qos=1)
        async with acl_broker.client("central") as central:
            await central.publish(A.command, b"real command", qos=1)
        received = await _receive_until(cabinet, b"real command")
    assert received == [(A.command, b"real command")]


async def test_cabinet_receives_only_its_own_acks_and_commands(acl_broker: ShippedBroker) -> None:
    async with acl_broker.client("cab-a") as cabinet:
        assert _codes(await cabinet.subscribe(A.ack, qos=1)) == [1]
        assert _codes(await cabinet.subscribe(A.command, qos=1)) == [1]
        async with acl_broker.client("central") as central:
            await central.publish(B.command, b"for b", qos=1)
            await central.publish(B.ack, b"ack for b", qos=1)
            await central.publish(A.ack, b"ack for a", qos=1)
            await central.publish(A.command, b"for a", qos=1)
        received = await _receive_until(cabinet, b"for a")
    assert received == [(A.ack, b"ack for a"), (A.command, b"for a")]


# Every filter a cabinet might try beyond its own two topics, wildcards within its prefix included.
FORBIDDEN_FILTERS = [
    B.command,
    B.ack,
    B.data,
    A.data,
    A.status,
    all_cabinets("cmd"),
    all_cabinets("data"),
    "cityedge/cab-a/#",
    "cityedge/cab-a/+",
    "cityedge/#",
    "#",
    "+/+/+",
    shared("cityedge-central", all_cabinets("data")),
    shared("cityedge-central", all_cabinets("status")),
    shared("attackers", all_cabinets("data")),
    shared("attackers", A.ack),
    "$SYS/#",
    "$CONTROL/dynamic-security/#",
]


@pytest.mark.parametrize("protocol", [ProtocolVersion.V311, ProtocolVersion.V5], ids=["mqtt3.1.1", "mqtt5"])
async def test_cabinet_cannot_subscribe_beyond_its_own_topics(
    acl_broker: ShippedBroker, protocol: ProtocolVersion
) -> None:
    async with acl_broker.client("cab-a", protocol=protocol) as cabinet:
        for topic_filter in FORBIDDEN_FILTERS:
            codes = _codes(await cabinet.subscribe(topic_filter, qos=1))
            assert codes[0] >= 0x80, f"{topic_filter} was granted: {codes}"
        assert _codes(await cabinet.subscribe(A.command, qos=1)) == [1]
        async with acl_broker.client("central") as central:
            await central.publish(B.command, b"for b", qos=1)
            await central.publish(A.command, b"for a", qos=1)
        async with acl_broker.client("cab-b") as other:
            await other.publish(B.data, b"b's data", qos=1)
            await other.publish(B.status, b"b's status", qos=1)
        async with acl_broker.client("central") as central:
            await central.publish(A.command, b"last", qos=1)
        received = await _receive_until(cabinet, b"last")
    assert received == [(A.command, b"for a"), (A.command, b"last")]


async def test_shared_subscription_of_a_cabinet_takes_nothing_from_central(acl_broker: ShippedBroker) -> None:
    """Stolen cabinet credentials joining central's group: refused, and central receives every batch."""
    group_filter = shared("cityedge-central", all_cabinets("data"))
    count = 200
    async with (
        _subscribed(acl_broker, "central", group_filter) as central,
        acl_broker.client("cab-b") as thief_v5,
        acl_broker.client("cab-a", protocol=ProtocolVersion.V311) as thief_v311,
    ):
        for thief in (thief_v5, thief_v311):
            assert _codes(await thief.subscribe(group_filter, qos=1))[0] >= 0x80
        for n in range(count):
            await thief_v311.publish(A.data, b"%d" % n, qos=1)
        received = await _receive_until(central, b"%d" % (count - 1))
    assert [payload for _, payload in received] == [b"%d" % n for n in range(count)]


async def test_central_workers_share_the_ingest_without_kicking_each_other_out(
    acl_broker: ShippedBroker,
) -> None:
    group_filter = shared("cityedge-central", all_cabinets("data"))
    count = 50
    async with (
        acl_broker.client("central", identifier="cityedge-central-one") as one,
        acl_broker.client("central", identifier="cityedge-central-two") as two,
    ):
        for worker in (one, two):
            assert _codes(await worker.subscribe(group_filter, qos=1)) == [1]
            assert _codes(await worker.subscribe(all_cabinets("status"), qos=1)) == [1]
        async with acl_broker.client("cab-a") as cabinet_a, acl_broker.client("cab-b") as cabinet_b:
            for n in range(count):
                await cabinet_a.publish(A.data, b"a%d" % n, qos=1)
                await cabinet_b.publish(B.data, b"b%d" % n, qos=1)
            await cabinet_a.publish(A.status, b"a online", qos=1)
        # Both stay connected (the status reaches both); between them each batch arrives once.
        got_one = await _receive_until(one, b"a online")
        got_two = await _receive_until(two, b"a online")
    data = sorted(payload for topic, payload in got_one + got_two if topic != A.status)
    assert data == sorted([b"a%d" % n for n in range(count)] + [b"b%d" % n for n in range(count)])
    assert len(got_one) > 1 and len(got_two) > 1  # each worker took a share


async def test_client_id_of_a_cabinet_is_its_username(acl_broker: ShippedBroker) -> None:
    """Another cabinet's credentials cannot take cab-a's client id (which would knock cab-a offline and
    fire its last will); a cabinet cannot connect under any id but its own."""
    will = aiomqtt.Will(A.status, b"offline (last will)", qos=1, retain=True)
    async with (
        _subscribed(acl_broker, "central", all_cabinets("status")) as central,
        acl_broker.client("cab-a", will=will) as victim,
    ):
        for username, identifier in [("cab-b", "cab-a"), ("cab-b", "someone-else"), ("cab-a", "cab-a-2")]:
            with pytest.raises(aiomqtt.MqttError):
                async with acl_broker.client(username, identifier=identifier):
                    pass
        # Still connected, and its will has not fired: the next status central gets is its own.
        await victim.publish(A.status, b"still online", qos=1)
        received = await _receive_until(central, b"still online")
    assert received == [(A.status, b"still online")]


async def test_payload_over_the_fleet_data_limit_is_dropped(acl_broker: ShippedBroker) -> None:
    """message_size_limit drops a payload over 512 KiB and completes the QoS 1 flow.

    MQTT 3.1.1 here: to an MQTT 5 client, Mosquitto 2.0.11 answers with a PUBACK of reason 0x95
    (not a valid PUBACK reason), which paho treats as a protocol error and disconnects.
    """
    async with _subscribed(acl_broker, "central", all_cabinets("data")) as central:
        async with acl_broker.client("cab-a", protocol=ProtocolVersion.V311) as cabinet:
            await cabinet.publish(A.data, b"x" * (MESSAGE_SIZE_LIMIT + 1), qos=1)
            await cabinet.publish(A.data, b"y" * MESSAGE_SIZE_LIMIT, qos=1)
        received = await _receive_until(central, b"y" * MESSAGE_SIZE_LIMIT)
    assert [len(payload) for _, payload in received] == [MESSAGE_SIZE_LIMIT]


@pytest.mark.parametrize(
    ("username", "password"),
    [("cab-a", "wrong"), ("cab-a", "cab-b-pw"), ("nobody", "x"), ("", "")],
    ids=["wrong password", "another cabinet's password", "unknown user", "anonymous"],
)
async def test_unknown_or_wrong_credentials_are_refused(
    acl_broker: ShippedBroker, username: str, password: str
) -> None:
    client = aiomqtt.Client(
        "127.0.0.1",
        acl_broker.port,
        username=username or None,
        password=password or None,
        identifier=username or None,
    )
    with pytest.raises(aiomqtt.MqttError):
        async with client:
            pass


def _shipped_setting(name: str) -> int:
    (value,) = [
        line.split()[1] for line in BROKER_CONF.read_text().splitlines() if line.startswith(name + " ")
    ]
    return int(value)


async def test_an_offline_cabinets_queue_is_bounded(acl_broker: ShippedBroker) -> None:
    """Commands for a cabinet that is away pile up to max_queued_messages (plus the in-flight window),
    not without end; what is past the bound is dropped (central resends what is not acknowledged)."""
    bound = _shipped_setting("max_queued_messages") + _shipped_setting("max_inflight_messages")
    sent = bound + 200
    away = aiomqtt.Client(
        "127.0.0.1",
        acl_broker.port,
        username="cab-a",
        password=PASSWORDS["cab-a"],
        identifier="cab-a",
        clean_session=False,
        protocol=ProtocolVersion.V311,
        timeout=WAIT_S,
    )
    async with away:
        await away.subscribe(A.command, qos=1)
    async with acl_broker.client("central") as central:
        for start in range(0, sent, 500):
            await asyncio.gather(
                *(central.publish(A.command, b"%d" % n, qos=1) for n in range(start, min(sent, start + 500)))
            )
    async with away:
        async with acl_broker.client("central") as central:
            await central.publish(A.command, b"after", qos=1)
        received = await _receive_until(away, b"after", timeout=60)
    assert bound - 200 < len(received) - 1 <= bound < sent


def _mqtt_string(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def _connect_packet(client_id: str, username: str, password: str, will_topic: str, will: bytes) -> bytes:
    """An MQTT 3.1.1 CONNECT with a retained QoS 1 will (aiomqtt cannot drop a link uncleanly)."""
    flags = 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02  # user, password, will retain, will QoS 1, will, clean
    body = _mqtt_string(b"MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big")
    for field in (client_id.encode(), will_topic.encode(), will, username.encode(), password.encode()):
        body += _mqtt_string(field)
    length, encoded = len(body), b""
    while True:
        byte, length = length % 128, length // 128
        encoded += bytes([byte | (0x80 if length else 0)])
        if not length:
            return b"\x10" + encoded + body


async def _connect_and_drop(broker: ShippedBroker, username: str, will_topic: str, will: bytes) -> int:
    """Connect with a will, then cut the link without DISCONNECT, so the broker fires the will."""
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    try:
        writer.write(_connect_packet(username, username, PASSWORDS[username], will_topic, will))
        await writer.drain()
        async with asyncio.timeout(WAIT_S):
            connack = await reader.readexactly(4)
    finally:
        writer.transport.abort()
    return connack[3]  # 0: accepted


async def test_a_cabinets_last_will_on_another_cabinets_status_is_dropped(acl_broker: ShippedBroker) -> None:
    async with _subscribed(acl_broker, "central", all_cabinets("status")) as central:
        assert await _connect_and_drop(acl_broker, "cab-a", B.status, b"forged will") == 0
        assert await _connect_and_drop(acl_broker, "cab-a", A.status, b"own will") == 0
        received = await _receive_until(central, b"own will")
    assert received == [(A.status, b"own will")]
