"""Who may call what: every route of the OpenAPI document, without a token, with bad ones, per role.

The table ROUTE_ROLES is the contract; a route that is added to the app without being added here
fails ``test_every_route_is_in_the_table``, so that no route can be left open by omission.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from central.api import API_PREFIX
from central.auth import Tokens
from central.store.auth_rows import Role
from tests.integration.api_client import LocalApi, bearer, local_api

pytestmark = pytest.mark.integration

V, OP, A, INST = Role.VIEWER, Role.OPERATOR, Role.ADMIN, Role.INSTALLER
ROUTE_ROLES: dict[tuple[str, str], Role] = {
    ("GET", "/api/v1/cabinets"): V,
    ("GET", "/api/v1/cabinets/{cabinet}"): V,
    ("GET", "/api/v1/cabinets/{cabinet}/points"): V,
    ("GET", "/api/v1/cabinets/{cabinet}/points/{point}/readings"): V,
    ("GET", "/api/v1/cabinets/{cabinet}/lighting"): V,
    ("GET", "/api/v1/cabinets/{cabinet}/equipment"): V,
    ("GET", "/api/v1/cabinets/{cabinet}/energy"): V,
    ("GET", "/api/v1/events"): V,
    ("GET", "/api/v1/alarms"): V,
    ("GET", "/api/v1/alarm-episodes"): V,
    ("GET", "/api/v1/alarm-episodes/{episode_id}"): V,
    ("POST", "/api/v1/alarm-episodes/{episode_id}/acknowledge"): OP,
    ("POST", "/api/v1/alarm-episodes/{episode_id}/assign"): OP,
    ("POST", "/api/v1/alarm-episodes/{episode_id}/comments"): OP,
    ("GET", "/api/v1/health"): V,
    ("GET", "/api/v1/commands"): V,
    ("GET", "/api/v1/commands/{command_id}"): V,
    ("GET", "/api/v1/groups"): V,
    ("GET", "/api/v1/groups/{name}"): V,
    ("POST", "/api/v1/commands"): OP,
    ("PUT", "/api/v1/groups/{name}"): OP,
    ("DELETE", "/api/v1/groups/{name}"): OP,
    ("GET", "/api/v1/quarantine"): OP,
    ("GET", "/api/v1/quarantine/{entry_id}/payload"): A,
    ("GET", "/api/v1/audit"): A,
    ("GET", "/api/v1/kpi"): V,
    ("GET", "/api/v1/registry"): A,
    ("GET", "/api/v1/registry/{cabinet}"): INST,
    ("PUT", "/api/v1/registry/{cabinet}"): INST,
    ("POST", "/api/v1/registry/{cabinet}/broker-credentials"): INST,
    ("POST", "/api/v1/registry/{cabinet}/revoke"): A,
}
# Documentation, not data: these need no token.
PUBLIC = {"/openapi.json", "/docs", "/docs/assets"}
# Open data: anyone may GET it, no token (tests/integration/test_opendata.py holds it to that).
OPEN_DATA = {("GET", "/opendata/catalog.json"), ("GET", "/opendata/{file}")}
SAMPLE_PARAMS = {
    "cabinet": "cab-1",
    "point": "lc1/power_w",
    "command_id": "0123abcd",
    "name": "g1",
    "entry_id": "1",
    "episode_id": "1",
}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[LocalApi]:
    async with local_api(tmp_path / "central.db") as local:
        yield local


async def operations(api: LocalApi) -> list[tuple[str, str, bool]]:
    """(method, path template, takes a body) of every operation of the app's OpenAPI document."""
    async with api.client() as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    found = []
    for path, item in response.json()["paths"].items():
        for method, operation in item.items():
            if (method.upper(), path) not in OPEN_DATA:
                found.append((method.upper(), path, "requestBody" in operation))
    return found


def concrete(path: str) -> str:
    for name, value in SAMPLE_PARAMS.items():
        path = path.replace(f"{{{name}}}", value)
    assert "{" not in path, f"{path}: add a sample value for its parameter to SAMPLE_PARAMS"
    return path


async def call(client: httpx.AsyncClient, method: str, path: str, body: Any = None) -> httpx.Response:
    if body is None:
        return await client.request(method, concrete(path))
    return await client.request(method, concrete(path), json=body)


async def test_every_route_is_in_the_table(api: LocalApi) -> None:
    documented = {(method, path) for method, path, _ in await operations(api)}
    assert documented == set(ROUTE_ROLES), (
        f"routes without a role in ROUTE_ROLES: {documented - set(ROUTE_ROLES)}; "
        f"roles of routes that are gone: {set(ROUTE_ROLES) - documented}"
    )
    # A route hidden from the document would escape the walk: the only hidden one is /docs itself,
    # and every route outside the API (not from its routers) is public documentation.
    hidden = [
        r.path for r in all_routes(api.app.routes) if isinstance(r, APIRoute) and not r.include_in_schema
    ]
    assert hidden == ["/docs"], f"{hidden}: a route hidden from /openapi.json escapes this walk"
    outside = {
        path
        for route in api.app.routes
        if not hasattr(route, "original_router")
        and not (path := getattr(route, "path", "")).startswith(API_PREFIX)
    }
    known = PUBLIC | {path for _, path in OPEN_DATA}
    assert outside <= known, f"{outside - known}: outside {API_PREFIX} and not known as documentation"


def all_routes(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, into the routers included (FastAPI nests them, or flattens them when older)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        yield from all_routes(included.routes) if included is not None else [route]


async def test_no_token_or_a_bad_one_is_401_on_every_route(api: LocalApi) -> None:
    valid = api.tokens[Role.ADMIN]
    revoked = await Tokens(api.store).create("gone", Role.ADMIN)
    await Tokens(api.store).revoke("gone")
    key_id = valid.split("_")[1]
    forged = f"ce1_{key_id}_{'A' * 43}"  # a real key id, a wrong secret
    headers_cases: list[dict[str, str]] = [
        {},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        bearer(forged),
        bearer(revoked),
        bearer(valid + "x"),
    ]
    for method, path, takes_body in await operations(api):
        for headers in headers_cases:
            async with api.client() as client:
                client.headers.update(headers)
                # A body that is not even JSON: the token is checked first all the same.
                if takes_body:
                    response = await client.request(
                        method, concrete(path), content=b"{NaN", headers={"content-type": "application/json"}
                    )
                else:
                    response = await call(client, method, path)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer"), (method, path)
            detail = response.json()["detail"]
            assert valid not in detail and forged not in detail and revoked not in detail


async def test_each_role_gets_what_it_may_and_403_above_it(api: LocalApi) -> None:
    for method, path, takes_body in await operations(api):
        needed = ROUTE_ROLES[(method, path)]
        for role in Role:
            async with api.client(role) as client:
                response = await call(client, method, path, {} if takes_body else None)
            if role.allows(needed):
                assert response.status_code not in (401, 403), (method, path, role, response.text)
            else:
                assert response.status_code == 403, (method, path, role, response.text)
                assert f"this needs {needed.value}" in response.json()["detail"]
                assert "insufficient_scope" in response.headers["www-authenticate"]
    # Nothing refused changed anything.
    assert await api.store.commands() == [] and await api.store.groups() == []


async def test_documentation_is_public(api: LocalApi) -> None:
    async with api.client() as client:
        assert (await client.get("/openapi.json")).status_code == 200
        assert (await client.get("/docs")).status_code == 200
        assert (await client.get("/redoc")).status_code == 404  # it would load its script from a CDN
    async with api.client() as client:
        schema = (await client.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["token"]["description"],
    }
