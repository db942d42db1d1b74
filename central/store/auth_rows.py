"""Rows of API tokens and of the audit log, as the ``Store`` speaks them: plain values, no rules.

The rules (token format, hashing, which role may do what) are in ``central.auth``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What a token may do.

    viewer < operator < admin: each may do everything the ones before it may. ``installer`` stands
    beside that chain: a technician's token for provisioning cabinets (the registry routes) that
    may read what a viewer reads and nothing more: no commands, no groups, no quarantine, no audit
    log, so a lost one cannot switch a street's lights off. An admin may do what an installer may.
    """

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    INSTALLER = "installer"

    def allows(self, needed: Role) -> bool:
        return needed in _ALLOWED[self]

    @property
    def granted_by(self) -> tuple[Role, ...]:
        """The roles whose tokens may do what this role may (this one included)."""
        return tuple(role for role in Role if role.allows(self))


_ALLOWED: dict[Role, frozenset[Role]] = {
    Role.VIEWER: frozenset({Role.VIEWER}),
    Role.OPERATOR: frozenset({Role.VIEWER, Role.OPERATOR}),
    Role.ADMIN: frozenset(Role),
    Role.INSTALLER: frozenset({Role.VIEWER, Role.INSTALLER}),
}

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
