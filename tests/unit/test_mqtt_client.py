"""The shared-table Properties decodes exactly what paho's own does; a ready-made PUBLISH is paho's."""

from __future__ import annotations

import time
from typing import Any, cast

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

from protocols.mqtt_client import SharedTableProperties, publish_packet

# MQTT strings are UTF-8 without NUL (paho refuses NUL on decode, whichever Properties decodes).
texts = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=20)
publish_properties = st.fixed_dictionaries(
    {},
    optional={
        "PayloadFormatIndicator": st.integers(0, 1),
        "MessageExpiryInterval": st.integers(0, 2**32 - 1),
        "ContentType": texts,
        "ResponseTopic": texts.filter(bool),
        "CorrelationData": st.binary(max_size=20),
        "SubscriptionIdentifier": st.lists(st.integers(1, 268_435_455), min_size=1, max_size=3),
        "TopicAlias": st.integers(1, 65535),
        "UserProperty": st.lists(st.tuples(texts, texts), min_size=1, max_size=3),
    },
)


def _packed(values: dict[str, Any]) -> bytes:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(properties, name, value)
    packed: bytes = properties.pack()  # type: ignore[no-untyped-call]
    return packed


@given(values=publish_properties)
def test_decodes_like_paho(values: dict[str, Any]) -> None:
    wire = _packed(values)
    ours = SharedTableProperties(PacketTypes.PUBLISH)
    theirs = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    _, our_len = ours.unpack(wire)
    _, their_len = theirs.unpack(wire)  # type: ignore[no-untyped-call]
    assert our_len == their_len
    assert ours.json() == theirs.json()  # type: ignore[no-untyped-call]


def test_instances_do_not_share_values() -> None:
    first = SharedTableProperties(PacketTypes.PUBLISH)
    first.unpack(_packed({"MessageExpiryInterval": 5}))
    second = SharedTableProperties(PacketTypes.PUBLISH)
    assert second.json() == {}
    first.clear()
    assert first.json() == {}


def test_a_huge_property_block_is_stepped_over_not_decoded() -> None:
    """100,000 user properties cost paho's decoder tens of seconds; here they cost nothing."""
    user_property = b"\x26\x00\x01k\x00\x01v"  # identifier 38, the pair ("k", "v")
    block = user_property * 100_000
    wire = VariableByteIntegers.encode(len(block)) + block + b"payload"  # type: ignore[no-untyped-call]
    ours = SharedTableProperties(PacketTypes.PUBLISH)
    started = time.perf_counter()
    _, length = ours.unpack(wire)
    assert time.perf_counter() - started < 0.05
    assert wire[length:] == b"payload"  # the payload still starts where it should
    assert ours.json() == {}


topic_names = st.text(
    st.characters(exclude_characters="\x00+#", exclude_categories=("Cs",)), min_size=1, max_size=40
)


@given(topic=topic_names, payload=st.binary(max_size=300), v5=st.booleans())
def test_a_ready_made_publish_is_the_packet_paho_builds(topic: str, payload: bytes, v5: bool) -> None:
    paho = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    built: list[bytes] = []

    def queue(
        command: int, packet: bytes | bytearray, mid: int, qos: int, info: object = None
    ) -> MQTTErrorCode:
        built.append(bytes(packet))  # what paho would write
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    paho._packet_queue = queue  # type: ignore[assignment,method-assign]
    paho._sock = cast(Any, object())  # paho builds only for a session; nothing is written to it
    try:
        paho._send_publish(1, topic.encode(), payload, qos=0)
    finally:
        paho._sock = None
    assert built == [publish_packet(topic, payload, v5=v5)]


def test_a_publish_packet_needs_a_topic_name() -> None:
    for topic in ("", "cityedge/+/ack", "cityedge/#"):
        with pytest.raises(ValueError, match="not a topic name"):
            publish_packet(topic, b"ack", v5=True)


def test_a_long_payload_takes_a_longer_remaining_length() -> None:
    packet = publish_packet("t", bytes(20_000), v5=False)
    assert packet[:4] == bytes([0x30, 0xA3, 0x9C, 0x01])  # 2 + 1 + 20,000 = 20,003 in 3 bytes
    assert len(packet) == 4 + 20_003
