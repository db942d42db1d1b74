"""API tokens: made, stored hashed, checked, revoked. No I/O of its own: it speaks to a ``Store``.

A token reads ``ce1_<key id>_<secret>``: the key id (16 hex digits) finds the token's row, and the
row keeps only the SHA-256 digest of the whole token, compared in constant time. Tokens are random
(256 bits of secret), so a plain digest is enough: there is nothing to guess that a slow hash would
protect. A token is shown once, when it is made; losing it means revoking it and making another.

Names are 1-64 letters, digits, '_', '-' or '.', and one name has at most one live token: a name is
who the audit log and a command's ``issued_by`` say acted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from central.errors import CentralError
from central.store import Store
from central.store.auth_rows import Role, TokenRow
from central.times import now_ms

TOKEN_PREFIX = "ce1"
# Longer than any token we make: anything longer is refused before it is hashed.
MAX_TOKEN_CHARS = 128
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")


class TokenError(CentralError):
    """A token cannot be made or revoked; ``name`` is the token's name, ``hint`` what to do."""

    def __init__(self, name: str, problem: str, hint: str) -> None:
        super().__init__(f"token {name!r}: {problem}; {hint}")
        self.name = name
        self.problem = problem
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request comes from: the name and role of its token."""

    name: str
    role: Role


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def key_id_of(token: str) -> str | None:
    """The key id of a token of our format, else None (without looking anything up)."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not _KEY_ID.fullmatch(key_id) or not secret:
        return None
    return key_id


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise TokenError(name, "a name is 1-64 letters, digits, '_', '-' or '.'", "choose another name")
    return name


def parse_role(raw: str) -> Role:
    try:
        return Role(raw)
    except ValueError:
        roles = ", ".join(role.value for role in Role)
        raise TokenError("?", f"unknown role {raw!r}", f"choose one of {roles}") from None


class Tokens:
    """Make, list, revoke and check API tokens kept in ``store``."""

    def __init__(self, store: Store, *, clock: Callable[[], int] = now_ms) -> None:
        self._store = store
        self._clock = clock

    async def create(self, name: str, role: Role) -> str:
        """Store a new token for ``name`` and return it: the only time it can be read."""
        check_name(name)
        key_id = secrets.token_hex(8)
        token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        row = TokenRow(key_id, name, role.value, digest(token), self._clock())
        if not await self._store.add_token(row):
            raise TokenError(
                name,
                "a live token already has this name",
                f"revoke it first (cityedge central token revoke {name}) or choose another name",
            )
        return token

    async def replace(self, name: str, role: Role) -> str:
        """Revoke ``name``'s live token, if any, and make a new one (what the demo does at each start)."""
        await self._store.revoke_tokens(check_name(name), revoked_ms=self._clock())
        return await self.create(name, role)

    async def revoke(self, name: str) -> None:
        if await self._store.revoke_tokens(name, revoked_ms=self._clock()) == 0:
            raise TokenError(
                name, "no live token has this name", "cityedge central token list shows the live tokens"
            )

    async def live(self) -> list[TokenRow]:
        return [row for row in await self._store.tokens() if row.revoked_ms is None]

    async def identify(self, token: str) -> Identity | None:
        """The identity of a live token, else None (unknown, revoked, malformed: the caller cannot tell)."""
        key_id = key_id_of(token)
        row = await self._store.token(key_id) if key_id is not None else None
        if row is None or row.revoked_ms is not None:
            return None
        if not hmac.compare_digest(row.digest, digest(token)):
            return None
        return Identity(row.name, Role(row.role))
