"""Rows of commands, groups and alarms, as the ``Store`` speaks them (the older rows are in store.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

CommandStatus = Literal["pending", "delivered", "executed", "failed", "expired", "rejected"]
COMMAND_STATUSES: tuple[CommandStatus, ...] = get_args(CommandStatus)
FINAL_STATUSES: frozenset[str] = frozenset({"executed", "failed", "expired", "rejected"})
OPEN_STATUSES: frozenset[str] = frozenset({"pending", "delivered"})

# Who put a command in its final state: its cabinet (a CommandResult), or central (no answer before
# not_after). Central's word is a guess, so a later word from the cabinet replaces it.
FinishedBy = Literal["cabinet", "central"]


@dataclass(frozen=True, slots=True)
class CommandRow:
    """A command to one cabinet. ``args_json`` holds the args exactly as sent (fleet scalars)."""

    id: str
    parent_id: str | None
    cabinet: str
    device: str | None
    action: str
    args_json: str
    not_after_ms: int
    issued_by: str
    created_ms: int
    status: CommandStatus = "pending"
    delivered_ms: int | None = None
    finished_ms: int | None = None
    reason: str | None = None
    finished_by: FinishedBy | None = None


@dataclass(frozen=True, slots=True)
class GroupCommandRow:
    """A command to a group: it is never sent itself; each member gets a child ``CommandRow``."""

    id: str
    group: str
    action: str
    args_json: str
    not_after_ms: int
    issued_by: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class GroupMember:
    cabinet: str
    device: str | None = None


@dataclass(frozen=True, slots=True)
class GroupRow:
    name: str
    members: tuple[GroupMember, ...]
    updated_ms: int


@dataclass(frozen=True, slots=True)
class AlarmRow:
    """The current state of one (cabinet, device, alarm), from the newest event about it."""

    cabinet: str
    device: str
    alarm: str
    active: bool
    severity: str
    message: str
    raised_ms: int | None
    cleared_ms: int | None
    updated_ms: int
