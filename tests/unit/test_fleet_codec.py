"""The fleet codec: every valid message round-trips, every bad payload gets one FleetError subclass."""

from __future__ import annotations

import contextlib
import itertools
import math
import string
from collections.abc import Callable
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from protocols.fleet import (
    PROTOCOL_VERSION,
    Ack,
    Command,
    CommandResult,
    DataBatch,
    DeviceInfo,
    Event,
    FleetError,
    MalformedMessage,
    MessageTooLarge,
    Reading,
    Status,
    TopicError,
    UnsupportedVersion,
    WrongCabinet,
    decode_ack,
    decode_command,
    decode_data_batch,
    decode_record,
    decode_status,
    encode,
    encode_data_batch,
)
from protocols.fleet import seq_ranges as codec_seq_ranges
from protocols.fleet.limits import (
    MAX_ACK_BYTES,
    MAX_COMMAND_BYTES,
    MAX_DATA_BYTES,
    MAX_RECORD_BYTES,
    MAX_STATUS_BYTES,
)
from protocols.fleet.messages import CommandStatus, Severity
from protocols.quality import Quality

Envelope = DataBatch | Status | Ack | Command
Record = Reading | Event | CommandResult
EnvelopeDecoder = Callable[..., Envelope]

MAX_SEQ = 2**63 - 1
MAX_TS = 2**53

# --- strategies: valid values, within every constraint of messages.py --------------------------

_NAME_CHARS = string.ascii_letters + string.digits + "_.-"

cabinet_ids = st.builds(
    str.__add__,
    st.sampled_from(string.ascii_letters + string.digits),
    st.text(_NAME_CHARS, max_size=63),
)
names = st.text(_NAME_CHARS, min_size=1, max_size=64)
points = st.builds("{}/{}".format, names, names)
streams = st.text("0123456789abcdef", min_size=8, max_size=32)
timestamps = st.integers(0, MAX_TS)
seqs = st.integers(1, MAX_SEQ)
counts = st.integers(0, 2**53)
short_texts = st.text(max_size=256)
# Finite only: test_non_finite_floats_are_refused covers NaN and infinities.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=64)
)
scalar_maps = st.dictionaries(names, scalars, max_size=8)


def readings(seq: st.SearchStrategy[int] = seqs) -> st.SearchStrategy[Reading]:
    return st.builds(
        Reading,
        seq=seq,
        point=points,
        ts=timestamps,
        value=scalars,
        quality=st.sampled_from(Quality),
        reason=st.none() | short_texts,
    )


def events(seq: st.SearchStrategy[int] = seqs) -> st.SearchStrategy[Event]:
    return st.builds(
        Event,
        seq=seq,
        ts=timestamps,
        source=st.text(max_size=129),
        kind=names,
        severity=st.sampled_from(get_args(Severity)),
        message=st.text(max_size=200),
        data=scalar_maps,
    )


def results(seq: st.SearchStrategy[int] = seqs) -> st.SearchStrategy[CommandResult]:
    return st.builds(
        CommandResult,
        seq=seq,
        ts=timestamps,
        command_id=names,
        status=st.sampled_from(get_args(CommandStatus)),
        reason=st.none() | short_texts,
    )


records = readings() | events() | results()


@st.composite
def seq_ranges(draw: st.DrawFn) -> tuple[int, int]:
    first = draw(seqs)
    last = draw(st.integers(first, MAX_SEQ) | st.integers(first, min(first + 100, MAX_SEQ)))
    return first, last


@st.composite
def data_batches(draw: st.DrawFn) -> DataBatch:
    first, last = draw(seq_ranges())
    # Each seq once: it is one place in the cabinet's log, whatever the kind of record.
    used = iter(draw(st.lists(st.integers(first, last), unique=True, max_size=18)))
    reading_list = [draw(readings(st.just(seq))) for seq in itertools.islice(used, draw(st.integers(0, 10)))]
    event_list = [draw(events(st.just(seq))) for seq in itertools.islice(used, draw(st.integers(0, 4)))]
    result_list = [draw(results(st.just(seq))) for seq in itertools.islice(used, 4)]
    return DataBatch(
        v=PROTOCOL_VERSION,
        cabinet=draw(cabinet_ids),
        stream=draw(streams),
        first=first,
        last=last,
        readings=reading_list,
        events=event_list,
        results=result_list,
        backlog=draw(counts),
    )


@st.composite
def acks(draw: st.DrawFn) -> Ack:
    first, last = draw(seq_ranges())
    seqs_held = draw(st.lists(st.integers(first, last), max_size=20))
    return Ack(
        v=PROTOCOL_VERSION,
        cabinet=draw(cabinet_ids),
        stream=draw(streams),
        first=first,
        last=last,
        held=codec_seq_ranges(seqs_held),
    )


device_infos = st.builds(
    DeviceInfo,
    name=names,
    driver=names,
    profile=st.none() | names,
    points=st.lists(names, max_size=8),
)
statuses = st.builds(
    Status,
    v=st.just(PROTOCOL_VERSION),
    cabinet=cabinet_ids,
    online=st.booleans(),
    ts=timestamps,
    version=short_texts,
    config_hash=short_texts,
    stream=st.none() | streams,
    boot_count=counts,
    backlog=counts,
    inventory=st.lists(device_infos, max_size=4),
)
commands = st.builds(
    Command,
    v=st.just(PROTOCOL_VERSION),
    id=names,
    cabinet=cabinet_ids,
    action=names,
    not_after=timestamps,
    issued_by=short_texts,
    device=st.none() | names,
    args=scalar_maps,
)
envelopes: st.SearchStrategy[Envelope] = data_batches() | statuses | acks() | commands

DECODERS: dict[type[Any], EnvelopeDecoder] = {
    DataBatch: decode_data_batch,
    Status: decode_status,
    Ack: decode_ack,
    Command: decode_command,
}
ALL_DECODERS = list(DECODERS.values())
RECORD_TYPES: tuple[type[Any], ...] = (Reading, Event, CommandResult)


def _example(kind: type[Any]) -> Envelope:
    """One small valid message of each kind, for the tests that change one thing about it."""
    examples: dict[type[Any], Envelope] = {
        DataBatch: DataBatch(
            v=1,
            cabinet="cab-1",
            stream="0123abcd",
            first=10,
            last=20,
            readings=[Reading(seq=10, point="lc1/power_w", ts=1_700_000_000_000, value=41.5)],
            events=[Event(seq=15, ts=1, source="lc1", kind="door_open", severity="info", message="")],
            results=[CommandResult(seq=20, ts=2, command_id="c1", status="executed")],
        ),
        Status: Status(v=1, cabinet="cab-1", online=True, ts=5, stream="0123abcd"),
        Ack: Ack(v=1, cabinet="cab-1", stream="0123abcd", first=10, last=20, held=[(10, 10), (15, 20)]),
        Command: Command(
            v=1, id="c1", cabinet="cab-1", action="dim", not_after=10, issued_by="op", args={"l": 40}
        ),
    }
    return examples[kind]


def _as_map(message: Envelope, **changes: Any) -> bytes:
    """The message as a plain msgpack map with some fields changed (or added)."""
    fields = msgspec.to_builtins(message)
    fields.update(changes)
    return msgspec.msgpack.encode(fields)


# --- round trips --------------------------------------------------------------------------------


@given(batch=data_batches())
def test_data_batch_round_trips(batch: DataBatch) -> None:
    payload = encode(batch)
    decoded = decode_data_batch(payload, topic_cabinet=batch.cabinet)
    assert decoded == batch
    assert encode(decoded) == payload  # types too: 1 stays an int, 1.0 a float, True a bool


@given(status=statuses)
def test_status_round_trips(status: Status) -> None:
    payload = encode(status)
    assert decode_status(payload, topic_cabinet=status.cabinet) == status
    assert encode(decode_status(payload)) == payload


@given(ack=acks())
def test_ack_round_trips(ack: Ack) -> None:
    assert decode_ack(encode(ack), topic_cabinet=ack.cabinet) == ack


@given(command=commands)
def test_command_round_trips(command: Command) -> None:
    payload = encode(command)
    assert decode_command(payload, topic_cabinet=command.cabinet) == command
    assert encode(decode_command(payload)) == payload


@given(record=records)
def test_record_round_trips(record: Record) -> None:
    payload = encode(record)
    record_type: type[Any] = type(record)
    decoded = decode_record(record_type, payload)
    assert decoded == record
    assert encode(decoded) == payload


def test_records_are_arrays_and_envelopes_are_maps() -> None:
    batch = _example(DataBatch)
    assert isinstance(batch, DataBatch)
    assert isinstance(msgspec.msgpack.decode(encode(batch.readings[0])), list)
    assert isinstance(msgspec.msgpack.decode(encode(batch)), dict)


@given(batch=data_batches())
def test_encode_data_batch_from_stored_records_equals_encode(batch: DataBatch) -> None:
    payload = encode_data_batch(
        cabinet=batch.cabinet,
        stream=batch.stream,
        first=batch.first,
        last=batch.last,
        readings=[encode(r) for r in batch.readings],
        events=[encode(e) for e in batch.events],
        results=[encode(r) for r in batch.results],
        backlog=batch.backlog,
    )
    assert payload == encode(batch)
    assert decode_data_batch(payload, topic_cabinet=batch.cabinet) == batch


def test_encode_data_batch_defaults_match_data_batch_defaults() -> None:
    reading = Reading(seq=3, point="lc1/on", ts=0, value=True)
    payload = encode_data_batch(
        cabinet="cab-1", stream="0123abcd", first=3, last=3, readings=[encode(reading)]
    )
    batch = DataBatch(
        v=PROTOCOL_VERSION, cabinet="cab-1", stream="0123abcd", first=3, last=3, readings=[reading]
    )
    assert payload == encode(batch)
    assert decode_data_batch(payload) == batch


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(value: float) -> None:
    """A value a device cannot give finitely travels as None with a bad quality, never as NaN."""
    reading = Reading(seq=1, point="lc1/power_w", ts=0, value=value, quality=Quality.BAD)
    with pytest.raises(MalformedMessage):
        decode_record(Reading, encode(reading))
    batch = _example(DataBatch)
    assert isinstance(batch, DataBatch)
    with pytest.raises(MalformedMessage):
        decode_data_batch(encode(msgspec.structs.replace(batch, readings=[reading])))
    event = Event(seq=15, ts=1, source="lc1", kind="x", severity="info", message="", data={"v": value})
    with pytest.raises(MalformedMessage):
        decode_data_batch(encode(msgspec.structs.replace(batch, readings=[], events=[event])))


# --- bad payloads get FleetError subclasses, nothing else ---------------------------------------


def _decode_with_every_decoder(payload: bytes, topic_cabinet: str | None) -> None:
    """Feed one payload to every decoder: only FleetError may come out, and never another cabinet."""
    for decode in ALL_DECODERS:
        try:
            message = decode(payload, topic_cabinet=topic_cabinet)
        except FleetError:
            continue
        if topic_cabinet is not None:
            assert message.cabinet == topic_cabinet
        if isinstance(message, DataBatch | Ack):
            assert message.first <= message.last
        if isinstance(message, DataBatch):
            batch_records: list[Record] = [*message.readings, *message.events, *message.results]
            for record in batch_records:
                assert message.first <= record.seq <= message.last
    for record_type in RECORD_TYPES:
        with contextlib.suppress(FleetError):
            decode_record(record_type, payload)


@given(payload=st.binary(max_size=2048), topic_cabinet=st.none() | cabinet_ids)
@example(payload=b"", topic_cabinet=None)
@example(payload=b"\xc1", topic_cabinet=None)
@example(payload=b"\xdf\xff\xff\xff\xff", topic_cabinet=None)  # map32 of 2**32-1 pairs, no body
@example(payload=b"\xdd\xff\xff\xff\xff", topic_cabinet=None)  # array32 likewise
def test_arbitrary_bytes_raise_only_fleet_errors(payload: bytes, topic_cabinet: str | None) -> None:
    _decode_with_every_decoder(payload, topic_cabinet)


msgpack_values = st.recursive(
    scalars | st.binary(max_size=16),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(-(2**63), 2**64 - 1), children, max_size=4)
    ),
    max_leaves=20,
)
_FIELD_NAMES = sorted({f for t in (DataBatch, Status, Ack, Command) for f in t.__struct_fields__} | {"x"})
envelope_like_maps = st.dictionaries(st.sampled_from(_FIELD_NAMES), msgpack_values, max_size=10)


@given(
    value=msgpack_values | envelope_like_maps | st.lists(msgpack_values, min_size=5, max_size=7),
    topic_cabinet=st.none() | st.just("cab-1"),
)
def test_well_formed_msgpack_of_any_shape_raises_only_fleet_errors(
    value: Any, topic_cabinet: str | None
) -> None:
    _decode_with_every_decoder(msgspec.msgpack.encode(value), topic_cabinet)


@st.composite
def mutated_payloads(draw: st.DrawFn) -> tuple[bytes, str]:
    """A valid payload, truncated, with bytes flipped, inserted or deleted; and its cabinet."""
    message = draw(envelopes | records)
    payload = bytearray(encode(message))
    cabinet = message.cabinet if isinstance(message, Envelope) else "cab-1"
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(len(payload) - 1, 0)))
        operation = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        if operation == "truncate":
            del payload[at:]
        elif operation == "flip" and payload:
            payload[at] ^= draw(st.integers(1, 255))
        elif operation == "insert":
            payload[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif payload:
            del payload[at]
    return bytes(payload), cabinet


@given(mutated=mutated_payloads(), other_cabinet=st.booleans())
def test_mutated_valid_payloads_raise_only_fleet_errors(
    mutated: tuple[bytes, str], other_cabinet: bool
) -> None:
    payload, cabinet = mutated
    _decode_with_every_decoder(payload, "cab-other" if other_cabinet else cabinet)
    _decode_with_every_decoder(payload, None)


@pytest.mark.parametrize("decode", ALL_DECODERS)
@pytest.mark.parametrize("key", [b"x", b"v", b"readings", b"inventory", b"args"])
def test_deeply_nested_payload_is_malformed_not_recursion_error(decode: EnvelopeDecoder, key: bytes) -> None:
    """Regression: the envelope-version sniff recursed into nested arrays (RecursionError)."""
    depth = 4000  # beyond the interpreter's recursion limit, within every size limit
    payload = bytes([0x81, 0xA0 | len(key)]) + key + b"\x91" * depth + b"\x00"
    with pytest.raises(MalformedMessage):
        decode(payload)


@pytest.mark.parametrize("record_type", RECORD_TYPES)
def test_deeply_nested_record_is_malformed(record_type: type[Any]) -> None:
    payload = b"\x94\x01\xa6lc1/on\x00" + b"\x91" * 4000 + b"\x00"
    with pytest.raises(MalformedMessage):
        decode_record(record_type, payload)


_NOT_UTF8 = b"\xa2\xc3\x28"  # a msgpack str of 2 bytes that are not UTF-8


@pytest.mark.parametrize("decode", ALL_DECODERS)
@pytest.mark.parametrize(
    "payload",
    [
        b"\x81" + _NOT_UTF8 + b"\x01",  # the only key is not UTF-8
        b"\x82\xa1v\x01" + _NOT_UTF8 + b"\x00",  # the second key is not UTF-8
        b"\x82\xa1v\x01\xa7cabinet" + _NOT_UTF8,  # a value that is not UTF-8
        b"\x82\xa1v\x02\xa1x" + _NOT_UTF8,  # in a field unknown to this version
    ],
)
def test_invalid_utf8_is_malformed(decode: EnvelopeDecoder, payload: bytes) -> None:
    """Regression: msgspec raises UnicodeDecodeError, which escaped the decoders."""
    with pytest.raises(FleetError):
        decode(payload)


@pytest.mark.parametrize("record_type", RECORD_TYPES)
def test_record_with_invalid_utf8_is_malformed(record_type: type[Any]) -> None:
    with pytest.raises(MalformedMessage):
        decode_record(record_type, b"\x94\x01" + _NOT_UTF8 + b"\x00\xc3")


# --- each error, with its data in attributes ----------------------------------------------------

LIMITS = [
    (decode_data_batch, "data", MAX_DATA_BYTES),
    (decode_status, "status", MAX_STATUS_BYTES),
    (decode_ack, "ack", MAX_ACK_BYTES),
    (decode_command, "command", MAX_COMMAND_BYTES),
]


@pytest.mark.parametrize(("decode", "kind", "limit"), LIMITS)
def test_oversized_payload_is_refused_before_parsing(decode: EnvelopeDecoder, kind: str, limit: int) -> None:
    garbage = b"\xc1" * (limit + 1)  # 0xc1 is never valid msgpack: parsing would say "malformed"
    with pytest.raises(MessageTooLarge) as caught:
        decode(garbage)
    assert (caught.value.kind, caught.value.size, caught.value.limit) == (kind, limit + 1, limit)
    assert caught.value.reason == "too_large"
    with pytest.raises(MalformedMessage):  # at the limit exactly: parsed, and found malformed
        decode(garbage[:limit])


def test_oversized_record_is_refused_before_parsing() -> None:
    with pytest.raises(MessageTooLarge) as caught:
        decode_record(Reading, b"\xc1" * (MAX_RECORD_BYTES + 1))
    assert (caught.value.kind, caught.value.size, caught.value.limit) == (
        "record",
        MAX_RECORD_BYTES + 1,
        MAX_RECORD_BYTES,
    )


def test_valid_but_oversized_batch_is_too_large() -> None:
    reading = Reading(seq=1, point="lc1/power_w", ts=0, value=0.0, reason="r" * 256)
    count = MAX_DATA_BYTES // len(encode(reading)) + 1
    payload = encode_data_batch(
        cabinet="cab-1", stream="0123abcd", first=1, last=1, readings=[encode(reading)] * count
    )
    with pytest.raises(MessageTooLarge) as caught:
        decode_data_batch(payload)
    assert caught.value.size == len(payload) > caught.value.limit == MAX_DATA_BYTES


@pytest.mark.parametrize("decode", ALL_DECODERS)
@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",
        b"\x81",  # a map announcing one pair, then nothing
        b"\x92\x01\x02",  # an array where a map is expected
        b"\xa5hello",
        b"\x80",  # an empty map: no version, no fields
    ],
)
def test_not_an_envelope_is_malformed(decode: EnvelopeDecoder, payload: bytes) -> None:
    with pytest.raises(MalformedMessage) as caught:
        decode(payload)
    assert caught.value.reason == "malformed"
    assert caught.value.detail
    assert isinstance(caught.value.__cause__, msgspec.MsgspecError)


@pytest.mark.parametrize("kind", list(DECODERS))
def test_truncated_envelope_is_malformed(kind: type[Any]) -> None:
    payload = encode(_example(kind))
    with pytest.raises(MalformedMessage):
        DECODERS[kind](payload[:-1])


@pytest.mark.parametrize("kind", list(DECODERS))
@pytest.mark.parametrize("version", [0, 2, 99])
def test_other_protocol_version_is_unsupported(kind: type[Any], version: int) -> None:
    with pytest.raises(UnsupportedVersion) as caught:
        DECODERS[kind](_as_map(_example(kind), v=version))
    assert (caught.value.version, caught.value.supported) == (version, PROTOCOL_VERSION)
    assert caught.value.reason == "unsupported_version"


@pytest.mark.parametrize("kind", list(DECODERS))
def test_future_version_with_another_shape_is_unsupported_not_malformed(kind: type[Any]) -> None:
    payload = msgspec.msgpack.encode({"v": 2, "site": {"id": 7}, "records": [[1, 2, 3]]})
    with pytest.raises(UnsupportedVersion) as caught:
        DECODERS[kind](payload)
    assert caught.value.version == 2


@pytest.mark.parametrize("kind", list(DECODERS))
def test_current_version_with_unknown_field_is_malformed(kind: type[Any]) -> None:
    with pytest.raises(MalformedMessage):
        DECODERS[kind](_as_map(_example(kind), colour="blue"))


@pytest.mark.parametrize("kind", list(DECODERS))
def test_missing_field_is_malformed(kind: type[Any]) -> None:
    fields = msgspec.to_builtins(_example(kind))
    del fields["cabinet"]
    with pytest.raises(MalformedMessage):
        DECODERS[kind](msgspec.msgpack.encode(fields))


@pytest.mark.parametrize("kind", list(DECODERS))
def test_payload_of_another_cabinet_is_refused(kind: type[Any]) -> None:
    message = _example(kind)
    assert DECODERS[kind](encode(message), topic_cabinet="cab-1") == message
    with pytest.raises(WrongCabinet) as caught:
        DECODERS[kind](encode(message), topic_cabinet="cab-2")
    assert (caught.value.topic_cabinet, caught.value.payload_cabinet) == ("cab-2", "cab-1")
    assert caught.value.reason == "wrong_cabinet"


@pytest.mark.parametrize("field", ["readings", "events", "results"])
@pytest.mark.parametrize("seq", [1, 9, 21, MAX_SEQ])
def test_record_seq_outside_the_batch_range_is_malformed(field: str, seq: int) -> None:
    batch = _example(DataBatch)
    record = msgspec.to_builtins(getattr(batch, field)[0])
    record[0] = seq
    with pytest.raises(MalformedMessage, match=f"record seq {seq} outside"):
        decode_data_batch(_as_map(batch, **{field: [record]}))


@pytest.mark.parametrize("seq", [10, 15, 20])
def test_record_seq_at_the_batch_bounds_is_accepted(seq: int) -> None:
    batch = _example(DataBatch)
    reading = msgspec.to_builtins(Reading(seq=seq, point="lc1/on", ts=0, value=True))
    decoded = decode_data_batch(_as_map(batch, readings=[reading], events=[], results=[]))
    assert decoded.readings[0].seq == seq


def test_first_after_last_is_malformed_for_a_batch() -> None:
    with pytest.raises(MalformedMessage, match="first seq 21 is after last seq 20"):
        decode_data_batch(_as_map(_example(DataBatch), first=21, readings=[], events=[], results=[]))


@pytest.mark.parametrize("version", [2, 2**16 + 1, 2**63, 2**64 - 1])
def test_any_other_version_is_unsupported(version: int) -> None:
    for kind, decode in DECODERS.items():
        with pytest.raises(UnsupportedVersion):
            decode(_as_map(_example(kind), v=version))


def test_a_seq_used_twice_in_a_batch_is_malformed() -> None:
    """A reading and an event with one seq would both be stored (two tables) and acked as one."""
    batch = _example(DataBatch)
    event = msgspec.to_builtins(
        Event(seq=10, ts=1, source="lc1", kind="door_open", severity="info", message="")
    )
    with pytest.raises(MalformedMessage, match="same seq"):
        decode_data_batch(_as_map(batch, events=[event]))


def test_an_ack_without_held_ranges_is_malformed() -> None:
    fields = msgspec.to_builtins(_example(Ack))
    del fields["held"]
    with pytest.raises(MalformedMessage):
        decode_ack(msgspec.msgpack.encode(fields))


def test_first_after_last_is_malformed_for_an_ack() -> None:
    with pytest.raises(MalformedMessage, match="first seq 21 is after last seq 20"):
        decode_ack(_as_map(_example(Ack), first=21))


_BAD_READINGS = {
    "quality 7": [10, "lc1/on", 0, True, 7, "?"],
    "quality as text": [10, "lc1/on", 0, True, "good", None],
    "seq 0": [0, "lc1/on", 0, True],
    "seq over int64": [2**63, "lc1/on", 0, True],
    "negative ts": [10, "lc1/on", -1, True],
    "ts beyond 2**53": [10, "lc1/on", 2**53 + 1, True],
    "ts as float": [10, "lc1/on", 1.5, True],
    "point without device": [10, "power_w", 0, 1.0],
    "point with two slashes": [10, "lc1/a/b", 0, 1.0],
    "point with a trailing newline": [10, "lc1/on\n", 0, True],
    "point with a space": [10, "lc 1/on", 0, True],
    "value a list": [10, "lc1/on", 0, [1, 2]],
    "value a map": [10, "lc1/on", 0, {"a": 1}],
    "value bytes": [10, "lc1/on", 0, b"\x01"],
    "reason too long": [10, "lc1/on", 0, None, 2, "r" * 257],
    "an extra element": [10, "lc1/on", 0, True, 0, None, "extra"],
    "too few elements": [10, "lc1/on", 0],
    "a map instead of an array": {"seq": 10, "point": "lc1/on", "ts": 0, "value": True},
}
_BAD_EVENTS = {
    "unknown severity": [15, 0, "lc1", "door_open", "fatal", ""],
    "kind with a slash": [15, 0, "lc1", "door/open", "info", ""],
    "source too long": [15, 0, "s" * 130, "door_open", "info", ""],
    "message too long": [15, 0, "lc1", "door_open", "info", "m" * 2049],
    "data value a list": [15, 0, "lc1", "door_open", "info", "", {"a": [1]}],
    "data too big": [15, 0, "lc1", "door_open", "info", "", {str(i): i for i in range(65)}],
}
_BAD_RESULTS = {
    "unknown status": [20, 0, "c1", "done"],
    "empty command id": [20, 0, "", "executed"],
    "command id with a newline": [20, 0, "c1\n", "executed"],
}
_BAD_RECORDS = [
    *((Reading, "readings", bad) for bad in _BAD_READINGS.values()),
    *((Event, "events", bad) for bad in _BAD_EVENTS.values()),
    *((CommandResult, "results", bad) for bad in _BAD_RESULTS.values()),
]
_BAD_RECORD_IDS = [*_BAD_READINGS, *_BAD_EVENTS, *_BAD_RESULTS]


@pytest.mark.parametrize(("record_type", "field", "bad"), _BAD_RECORDS, ids=_BAD_RECORD_IDS)
def test_record_of_wrong_shape_is_malformed(record_type: type[Any], field: str, bad: Any) -> None:
    with pytest.raises(MalformedMessage) as caught:
        decode_record(record_type, msgspec.msgpack.encode(bad))
    assert caught.value.kind == "record"
    with pytest.raises(MalformedMessage) as caught:
        decode_data_batch(_as_map(_example(DataBatch), **{field: [bad]}))
    assert caught.value.kind == "data"


_BAD_FIELDS = [
    (DataBatch, {"cabinet": "-cab"}),
    (DataBatch, {"cabinet": "c" * 65}),
    (DataBatch, {"cabinet": "cab-1\n"}),
    (DataBatch, {"cabinet": "cab/1"}),
    (DataBatch, {"stream": "0123ABCD"}),
    (DataBatch, {"stream": "0123abc"}),
    (DataBatch, {"stream": "0123abcd\n"}),
    (DataBatch, {"stream": "0" * 33}),
    (DataBatch, {"first": 0}),
    (DataBatch, {"backlog": -1}),
    (DataBatch, {"readings": None}),
    (DataBatch, {"v": "1"}),
    (DataBatch, {"v": None}),
    (DataBatch, {"v": 1.0}),
    (DataBatch, {"v": True}),
    (Status, {"online": 1}),
    (Status, {"ts": -5}),
    (Status, {"version": "x" * 257}),
    (Status, {"stream": "xyz"}),
    (Status, {"inventory": [{"name": "lc1", "driver": "modbus-tcp", "colour": "red"}]}),
    (Status, {"inventory": [{"name": "lc 1", "driver": "modbus-tcp"}]}),
    (Status, {"inventory": [{"name": "lc1", "driver": "m", "points": ["p"] * 1025}]}),
    (DataBatch, {"backlog": 2**63}),
    (DataBatch, {"backlog": 2**53 + 1}),
    (Status, {"boot_count": 2**63}),
    (Status, {"boot_count": 2**64 - 1}),
    (Status, {"backlog": 2**63}),
    (Ack, {"last": 2**63}),
    (Ack, {"stream": 12345678}),
    (Ack, {"held": [[15, 20], [10, 10]]}),
    (Ack, {"held": [[10, 15], [15, 20]]}),
    (Ack, {"held": [[9, 12]]}),
    (Ack, {"held": [[18, 21]]}),
    (Ack, {"held": [[12, 11]]}),
    (Ack, {"held": [[10]]}),
    (Ack, {"held": [[i, i] for i in range(4097)]}),
    (Ack, {"held": None}),
    (Command, {"args": {"": 1}}),
    (Command, {"args": {"a b": 1}}),
    (Command, {"args": {"level": math.nan}}),
    (Command, {"id": ""}),
    (Command, {"action": "switch on"}),
    (Command, {"device": "lc1\n"}),
    (Command, {"not_after": 2**53 + 1}),
    (Command, {"args": {"level": [40]}}),
    (Command, {"args": {str(i): i for i in range(65)}}),
]


@pytest.mark.parametrize(("kind", "changes"), _BAD_FIELDS, ids=[str(c) for _, c in _BAD_FIELDS])
def test_envelope_field_out_of_range_is_malformed(kind: type[Any], changes: dict[str, Any]) -> None:
    with pytest.raises(MalformedMessage):
        DECODERS[kind](_as_map(_example(kind), **changes))


def test_error_tree() -> None:
    errors: list[type[FleetError]] = [
        MessageTooLarge,
        MalformedMessage,
        UnsupportedVersion,
        WrongCabinet,
        TopicError,
    ]
    assert all(issubclass(e, FleetError) for e in errors)
    assert issubclass(FleetError, ValueError)
    assert len({e.reason for e in errors}) == len(errors)


def test_integer_beyond_64_bits_is_refused() -> None:
    """Neither SQLite nor PostgreSQL stores an integer past 2**63-1: the protocol refuses it."""
    reading = Reading(seq=1, point="lc1/energy_wh", ts=0, value=2**63)
    payload = encode_data_batch(
        cabinet="cab-1", stream="0123456789abcdef", first=1, last=1, readings=[encode(reading)]
    )
    with pytest.raises(MalformedMessage):
        decode_data_batch(payload)
