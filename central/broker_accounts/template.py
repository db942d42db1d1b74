"""The fleet broker's accounts as data: the shipped dynamic-security template, its hashes, its rules.

``config/broker/dynamic-security.template.json`` holds the roles and clients: ``central`` and
``cityedge-admin`` as they are, and one ``%u`` client and role repeated for every cabinet with ``%u``
replaced by its id (username = client id = cabinet id). Passwords are kept as Mosquitto's plugin
keeps them: PBKDF2-SHA512, a 12-byte salt, a number of iterations (``PasswordHash``); a cabinet's
hash is what the registry stores (``RegistryEntry.broker_hash``, ``PasswordHash.to_json``).

Every cabinet client rendered here carries a *credential tag* in its ``textdescription``: a digest of
the hash it was given. The plugin reports descriptions (never hashes), so the sync can tell whether
the broker holds the registry's credential for a cabinet or an older one.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocols.fleet.topics import is_valid_cabinet_id

PLACEHOLDER = "%u"
# Mosquitto's own default is 101; every connection pays for these, so a fleet reconnecting after a
# broker restart does too (about 1 ms each here).
ITERATIONS = 1000
MAX_ITERATIONS = 1_000_000  # a hash asking for more is hostile: verifying it would take seconds
SALT_BYTES = 12  # Mosquitto's SALT_LEN
HASH_BYTES = 64  # SHA-512
TAG_PREFIX = "cityedge credential "


class AccountsError(ValueError):
    """The accounts cannot be made; the message names the user, line or field (never a secret)."""


def template_path() -> Path:
    """The shipped template: in the source tree, or in the installed wheel (``cityedge/config``)."""
    root = Path(__file__).resolve().parents[2]
    for base in (root / "config", root / "cityedge" / "config"):
        candidate = base / "broker" / "dynamic-security.template.json"
        if candidate.is_file():
            return candidate
    raise AccountsError("config/broker/dynamic-security.template.json is missing from this installation")


def load_template(path: Path | None = None) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((path or template_path()).read_text(encoding="utf-8"))
    return document


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A password as the plugin stores it: base64 of the PBKDF2-SHA512 digest and of the salt."""

    password: str = ""
    salt: str = ""
    iterations: int = ITERATIONS

    def __repr__(self) -> str:  # a hash is not a password, but it is not for logs either
        return f"PasswordHash(tag={self.tag!r})"

    @classmethod
    def of(cls, password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> PasswordHash:
        salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
        digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, dklen=HASH_BYTES)
        return cls(
            base64.b64encode(digest).decode("ascii"), base64.b64encode(salt).decode("ascii"), iterations
        )

    @classmethod
    def from_json(cls, text: str) -> PasswordHash:
        """Parse a stored hash, checked as the plugin would load it; AccountsError says which part."""
        try:
            document = json.loads(text)
        except ValueError:
            raise AccountsError("the broker hash is not JSON") from None
        if not isinstance(document, dict) or set(document) != {"password", "salt", "iterations"}:
            raise AccountsError("the broker hash must be an object of password, salt and iterations")
        password, salt, iterations = document["password"], document["salt"], document["iterations"]
        if not isinstance(iterations, int) or isinstance(iterations, bool):
            raise AccountsError("the broker hash's iterations must be an integer")
        if not 1 <= iterations <= MAX_ITERATIONS:
            raise AccountsError(f"the broker hash's iterations must be 1 to {MAX_ITERATIONS}")
        for name, value, size in (("password", password, HASH_BYTES), ("salt", salt, SALT_BYTES)):
            if not isinstance(value, str) or len(_b64(value, name)) != size:
                raise AccountsError(f"the broker hash's {name} must be base64 of {size} bytes")
        return cls(password, salt, iterations)

    def to_json(self) -> str:
        return json.dumps(self.fields(), separators=(",", ":"))

    def fields(self) -> dict[str, Any]:
        """The ``password``, ``salt`` and ``iterations`` fields of a dynamic-security client."""
        return {"password": self.password, "salt": self.salt, "iterations": self.iterations}

    def verify(self, password: str) -> bool:
        """Whether ``password`` is the one hashed here (constant-time compare of the digests)."""
        digest = hashlib.pbkdf2_hmac(
            "sha512", password.encode("utf-8"), _b64(self.salt, "salt"), self.iterations, dklen=HASH_BYTES
        )
        return hmac.compare_digest(digest, _b64(self.password, "password"))

    @property
    def tag(self) -> str:
        """A digest of this hash, safe to show and to store beside the account in the broker."""
        return hashlib.sha256(f"{self.salt}:{self.password}:{self.iterations}".encode()).hexdigest()[:16]


def _b64(value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AccountsError(f"the broker hash's {name} is not base64") from None


def password_hash(
    password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS
) -> dict[str, Any]:
    """The ``password``, ``salt`` and ``iterations`` fields of a dynamic-security client."""
    return PasswordHash.of(password, salt=salt, iterations=iterations).fields()


def credential_tag_text(credential: PasswordHash) -> str:
    return TAG_PREFIX + credential.tag


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


class AccountsTemplate:
    """The template split into its fixed accounts and its per-cabinet pattern."""

    def __init__(self, document: Mapping[str, Any] | None = None) -> None:
        self.document: Mapping[str, Any] = document if document is not None else load_template()
        clients, roles = self.document["clients"], self.document["roles"]
        self.fixed_clients = [c for c in clients if not _has_placeholder(c)]
        self.fixed_roles = [r for r in roles if not _has_placeholder(r)]
        self._cabinet_clients = [c for c in clients if _has_placeholder(c)]
        self._cabinet_roles = [r for r in roles if _has_placeholder(r)]
        self.fixed_names = frozenset(str(client["username"]) for client in self.fixed_clients)
        # Every cabinet role's name starts with this (the template's "cityedge-cabinet-%u").
        names = [str(r["rolename"]) for r in self._cabinet_roles] or ["cityedge-cabinet-" + PLACEHOLDER]
        self.cabinet_role_prefix = names[0].split(PLACEHOLDER)[0]

    def default_acl_access(self) -> dict[str, bool]:
        return dict(self.document.get("defaultACLAccess", {}))

    def cabinet_roles(self, cabinet: str) -> list[dict[str, Any]]:
        return [_substitute(role, cabinet) for role in self._cabinet_roles]

    def cabinet_clients(self, cabinet: str, credential: PasswordHash) -> list[dict[str, Any]]:
        """The cabinet's client(s), with its hash and credential tag."""
        return [
            {
                **_substitute(c, cabinet),
                "textdescription": credential_tag_text(credential),
                **credential.fields(),
            }
            for c in self._cabinet_clients
        ]

    def roles_of(self, username: str) -> list[dict[str, Any]]:
        """The roles (with their ACLs) an account of ``username`` holds under this template."""
        if username in self.fixed_names:
            (client,) = [c for c in self.fixed_clients if c["username"] == username]
            names = {r["rolename"] for r in client.get("roles", [])}
            return [copy.deepcopy(r) for r in self.fixed_roles if r["rolename"] in names]
        return self.cabinet_roles(username)

    def render(
        self, fixed: Mapping[str, PasswordHash], cabinets: Mapping[str, PasswordHash]
    ) -> dict[str, Any]:
        """The plugin's document: the fixed accounts that have a hash in ``fixed``, and every cabinet."""
        clients: list[dict[str, Any]] = [
            {**copy.deepcopy(client), **fixed[client["username"]].fields()}
            for client in self.fixed_clients
            if client["username"] in fixed
        ]
        roles = [copy.deepcopy(role) for role in self.fixed_roles]
        for cabinet in sorted(cabinets):
            if cabinet in self.fixed_names or not is_valid_cabinet_id(cabinet):
                raise AccountsError(
                    f"user {cabinet!r} is neither one of {', '.join(sorted(self.fixed_names))} nor a valid"
                    " cabinet id (1-64 letters, digits, '_', '-', '.', starting with a letter or digit)"
                )
            roles += self.cabinet_roles(cabinet)
            clients += self.cabinet_clients(cabinet, cabinets[cabinet])
        rendered = {key: copy.deepcopy(value) for key, value in self.document.items()}
        rendered["roles"] = roles
        rendered["clients"] = clients
        return rendered


def render_accounts(template: Mapping[str, Any], passwords: Mapping[str, str]) -> dict[str, Any]:
    """The plugin's document from plaintext ``user: password`` pairs: the template's fixed accounts
    that have a password, and every other user as a cabinet (it must be a valid cabinet id)."""
    accounts = AccountsTemplate(template)
    hashes = {user: PasswordHash.of(password) for user, password in passwords.items()}
    fixed = {user: h for user, h in hashes.items() if user in accounts.fixed_names}
    cabinets = {user: h for user, h in hashes.items() if user not in accounts.fixed_names}
    return accounts.render(fixed, cabinets)
