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
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from central.broker_accounts.template import (
    ITERATIONS,
    PLACEHOLDER,
    AccountsError,
    load_template,
    password_hash,
    render_accounts,
    template_path,
)
from protocols.fleet.broker_url import SecretFileError

__all__ = [
    "ITERATIONS",
    "PLACEHOLDER",
    "AccountsError",
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


if __name__ == "__main__":
    raise SystemExit(main())
