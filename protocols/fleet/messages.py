"""The fleet's message types, as typed msgspec structs with their constraints.

Records (readings, events, command results) are array-like on the wire (a msgpack array, not a map):
a reading is 20-40 bytes instead of twice that, which matters on a metered cellular link. Envelopes are
maps, so a field can be added in a compatible version without breaking the other side.

Every record carries ``seq``: its place in the cabinet's append-only log for one ``stream`` (a random id
chosen when the edge buffer is created). Central stores each (cabinet, stream, seq) once, whatever the
number of deliveries.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from protocols.fleet.limits import (
    MAX_ACK_RANGES,
    MAX_BATCH_RECORDS,
    MAX_COMMAND_BYTES,
    MAX_DEVICE_POINTS,
    MAX_INVENTORY_DEVICES,
    MAX_MAP_ENTRIES,
    MAX_MESSAGE_CHARS,
    MAX_POINT_CHARS,
    MAX_SHORT_TEXT_CHARS,
    MAX_SOURCE_CHARS,
    NAME_PATTERN,
)
from protocols.fleet.topics import CABINET_ID_PATTERN
from protocols.quality import Quality

PROTOCOL_VERSION = 1


def _whole(pattern: str) -> str:
    """msgspec matches with re.search, where "$" also matches before a trailing newline: refuse it.

    A lookahead rather than ``\\Z`` keeps the pattern valid in JSON Schema (ECMA-262) too.
    """
    return pattern + r"(?!\n)"


CabinetId = Annotated[str, msgspec.Meta(pattern=_whole(CABINET_ID_PATTERN))]
StreamId = Annotated[str, msgspec.Meta(pattern=_whole(r"^[0-9a-f]{8,32}$"))]
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
# A point is "<device>/<quantity>".
PointName = Annotated[
    str,
    msgspec.Meta(pattern=_whole(f"^{NAME_PATTERN}/{NAME_PATTERN}$"), max_length=MAX_POINT_CHARS),
]
Name = Annotated[str, msgspec.Meta(pattern=_whole(f"^{NAME_PATTERN}$"))]
TimestampMs = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
# Every integer of the contract is bounded: SQLite and PostgreSQL keep 63 bits and a sign, and a
# count beyond 2**53 (what a JavaScript client reads exactly) is a lie, not a fleet.
Version = Annotated[int, msgspec.Meta(ge=0, le=2**16)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
ShortText = Annotated[str, msgspec.Meta(max_length=MAX_SHORT_TEXT_CHARS)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_MESSAGE_CHARS)]
# 64-bit signed: what SQLite and PostgreSQL can store; a larger int is refused at the edge, not at central.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
# Finite: NaN and infinities are refused on decode (msgspec's bounds fail them). A value a device
# cannot give finitely travels as None with a bad quality and its reason.
FiniteFloat = Annotated[float, msgspec.Meta(ge=-1.7976931348623157e308, le=1.7976931348623157e308)]
# A text value is bounded by its message (a schedule travels as a JSON text in a command's args).
ScalarText = Annotated[str, msgspec.Meta(max_length=MAX_COMMAND_BYTES)]
Scalar = FiniteFloat | Int64 | bool | ScalarText | None
ScalarMap = Annotated[dict[Name, Scalar], msgspec.Meta(max_length=MAX_MAP_ENTRIES)]
Severity = Literal["info", "warning", "alarm", "critical"]
CommandStatus = Literal["accepted", "executed", "failed", "expired", "rejected"]


class Reading(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """One value of one point at one instant. ``reason`` is set whenever quality is not GOOD."""

    seq: Seq
    point: PointName
    ts: TimestampMs
    value: Scalar
    quality: Quality = Quality.GOOD
    reason: ShortText | None = None


class Event(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """Something that happened: device lost or back, alarm raised or cleared, data evicted..."""

    seq: Seq
    ts: TimestampMs
    source: Annotated[str, msgspec.Meta(max_length=MAX_SOURCE_CHARS)]
    kind: Name
    severity: Severity
    message: Text
    data: ScalarMap = {}


class CommandResult(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """What became of one command on the cabinet."""

    seq: Seq
    ts: TimestampMs
    command_id: Name
    status: CommandStatus
    reason: ShortText | None = None


class DataBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Buffered records from one stream, seq ``first``..``last`` inclusive (gaps are evictions)."""

    v: Version
    cabinet: CabinetId
    stream: StreamId
    first: Seq
    last: Seq
    readings: Annotated[list[Reading], msgspec.Meta(max_length=MAX_BATCH_RECORDS)] = []
    events: Annotated[list[Event], msgspec.Meta(max_length=MAX_BATCH_RECORDS)] = []
    results: Annotated[list[CommandResult], msgspec.Meta(max_length=MAX_BATCH_RECORDS)] = []
    backlog: Count = 0


SeqRange = tuple[Seq, Seq]


class Ack(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Central holds the records of ``held`` from the batch ``first``..``last`` of ``stream``.

    ``first``/``last`` name the batch as the edge sent it; ``held`` lists, as inclusive ranges in
    ascending order, exactly the seqs of that batch's records that central has committed (stored now
    or held already). The edge deletes only records it sent in that batch and that ``held`` names:
    a gap (an evicted record, or one the batch did not carry) is never acknowledged.
    """

    v: Version
    cabinet: CabinetId
    stream: StreamId
    first: Seq
    last: Seq
    held: Annotated[list[SeqRange], msgspec.Meta(max_length=MAX_ACK_RANGES)]


class DeviceInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name
    driver: Name
    profile: Name | None = None
    points: Annotated[list[Name], msgspec.Meta(max_length=MAX_DEVICE_POINTS)] = []


class Status(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The retained birth of a cabinet (online) or its last will (offline)."""

    v: Version
    cabinet: CabinetId
    online: bool
    ts: TimestampMs
    version: ShortText = ""
    config_hash: ShortText = ""
    stream: StreamId | None = None
    boot_count: Count = 0
    backlog: Count = 0
    inventory: Annotated[list[DeviceInfo], msgspec.Meta(max_length=MAX_INVENTORY_DEVICES)] = []


class Command(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An order for one cabinet (``device`` None: the whole cabinet). Refused after ``not_after``."""

    v: Version
    id: Name
    cabinet: CabinetId
    action: Name
    not_after: TimestampMs
    issued_by: ShortText
    device: Name | None = None
    args: ScalarMap = {}


Record = Reading | Event | CommandResult
