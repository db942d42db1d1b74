"""Provisioning cabinets: for each, its config checked, registered, credentials obtained, files written.

Per cabinet, in this order, so that nothing is half done where it matters:
1. the config is made from the template and checked by the agent's loader (``check``): a config the
   agent would refuse is never registered nor written;
2. the registry entry is PUT (central says created, updated or unchanged);
3. a password is asked for only when one side lacks it (``plan.credentials``), and written at once,
   mode 0600;
4. the other files are written only when their bytes differ (a rerun leaves them, mtime and all;
   it checks them where they are).
A cabinet's failure is its own result: the others go on. ``dry_run`` reads and diffs, writes nothing.
OUT may be a shared folder: a cabinet's folder there that is a link, another user's, or writable by
others is refused (``check_folder``) before anything is read from it, registered or written.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cityedge.provision.check import ConfigCheckError, check_files, check_written
from cityedge.provision.inventory import CabinetSpec
from cityedge.provision.plan import (
    MISSING_PASSWORD,
    FileChange,
    RegistryChange,
    credentials,
    describe,
    file_changes,
)
from cityedge.provision.registry_client import CentralError, RegistryClient
from cityedge.provision.template import PASSWORD_FILE, SECRET_FILES, Template, TemplateError, TlsSources

Status = Literal["created", "updated", "unchanged", "failed"]
FOLDER_MODE = 0o750
FILE_MODE = 0o640
SECRET_MODE = 0o600


class FolderError(ValueError):
    """OUT/<id> is not a folder of ours that only we may write in."""


def check_folder(folder: Path) -> None:
    """Raise FolderError unless ``folder`` is absent or a real folder of ours others may not write in:
    else its files could be read from, or its password written to, somewhere another user chose."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise FolderError(f"{folder} is a symbolic link: remove it (the cabinet's files go in a folder)")
    if not stat.S_ISDIR(info.st_mode):
        raise FolderError(f"{folder} is not a folder: remove it")
    if info.st_uid != os.geteuid():
        raise FolderError(
            f"{folder} belongs to another user (uid {info.st_uid}): remove it, or give --out a folder of"
            " your own"
        )
    # Group-writable is another user's only when the group is not ours (a umask of 002 makes 0775).
    if info.st_mode & 0o002 or (info.st_mode & 0o020 and info.st_gid != os.getegid()):
        raise FolderError(
            f"{folder}: others may write in it (mode {stat.S_IMODE(info.st_mode):04o}):"
            f" run `chmod go-w {folder}` and check its files"
        )


@dataclass(frozen=True, slots=True)
class Options:
    out: Path
    broker_url: str | None = None
    tls: TlsSources = field(default_factory=TlsSources)
    dry_run: bool = False
    new_credentials: bool = False
    # False: the config names no password file (the agent takes the systemd credential instead).
    password_in_config: bool = True


@dataclass(frozen=True, slots=True)
class Result:
    """What was done for one cabinet (or would be, in a dry run): ``done`` lists it in words."""

    cabinet: str
    town: str | None
    status: Status
    line: int
    done: tuple[str, ...] = ()
    reason: str | None = None
    diff: str = field(default="", repr=False)


class Provisioner:
    def __init__(self, template: Template, central: RegistryClient, options: Options) -> None:
        self.template = template
        self.central = central
        self.options = options

    async def provision_all(
        self,
        specs: Sequence[CabinetSpec],
        *,
        parallel: int = 8,
        on_result: Callable[[Result], None] | None = None,
    ) -> list[Result]:
        """Every cabinet, ``parallel`` at a time; results in the inventory's order."""
        gate = asyncio.Semaphore(parallel)

        async def one(spec: CabinetSpec) -> Result:
            async with gate:
                result = await self.provision(spec)
            if on_result is not None:
                on_result(result)
            return result

        return list(await asyncio.gather(*(one(spec) for spec in specs)))

    async def provision(self, spec: CabinetSpec) -> Result:
        try:
            return await self._provision(spec)
        except (TemplateError, ConfigCheckError, CentralError, FolderError) as exc:
            return _failed(spec, str(exc))
        except OSError as exc:
            return _failed(spec, f"writing files: {exc}")

    async def _provision(self, spec: CabinetSpec) -> Result:
        folder = self.options.out / spec.cabinet
        check_folder(folder)
        # Files and checks on a thread: their disk waits (fsync) overlap the other cabinets' requests.
        changes, has_file = await asyncio.to_thread(self._prepare, spec, folder)
        if self.options.dry_run:
            return await self._dry_run(spec, folder, changes, has_file)

        outcome, entry = await self.central.put(spec.cabinet, spec.registry_fields())
        done: list[str] = [] if outcome == "unchanged" else [f"registry {outcome}"]
        central_has = bool(entry["broker_account"])
        creds = credentials(
            has_file=has_file, central_has=central_has, new_credentials=self.options.new_credentials
        )
        if creds == "missing":
            reason = MISSING_PASSWORD.format(file=folder / PASSWORD_FILE)
            return _failed(spec, reason, done)
        password = None
        if creds != "keep":
            password = await self.central.new_password(spec.cabinet, replace=central_has)
            done.append("broker credentials issued" if creds == "issue" else "broker credentials replaced")
        done += await asyncio.to_thread(_write, folder, changes, password)
        status: Status = "created" if outcome == "created" else "updated" if done else "unchanged"
        return Result(spec.cabinet, spec.town, status, spec.line, tuple(done))

    def _prepare(self, spec: CabinetSpec, folder: Path) -> tuple[list[FileChange], bool]:
        """The folder's files against the template's, checked by the agent's loader: in place when
        the folder already holds them all (a rerun), else in a scratch folder (``check``)."""
        rendered = self.template.render(
            spec,
            broker_url=self.options.broker_url,
            tls=self.options.tls,
            password_in_config=self.options.password_in_config,
        )
        changes = file_changes(folder, rendered.files)
        has_file = (folder / PASSWORD_FILE).is_file()
        if has_file and not any(change.changed for change in changes):
            check_written(folder)
        else:
            check_files(folder, rendered.files)
        return changes, has_file

    async def _dry_run(
        self, spec: CabinetSpec, folder: Path, changes: list[FileChange], has_file: bool
    ) -> Result:
        current = await self.central.entry(spec.cabinet)
        if current is not None and current.get("revoked"):
            return _failed(spec, "the cabinet is revoked: a replacement cabinet gets a new id")
        registry = RegistryChange(current, spec.registry_fields())
        central_has = current is not None and bool(current["broker_account"])
        creds = credentials(
            has_file=has_file, central_has=central_has, new_credentials=self.options.new_credentials
        )
        diff = describe(folder, changes, registry, creds)
        done = [f"registry: would {registry.kind}"] if registry.kind != "unchanged" else []
        done += [
            f"{c.name}: would be {'written' if c.old is None else 'updated'}" for c in changes if c.changed
        ]
        if creds in ("issue", "replace"):
            done.append("broker credentials: would be issued")
        if creds == "missing":
            reason = MISSING_PASSWORD.format(file=folder / PASSWORD_FILE)
            return _failed(spec, reason, done, diff)
        status: Status = "created" if registry.kind == "create" else "updated" if done else "unchanged"
        return Result(spec.cabinet, spec.town, status, spec.line, tuple(done), diff=diff)


def _failed(spec: CabinetSpec, reason: str, done: Sequence[str] = (), diff: str = "") -> Result:
    return Result(spec.cabinet, spec.town, "failed", spec.line, tuple(done), f"{spec.where}: {reason}", diff)


def _write(folder: Path, changes: Sequence[FileChange], password: str | None) -> list[str]:
    """The password first (central has its hash now), then each file whose bytes differ."""
    folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    check_folder(folder)  # again: one may have been planted meanwhile, which mkdir took as it was
    if password is not None:
        write_file(folder / PASSWORD_FILE, (password + "\n").encode("utf-8"), SECRET_MODE)
    done = []
    for change in changes:
        if change.changed:
            write_file(
                folder / change.name, change.new, SECRET_MODE if change.name in SECRET_FILES else FILE_MODE
            )
            done.append(f"{change.name} {'written' if change.old is None else 'updated'}")
    return done


def write_file(path: Path, data: bytes, mode: int) -> None:
    """``data`` into ``path`` atomically (a scratch file, fsync, rename), with exactly ``mode`` from
    its first byte on: a secret is never readable by others, not even for a moment."""
    scratch = path.with_name(f".{path.name}.provision-new")
    scratch.unlink(missing_ok=True)  # one left by a crash keeps its own mode: never reused
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)  # the umask may have taken bits it needs (0640 under 077)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if stat.S_IMODE(scratch.stat().st_mode) != mode:
            raise OSError(
                f"{path.parent} keeps no file modes (a FAT USB key?): give --out a folder on a Linux"
                " filesystem, where a password can be kept from other users"
            )
        os.replace(scratch, path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
