"""Rows to and from the columns every backend stores them in (command args, event data, a group's
members and a cabinet's inventory as JSON text): one definition, so that the backends cannot drift
apart.

A command's columns, in order: id, parent_id, cabinet, device, action, args, not_after, issued_by,
created_ms, status, delivered_ms, finished_ms, reason, finished_by (``COMMAND_COLUMNS``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import msgspec

from central.store.rows import (
    CabinetRow,
    CommandRow,
    EventRow,
    GroupCommandRow,
    GroupMember,
    GroupRow,
    ScalarArgs,
)
from protocols.fleet import DeviceInfo
from protocols.fleet.messages import ScalarMap

COMMAND_COLUMNS = """
    id, parent_id, cabinet, device, action, args, not_after, issued_by, created_ms, status,
    delivered_ms, finished_ms, reason, finished_by
"""

_members = msgspec.json.Decoder(list[GroupMember])
_inventory = msgspec.json.Decoder(tuple[DeviceInfo, ...])
_data = msgspec.json.Decoder(ScalarMap)
_args = msgspec.json.Decoder(ScalarMap)
_json = msgspec.json.Encoder()
# Inventories decoded, by their text: a city's cabinets share a few profiles, and a list of 1,000
# cabinets would otherwise validate the same 40 point names 1,000 times (about 30 ms). Shared
# read-only (the structs are frozen; nothing appends to their point lists). Only inventories of a
# usual size are kept, so the cache holds a few MB at most whatever cabinets send.
INVENTORIES_KEPT = 256
MAX_KEPT_INVENTORY_CHARS = 8192


@functools.lru_cache(maxsize=INVENTORIES_KEPT)
def _kept_inventory(text: str | bytes) -> tuple[DeviceInfo, ...]:
    return _inventory.decode(text)


def inventory_of(text: str | bytes) -> tuple[DeviceInfo, ...]:
    if len(text) > MAX_KEPT_INVENTORY_CHARS:
        return _inventory.decode(text)
    return _kept_inventory(text)


def json_text(value: object) -> str:
    return _json.encode(value).decode()


def decode_args(text: str) -> tuple[ScalarArgs, str | None]:
    """The stored args, or none and why: one damaged row must not break a listing."""
    try:
        return _args.decode(text), None
    except msgspec.DecodeError as exc:
        return {}, f"the stored args are not a JSON object of fleet scalars ({exc})"


def command_row(values: Sequence[Any]) -> CommandRow:
    args, unreadable = decode_args(values[5])
    return CommandRow(
        id=values[0],
        parent_id=values[1],
        cabinet=values[2],
        device=values[3],
        action=values[4],
        args=args,
        not_after_ms=values[6],
        issued_by=values[7],
        created_ms=values[8],
        status=values[9],
        delivered_ms=values[10],
        finished_ms=values[11],
        reason=values[12],
        finished_by=values[13],
        args_unreadable=unreadable,
    )


def command_values(row: CommandRow) -> tuple[object, ...]:
    return (
        row.id,
        row.parent_id,
        row.cabinet,
        row.device,
        row.action,
        json_text(row.args),
        row.not_after_ms,
        row.issued_by,
        row.created_ms,
        row.status,
        row.delivered_ms,
        row.finished_ms,
        row.reason,
        row.finished_by,
    )


def group_command_values(parent: GroupCommandRow) -> tuple[object, ...]:
    """The group_commands row: id, group, action, args, not_after, issued_by, created_ms."""
    return (
        parent.id,
        parent.group,
        parent.action,
        json_text(parent.args),
        parent.not_after_ms,
        parent.issued_by,
        parent.created_ms,
    )


def group_command_row(row: Sequence[Any]) -> GroupCommandRow:
    args, unreadable = decode_args(row[3])
    return GroupCommandRow(row[0], row[1], row[2], args, row[4], row[5], row[6], unreadable)


def members_text(group: GroupRow) -> str:
    return json_text(list(group.members))


def group_row(row: Sequence[Any]) -> GroupRow:
    """From (name, members, updated_ms)."""
    return GroupRow(name=row[0], members=tuple(_members.decode(row[1])), updated_ms=row[2])


def event_row(row: Sequence[Any]) -> EventRow:
    """From (cabinet, stream, seq, ts, source, kind, severity, message, data): the data was validated
    on arrival and stored as JSON."""
    cabinet, stream, seq, ts_ms, source, kind, severity, message, data = row
    return EventRow(cabinet, stream, seq, ts_ms, source, kind, severity, message, _data.decode(data))


def cabinet_row(row: Sequence[Any]) -> CabinetRow:
    """From (id, online, last_seen, status_ts, version, config_hash, stream, boot_count, backlog,
    inventory)."""
    return CabinetRow(
        id=row[0],
        online=bool(row[1]),
        last_seen_ms=row[2],
        status_ts_ms=row[3],
        version=row[4],
        config_hash=row[5],
        stream=row[6],
        boot_count=row[7],
        backlog=row[8],
        inventory=inventory_of(row[9]),
    )
