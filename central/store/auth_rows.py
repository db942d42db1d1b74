"""Rows of API tokens and of the audit log, as the ``Store`` speaks them: plain values, no rules.

The rules (token format, hashing, which role may do what) are in ``central.auth``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What a token may do; each role may do everything the ones before it may."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


ROLES: tuple[str, ...] = tuple(role.value for role in Role)


@dataclass(frozen=True, slots=True)
class TokenRow:
    """An API token as stored: ``digest`` is the SHA-256 of the whole token, never the token itself.

    ``key_id`` is the public part of the token, used to find its row; ``name`` says whose it is and
    is what the audit log and a command's ``issued_by`` show.
    """

    key_id: str
    name: str
    role: str
    digest: str
    created_ms: int
    revoked_ms: int | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One state-changing request: who (None: refused before a token was accepted), what, outcome."""

    ts_ms: int
    who: str | None
    role: str | None
    method: str
    path: str
    summary: str
    client: str | None
    status: int


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    entry: AuditEntry
