"""What a start does with a config on trial, before it loads any config.

A start that finds the marker in state ``trial`` either runs the trial (its first start under the new
config), or rolls back: when an earlier start under the trial ended without reaching the broker (it
crashed, was killed, hung until the watchdog struck, or lost power), the new config goes and the
previous one is put back before anything reads it. A start that finds the new file not in place
(the agent stopped while applying it) reports that instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import msgspec

from edge_agent.remote_config.files import (
    failed_path,
    file_sha256,
    mode_of,
    previous_path,
    write_atomically,
)
from edge_agent.remote_config.marker import Trial, TrialState, read_marker, write_marker
from protocols.fleet.limits import MAX_SHORT_TEXT_CHARS, clip

log = logging.getLogger(__name__)

# Starts under a trial before it is judged a failure: the first start that does not reach the broker
# (whatever ends it) is the last.
MAX_TRIAL_STARTS = 1


@dataclass(slots=True)
class StartState:
    """The config file this start runs and the trial it found (None: no marker)."""

    config: Path
    trial: Trial | None
    active: bool  # this start runs the config on trial: it must reach the broker in time

    def stopped(self) -> None:
        """A stop asked for (SIGTERM, Ctrl-C) before the broker was reached: the next start tries again."""
        if not self.active or self.trial is None:
            return
        self.trial = msgspec.structs.replace(self.trial, starts=max(0, self.trial.starts - 1))
        try:
            write_marker(self.config, self.trial)
        except OSError as exc:
            log.error("remote config: cannot record the stop (%s)", exc.strerror)

    def crashed(self, error: str) -> None:
        """Say in the marker what ended this start under the trial, for the start that rolls it back."""
        if not self.active or self.trial is None:
            return
        self.trial = msgspec.structs.replace(self.trial, last_error=clip(error, MAX_SHORT_TEXT_CHARS))
        try:
            write_marker(self.config, self.trial)
        except OSError as exc:
            log.error("remote config: cannot record why the start ended (%s)", exc.strerror)


def begin_start(config: Path) -> StartState:
    """Decide, before loading a config, whether this start runs a trial, rolls one back, or neither."""
    path = config.resolve()
    trial = read_marker(path)
    if trial is None or trial.state != "trial":
        return StartState(path, trial, active=False)
    current = file_sha256(path)
    if current != trial.new_hash:
        if current == trial.previous_hash:
            why = "not applied: the agent stopped before the new config was in place; the previous one runs"
        else:
            why = "not applied: the config file was changed at the cabinet during the trial; that file runs"
        return _concluded(path, trial, "not_applied", why)
    if trial.starts >= MAX_TRIAL_STARTS:
        if trial.last_error is not None:
            why = f"it crashed the agent at start: {trial.last_error}"
        else:
            why = "the agent stopped before reaching the broker with it (crash, kill or power cut)"
        problem = roll_back(path)
        if problem is not None:
            return _concluded(
                path, trial, "rolled_back", f"not rolled back: config {trial.new_digest}: {why}; {problem}"
            )
        log.error("remote config: config %s rolled back: %s", trial.new_digest, why)
        return _concluded(path, trial, "rolled_back", f"rolled back: config {trial.new_digest}: {why}")
    trial = msgspec.structs.replace(trial, starts=trial.starts + 1, last_error=None)
    try:
        write_marker(path, trial)
    except OSError as exc:
        # Uncounted, a crash under it would go on for ever: the previous config, now.
        why = f"config {trial.new_digest}: the trial cannot be recorded ({exc.strerror})"
        problem = roll_back(path)
        done = f"rolled back: {why}" if problem is None else f"not rolled back: {why}; {problem}"
        return _concluded(path, trial, "rolled_back", done)
    log.warning(
        "remote config: trying config %s (command %s): it must reach the broker within %d s",
        trial.new_digest,
        trial.command_id,
        trial.confirm_within_s,
    )
    return StartState(path, trial, active=True)


def roll_back(config: Path) -> str | None:
    """Put the previous config back (the one rolled back kept as ``.failed``); None, or why it cannot."""
    previous = previous_path(config)
    try:
        data = previous.read_bytes()
    except OSError as exc:
        return f"cannot roll back: {previous.name} cannot be read ({exc.strerror})"
    mode = mode_of(config)
    try:
        try:
            write_atomically(failed_path(config), config.read_bytes(), mode)
        except OSError as exc:  # a copy for a field crew: not worth keeping the bad config running
            log.warning("remote config: the rolled-back config is not kept (%s)", exc.strerror)
        write_atomically(config, data, mode)
    except OSError as exc:
        return f"cannot roll back: {config.name} cannot be written ({exc.strerror})"
    return None


def _concluded(path: Path, trial: Trial, state: TrialState, reason: str) -> StartState:
    concluded = msgspec.structs.replace(
        trial,
        state=state,
        reason=clip(reason, MAX_SHORT_TEXT_CHARS),
    )
    try:
        write_marker(path, concluded)
    except OSError as exc:  # this start concludes it all the same (from memory)
        log.error("remote config: cannot write the trial's marker (%s)", exc.strerror)
    return StartState(path, concluded, active=False)
