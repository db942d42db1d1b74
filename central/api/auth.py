"""Who may call the API: a bearer token with a role, checked by FastAPI dependencies.

    reads (GET)                                   viewer
    commands, groups (POST, PUT, DELETE)          operator
    the quarantine (what cabinets sent, refused)  operator
    quarantined payloads, the audit log           admin
    the registry of provisioned cabinets          installer (or admin); its full list: admin

An installer (a technician's token, ``central.store.auth_rows.Role``) also reads what a viewer reads.

Tokens themselves are made and revoked with the CLI on central's machine, not over HTTP.

Every route under /api/v1 depends on ``RequireRole``: without a token, or with an unknown or revoked
one, the answer is 401 (``WWW-Authenticate: Bearer``); with a token whose role is too small, 403.
The identity found is kept in the request's state, where the audit log reads who acted.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from central.api.deps import services_of
from central.api.models import ErrorBody
from central.auth import Identity, Tokens
from central.store.auth_rows import Role

IDENTITY_STATE = "identity"
CREATE_HINT = "an admin makes one with: cityedge central token create --role ROLE --name NAME"

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token: `Authorization: Bearer <token>`. " + CREATE_HINT,
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no token, or an unknown or revoked one"},
    403: {"model": ErrorBody, "description": "the token's role is too small for this route"},
}


def identity_of(request: Request) -> Identity | None:
    """The identity a ``RequireRole`` found for this request, if one ran and accepted its token."""
    found = getattr(request.state, IDENTITY_STATE, None)
    return found if isinstance(found, Identity) else None


class RequireRole:
    """A dependency: the caller's ``Identity`` if its token's role is at least ``role`` (the tokens
    are the app's: ``central.api.deps``)."""

    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(self, request: Request, credentials: Credentials) -> Identity:
        identity = identity_of(request)
        if identity is None:
            identity = await _identify(services_of(request).tokens, credentials)
            setattr(request.state, IDENTITY_STATE, identity)
        if not identity.role.allows(self.role):
            may = " or ".join(role.value for role in self.role.granted_by)
            raise HTTPException(
                403,
                f"token {identity.name!r} has the role {identity.role.value}; this needs {self.role.value}"
                f" ({may}): ask an admin for a token with that role",
                headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
            )
        return identity


async def _identify(tokens: Tokens, credentials: HTTPAuthorizationCredentials | None) -> Identity:
    if credentials is None:
        raise HTTPException(
            401,
            f"this needs an API token: send 'Authorization: Bearer <token>'; {CREATE_HINT}",
            headers={"WWW-Authenticate": "Bearer"},
        )
    identity = await tokens.identify(credentials.credentials)
    if identity is None:
        # Never echo the token: it may be a real one mistyped, or one meant for another service.
        raise HTTPException(
            401,
            "the API token is unknown or revoked: ask an admin for a new one",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return identity


require_viewer = RequireRole(Role.VIEWER)
require_operator = RequireRole(Role.OPERATOR)
require_admin = RequireRole(Role.ADMIN)
require_installer = RequireRole(Role.INSTALLER)
# The caller, once its role is checked: a route takes ``identity: Operator`` to act as it.
Viewer = Annotated[Identity, Security(require_viewer)]
Operator = Annotated[Identity, Security(require_operator)]
Admin = Annotated[Identity, Security(require_admin)]
Installer = Annotated[Identity, Security(require_installer)]
