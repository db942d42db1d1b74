"""Encoding and validating fleet messages. Decoders raise only ``FleetError`` subclasses.

Decoding is done once, straight into typed structs (msgspec validates while it parses). Only when that
fails is the envelope looked at again, to tell a message of another protocol version from garbage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import msgspec

from protocols.fleet.errors import (
    FleetError,
    MalformedMessage,
    MessageTooLarge,
    UnsupportedVersion,
    WrongCabinet,
)
from protocols.fleet.limits import (
    MAX_ACK_BYTES,
    MAX_COMMAND_BYTES,
    MAX_DATA_BYTES,
    MAX_RECORD_BYTES,
    MAX_STATUS_BYTES,
)
from protocols.fleet.messages import (
    PROTOCOL_VERSION,
    Ack,
    Command,
    CommandResult,
    DataBatch,
    Event,
    Reading,
    Record,
    Status,
)

_T = TypeVar("_T", DataBatch, Status, Ack, Command)


class _VersionOnly(msgspec.Struct):
    """Just the version of an envelope; every other field is skipped. Only an int is a version."""

    v: int | None = None


class _RawDataBatch(msgspec.Struct, frozen=True):
    """Same wire form as DataBatch, with records already encoded (the edge stores them encoded)."""

    v: int
    cabinet: str
    stream: str
    first: int
    last: int
    readings: list[msgspec.Raw]
    events: list[msgspec.Raw]
    results: list[msgspec.Raw]
    backlog: int


_encoder = msgspec.msgpack.Encoder()
_version_decoder = msgspec.msgpack.Decoder(_VersionOnly)
_decoders: dict[type[Any], msgspec.msgpack.Decoder[Any]] = {
    t: msgspec.msgpack.Decoder(t) for t in (DataBatch, Status, Ack, Command)
}
_record_decoders: dict[type[Any], msgspec.msgpack.Decoder[Any]] = {
    t: msgspec.msgpack.Decoder(t) for t in (Reading, Event, CommandResult)
}
_LIMITS: dict[type[Any], int] = {
    DataBatch: MAX_DATA_BYTES,
    Status: MAX_STATUS_BYTES,
    Ack: MAX_ACK_BYTES,
    Command: MAX_COMMAND_BYTES,
}
_KIND: dict[type[Any], str] = {DataBatch: "data", Status: "status", Ack: "ack", Command: "command"}
# What msgspec raises on bad input: its own errors, and also UnicodeDecodeError for a string that is
# not UTF-8 and RecursionError for deeply nested values (skipping an unknown field recurses).
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError)


def encode(message: DataBatch | Status | Ack | Command | Record) -> bytes:
    return _encoder.encode(message)


def encode_data_batch(
    *,
    cabinet: str,
    stream: str,
    first: int,
    last: int,
    readings: Sequence[bytes],
    events: Sequence[bytes] = (),
    results: Sequence[bytes] = (),
    backlog: int = 0,
) -> bytes:
    """Wrap already-encoded records into a DataBatch without decoding them again."""
    return _encoder.encode(
        _RawDataBatch(
            v=PROTOCOL_VERSION,
            cabinet=cabinet,
            stream=stream,
            first=first,
            last=last,
            readings=[msgspec.Raw(r) for r in readings],
            events=[msgspec.Raw(e) for e in events],
            results=[msgspec.Raw(r) for r in results],
            backlog=backlog,
        )
    )


def _decode(kind_type: type[_T], payload: bytes) -> _T:
    kind = _KIND[kind_type]
    limit = _LIMITS[kind_type]
    if len(payload) > limit:
        raise MessageTooLarge(kind, len(payload), limit)
    try:
        message: _T = _decoders[kind_type].decode(payload)
    except _DECODE_ERRORS as exc:
        version = _envelope_version(payload)
        if version is not None and version != PROTOCOL_VERSION:
            raise UnsupportedVersion(kind, version, PROTOCOL_VERSION) from exc
        raise MalformedMessage(kind, str(exc)) from exc
    if message.v != PROTOCOL_VERSION:
        raise UnsupportedVersion(kind, message.v, PROTOCOL_VERSION)
    return message


def _envelope_version(payload: bytes) -> object:
    try:
        return _version_decoder.decode(payload).v
    except _DECODE_ERRORS:
        return None


def _check_cabinet(message: DataBatch | Status | Ack | Command, topic_cabinet: str | None) -> None:
    if topic_cabinet is not None and message.cabinet != topic_cabinet:
        raise WrongCabinet(topic_cabinet, message.cabinet)


def decode_data_batch(payload: bytes, *, topic_cabinet: str | None = None) -> DataBatch:
    """Decode and validate a batch: every record's seq lies in first..last, and no seq is used twice
    (a seq is one place in the cabinet's log, whatever the kind of record)."""
    batch = _decode(DataBatch, payload)
    _check_cabinet(batch, topic_cabinet)
    first, last = batch.first, batch.last
    if first > last:
        raise MalformedMessage("data", f"first seq {first} is after last seq {last}")
    count = 0
    for records in (batch.readings, batch.events, batch.results):
        for record in records:
            if not first <= record.seq <= last:
                raise MalformedMessage(
                    "data", f"record seq {record.seq} outside the batch range {first}..{last}"
                )
        count += len(records)
    if count != len(held_seqs(batch)):
        raise MalformedMessage("data", "two records of the batch have the same seq")
    return batch


def held_seqs(batch: DataBatch) -> set[int]:
    return {r.seq for records in (batch.readings, batch.events, batch.results) for r in records}


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Collapse seqs into ascending inclusive ranges: {7, 1, 2, 3} -> [(1, 3), (7, 7)]."""
    return merge_ranges((seq, seq) for seq in seqs)


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of inclusive ranges, ascending and disjoint: [(5, 9), (1, 3), (4, 4)] -> [(1, 9)]."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if merged and merged[-1][1] >= a - 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def ack_for(batch: DataBatch) -> Ack:
    """The ack of a batch central has committed: exactly the seqs of its records, as ranges."""
    return Ack(
        v=PROTOCOL_VERSION,
        cabinet=batch.cabinet,
        stream=batch.stream,
        first=batch.first,
        last=batch.last,
        held=seq_ranges(held_seqs(batch)),
    )


def subtract_ranges(
    ranges: Sequence[tuple[int, int]], removed: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The seqs of ``ranges`` not in ``removed``; both ascending and disjoint."""
    left: list[tuple[int, int]] = []
    j = 0
    for a, b in ranges:
        start = a
        while j < len(removed) and removed[j][1] < start:
            j += 1
        k = j
        while k < len(removed) and removed[k][0] <= b:
            if removed[k][0] > start:
                left.append((start, removed[k][0] - 1))
            start = max(start, removed[k][1] + 1)
            k += 1
        if start <= b:
            left.append((start, b))
    return left


def ranges_within(inner: Sequence[tuple[int, int]], outer: Sequence[tuple[int, int]]) -> bool:
    """True when every seq of ``inner`` lies in ``outer``; both ascending and disjoint."""
    j = 0
    for a, b in inner:
        while j < len(outer) and outer[j][1] < a:
            j += 1
        if j == len(outer) or not outer[j][0] <= a <= b <= outer[j][1]:
            return False
    return True


def decode_status(payload: bytes, *, topic_cabinet: str | None = None) -> Status:
    status = _decode(Status, payload)
    _check_cabinet(status, topic_cabinet)
    return status


def decode_ack(payload: bytes, *, topic_cabinet: str | None = None) -> Ack:
    ack = _decode(Ack, payload)
    _check_cabinet(ack, topic_cabinet)
    if ack.first > ack.last:
        raise MalformedMessage("ack", f"first seq {ack.first} is after last seq {ack.last}")
    previous = ack.first - 1
    for a, b in ack.held:
        if a <= previous or a > b or b > ack.last:
            raise MalformedMessage(
                "ack",
                f"held range {a}..{b} is not ascending, disjoint and within {ack.first}..{ack.last}",
            )
        previous = b
    return ack


def decode_command(payload: bytes, *, topic_cabinet: str | None = None) -> Command:
    command = _decode(Command, payload)
    _check_cabinet(command, topic_cabinet)
    return command


_R = TypeVar("_R", Reading, Event, CommandResult)


def decode_record(record_type: type[_R], payload: bytes) -> _R:
    """Decode one stored record (the edge buffer keeps records encoded)."""
    if len(payload) > MAX_RECORD_BYTES:
        raise MessageTooLarge("record", len(payload), MAX_RECORD_BYTES)
    try:
        record: _R = _record_decoders[record_type].decode(payload)
    except _DECODE_ERRORS as exc:
        raise MalformedMessage("record", str(exc)) from exc
    return record


__all__ = [
    "FleetError",
    "ack_for",
    "decode_ack",
    "decode_command",
    "decode_data_batch",
    "decode_record",
    "decode_status",
    "encode",
    "encode_data_batch",
    "held_seqs",
    "merge_ranges",
    "ranges_within",
    "seq_ranges",
    "subtract_ranges",
]
