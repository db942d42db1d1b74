"""Topic names of the fleet: built from a cabinet id, parsed back, and nothing else accepted."""

from __future__ import annotations

import string

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from protocols.fleet import TopicError, Topics, parse_topic
from protocols.fleet.messages import CabinetId
from protocols.fleet.topics import KINDS, Kind, all_cabinets, is_valid_cabinet_id, shared

cabinet_ids = st.builds(
    str.__add__,
    st.sampled_from(string.ascii_letters + string.digits),
    st.text(string.ascii_letters + string.digits + "_.-", max_size=63),
)

INVALID_CABINET_IDS = [
    "",
    "-cab",
    ".cab",
    "_cab",
    "cab/1",
    "cab+",
    "cab#",
    "cab 1",
    "c" * 65,
    "cab1\n",
    "\ncab1",
    "cabé",
    "$SYS",
    "%u",
]


def _topic(topics: Topics, kind: Kind) -> str:
    return {"status": topics.status, "data": topics.data, "ack": topics.ack, "cmd": topics.command}[kind]


def test_the_four_topics_of_a_cabinet() -> None:
    topics = Topics("cab-1")
    assert topics.status == "cityedge/cab-1/status"
    assert topics.data == "cityedge/cab-1/data"
    assert topics.ack == "cityedge/cab-1/ack"
    assert topics.command == "cityedge/cab-1/cmd"


def test_filters_for_every_cabinet() -> None:
    assert all_cabinets("data") == "cityedge/+/data"
    assert all_cabinets("status") == "cityedge/+/status"
    assert shared("cityedge-central", all_cabinets("data")) == "$share/cityedge-central/cityedge/+/data"


@pytest.mark.parametrize("cabinet", ["a", "0", "A" * 64, "cab_1.x-2", "Dijon-042"])
def test_valid_cabinet_ids(cabinet: str) -> None:
    assert is_valid_cabinet_id(cabinet)
    assert Topics(cabinet).cabinet == cabinet


@pytest.mark.parametrize("cabinet", INVALID_CABINET_IDS)
def test_invalid_cabinet_id_is_refused(cabinet: str) -> None:
    assert not is_valid_cabinet_id(cabinet)
    with pytest.raises(ValueError, match=r"cabinet id .* is not valid"):
        Topics(cabinet)


@given(cabinet=cabinet_ids, kind=st.sampled_from(KINDS))
def test_parse_topic_inverts_topics(cabinet: str, kind: Kind) -> None:
    assert parse_topic(_topic(Topics(cabinet), kind)) == (cabinet, kind)


@given(cabinet=st.text(max_size=70))
@example(cabinet="cab1\n")
@example(cabinet="c" * 64)
@example(cabinet="c" * 65)
def test_topics_and_payloads_agree_on_cabinet_ids(cabinet: str) -> None:
    """The topic check and the payload check (msgspec) accept exactly the same cabinet ids."""
    try:
        msgspec.convert(cabinet, CabinetId)
    except msgspec.ValidationError:
        valid_in_payload = False
    else:
        valid_in_payload = True
    assert is_valid_cabinet_id(cabinet) == valid_in_payload


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "cityedge",
        "cityedge/cab-1",
        "cityedge/cab-1/data/extra",
        "cityedge/cab-1/data/",
        "/cityedge/cab-1/data",
        "other/cab-1/data",
        "CityEdge/cab-1/data",
        "cityedge//data",
        "cityedge/cab-1/",
        "cityedge/cab-1/unknown",
        "cityedge/cab-1/Data",
        "cityedge/cab-1/command",
        "cityedge/cab-1/data\n",
        "cityedge/+/data",
        "cityedge/#",
        "$share/cityedge-central/cityedge/cab-1/data",
        *(f"cityedge/{cabinet}/data" for cabinet in INVALID_CABINET_IDS if "/" not in cabinet),
    ],
)
def test_bad_topic_is_refused(topic: str) -> None:
    with pytest.raises(TopicError) as caught:
        parse_topic(topic)
    assert caught.value.topic == topic
    assert caught.value.detail
    assert caught.value.reason == "bad_topic"


@given(topic=st.text(max_size=80) | st.builds("cityedge/{}/{}".format, st.text(), st.text()))
def test_parse_topic_accepts_only_what_topics_build(topic: str) -> None:
    try:
        cabinet, kind = parse_topic(topic)
    except TopicError:
        return
    assert _topic(Topics(cabinet), kind) == topic
