"""An operator's command, turned into commands to cabinets: checked, stored, then handed for sending.

A command is stored before anything is published, and publishing is the dispatcher's job
(``central.dispatch``): a POST answers as soon as the command is safe in the database, and a process
that only serves the API (no ingest, no MQTT) can accept commands that an ingest worker will send.

A command to a group fans out into one child command per member, stored with its parent in one
transaction; the parent itself is never sent. A schedule is a cabinet's, not a device's: set_schedule
addresses whole cabinets, and to a group it goes once to each cabinet of its members.

A config (set_config) is one cabinet's own: it goes to one cabinet, whose id it must name, and only an
admin may send one, since a config can point a cabinet at another broker.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from central.auth import Identity
from central.command_args import wire_args
from central.errors import InvalidRequest, RequestError, UnknownTarget
from central.store import Store
from central.store.auth_rows import Role
from central.store.rows import (
    COMMAND_STATUSES,
    OPEN_STATUSES,
    CabinetRow,
    CommandRow,
    GroupCommandRow,
    GroupMember,
    GroupRow,
)
from central.times import now_ms
from protocols.fleet import PROTOCOL_VERSION, Command, encode
from protocols.fleet.commands import SetConfigArgs, config_cabinet
from protocols.fleet.limits import MAX_COMMAND_BYTES
from protocols.fleet.messages import Scalar

DEFAULT_TTL_MS = 5 * 60 * 1000
WHOLE_CABINET_ACTIONS = frozenset({"set_schedule", "set_config"})
# Actions only an admin's token may send: a config can point a cabinet at another broker.
ADMIN_ACTIONS = frozenset({"set_config"})
MAX_TTL_MS = 7 * 24 * 3600 * 1000

_json = msgspec.json.Encoder()


class NotPermitted(RequestError):
    """The identity's role may not send this action (the API answers 403)."""

    def __init__(self, identity: Identity, action: str, needed: Role) -> None:
        super().__init__(
            f"token {identity.name!r} has the role {identity.role.value}; {action} needs {needed.value}:"
            " ask an admin to send it"
        )


class CommandSender(Protocol):
    """Takes freshly stored commands to publish; ``CommandDispatcher`` is one."""

    def submitted(self, commands: Sequence[CommandRow]) -> None: ...


@dataclass(frozen=True, slots=True)
class GroupCommand:
    row: GroupCommandRow
    children: list[CommandRow]

    @property
    def summary(self) -> dict[str, int]:
        counts = Counter(child.status for child in self.children)
        return {status: counts.get(status, 0) for status in COMMAND_STATUSES}

    @property
    def done(self) -> bool:
        return not any(child.status in OPEN_STATUSES for child in self.children)


def to_command(row: CommandRow, args: dict[str, Scalar]) -> Command:
    return Command(
        v=PROTOCOL_VERSION,
        id=row.id,
        cabinet=row.cabinet,
        action=row.action,
        not_after=row.not_after_ms,
        issued_by=row.issued_by,
        device=row.device,
        args=args,
    )


def _new_id() -> str:
    # 32 hex digits: fits the fleet protocol's Name, and says nothing about who issued what when.
    return uuid.uuid4().hex


def _devices(cabinet: CabinetRow) -> list[str]:
    return [d.name for d in cabinet.inventory]


class CommandService:
    def __init__(
        self, *, store: Store, sender: CommandSender | None, clock: Callable[[], int] = now_ms
    ) -> None:
        self._store = store
        self._sender = sender
        self._clock = clock

    async def submit(
        self,
        *,
        cabinet: str | None,
        device: str | None,
        group: str | None,
        action: str,
        args: dict[str, Any],
        not_after: int | None,
        issued_by: Identity,
    ) -> CommandRow | GroupCommand:
        """Check, store and hand over for sending; raises UnknownTarget or InvalidRequest.

        ``issued_by`` is the identity of the token that sent it: its name is what the command says.
        """
        if action in ADMIN_ACTIONS and not issued_by.role.allows(Role.ADMIN):
            raise NotPermitted(issued_by, action, Role.ADMIN)
        now = self._clock()
        issuer = issued_by.name
        deadline = self._deadline(not_after, now)
        wire = wire_args(action, args, now_ms=now)
        if action == "set_config":
            _check_config_target(wire, cabinet, group)
        members = await self._members(cabinet, device, group, action)
        parent_id = _new_id() if group is not None else None
        children = [
            CommandRow(_new_id(), parent_id, m.cabinet, m.device, action, wire, deadline, issuer, now)
            for m in members
        ]
        self._check_size(children[0], wire)
        parent = None
        if group is not None and parent_id is not None:
            parent = GroupCommandRow(parent_id, group, action, wire, deadline, issuer, now)
        await self._store.add_commands(children, parent)
        if self._sender is not None:
            self._sender.submitted(children)
        return children[0] if parent is None else GroupCommand(parent, children)

    async def _members(
        self, cabinet: str | None, device: str | None, group: str | None, action: str
    ) -> tuple[GroupMember, ...]:
        if group is not None:
            members = (await self._group(group)).members
        elif cabinet is not None:
            await self._check_member(GroupMember(cabinet, device), None)
            members = (GroupMember(cabinet, device),)
        else:
            raise InvalidRequest.field(("body", "target"), 'give "cabinet" or "group"', None)
        if action not in WHOLE_CABINET_ACTIONS:
            return members
        if device is not None:
            raise InvalidRequest.field(
                ("body", "target", "device"),
                f"{action} applies to the whole cabinet: leave device out",
                device,
            )
        return tuple(GroupMember(c) for c in dict.fromkeys(m.cabinet for m in members))

    async def get(self, command_id: str) -> CommandRow | GroupCommand:
        row = await self._store.command(command_id)
        if row is not None:
            return row
        parent = await self._store.group_command(command_id)
        if parent is None:
            raise UnknownTarget(
                "command", command_id, "is unknown", "GET /api/v1/commands lists the recent commands"
            )
        return GroupCommand(parent, await self._store.child_commands(command_id))

    async def put_group(self, name: str, members: Sequence[GroupMember]) -> tuple[GroupRow, bool]:
        """Create or replace; every member's cabinet must be known (and its device, when listed)."""
        known = {row.id: row for row in await self._store.cabinets()}
        for member in members:
            await self._check_member(member, known)
        row = GroupRow(name=name, members=tuple(members), updated_ms=self._clock())
        return row, await self._store.put_group(row)

    async def _group(self, name: str) -> GroupRow:
        row = await self._store.group(name)
        if row is None:
            raise UnknownTarget("group", name, "is unknown", "GET /api/v1/groups lists the groups")
        return row

    async def _check_member(self, member: GroupMember, known: dict[str, CabinetRow] | None) -> None:
        """``known``: every cabinet, read once for a long member list; None: look this one up."""
        row = await self._store.cabinet(member.cabinet) if known is None else known.get(member.cabinet)
        if row is None:
            raise UnknownTarget(
                "cabinet",
                member.cabinet,
                "is unknown: it has sent neither a status nor data",
                "GET /api/v1/cabinets lists the known cabinets",
            )
        devices = _devices(row)
        # Only a cabinet that announced its inventory can say a device does not exist.
        if member.device is not None and devices and member.device not in devices:
            raise UnknownTarget(
                "device",
                member.device,
                f"is not in cabinet {member.cabinet!r} (its devices: {', '.join(devices)})",
                "leave device out to address the whole cabinet",
            )

    def _deadline(self, not_after: int | None, now: int) -> int:
        if not_after is None:
            return now + DEFAULT_TTL_MS
        if not_after <= now:
            raise InvalidRequest.field(
                ("body", "not_after"),
                "not_after is in the past: a cabinet refuses a command after it; give a later time"
                " or leave it out (default: now + 5 min)",
                not_after,
            )
        if not_after > now + MAX_TTL_MS:
            raise InvalidRequest.field(
                ("body", "not_after"),
                "not_after is more than 7 days ahead: a command is for now; for later, send a schedule",
                not_after,
            )
        return not_after

    def _check_size(self, sample: CommandRow, wire: dict[str, Scalar]) -> None:
        # The longest ids make the largest message: check that one, not every member.
        worst = CommandRow(
            sample.id, None, "c" * 64, "d" * 64, sample.action, {}, sample.not_after_ms,
            sample.issued_by, sample.created_ms,
        )  # fmt: skip
        size = len(encode(to_command(worst, wire)))
        if size > MAX_COMMAND_BYTES:
            field = next((name for name in ("schedule", "config") if name in wire), None)
            shorter = (
                "fewer exceptions, shorter notes" if field == "schedule" else "fewer comments, fewer devices"
            )
            raise InvalidRequest.field(
                ("body", "args", field) if field is not None else ("body", "args"),
                f"the command would be {size} bytes on the wire; the limit is {MAX_COMMAND_BYTES}:"
                f" make it shorter ({shorter})",
                None,
            )


def _check_config_target(wire: dict[str, Scalar], cabinet: str | None, group: str | None) -> None:
    """A config is one cabinet's: sent to that cabinet alone, and naming it."""
    if group is not None:
        raise InvalidRequest.field(
            ("body", "target", "group"),
            "set_config goes to one cabinet (a config names its cabinet): give target.cabinet",
            group,
        )
    config, sha256 = wire.get("config"), wire.get("sha256")
    if not isinstance(config, str) or not isinstance(sha256, str):
        return
    named = config_cabinet(SetConfigArgs(config=config, sha256=sha256))
    if named != cabinet:
        raise InvalidRequest.field(
            ("body", "args", "config"),
            f"names cabinet {named!r} ([cabinet] id), not the target {cabinet!r}:"
            " a cabinet's config is its own",
            None,
        )
