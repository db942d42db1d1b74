"""A cabinet's config checked by the agent's own loader (``edge_agent.config.load_config``) before
anything is written: in a scratch folder beside the cabinet's, so that relative paths (profiles,
certificates) resolve as they will, holding what the cabinet's folder already has (linked) and the
new files, with a stand-in password until central has given the real one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from cityedge.provision.template import CONFIG_FILE, PASSWORD_FILE
from edge_agent.config import load_config
from edge_agent.errors import ConfigError

STAND_IN_PASSWORD = b"stand-in-for-the-password-central-gives\n"


class ConfigCheckError(ValueError):
    """The config the agent would refuse; the message is the loader's (file, key, what is expected)."""


def check_files(folder: Path, files: Mapping[str, bytes]) -> None:
    """Raise ConfigCheckError unless ``files`` written into ``folder`` make a config the agent loads.
    ``folder`` is not changed (it need not exist)."""
    base = folder.parent if folder.parent.is_dir() else None
    with tempfile.TemporaryDirectory(prefix=".provision-check-", dir=base) as scratch:
        stage = Path(scratch)
        if folder.is_dir():
            for item in folder.iterdir():
                if item.name not in files and item.name != PASSWORD_FILE:
                    (stage / item.name).symlink_to(item.resolve())
        for name, data in {**files, PASSWORD_FILE: STAND_IN_PASSWORD}.items():
            _write_private(stage / name, data)
        try:
            load_config(stage / CONFIG_FILE)
        except ConfigError as exc:
            raise ConfigCheckError(str(exc).replace(str(stage), str(folder))) from None


def check_written(folder: Path) -> None:
    """The config as written, password included, loaded once more by the agent's loader."""
    try:
        load_config(folder / CONFIG_FILE)
    except ConfigError as exc:
        raise ConfigCheckError(str(exc)) from None


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
