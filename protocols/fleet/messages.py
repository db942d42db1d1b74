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

from protocols.fleet.topics import CABINET_ID_PATTERN
from protocols.quality import Quality

PROTOCOL_VERSION = 1

# Size limits in bytes, checked before any parsing.
MAX_DATA_BYTES = 512 * 1024
MAX_STATUS_BYTES = 64 * 1024
MAX_ACK_BYTES = 4 * 1024
MAX_COMMAND_BYTES = 16 * 1024
MAX_RECORD_BYTES = 8 * 1024


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
    msgspec.Meta(pattern=_whole(r"^[A-Za-z0-9_.-]{1,64}/[A-Za-z0-9_.-]{1,64}$"), max_length=129),
]
Name = Annotated[str, msgspec.Meta(pattern=_whole(r"^[A-Za-z0-9_.-]{1,64}$"))]
TimestampMs = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
ShortText = Annotated[str, msgspec.Meta(max_length=256)]
Text = Annotated[str, msgspec.Meta(max_length=2048)]
# 64-bit signed: what SQLite and PostgreSQL can store; a larger int is refused at the edge, not at central.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Scalar = float | Int64 | bool | str | None
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
    source: Annotated[str, msgspec.Meta(max_length=129)]
    kind: Name
    severity: Severity
    message: Text
    data: Annotated[dict[str, Scalar], msgspec.Meta(max_length=64)] = {}


class CommandResult(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """What became of one command on the cabinet."""

    seq: Seq
    ts: TimestampMs
    command_id: Name
    status: CommandStatus
    reason: ShortText | None = None


class DataBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Buffered records from one stream, seq ``first``..``last`` inclusive (gaps are evictions)."""

    v: int
    cabinet: CabinetId
    stream: StreamId
    first: Seq
    last: Seq
    readings: list[Reading] = []
    events: list[Event] = []
    results: list[CommandResult] = []
    backlog: Annotated[int, msgspec.Meta(ge=0)] = 0


class Ack(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Central has committed seq ``first``..``last`` of ``stream``: the edge may delete them."""

    v: int
    cabinet: CabinetId
    stream: StreamId
    first: Seq
    last: Seq


class DeviceInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name
    driver: Name
    profile: Name | None = None
    points: Annotated[list[Name], msgspec.Meta(max_length=1024)] = []


class Status(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The retained birth of a cabinet (online) or its last will (offline)."""

    v: int
    cabinet: CabinetId
    online: bool
    ts: TimestampMs
    version: ShortText = ""
    config_hash: ShortText = ""
    stream: StreamId | None = None
    boot_count: Annotated[int, msgspec.Meta(ge=0)] = 0
    backlog: Annotated[int, msgspec.Meta(ge=0)] = 0
    inventory: Annotated[list[DeviceInfo], msgspec.Meta(max_length=256)] = []


class Command(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An order for one cabinet (``device`` None: the whole cabinet). Refused after ``not_after``."""

    v: int
    id: Name
    cabinet: CabinetId
    action: Name
    not_after: TimestampMs
    issued_by: ShortText
    device: Name | None = None
    args: Annotated[dict[str, Scalar], msgspec.Meta(max_length=64)] = {}


Record = Reading | Event | CommandResult
