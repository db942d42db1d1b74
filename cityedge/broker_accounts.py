"""The fleet broker's accounts: Mosquitto's dynamic-security file, made from the shipped template.

``config/broker/dynamic-security.template.json`` holds the roles and clients as data: ``central`` and
``cityedge-admin`` as they are, and one ``%u`` client and role that are repeated for every cabinet with
``%u`` replaced by its id (username = client id = cabinet id). ``render_accounts`` fills it in from a
``user:password`` mapping; passwords are stored as Mosquitto hashes them (PBKDF2-SHA512, a random
12-byte salt). Run as a program it reads a credentials file of ``user:password`` lines (the format
``mosquitto_passwd -U`` takes), which only its owner may read, and writes the plugin's file:

    python3 -m cityedge.broker_accounts --credentials FILE --out /var/lib/mosquitto/cityedge-dynsec.json
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from protocols.fleet.broker_url import SecretFileError
from protocols.fleet.topics import is_valid_cabinet_id

PLACEHOLDER = "%u"
# Mosquitto's own default is 101; every connection pays for these, so a fleet reconnecting after a
# broker restart does too (about 1 ms each here).
ITERATIONS = 1000
_SALT_BYTES = 12  # Mosquitto's SALT_LEN


class AccountsError(ValueError):
    """The credentials cannot make an accounts file; the message names the user or line (no secret)."""


def template_path() -> Path:
    """The shipped template: in the source tree, or in the installed wheel (``cityedge/config``)."""
    for base in (Path(__file__).resolve().parents[1] / "config", Path(__file__).resolve().parent / "config"):
        candidate = base / "broker" / "dynamic-security.template.json"
        if candidate.is_file():
            return candidate
    raise AccountsError("config/broker/dynamic-security.template.json is missing from this installation")


def load_template(path: Path | None = None) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((path or template_path()).read_text(encoding="utf-8"))
    return document


def password_hash(
    password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS
) -> dict[str, Any]:
    """The ``password``, ``salt`` and ``iterations`` fields of a dynamic-security client."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, dklen=64)
    return {
        "password": base64.b64encode(digest).decode("ascii"),
        "salt": base64.b64encode(salt).decode("ascii"),
        "iterations": iterations,
    }


def _substitute(value: Any, cabinet: str) -> Any:
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, cabinet)
    if isinstance(value, list):
        return [_substitute(item, cabinet) for item in value]
    if isinstance(value, dict):
        return {key: _substitute(item, cabinet) for key, item in value.items()}
    return value


def _has_placeholder(entry: Mapping[str, Any]) -> bool:
    return PLACEHOLDER in json.dumps(entry)


def render_accounts(template: Mapping[str, Any], passwords: Mapping[str, str]) -> dict[str, Any]:
    """The plugin's document: the template's fixed clients that have a password, and every other
    user of ``passwords`` as a cabinet (it must be a valid cabinet id)."""
    fixed_clients = [c for c in template["clients"] if not _has_placeholder(c)]
    cabinet_clients = [c for c in template["clients"] if _has_placeholder(c)]
    fixed_names = {str(client["username"]) for client in fixed_clients}
    roles = [r for r in template["roles"] if not _has_placeholder(r)]
    cabinet_roles = [r for r in template["roles"] if _has_placeholder(r)]
    clients: list[dict[str, Any]] = []
    for client in fixed_clients:
        if client["username"] in passwords:
            clients.append({**copy.deepcopy(client), **password_hash(passwords[client["username"]])})
    for user, password in passwords.items():
        if user in fixed_names:
            continue
        if not is_valid_cabinet_id(user):
            raise AccountsError(
                f"user {user!r} is neither one of {', '.join(sorted(fixed_names))} nor a valid cabinet id"
                " (1-64 letters, digits, '_', '-', '.', starting with a letter or digit)"
            )
        roles += [_substitute(role, user) for role in cabinet_roles]
        clients += [{**_substitute(c, user), **password_hash(password)} for c in cabinet_clients]
    rendered = {key: copy.deepcopy(value) for key, value in template.items()}
    rendered["roles"] = roles
    rendered["clients"] = clients
    return rendered


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
