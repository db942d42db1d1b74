"""Over real HTTP: every state-changing request is audited, issued_by is the token's, bodies are capped."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from central.api.limits import MAX_BODY_BYTES
from central.server import CentralServer
from central.store.auth_rows import Role
from central.times import now_ms
from tests.integration.api_client import add_cabinet, api_client, new_token

pytestmark = pytest.mark.integration

CAB = "cab-1"
DIM = {"target": {"cabinet": CAB, "device": "lc1"}, "action": "dim", "args": {"level_pct": 40}}


async def test_every_state_change_is_audited_with_who_what_when_where_and_how_it_ended(
    central: CentralServer,
) -> None:
    await add_cabinet(central.store, CAB)
    before = now_ms()
    async with (
        api_client(central, Role.OPERATOR, name="control-room") as operator,
        api_client(central, Role.VIEWER, name="wall-screen") as viewer,
        api_client(central, Role.ADMIN, name="ops-admin") as admin,
        httpx.AsyncClient(base_url=f"{central.url}/api/v1", timeout=10) as anonymous,
    ):
        created = await operator.post("/commands", json=DIM)
        assert created.status_code == 201, created.text
        command_id = created.json()["id"]
        assert created.json()["issued_by"] == "control-room"  # the token's name
        assert (await viewer.post("/commands", json=DIM)).status_code == 403
        assert (await anonymous.post("/commands", json=DIM)).status_code == 401
        assert (await operator.put("/groups/g1", json={"members": [{"cabinet": CAB}]})).status_code == 201
        assert (await operator.delete("/groups/g1")).status_code == 204
        assert (await operator.delete("/groups/nope")).status_code == 404
        assert (await operator.get("/commands")).status_code == 200  # a read: not audited
        for reader in (viewer, operator):
            assert (await reader.get("/audit")).status_code == 403
        response = await admin.get("/audit")
        assert response.status_code == 200
        entries = response.json()["entries"]
    after = now_ms()

    seen = [(e["who"], e["role"], e["method"], e["path"], e["status"]) for e in reversed(entries)]
    assert seen == [
        ("control-room", "operator", "POST", "/api/v1/commands", 201),
        ("wall-screen", "viewer", "POST", "/api/v1/commands", 403),
        (None, None, "POST", "/api/v1/commands", 401),
        ("control-room", "operator", "PUT", "/api/v1/groups/g1", 201),
        ("control-room", "operator", "DELETE", "/api/v1/groups/g1", 204),
        ("control-room", "operator", "DELETE", "/api/v1/groups/nope", 404),
    ]
    first = entries[-1]
    assert first["summary"] == f"command {command_id}: dim to cabinet {CAB} device lc1"
    assert entries[-4]["summary"] == "group g1: 1 members"
    for entry in entries:
        assert before <= entry["ts_ms"] <= after
        host, _, port = entry["client"].rpartition(":")
        assert host == "127.0.0.1" and port.isdigit()
    async with api_client(central, Role.ADMIN) as admin:
        since = await admin.get("/audit", params={"since": entries[0]["ts_ms"], "limit": 1})
    assert [e["id"] for e in since.json()["entries"]] == [entries[0]["id"]]


async def test_issued_by_in_the_body_is_refused_so_nobody_acts_under_another_name(
    central: CentralServer,
) -> None:
    await add_cabinet(central.store, CAB)
    async with api_client(central, Role.OPERATOR, name="night-shift") as operator:
        response = await operator.post("/commands", json=DIM | {"issued_by": "control-room"})
        assert response.status_code == 422
        [error] = response.json()["detail"]
        assert error["loc"] == ["body", "issued_by"]
        assert "the name of the API token" in error["msg"]
        assert (await operator.get("/commands")).json() == {"commands": []}
        schema = (await operator.get("/../../openapi.json")).json()
    assert "issued_by" not in schema["components"]["schemas"]["CommandIn"]["properties"]


async def _raw_request(central: CentralServer, head: str, body_parts: list[bytes]) -> bytes:
    """Send a request by hand (headers, then body parts, maybe not all it announced); its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", central.http_port)
    try:
        writer.write(head.encode())
        for part in body_parts:
            writer.write(part)
            try:
                await writer.drain()
            except ConnectionError:
                break  # the server answered and closed: what it said is in the reader
        async with asyncio.timeout(10):
            return await reader.read(65536)
    finally:
        writer.close()


def _head(token: str, framing: str) -> str:
    return (
        "POST /api/v1/commands HTTP/1.1\r\nHost: central\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\n{framing}\r\n\r\n"
    )


async def test_a_body_announced_over_the_limit_is_refused_before_it_is_read(central: CentralServer) -> None:
    token = await new_token(central.store, Role.OPERATOR)
    # 128 MiB announced, 16 bytes sent: the answer comes without the server waiting for the rest.
    answer = await _raw_request(central, _head(token, "Content-Length: 134217728"), [b'{"target": {"cab'])
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert f"over {MAX_BODY_BYTES} bytes".encode() in answer
    assert await central.store.commands() == []
    [entry] = await central.store.audit()
    # The caller is identified before its body is read, so the refusal names who tried.
    assert (entry.entry.status, entry.entry.role) == (413, Role.OPERATOR.value)
    assert entry.entry.who is not None and entry.entry.who.startswith("test-operator")


async def test_an_anonymous_body_is_refused_before_it_is_read(central: CentralServer) -> None:
    """Without a known token nothing of the body is read: 128 MiB announced, 16 bytes sent, 401."""
    for authorization in ("", "Authorization: Bearer ce1_0000000000000000_forged\r\n"):
        head = (
            "POST /api/v1/commands HTTP/1.1\r\nHost: central\r\nContent-Type: application/json\r\n"
            f"{authorization}Content-Length: 134217728\r\n\r\n"
        )
        answer = await _raw_request(central, head, [b'{"target": {"cab'])
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
        assert b"www-authenticate: Bearer" in answer.lower().replace(
            b"www-authenticate: bearer", b"www-authenticate: Bearer"
        )
    assert [e.entry.status for e in await central.store.audit()] == [401, 401]


async def test_a_chunked_body_is_counted_as_it_streams_and_refused_past_the_limit(
    central: CentralServer,
) -> None:
    token = await new_token(central.store, Role.OPERATOR)
    chunk = b"x" * 65536
    chunks = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"] * (MAX_BODY_BYTES // len(chunk) + 2)
    # The body never ends (no last chunk): only counting as it streams can answer at all.
    answer = await _raw_request(central, _head(token, "Transfer-Encoding: chunked"), chunks)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"limit of this API" in answer
    assert await central.store.commands() == []


async def test_the_largest_valid_body_is_under_the_limit(central: CentralServer) -> None:
    # A group of 10,000 members, each with the longest cabinet and device names.
    members = [{"cabinet": f"{i:05d}" + "c" * 59, "device": "d" * 64} for i in range(10_000)]
    body = json.dumps({"members": members}, separators=(",", ":"))
    assert len(body) < MAX_BODY_BYTES
    async with api_client(central) as operator:
        response = await operator.put(
            "/groups/big", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 404  # read and checked: its cabinets are unknown
    assert "is unknown" in response.json()["detail"]
