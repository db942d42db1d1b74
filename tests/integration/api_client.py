"""An httpx client of a running aggregator's API, with a token of the role asked for."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator

import httpx

from central.auth import Tokens
from central.auth_rows import Role
from central.server import CentralServer
from central.store import Store


async def new_token(store: Store, role: Role, name: str | None = None) -> str:
    """A fresh live token of ``role`` (named after it, unless ``name`` says otherwise)."""
    return await Tokens(store).create(name or f"test-{role.value}-{secrets.token_hex(3)}", role)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def api_client(
    server: CentralServer, role: Role = Role.OPERATOR, *, name: str | None = None, prefix: str = "/api/v1"
) -> AsyncIterator[httpx.AsyncClient]:
    token = await new_token(server.store, role, name)
    async with httpx.AsyncClient(
        base_url=f"{server.url}{prefix}", timeout=10, headers=bearer(token)
    ) as client:
        yield client
