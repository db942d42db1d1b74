"""The HTTP auth hook of a cluster broker, against a running central (httpx over a real socket), and
the registry's export for another broker."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from central.broker_accounts import PasswordHash, RateLimiter
from central.broker_accounts.settings import AccountsSettings
from central.server import CentralServer
from central.store.rows import RegistryEntry
from central.store.sqlite import SqliteStore
from cityedge.broker import MosquittoBroker
from cityedge.cli import app

pytestmark = pytest.mark.integration

SECRET = "hook-secret-" + "x" * 20
CENTRAL_PW = "central-pw"
PASSWORDS = {"cab-a": "cab-a-pw", "cab-b": "cab-b-pw"}


def _entry(cabinet: str) -> RegistryEntry:
    credential = PasswordHash.of(PASSWORDS[cabinet]).to_json()
    return RegistryEntry(cabinet, "Dijon", "", None, None, None, None, credential, 1, 1, None)


async def _registry(db: Path) -> None:
    async with SqliteStore(db) as store:
        for cabinet in PASSWORDS:
            await store.put_registry(_entry(cabinet))
        assert await store.revoke_cabinet("cab-b", revoked_ms=2)


@pytest.fixture
async def hook(tmp_path: Path, mosquitto: MosquittoBroker) -> AsyncIterator[httpx.AsyncClient]:
    await _registry(tmp_path / "central.db")
    async with (
        CentralServer(
            db=tmp_path / "central.db",
            broker_url=mosquitto.url,
            broker_password=CENTRAL_PW,
            http_port=0,
            broker_accounts=AccountsSettings(hook_secret=SECRET),
        ) as server,
        httpx.AsyncClient(
            base_url=f"{server.url}/broker", headers={"X-Cityedge-Hook-Secret": SECRET}, timeout=10
        ) as client,
    ):
        client.server = server  # type: ignore[attr-defined]
        yield client


async def _result(client: httpx.AsyncClient, path: str, body: dict[str, str]) -> str:
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    result: str = response.json()["result"]
    return result


AUTH_CASES = [
    ("cab-a", "cab-a-pw", "cab-a", "allow"),
    ("cab-a", "wrong", "cab-a", "deny"),
    ("cab-a", "cab-a-pw", "cab-b", "deny"),  # a cabinet's client id is its username
    ("cab-b", "cab-b-pw", "cab-b", "deny"),  # revoked
    ("nobody", "x", "nobody", "deny"),
    ("central", CENTRAL_PW, "cityedge-central-1234", "allow"),
    ("central", "cab-a-pw", "cityedge-central-1234", "deny"),
    ("cityedge-admin", "anything", "cityedge-admin", "deny"),  # Mosquitto's alone
    ("", "", "", "deny"),
]

AUTHZ_CASES = [
    ("cab-a", "cityedge/cab-a/data", "publish", "allow"),
    ("cab-a", "cityedge/cab-a/status", "publish", "allow"),
    ("cab-a", "cityedge/cab-b/data", "publish", "deny"),
    ("cab-a", "cityedge/cab-a/ack", "publish", "deny"),
    ("cab-a", "cityedge/cab-a/cmd", "subscribe", "allow"),
    ("cab-a", "cityedge/cab-b/cmd", "subscribe", "deny"),
    ("cab-a", "cityedge/cab-a/#", "subscribe", "deny"),
    ("cab-a", "cityedge/+/cmd", "subscribe", "deny"),
    ("cab-a", "$share/cityedge-central/cityedge/+/data", "subscribe", "deny"),
    ("cab-b", "cityedge/cab-b/data", "publish", "deny"),  # revoked
    ("central", "$share/cityedge-central/cityedge/+/data", "subscribe", "allow"),
    ("central", "cityedge/+/status", "subscribe", "allow"),
    ("central", "cityedge/cab-a/cmd", "publish", "allow"),
    ("central", "cityedge/cab-a/data", "publish", "deny"),
    ("cab-a", "cityedge/cab-a/data", "all", "deny"),
]


async def test_auth(hook: httpx.AsyncClient) -> None:
    answers = [
        (u, p, c, await _result(hook, "/auth", {"username": u, "password": p, "clientid": c}))
        for u, p, c, _ in AUTH_CASES
    ]
    assert answers == AUTH_CASES


async def test_authz(hook: httpx.AsyncClient) -> None:
    answers = [
        (u, t, a, await _result(hook, "/authz", {"username": u, "topic": t, "action": a}))
        for u, t, a, _ in AUTHZ_CASES
    ]
    assert answers == AUTHZ_CASES


async def test_the_hook_needs_its_secret_and_never_echoes_a_password(
    hook: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"username": "cab-a", "password": "cab-a-pw", "clientid": "cab-a"}
    for headers in ({"X-Cityedge-Hook-Secret": "wrong"}, {"X-Cityedge-Hook-Secret": ""}):
        response = await hook.post("/auth", json=body, headers=headers)
        assert response.status_code == 401
    bad = await hook.post("/auth", content=b'{"username": "cab-a", "password": 1234567}')
    assert bad.status_code == 400 and bad.json()["result"] == "deny" and "1234567" not in bad.text
    assert "cab-a-pw" not in caplog.text


async def test_each_source_is_rate_limited(hook: httpx.AsyncClient) -> None:
    server: CentralServer = hook.server  # type: ignore[attr-defined]
    assert server.broker_hook is not None
    server.broker_hook.limiter = RateLimiter(0.5, 5)
    body = {"username": "cab-a", "topic": "cityedge/cab-a/data", "action": "publish"}
    codes = [(await hook.post("/authz", json=body)).status_code for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2


def test_export_json_lists_live_cabinets_with_hashes_and_topics(tmp_path: Path) -> None:
    import asyncio

    asyncio.run(_registry(tmp_path / "c.db"))
    result = CliRunner().invoke(app, ["central", "broker-accounts", "export", "--db", str(tmp_path / "c.db")])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["format"] == "cityedge-broker-accounts"
    (account,) = document["accounts"]  # cab-b is revoked
    assert account["publish"] == ["cityedge/cab-a/status", "cityedge/cab-a/data"]
    assert account["subscribe"] == ["cityedge/cab-a/ack", "cityedge/cab-a/cmd"]
    stored = account["password_hash"]
    credential = PasswordHash(stored["hash"], stored["salt"], stored["iterations"])
    assert stored["algorithm"] == "pbkdf2-sha512" and credential.verify("cab-a-pw")
    assert "cab-a-pw" not in result.stdout


def test_render_writes_the_registrys_hashes_and_never_creates_the_database(tmp_path: Path) -> None:
    import asyncio

    for name, secret in (("central-pw", CENTRAL_PW), ("admin-pw", "adm-pw")):
        (tmp_path / name).write_text(secret + "\n")
        (tmp_path / name).chmod(0o600)
    config = tmp_path / "central.toml"
    config.write_text(
        f'[broker]\npassword_file = "{tmp_path / "central-pw"}"\n'
        f'[broker_accounts]\nadmin_password_file = "{tmp_path / "admin-pw"}"\n'
        f'dynsec_file = "{tmp_path / "dynsec.json"}"\n'
    )
    render = ["central", "broker-accounts", "render", "--config", str(config), "--db"]
    missing = tmp_path / "not-yet.db"
    result = CliRunner().invoke(app, [*render, str(missing)])
    assert result.exit_code == 0, result.output
    assert not missing.exists()
    clients = json.loads((tmp_path / "dynsec.json").read_text())["clients"]
    assert [c["username"] for c in clients] == ["central", "cityedge-admin"]
    asyncio.run(_registry(tmp_path / "c.db"))
    result = CliRunner().invoke(app, [*render, str(tmp_path / "c.db")])
    assert result.exit_code == 0, result.output
    clients = json.loads((tmp_path / "dynsec.json").read_text())["clients"]
    assert [c["username"] for c in clients] == ["central", "cityedge-admin", "cab-a"]
    assert (tmp_path / "dynsec.json").stat().st_mode & 0o777 == 0o600
    text = (tmp_path / "dynsec.json").read_text()
    assert not any(secret in text for secret in (CENTRAL_PW, "adm-pw", *PASSWORDS.values()))


def test_serve_refuses_an_admin_password_file_others_can_read(tmp_path: Path) -> None:
    admin = tmp_path / "admin-pw"
    admin.write_text("adm-pw\n")
    admin.chmod(0o644)
    config = tmp_path / "central.toml"
    config.write_text(f'[broker_accounts]\nadmin_password_file = "{admin}"\n')
    db = f"sqlite:///{tmp_path / 'c.db'}"
    result = CliRunner().invoke(app, ["central", "serve", "--config", str(config), "--db", db])
    assert result.exit_code == 2
    assert "broker_accounts.admin_password_file" in result.output and "adm-pw" not in result.output
