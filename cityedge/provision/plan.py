"""What provisioning one cabinet would change: its files, its registry entry, its credentials.

Pure but for reading the cabinet's folder: ``file_changes`` compares the files it should hold with
what it holds (bytes), ``RegistryChange`` central's entry with the inventory's, ``credentials``
says whether a password must be asked for. ``describe`` writes it as a unified diff (secrets never
shown) for ``--dry-run``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cityedge.provision.template import SECRET_FILES

MAX_FILE_BYTES = 4 * 1024 * 1024
Credentials = Literal["keep", "issue", "replace", "missing"]


@dataclass(frozen=True, slots=True)
class FileChange:
    name: str
    old: bytes | None  # None: the file is not there
    new: bytes

    @property
    def changed(self) -> bool:
        return self.old != self.new


def file_changes(folder: Path, files: Mapping[str, bytes]) -> list[FileChange]:
    """Each file the folder should hold, with what it holds now; those that differ are ``changed``."""
    return [FileChange(name, _read(folder / name), data) for name, data in files.items()]


def _read(path: Path) -> bytes | None:
    try:
        with path.open("rb") as file:
            return file.read(MAX_FILE_BYTES)
    except FileNotFoundError:
        return None


@dataclass(frozen=True, slots=True)
class RegistryChange:
    """Central's entry (None: not registered) and the fields the inventory wants it to have."""

    current: Mapping[str, Any] | None
    wanted: Mapping[str, Any]

    @property
    def changed_fields(self) -> list[str]:
        if self.current is None:
            return list(self.wanted)
        return [key for key, value in self.wanted.items() if self.current.get(key) != value]

    @property
    def kind(self) -> Literal["create", "update", "unchanged"]:
        if self.current is None:
            return "create"
        return "update" if self.changed_fields else "unchanged"


def credentials(*, has_file: bool, central_has: bool, new_credentials: bool) -> Credentials:
    """keep (both sides have them), issue (central has none), replace (asked for, with
    ``--new-credentials``), missing (central has some, the file is gone: only a new pair helps,
    and the cabinet's current password would stop working, so it is not done unasked)."""
    if central_has and has_file:
        return "keep"
    if not central_has:
        return "issue"
    return "replace" if new_credentials else "missing"


MISSING_PASSWORD = (
    "central holds broker credentials for it but {file} is missing: provision again with"
    " --new-credentials for a new password (the one the cabinet has stops working)"
)


def describe(
    folder: Path, changes: Sequence[FileChange], registry: RegistryChange, creds: Credentials
) -> str:
    """The changes as a unified diff of each file (secrets as one line), then the registry's and
    the credentials'."""
    parts: list[str] = []
    for change in changes:
        if change.changed:
            parts.append(_file_diff(folder / change.name, change))
    if registry.kind == "create":
        fields = ", ".join(f"{k}={v!r}" for k, v in registry.wanted.items() if v not in (None, ""))
        parts.append(f"registry: would register {folder.name} ({fields})\n")
    elif registry.kind == "update":
        current = registry.current or {}
        lines = [f"  {k}: {current.get(k)!r} -> {registry.wanted[k]!r}" for k in registry.changed_fields]
        parts.append(f"registry: would update {folder.name}\n" + "\n".join(lines) + "\n")
    if creds in ("issue", "replace"):
        parts.append(f"{folder / 'broker-password'}: would get a new password from central ({creds})\n")
    return "".join(parts)


def _file_diff(path: Path, change: FileChange) -> str:
    before = "/dev/null" if change.old is None else str(path)
    if path.name in SECRET_FILES:
        return f"--- {before}\n+++ {path}\n(a secret: {len(change.new)} bytes, not shown)\n"
    try:
        old = [] if change.old is None else change.old.decode("utf-8").splitlines(keepends=True)
        new = change.new.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return f"--- {before}\n+++ {path}\n(binary: {len(change.new)} bytes)\n"
    return "".join(difflib.unified_diff(old, new, fromfile=before, tofile=str(path)))
