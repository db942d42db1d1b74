"""Tokens made and revoked with the CLI, checked by a running API; /docs from the package's own files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from central.api import create_app
from central.api.docs import ASSETS_DIR
from central.auth import Tokens
from central.store.auth_rows import Role
from central.store.sqlite import SqliteStore
from tests.integration.api_client import LocalApi, bearer, local_api

pytestmark = pytest.mark.integration


def cityedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cityedge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )


async def test_a_token_made_by_the_cli_works_until_it_is_revoked(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    made = cityedge(
        "central", "token", "create", "--role", "operator", "--name", "night-shift", "--db", str(db)
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert made.stdout == token + "\n" and re.fullmatch(r"ce1_[0-9a-f]{16}_[\w-]{43}", token)
    assert "night-shift" in made.stderr and "operator" in made.stderr and token not in made.stderr

    listed = cityedge("central", "token", "list", "--db", str(db))
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.split("\t")[:3] == ["night-shift", "operator", token.split("_")[1]]
    secret = token.split("_", 2)[2]
    assert secret not in listed.stdout + listed.stderr

    again = cityedge(
        "central", "token", "create", "--role", "admin", "--name", "night-shift", "--db", str(db)
    )
    assert again.returncode == 2 and "token revoke night-shift" in again.stderr
    unknown = cityedge("central", "token", "create", "--role", "root", "--name", "x", "--db", str(db))
    assert unknown.returncode == 2 and "viewer, operator, admin" in unknown.stderr

    async with SqliteStore(db) as store:
        app = create_app(store=store)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://central.test/api/v1",
            headers=bearer(token),
        ) as client:
            assert (await client.get("/cabinets")).status_code == 200
            assert (await client.get("/audit")).status_code == 403  # an operator's, not an admin's
            revoked = cityedge("central", "token", "revoke", "night-shift", "--db", str(db))
            assert revoked.returncode == 0, revoked.stderr
            # The running API sees the revocation at once: no restart, no cache.
            response = await client.get("/cabinets")
            assert response.status_code == 401
    gone = cityedge("central", "token", "revoke", "night-shift", "--db", str(db))
    assert gone.returncode == 2 and "no live token" in gone.stderr


async def test_the_store_keeps_only_a_digest_of_each_token(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    async with SqliteStore(db) as store:
        tokens = Tokens(store)
        token = await tokens.create("wall-screen", Role.VIEWER)
        replaced = await tokens.replace("wall-screen", Role.VIEWER)
        [row] = await tokens.live()
        assert await tokens.identify(token) is None  # replaced: the first one is revoked
        found = await tokens.identify(replaced)
        assert found is not None and (found.name, found.role) == ("wall-screen", Role.VIEWER)
        assert row.digest != replaced and len(row.digest) == 64
    stored = _database_bytes(tmp_path)
    for secret in (token, replaced):
        assert secret.encode() not in stored
        assert secret.split("_", 2)[2].encode() not in stored


def _database_bytes(folder: Path) -> bytes:
    """Everything SQLite wrote: the database, its WAL and shared-memory files."""
    return b"".join(path.read_bytes() for path in folder.iterdir() if path.name.startswith("central.db"))


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[LocalApi]:
    async with local_api(tmp_path / "central.db") as local:
        yield local


async def test_docs_name_no_outside_address_and_its_assets_come_from_the_package(api: LocalApi) -> None:
    async with api.client() as client:  # no token: documentation is public
        page = await client.get("/docs")
        assert page.status_code == 200
        html = page.text
        assert "http://" not in html and "https://" not in html
        urls = re.findall(r"""(?:src|href)=["']([^"']*)["']""", html)
        assert len(urls) == 3, urls
        for url in urls:
            assert url.startswith("data:") or (url.startswith("/") and not url.startswith("//")), url
        assert '"validatorUrl": null' in html  # Swagger UI would send the schema to an online validator
        for name, kind in [("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css")]:
            [url] = [u for u in urls if name in u]
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert kind in asset.headers["content-type"]
            assert asset.content == (ASSETS_DIR / name).read_bytes()
    for licence in ("LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"):
        assert (ASSETS_DIR / licence).stat().st_size > 0
