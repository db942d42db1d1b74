"""The registry and the installer role under attack, over real HTTP to a running central: every
route of /openapi.json walked with an installer's token (the registry and the viewer's reads, nothing
else), and a broker password issued then looked for everywhere it must not be (the audit log, the
registry, the cabinet list, the live stream, every log line)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import httpx
import pytest

from central.server import CentralServer
from central.store.auth_rows import Role
from tests.integration.api_client import bearer, new_token
from tests.integration.sse import event_stream

pytestmark = pytest.mark.integration

BODY = {"town": "Quetigny", "label": "Place Centrale", "latitude": 47.3, "longitude": 5.1}
# What an installer may do beyond a viewer's reads; the registry's full list is an admin's.
INSTALLER_WRITES = {
    ("PUT", "/api/v1/registry/{cabinet}"),
    ("POST", "/api/v1/registry/{cabinet}/broker-credentials"),
}
ADMIN_OR_OPERATOR_READS = {
    "/api/v1/registry",
    "/api/v1/quarantine",
    "/api/v1/quarantine/{entry_id}/payload",
    "/api/v1/audit",
}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "1" if m[0].endswith("id}") else "cab-1", path)


async def test_an_installer_reaches_the_registry_and_the_viewers_reads_and_nothing_else(
    central: CentralServer,
) -> None:
    installer = await new_token(central.store, Role.INSTALLER, "tech-1")
    async with httpx.AsyncClient(base_url=central.url, headers=bearer(installer), timeout=10) as http:
        spec = (await http.get("/openapi.json")).json()
        routes = [
            (method.upper(), path)
            for path, item in spec["paths"].items()
            for method in item
            if method in ("get", "put", "post", "delete", "patch")
        ]
        assert ("POST", "/api/v1/registry/{cabinet}/revoke") in routes and len(routes) > 30
        walked: dict[tuple[str, str], int] = {}
        for method, path in routes:
            if path == "/api/v1/stream":
                continue  # a viewer's, read below
            answer = await http.request(method, _concrete(path), json={} if method != "GET" else None)
            walked[method, path] = answer.status_code
        for (method, path), status in walked.items():
            if (method, path) in INSTALLER_WRITES or (
                method == "GET" and path.startswith("/api/v1/") and path not in ADMIN_OR_OPERATOR_READS
            ):
                assert status not in (401, 403), (method, path, status)
            elif path.startswith("/api/v1/") or path == "/metrics":
                assert status == 403, (method, path, status)
        assert await central.store.commands() == []
        assert [e.cabinet for e in await central.store.registry(include_revoked=True)] == []


async def test_a_broker_password_is_in_its_answer_only(
    central: CentralServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    installer = await new_token(central.store, Role.INSTALLER, "tech-1")
    admin = await new_token(central.store, Role.ADMIN, "admin-1")
    viewer = await new_token(central.store, Role.VIEWER, "screen-1")
    api = f"{central.url}/api/v1"
    async with (
        event_stream(central.url, viewer) as stream,
        httpx.AsyncClient(base_url=api, headers=bearer(installer), timeout=10) as http,
        httpx.AsyncClient(base_url=api, headers=bearer(admin), timeout=10) as admin_http,
    ):
        await stream.wait_for(lambda e, _: e == "hello", what="hello")
        assert (await http.put("/registry/cab-1", json=BODY)).status_code == 201
        issued = await http.post("/registry/cab-1/broker-credentials", json={})
        assert issued.status_code == 201 and issued.headers["cache-control"] == "no-store"
        password = issued.json()["password"]
        replaced = await admin_http.post("/registry/cab-1/broker-credentials", json={"replace": True})
        second = replaced.json()["password"]
        refused = await http.post("/registry/cab-1/broker-credentials", json={"replace": "yes, " + password})
        assert refused.status_code == 422
        await stream.wait_for(
            lambda e, d: e == "registry" and any(c["id"] == "cab-1" for c in d["cabinets"]),
            what="the registry event",
        )
        entry = await central.store.registry_entry("cab-1")
        assert entry is not None and entry.broker_hash is not None
        salt = json.loads(entry.broker_hash)["salt"]
        seen: list[Any] = [
            (await admin_http.get("/audit")).json(),
            (await admin_http.get("/registry", params={"revoked": "true"})).json(),
            (await http.get("/registry/cab-1")).json(),
            (await http.get("/cabinets")).json(),
            (await http.get("/cabinets/cab-1")).json(),
            stream.events,
            [record.getMessage() for record in caplog.records],
        ]
    text = json.dumps(seen)
    for secret in (password, second):
        at = text.find(secret)
        assert at < 0, text[max(0, at - 300) : at + 100]
    assert "broker credentials of cab-1: issued" in text  # the audit log says what happened
    for secret in (password, second, salt, entry.broker_hash):
        assert secret not in text
    assert "broker_hash" not in text
