"""Commands from central, executed at most once per id, each with a result reported like any record.

A command is claimed in the ledger before anything is done, so a second delivery (QoS 1 redelivery,
central republishing) is ignored. One past its ``not_after`` is refused as expired; one that does not
make sense here (unknown action, device, bad arguments, invalid schedule) is rejected with the reason.
A config (``set_config``) is checked before it is accepted and concluded after the restart it needs
(``edge_agent.remote_config``): its final result comes from there.
Results (accepted, then executed / failed / expired / rejected) go into the buffer and are committed at
once, so the operator sees them in well under a second when the network is up, and later when not.

Expiry is judged only on a synchronised clock: a cabinet whose clock is wrong (1970, 2099) executes a
command rather than refuse it on a time it cannot tell, and central (which expires what is not answered
by ``not_after``, see ``central.dispatch``) judges it instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from edge_agent.buffer import Buffer
from edge_agent.clock import Clock
from edge_agent.command_ledger import CommandLedger
from edge_agent.journal import story
from edge_agent.lighting.runner import LightingRunner
from protocols.errors import DriverError
from protocols.fleet import Command, FleetError, decode_command
from protocols.fleet.commands import (
    ClearOverrideArgs,
    CommandArgsError,
    DimArgs,
    SetConfigArgs,
    SetScheduleArgs,
    SwitchArgs,
    parse_wire,
)
from protocols.fleet.events import COMMAND_REFUSED
from protocols.fleet.limits import MAX_ISSUED_BY_CHARS, MAX_MESSAGE_CHARS, MAX_SHORT_TEXT_CHARS, clip

log = logging.getLogger(__name__)


QUEUE_LIMIT = 1000
# The journal's level of each result: the story of a command is its final result (failed, rejected
# and expired ones are warnings); "accepted" comes just before the result and says little more.
_RESULT_LEVELS = {"accepted": logging.DEBUG, "executed": logging.INFO}


class Rejected(ValueError):
    """The command cannot be executed here; the message is the reason reported to central."""


class Failed(RuntimeError):
    """The command was accepted but could not be carried out; the message is the reason reported."""


class ConfigChanger(Protocol):
    """Takes a config sent by central (``edge_agent.remote_config.RemoteConfig``)."""

    async def check(self, command: Command, args: SetConfigArgs) -> bool:
        """True: apply it; False: it runs already. Raises Rejected (the reason) to refuse it."""
        ...

    async def apply(self, command: Command, args: SetConfigArgs) -> None:
        """Put it in place and restart; its final result comes after. Failed: not applied."""
        ...


@dataclass(frozen=True, slots=True)
class _Plan:
    """A validated command, ready to run."""

    command: Command
    devices: list[str]
    run: Callable[[], Awaitable[None]]
    # Checked before it is accepted (Rejected); returns False when there is nothing to run.
    check: Callable[[], Awaitable[bool]] | None = None
    # Its final result is reported by whoever it hands over to (a config: after the restart).
    concluded_elsewhere: bool = False


class CommandExecutor:
    def __init__(
        self,
        *,
        cabinet: str,
        buffer: Buffer,
        ledger: CommandLedger,
        lighting: LightingRunner,
        clock: Clock,
        configs: ConfigChanger | None = None,
    ) -> None:
        self.cabinet = cabinet
        self.configs = configs
        self.buffer = buffer
        self.ledger = ledger
        self.lighting = lighting
        self.clock = clock
        self.duplicates = 0
        self._received: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)
        # Claimed (persisted) commands waiting their turn: one runs at a time, in arrival order.
        self._claimed: asyncio.Queue[Command] = asyncio.Queue()

    def submit(self, payload: bytes) -> None:
        """Called by the MQTT receiver; never blocks it."""
        try:
            self._received.put_nowait(payload)
        except asyncio.QueueFull:
            # Not claimed, so central's next republish of it gets another chance.
            log.warning("command queue full (%d): a command is left for central to resend", QUEUE_LIMIT)

    async def run(self) -> None:
        await self._recover()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._intake(), name="commands-intake")
            tasks.create_task(self._execution(), name="commands-execution")

    async def _intake(self) -> None:
        """Claim each command as soon as it arrives, even while another one is executing, so that a
        restart between delivery and execution still runs it."""
        while True:
            await self._handle(await self._received.get())

    async def _execution(self) -> None:
        while True:
            await self._execute(await self._claimed.get())

    async def _recover(self) -> None:
        """After a restart: run what was claimed but not started; never re-run what was started."""
        for entry in await self.ledger.unfinished():
            try:
                command = decode_command(entry.payload)
            except FleetError as exc:  # stored by an older version that read it differently
                log.error("stored command %s cannot be read again (%s): marked failed", entry.id, exc)
                await self.ledger.set_state(entry.id, "failed")
                continue
            if entry.state == "executing":
                await self._finish(
                    command, "failed", "interrupted by an agent restart; not run again (at most once)"
                )
            else:
                self._claimed.put_nowait(command)

    async def _handle(self, payload: bytes) -> None:
        try:
            command = decode_command(payload, topic_cabinet=self.cabinet)
        except FleetError as exc:
            log.warning("refused a command: %s", exc, extra=story("command_refused", reason=exc.reason))
            self.buffer.append_event(
                ts=self.clock.now_ms(),
                source="agent/commands",
                kind=COMMAND_REFUSED,
                severity="warning",
                message=clip(f"a command could not be read: {exc}", MAX_MESSAGE_CHARS),
                data={"reason": exc.reason},
            )
            return
        now = self.clock.now_ms()
        if not await self.ledger.claim(command.id, command.not_after, now, payload):
            self.duplicates += 1
            log.info("command %s delivered again: ignored", command.id)
            return
        self._claimed.put_nowait(command)

    async def _execute(self, command: Command) -> None:
        now = self.clock.now_ms()
        if self._past_not_after(command, now):
            await self._finish(
                command, "expired", f"received at {_iso(now)}, after its not_after {_iso(command.not_after)}"
            )
            return
        try:
            plan = self._plan(command)
            if plan.check is not None and not await plan.check():
                await self._finish(command, "executed", "nothing to do: this runs already")
                return
        except Rejected as exc:
            await self._finish(command, "rejected", str(exc))
            return
        await self._report(command, "accepted", None)
        await self.ledger.set_state(command.id, "executing")
        try:
            await plan.run()
            if plan.concluded_elsewhere:
                return
        except Failed as exc:
            await self._finish(command, "failed", str(exc))
            return
        except DriverError as exc:
            await self._finish(command, "failed", f"{exc.device}: {exc.detail}")
            return
        except Exception as exc:
            log.exception("command %s (%s) failed unexpectedly", command.id, command.action)
            await self._finish(command, "failed", f"internal error: {type(exc).__name__}: {exc}")
            return
        await self._finish(command, "executed", None)

    def _past_not_after(self, command: Command, now_ms: int) -> bool:
        """Only a synchronised clock can tell; otherwise central judges (see the module's docstring)."""
        return now_ms > command.not_after and self.clock.synchronised()

    def _plan(self, command: Command) -> _Plan:
        # The same definition central checked the args with: what it accepted, this accepts.
        try:
            args = parse_wire(command.action, command.args)
        except CommandArgsError as exc:
            raise Rejected(str(exc)) from exc
        if isinstance(args, SetConfigArgs):
            return self._config(command, args)
        devices = self._devices(command)
        match args:
            case SwitchArgs(on=on, until=until):
                # Switched on is fully on; a level is dim's (one way to set it, as central offers).
                return self._override(command, devices, 100 if on else 0, until)
            case DimArgs(level_pct=level, until=until):
                return self._override(command, devices, level, until)
            case ClearOverrideArgs():
                return _Plan(command, devices, lambda: self.lighting.clear_override(devices))
            case SetScheduleArgs(schedule=schedule):
                if command.device is not None:
                    raise Rejected("set_schedule applies to the whole cabinet: send it without a device")
                return _Plan(command, devices, lambda: self.lighting.set_schedule(schedule))

    def _config(self, command: Command, args: SetConfigArgs) -> _Plan:
        configs = self.configs
        if command.device is not None:
            raise Rejected("set_config applies to the whole cabinet: send it without a device")
        if configs is None:
            raise Rejected(
                "this agent takes no config from central (it was not started by `cityedge agent run`)"
            )
        return _Plan(
            command,
            [],
            run=lambda: configs.apply(command, args),
            check=lambda: configs.check(command, args),
            concluded_elsewhere=True,
        )

    def _override(self, command: Command, devices: list[str], level: int, until: int | None) -> _Plan:
        if until is not None and until <= self.clock.now_ms() and self.clock.synchronised():
            raise Rejected(f"args.until {_iso(until)} is already past")

        def run() -> Awaitable[None]:
            return self.lighting.set_override(
                devices,
                level_pct=level,
                until_ms=until,
                issued_by=clip(command.issued_by, MAX_ISSUED_BY_CHARS),
            )

        return _Plan(command, devices, run)

    def _devices(self, command: Command) -> list[str]:
        known = list(self.lighting.outputs)
        if command.device is None:
            if not known:
                raise Rejected("this cabinet has no lighting output")
            return known
        if command.device not in known:
            raise Rejected(
                f"device {command.device!r} is not a lighting output of this cabinet "
                f"(outputs: {', '.join(known) or 'none'})"
            )
        return [command.device]

    async def _finish(self, command: Command, status: str, reason: str | None) -> None:
        # Result first, state second: a crash between them repeats a result (central keeps the
        # first final one), never loses it.
        await self._report(command, status, reason)
        await self.ledger.set_state(command.id, status)

    async def _report(self, command: Command, status: str, reason: str | None) -> None:
        await self.report(command.id, command.action, status, reason)

    async def report(
        self,
        command_id: str,
        action: str,
        status: str,
        reason: str | None,
        *,
        settings: Mapping[str, str] = {},
    ) -> None:
        """A result into the buffer, committed now with ``settings`` (in the same transaction)."""
        log.log(
            _RESULT_LEVELS.get(status, logging.WARNING),
            "command %s (%s): %s%s",
            command_id,
            action,
            status,
            f": {reason}" if reason else "",
            extra=story("command_result", command_id=command_id, action=action, status=status, reason=reason),
        )
        for key, value in settings.items():
            self.buffer.stage_setting(key, value)
        self.buffer.append_result(
            ts=self.clock.now_ms(),
            command_id=command_id,
            status=status,
            reason=None if reason is None else clip(reason, MAX_SHORT_TEXT_CHARS),
        )
        await self.buffer.flush()  # a result is worth a commit of its own: the operator is waiting


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
