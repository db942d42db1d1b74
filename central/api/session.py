"""GET /api/v1/whoami: the caller's name and role, so that a page shows only what it may do."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from central.api.auth import Viewer
from central.store.auth_rows import Role


class WhoAmI(BaseModel):
    name: str = Field(description="the token's name: who the audit log says acted")
    role: str = Field(description="viewer, operator or admin")
    may_command: bool = Field(description="may send commands and act on alarms (operator or more)")


router = APIRouter(tags=["session"])


@router.get("/whoami", response_model=WhoAmI, summary="Who this token is, and its role")
async def whoami(identity: Viewer) -> WhoAmI:
    return WhoAmI(
        name=identity.name,
        role=identity.role.value,
        may_command=identity.role.allows(Role.OPERATOR),
    )
