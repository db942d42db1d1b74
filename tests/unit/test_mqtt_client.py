"""The shared-table Properties decodes exactly what paho's own does."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

from protocols.mqtt_client import SharedTableProperties

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
