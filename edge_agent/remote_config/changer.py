"""A config sent by central (``set_config``), checked, applied, tried, and kept or rolled back.

1. Checked: the fleet contract's checks (TOML, its SHA-256, no plain-text secret) were made on receipt;
   here the text is written beside the config (``.agent.toml.incoming``) and loaded with the agent's own
   loader, which builds every driver without touching a device (what ``cityedge agent check`` does).
   It must name this cabinet, and the agent must be able to replace its config file. Refused:
   ``rejected`` with the reason.
2. Applied: the current file is kept as ``agent.toml.previous``, the trial marker written, the command
   marked ``trial`` in the ledger, the new file renamed into place (each step fsynced), and the agent
   restarts itself: it stops cleanly (buffer committed, offline status sent) and executes itself again
   (``os.execv``, in ``cityedge.running``), so the same process id goes on under systemd
   (``Type=notify``, the watchdog) and by hand alike, with no wait for a supervisor.
3. Tried: the start under the new config must reach the broker (connected, birth published) within
   ``confirm_within_s``; then the command is ``executed`` and the birth carries the new hash. If not,
   the previous file is put back and the agent restarts with it. A start under the trial that ends
   before that (a crash) is judged by the next start (``edge_agent.remote_config.start``).
4. Reported: a rollback is reported by the start that runs the previous config again, ``failed`` with
   ``rolled back: <why>``, through the buffer like every result, and exactly once: the result and a
   setting naming the command are committed together, and a start that finds that setting reports
   nothing again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

import msgspec

from edge_agent.buffer import Buffer
from edge_agent.command_ledger import CommandLedger
from edge_agent.commands import Failed, Rejected
from edge_agent.config import LoadedConfig, load_config
from edge_agent.errors import AgentError, ConfigError
from edge_agent.remote_config.files import (
    can_replace,
    file_sha256,
    incoming_path,
    mode_of,
    previous_path,
    sync_folder,
    write_atomically,
)
from edge_agent.remote_config.marker import Trial, remove_marker, write_marker
from edge_agent.remote_config.pins import pinned_change
from edge_agent.remote_config.start import StartState, roll_back
from protocols.fleet import Command
from protocols.fleet.commands import SetConfigArgs
from protocols.fleet.limits import MAX_SHORT_TEXT_CHARS, clip

log = logging.getLogger(__name__)

ACTION = "set_config"
# The id of the last set_config whose final result is in the buffer: committed with that result.
CONCLUDED_KEY = "remote_config.concluded"


class RestartRequested(Exception):
    """The agent is to stop cleanly and start again (``cityedge.running`` executes itself anew)."""


class ConfigRefused(Rejected):
    """The config cannot be taken; the message is the reason reported to central."""


class ApplyFailed(Failed):
    """The config was valid but could not be put in place; the message is the reason reported."""


class ReportResult(Protocol):
    def __call__(
        self, command_id: str, action: str, status: str, reason: str | None, *, settings: Mapping[str, str]
    ) -> Awaitable[None]: ...


class RemoteConfig:
    """One agent's remote configuration: built with the start's state (``begin_start``)."""

    def __init__(
        self,
        *,
        start: StartState,
        loaded: LoadedConfig,
        buffer: Buffer,
        ledger: CommandLedger,
        report: ReportResult,
        broker_error: Callable[[], str | None],
        clock_ms: Callable[[], int],
    ) -> None:
        self.start = start
        self.config = start.config
        self.loaded = loaded
        self.buffer = buffer
        self.ledger = ledger
        self.report = report
        self.broker_error = broker_error
        self.clock_ms = clock_ms
        self._birth = asyncio.Event()
        self._restart = asyncio.Event()
        self._checked: Path | None = None

    # -- at start, once the buffer is open ------------------------------------------------------------

    async def open(self) -> None:
        """Conclude a trial that ended before this start; claim the one on trial in this buffer."""
        trial = self.start.trial
        if trial is None:
            return
        if self.start.active:
            # A config that moved the buffer runs on a new one: its ledger must know the command too,
            # so that a redelivery of it is not taken for a new command.
            if await self.ledger.state(trial.command_id) is None:
                await self.ledger.claim(trial.command_id, trial.not_after, self.clock_ms(), b"")
                await self.ledger.set_state(trial.command_id, "trial")
            return
        if trial.state == "confirmed":
            await self._conclude(trial, "executed", f"config {trial.new_digest} runs")
        else:
            await self._conclude(trial, "failed", trial.reason or "rolled back")

    # -- while running -------------------------------------------------------------------------------

    def birth_published(self) -> None:
        """Told by the sync after each birth: the broker was reached with this config."""
        self._birth.set()

    async def run(self) -> None:
        """Follow the trial, if this start runs one; then wait for a config to apply."""
        trial = self.start.trial
        if self.start.active and trial is not None:
            await self._follow(trial)
        await self._restart.wait()
        raise RestartRequested("a config sent by central was put in place")

    async def _follow(self, trial: Trial) -> None:
        try:
            async with asyncio.timeout(trial.confirm_within_s):
                await self._birth.wait()
        except TimeoutError:
            error = self.broker_error()
            why = (
                f"rolled back: config {trial.new_digest} did not reach the broker within"
                f" {trial.confirm_within_s} s"
            )
            why += f" ({error})" if error else ""
            problem = await asyncio.to_thread(roll_back, self.config)
            if problem is not None:
                why = f"{why}; {problem}"
            log.error("remote config: %s", why)
            rolled_back = msgspec.structs.replace(
                trial, state="rolled_back", reason=clip(why, MAX_SHORT_TEXT_CHARS)
            )
            await self._write_marker(rolled_back)
            # No longer on trial: a stop or a crash before the restart must not rewrite the marker.
            self.start.trial, self.start.active = rolled_back, False
            raise RestartRequested(why) from None
        confirmed = msgspec.structs.replace(trial, state="confirmed")
        await self._write_marker(confirmed)
        self.start.active = False
        log.info("remote config: config %s reached the broker: it stays", trial.new_digest)
        await self._conclude(confirmed, "executed", f"config {trial.new_digest} runs")

    async def _write_marker(self, trial: Trial) -> None:
        try:
            await asyncio.to_thread(write_marker, self.config, trial)
        except OSError as exc:  # the next start judges from the file in place
            log.error("remote config: cannot write the trial's marker (%s)", exc.strerror)

    async def _conclude(self, trial: Trial, status: str, reason: str) -> None:
        """The command's final result, in the buffer once, then the marker goes."""
        if await self.buffer.get_setting(CONCLUDED_KEY) != trial.command_id:
            if await self.ledger.state(trial.command_id) is None:
                await self.ledger.claim(trial.command_id, trial.not_after, self.clock_ms(), b"")
            await self.report(
                trial.command_id, ACTION, status, reason, settings={CONCLUDED_KEY: trial.command_id}
            )
        await self.ledger.set_state(trial.command_id, status)
        try:
            await asyncio.to_thread(remove_marker, self.config)
        except OSError as exc:  # the next start concludes it again, and reports nothing twice
            log.error("remote config: cannot remove the trial's marker (%s)", exc.strerror)
        self.start.trial = None

    # -- a set_config command ------------------------------------------------------------------------

    async def check(self, command: Command, args: SetConfigArgs) -> bool:
        """Whether ``args`` is a config to apply (False: it runs already); ConfigRefused if it is not."""
        if self.start.trial is not None:
            raise ConfigRefused(
                f"the config of command {self.start.trial.command_id} is still on trial: send this one"
                " again once that command has its result"
            )
        if args.sha256.startswith(self.loaded.digest) and args.sha256 == file_sha256(self.config):
            return False
        problem = can_replace(self.config)
        if problem is not None:
            raise ConfigRefused(problem)
        # Before the loader reads any file the new config names (a password file, profiles).
        pinned = await asyncio.to_thread(_pinned_change, self.config, args.config)
        if pinned is not None:
            raise ConfigRefused(pinned)
        candidate = incoming_path(self.config)
        try:
            await asyncio.to_thread(write_atomically, candidate, args.config.encode(), mode_of(self.config))
            loaded = await asyncio.to_thread(load_config, candidate)
        except OSError as exc:
            raise ConfigRefused(f"cannot write {candidate.name} to check it ({exc.strerror})") from exc
        except ConfigError as exc:
            candidate.unlink(missing_ok=True)
            where = f"{exc.key}: " if exc.key else ""
            raise ConfigRefused(f"the new config is not valid: {where}{exc.problem}") from exc
        except AgentError as exc:
            candidate.unlink(missing_ok=True)
            raise ConfigRefused(f"the new config is not valid: {exc}") from exc
        cabinet = self.loaded.config.cabinet.id
        if loaded.config.cabinet.id != cabinet:
            candidate.unlink(missing_ok=True)
            raise ConfigRefused(
                f"the new config names cabinet {loaded.config.cabinet.id!r}: this is {cabinet!r}, and a"
                " cabinet's id changes only at the cabinet"
            )
        if loaded.buffer_path != self.loaded.buffer_path:
            log.warning(
                "remote config: the new config moves the buffer to %s: what %s holds unsent stays there",
                loaded.buffer_path,
                self.loaded.buffer_path,
            )
        self._checked = candidate
        return True

    async def apply(self, command: Command, args: SetConfigArgs) -> None:
        """Put the checked config in place and ask for a restart; ApplyFailed if it cannot be."""
        candidate = self._checked
        if candidate is None:
            raise ApplyFailed("internal error: the config was not checked before being applied")
        trial = Trial(
            command_id=command.id,
            not_after=command.not_after,
            new_hash=args.sha256,
            previous_hash=file_sha256(self.config) or "0" * 64,
            confirm_within_s=args.confirm_within_s,
        )
        try:
            await asyncio.to_thread(self._keep_previous)
            await asyncio.to_thread(write_marker, self.config, trial)
            await self.ledger.set_state(command.id, "trial")
            await asyncio.to_thread(self._put_in_place, candidate)
        except OSError as exc:
            remove_marker(self.config)
            raise ApplyFailed(f"cannot put the new config in place: {exc.strerror} ({exc.filename})") from exc
        self.start.trial = trial
        log.warning(
            "remote config: config %s in place (command %s): restarting", trial.new_digest, command.id
        )
        self._restart.set()

    def _keep_previous(self) -> None:
        write_atomically(previous_path(self.config), self.config.read_bytes(), mode_of(self.config))

    def _put_in_place(self, candidate: Path) -> None:
        os.replace(candidate, self.config)
        sync_folder(self.config.parent)


def _pinned_change(installed: Path, text: str) -> str | None:
    """What the new config changes that only a technician at the cabinet may (``pins``), or None."""
    try:
        current = tomllib.loads(installed.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return f"the installed config {installed.name} cannot be read to compare: nothing is changed"
    try:
        new = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # checked on receipt already; kept from the loop anyway
        return f"the new config is not TOML: {exc}"
    return pinned_change(current, new)
