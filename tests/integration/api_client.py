"""An httpx client of a running aggregator's API, with a token of the role asked for."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from central.api import create_app
from central.auth import Tokens
from central.server import CentralServer
from central.store import Store
from central.store.auth_rows import Role
from central.store.rows import ReceivedStatus
from central.store.sqlite import SqliteStore
from central.testing import TS0_MS, ScriptedEdge, wait_until
from protocols.fleet import PROTOCOL_VERSION, DeviceInfo, Status


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


@dataclass
class LocalApi:
    """The app over a real SQLite store, called in-process (httpx's ASGI transport), with a token per role."""

    store: SqliteStore
    app: FastAPI
    tokens: dict[Role, str]

    def client(self, role: Role | None = None, *, token: str | None = None) -> httpx.AsyncClient:
        """A client with the token of ``role`` (or ``token``; neither: no token at all)."""
        chosen = token if token is not None else self.tokens[role] if role is not None else None
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://central.test",
            headers=bearer(chosen) if chosen is not None else {},
        )


@contextlib.asynccontextmanager
async def local_api(db: Path, **app_options: Any) -> AsyncIterator[LocalApi]:
    async with SqliteStore(db, durable=False) as store:
        tokens = {role: await new_token(store, role, f"{role.value}-1") for role in Role}
        yield LocalApi(store, create_app(store=store, **app_options), tokens)


async def add_cabinet(store: Store, cabinet: str = "cab-1") -> None:
    """A cabinet central knows (its birth, with one lighting controller), stored without MQTT."""
    inventory = [DeviceInfo(name="lc1", driver="modbus", points=["power_w", "energy_wh"])]
    status = Status(v=PROTOCOL_VERSION, cabinet=cabinet, online=True, ts=TS0_MS, inventory=inventory)
    await store.write([], [ReceivedStatus(status, TS0_MS)])


async def get_ok(http: httpx.AsyncClient, path: str, **params: Any) -> Any:
    """GET ``path``, which must answer 200; its JSON."""
    response = await http.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


@contextlib.asynccontextmanager
async def known_edge(
    broker_url: str, http: httpx.AsyncClient, cabinet: str, *, birth_ts: int = TS0_MS
) -> AsyncIterator[ScriptedEdge]:
    """A scripted edge whose birth central has stored (the API knows the cabinet)."""
    async with ScriptedEdge(broker_url, cabinet) as edge:
        await edge.birth(ts=birth_ts)

        async def known() -> bool:
            return (await http.get(f"/cabinets/{cabinet}")).status_code == 200

        await wait_until(known, what=f"cabinet {cabinet} known")
        yield edge
