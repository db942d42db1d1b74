"""The trial marker: ``agent.toml.trial``, beside the config it is about, saying that a config sent by
central is on trial and how the trial goes.

It lives beside the config file, not in the buffer: a start must read it before it loads a config
(the one on trial may name another buffer, or one that cannot be opened), and one config file has one
marker whatever that config says. It is JSON, written atomically (``files.write_atomically``).

States: ``trial`` (the new config is in place, or about to be; ``starts`` counts the starts under it),
``confirmed`` (the agent reached the broker with it), ``rolled_back`` (the previous config is back in
place; ``reason`` says why), ``not_applied`` (the agent stopped before the new file was in place). The
last three are concluded by the next start that opens the buffer: the command's result is reported,
then the marker is removed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from edge_agent.remote_config.files import write_atomically
from protocols.fleet.limits import MAX_SHORT_TEXT_CHARS, NAME_PATTERN

log = logging.getLogger(__name__)

TrialState = Literal["trial", "confirmed", "rolled_back", "not_applied"]
Reason = Annotated[str, msgspec.Meta(max_length=MAX_SHORT_TEXT_CHARS)]
Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]


class Trial(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    command_id: Annotated[str, msgspec.Meta(pattern=f"^{NAME_PATTERN}$")]
    not_after: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    new_hash: Sha256
    previous_hash: Sha256
    confirm_within_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)]
    starts: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    state: TrialState = "trial"
    reason: Reason | None = None
    last_error: Reason | None = None  # what ended the last start under the trial, when it said

    @property
    def new_digest(self) -> str:
        """The new config's hash as a birth shows it (``LoadedConfig.digest``)."""
        return self.new_hash[:16]


def marker_path(config: Path) -> Path:
    return config.with_name(config.name + ".trial")


def read_marker(config: Path) -> Trial | None:
    """The marker of ``config``, or None; one that cannot be read is moved aside (and logged)."""
    path = marker_path(config)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.error("remote config: cannot read %s (%s): no trial is followed", path, exc.strerror)
        return None
    try:
        return msgspec.json.decode(data, type=Trial)
    except msgspec.DecodeError as exc:
        aside = path.with_name(path.name + ".unreadable")
        try:
            os.replace(path, aside)
        except OSError as moving:  # a start goes on all the same: a crash here would loop for ever
            log.error("remote config: %s cannot be read (%s) nor moved (%s)", path, exc, moving.strerror)
            return None
        log.error("remote config: %s cannot be read (%s): moved to %s", path, exc, aside.name)
        return None


def write_marker(config: Path, trial: Trial) -> None:
    write_atomically(marker_path(config), msgspec.json.encode(trial), 0o600)


def remove_marker(config: Path) -> None:
    marker_path(config).unlink(missing_ok=True)
