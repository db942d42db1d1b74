"""The config file and its neighbours, written so that a power cut leaves either the old or the new
file whole: a temporary file beside it, fsynced, renamed over it, the folder fsynced.

Beside ``agent.toml``: ``agent.toml.previous`` (the config before the last one applied remotely, kept),
``agent.toml.failed`` (the last config rolled back, for a field crew to read), ``.agent.toml.incoming``
(a config being checked) and ``agent.toml.trial`` (``edge_agent.remote_config.marker``).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def previous_path(config: Path) -> Path:
    return config.with_name(config.name + ".previous")


def failed_path(config: Path) -> Path:
    return config.with_name(config.name + ".failed")


def incoming_path(config: Path) -> Path:
    return config.with_name(f".{config.name}.incoming")


def file_sha256(path: Path) -> str | None:
    """The SHA-256 (hex) of the file's bytes, or None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def mode_of(path: Path, default: int = 0o640) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return default


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """``path`` holds ``data`` with ``mode``, or (after a crash at any point) what it held before."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask had its say at creation
        _keep_owner(fd, path)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """A rename is durable only once its folder is."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def can_replace(path: Path) -> str | None:
    """Why the agent cannot replace ``path`` atomically (its folder must be writable), or None."""
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"the agent's user cannot write in {folder}, where its config {path.name} is: remote"
            " configuration needs that folder writable by the agent (or the config kept in its state"
            " directory)"
        )
    return None


def _keep_owner(fd: int, path: Path) -> None:
    """Run as root, the new file keeps the owner and group of the one it replaces (root:cityedge)."""
    if os.geteuid() != 0:
        return
    try:
        info = path.stat()
    except OSError:
        return
    os.fchown(fd, info.st_uid, info.st_gid)
