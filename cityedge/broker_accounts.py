"""The fleet broker's accounts file from a ``user:password`` file (the install without a registry).

The template, the hashes and the rendering are central's (``central.broker_accounts.template``):
``render_accounts`` fills the shipped template in from a ``user:password`` mapping; passwords are
stored as Mosquitto hashes them (PBKDF2-SHA512, a random 12-byte salt). Run as a program it reads a
credentials file of ``user:password`` lines (the format ``mosquitto_passwd -U`` takes), which only
its owner may read, and writes the plugin's file:

    python3 -m cityedge.broker_accounts --credentials FILE --out /var/lib/mosquitto/cityedge-dynsec.json

With central's registry, ``cityedge central broker-accounts render`` writes the same file from the
registry's hashes instead (no plaintext anywhere).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from central.broker_accounts.template import (
    ITERATIONS,
    PLACEHOLDER,
    AccountsError,
    load_template,
    password_hash,
    render_accounts,
    template_path,
)
from protocols.fleet.broker_url import SecretFileError, read_secret_file

if TYPE_CHECKING:
    from central.broker_accounts.sync import SyncPlan
    from central.broker_accounts.template import PasswordHash
    from central.config import CentralConfig

__all__ = [
    "ITERATIONS",
    "PLACEHOLDER",
    "AccountsError",
    "accounts_app",
    "load_template",
    "main",
    "parse_credentials",
    "password_hash",
    "read_credentials",
    "render_accounts",
    "template_path",
    "write_accounts",
]


def parse_credentials(text: str, source: str) -> dict[str, str]:
    """``user:password`` lines (blank lines and ``#`` comments skipped) as a mapping."""
    passwords: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        user, sep, password = stripped.partition(":")
        if not sep or not user or not password:
            raise AccountsError(f"{source}:{number}: expected user:password (the line is not shown)")
        if user in passwords:
            raise AccountsError(f"{source}:{number}: user {user!r} is given twice")
        passwords[user] = password
    return passwords


def read_credentials(path: Path) -> dict[str, str]:
    """The ``user:password`` file, refused when other users may read it."""
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise SecretFileError(
                path, f"group or others can access it (mode {mode & 0o777:04o}): chmod 0600 it"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretFileError(path, f"cannot read it ({exc.strerror or exc})") from exc
    return parse_credentials(text, str(path))


def write_accounts(document: Mapping[str, Any], path: Path, *, owner: str | None = None) -> None:
    """Write atomically, mode 0600 (the broker reads and rewrites it; nobody else may read it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)
            json.dump(document, file, indent=2)
            file.write("\n")
        if owner is not None:
            shutil.chown(temporary, user=owner, group=owner)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m cityedge.broker_accounts",
        description="Write the fleet broker's dynamic-security file from a user:password file.",
    )
    parser.add_argument("--credentials", type=Path, required=True, help="user:password lines, mode 0600")
    parser.add_argument("--out", type=Path, required=True, help="the plugin's plugin_opt_config_file")
    parser.add_argument("--template", type=Path, default=None, help="default: the shipped template")
    parser.add_argument("--owner", default=None, help="user (and group) to own the file, e.g. mosquitto")
    args = parser.parse_args(argv)
    try:
        document = render_accounts(load_template(args.template), read_credentials(args.credentials))
        write_accounts(document, args.out, owner=args.owner)
    except (ValueError, OSError, LookupError) as exc:  # AccountsError, SecretFileError, bad JSON
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(document['clients'])} accounts")
    return 0


# --- `cityedge central broker-accounts ...`: the registry's accounts as files --------------------

accounts_app = typer.Typer(
    help="The broker's accounts from central's registry: the Mosquitto file, an export for another broker.",
    no_args_is_help=True,
)
_DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (as for `central serve`); default: the config's store.url."),
]
_ConfigOption = Annotated[
    Path | None,
    typer.Option(help="Central config file: its store.url, broker.password_file and [broker_accounts]."),
]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _load(config: Path | None) -> CentralConfig:
    from central.config import CentralConfig, ConfigError, load_central_config

    try:
        return load_central_config(config) if config is not None else CentralConfig()
    except ConfigError as exc:
        _fail(str(exc))


def _fixed_hashes(settings: CentralConfig, *, required: bool) -> dict[str, PasswordHash]:
    """central's and cityedge-admin's hashes, from the password files the config names."""
    from central.broker_accounts.settings import accounts_settings
    from central.broker_accounts.template import PasswordHash
    from central.config import ConfigError

    central_file = settings.broker.password_file
    try:
        admin = accounts_settings(settings.broker_accounts).admin_password
    except ConfigError as exc:
        _fail(str(exc))
    passwords: dict[str, str] = {}
    if central_file is not None:
        try:
            passwords["central"] = read_secret_file(Path(central_file))
        except SecretFileError as exc:
            _fail(f"broker.password_file {exc}")
    if admin is not None:
        passwords["cityedge-admin"] = admin
    if required and len(passwords) < 2:
        _fail(
            "the broker's file needs central's and cityedge-admin's accounts: name their password files"
            " in the config (broker.password_file, broker_accounts.admin_password_file)"
        )
    return {user: PasswordHash.of(password) for user, password in passwords.items()}


async def _registry_document(url: str, fixed: Mapping[str, PasswordHash], kind: str) -> dict[str, Any]:
    from central.broker_accounts.export import export_json
    from central.broker_accounts.service import desired_cabinets, render_document
    from central.broker_accounts.template import AccountsTemplate
    from central.store import open_store, parse_db_url

    parsed = parse_db_url(url)
    if parsed.path is not None and not parsed.path.exists():
        # Before central's first start (a broker started first, say): no registry yet. Creating the
        # database here, as root from the broker's ExecStartPre, would leave central a file it cannot write.
        typer.echo(f"{parsed.path}: no database yet: no cabinet accounts", err=True)
        template = AccountsTemplate()
        return export_json(template, {}) if kind == "json" else template.render(fixed, {})
    async with open_store(url) as store:
        if kind == "json":
            return export_json(AccountsTemplate(), desired_cabinets(await store.registry()))
        return await render_document(store, fixed)


def _db(option: str | None, settings: CentralConfig) -> str:
    from central.errors import StoreError
    from central.store import db_url_from, parse_db_url

    url = db_url_from(option, settings.store.url)
    try:
        parse_db_url(url)
    except StoreError as exc:
        _fail(str(exc))
    return url


def _document(url: str, fixed: Mapping[str, PasswordHash], kind: str) -> dict[str, Any]:
    from central.errors import StoreError

    try:
        return asyncio.run(_registry_document(url, fixed, kind))
    except (StoreError, AccountsError) as exc:
        _fail(str(exc))


@accounts_app.command("render")
def render_command(
    db: _DbOption = None,
    config: _ConfigOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Where to write; default: the config's broker_accounts.dynsec_file.")
    ] = None,
    owner: Annotated[
        str | None, typer.Option(help="User (and group) to own the file, e.g. mosquitto.")
    ] = None,
) -> None:
    """Write Mosquitto's dynamic-security file from the registry (hashes only), before a broker start:
    after the restart the accounts are the registry's."""
    settings = _load(config)
    target = out or (
        Path(settings.broker_accounts.dynsec_file) if settings.broker_accounts.dynsec_file else None
    )
    if target is None:
        _fail("give --out FILE or broker_accounts.dynsec_file in the config")
    document = _document(_db(db, settings), _fixed_hashes(settings, required=True), "mosquitto-dynsec")
    try:
        write_accounts(document, target, owner=owner)
    except (OSError, LookupError) as exc:
        _fail(f"{target}: {exc}")
    typer.echo(f"{target}: {len(document['clients'])} accounts", err=True)


@accounts_app.command("export")
def export_command(
    format_: Annotated[
        str, typer.Option("--format", help="mosquitto-dynsec (the plugin's file) or json (README).")
    ] = "json",
    db: _DbOption = None,
    config: _ConfigOption = None,
    out: Annotated[Path | None, typer.Option(help="Write here (mode 0600) instead of stdout.")] = None,
) -> None:
    """The registry's live cabinets with their password hashes and allowed topics, for another broker."""
    if format_ not in ("mosquitto-dynsec", "json"):
        _fail(f"--format {format_!r}: expected mosquitto-dynsec or json")
    settings = _load(config)
    fixed = _fixed_hashes(settings, required=False) if format_ == "mosquitto-dynsec" else {}
    document = _document(_db(db, settings), fixed, format_)
    if out is not None:
        write_accounts(document, out)
        return
    typer.echo(json.dumps(document, indent=2))


@accounts_app.command("sync")
def sync_command(
    db: _DbOption = None,
    config: _ConfigOption = None,
    dry_run: Annotated[bool, typer.Option(help="Show what would change; change nothing.")] = False,
) -> None:
    """Bring the running broker's accounts to the registry's now (what central serve does every
    broker_accounts.sync_interval_s), through the plugin's control topic as cityedge-admin."""
    from central.broker_accounts.control import DynsecError
    from central.broker_accounts.service import BrokerAccounts
    from central.broker_accounts.settings import accounts_settings
    from central.config import ConfigError
    from central.errors import StoreError
    from central.store import open_store
    from protocols.fleet.broker_url import parse_broker_url

    settings = _load(config)
    try:
        admin = accounts_settings(settings.broker_accounts).admin_password
    except ConfigError as exc:
        _fail(str(exc))
    if admin is None:
        _fail("the config names no broker_accounts.admin_password_file (cityedge-admin's password)")
    address = parse_broker_url(settings.broker.url or "mqtt://127.0.0.1:1883")
    url = _db(db, settings)

    async def run() -> SyncPlan:
        async with open_store(url) as store:
            accounts = BrokerAccounts(store=store, address=address, admin_password=admin)
            try:
                return await (accounts.plan() if dry_run else accounts.sync_once())
            finally:
                await accounts.__aexit__(None, None, None)

    try:
        plan = asyncio.run(run())
    except (DynsecError, StoreError) as exc:
        _fail(str(exc))
    for name in ("revoked", "stale", "repaired", "roles", "missing", "deferred", "unmanaged"):
        for who in getattr(plan, name):
            typer.echo(f"{name}: {who}")
    typer.echo(("would change: " if dry_run else "") + plan.summary(), err=True)


if __name__ == "__main__":
    raise SystemExit(main())
