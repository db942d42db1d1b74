"""The registry API: a provisioning token registers cabinets and gets their broker credentials once;
it never sends a command; the audit log records each write and never a password."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.api import create_app
from central.store.auth_rows import Role
from central.store.rows import RegistryEntry
from central.store.sqlite import SqliteStore
from central.testing import TS0_MS
from tests.integration.api_client import LocalApi, add_cabinet, bearer, local_api, new_token
from tests.integration.broker_hashes import password_matches

pytestmark = pytest.mark.integration

BODY: dict[str, Any] = {
    "town": "Quetigny",
    "label": "Place Centrale",
    "latitude": 47.3156,
    "longitude": 5.1062,
    "rated_power_w": 2400.0,
    "baseline_kwh_per_day": None,
}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[LocalApi]:
    async with local_api(tmp_path / "central.db") as local:
        yield local


async def test_a_put_creates_then_says_unchanged_then_updated(api: LocalApi) -> None:
    async with api.client(Role.INSTALLER) as http:
        first = await http.put("/api/v1/registry/cab-7", json=BODY)
        assert first.status_code == 201, first.text
        assert first.json()["outcome"] == "created"
        entry = first.json()["entry"]
        assert entry | {"created_ms": 0, "updated_ms": 0} == {
            "cabinet": "cab-7",
            **BODY,
            "broker_account": False,
            "created_ms": 0,
            "updated_ms": 0,
            "revoked_ms": None,
            "revoked": False,
        }
        again = await http.put("/api/v1/registry/cab-7", json=BODY)
        assert (again.status_code, again.json()["outcome"]) == (200, "unchanged")
        assert again.json()["entry"] == entry
        moved = await http.put("/api/v1/registry/cab-7", json=BODY | {"label": "Place Centrale, nord"})
        assert (moved.status_code, moved.json()["outcome"]) == (200, "updated")
        assert moved.json()["entry"]["created_ms"] == entry["created_ms"]
        got = await http.get("/api/v1/registry/cab-7")
        assert got.status_code == 200 and got.json()["label"] == "Place Centrale, nord"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"town": ""}, "town"),
        ({"town": "   "}, "town"),
        ({"town": "T" * 101}, "town"),
        ({"label": "a\nb"}, "label"),
        ({"label": "L" * 201}, "label"),
        ({"latitude": 91}, "latitude"),
        ({"longitude": -181}, "longitude"),
        ({"longitude": None}, None),
        ({"rated_power_w": -5}, "rated_power_w"),
        ({"rated_power_w": 1e12}, "rated_power_w"),
        ({"owner": "me"}, "owner"),
    ],
)
async def test_a_field_out_of_bounds_is_a_422_naming_it(
    api: LocalApi, change: dict[str, Any], field: str | None
) -> None:
    async with api.client(Role.INSTALLER) as http:
        response = await http.put("/api/v1/registry/cab-1", json=BODY | change)
        assert response.status_code == 422, response.text
        if field is not None:
            assert any(e["loc"][-1] == field for e in response.json()["detail"]), response.text
        assert (await http.get("/api/v1/registry/cab-1")).status_code == 404
    async with api.client(Role.INSTALLER) as http:
        bad_id = await http.put("/api/v1/registry/-bad", json=BODY)
        assert bad_id.status_code == 422
        for reserved in ("central", "cityedge-admin"):  # the broker's own accounts
            taken = await http.put(f"/api/v1/registry/{reserved}", json=BODY)
            assert taken.status_code == 422 and "broker's own accounts" in taken.text, taken.text


async def test_credentials_are_shown_once_and_kept_as_a_hash(api: LocalApi) -> None:
    async with api.client(Role.INSTALLER) as http:
        assert (await http.post("/api/v1/registry/cab-1/broker-credentials", json={})).status_code == 404
        await http.put("/api/v1/registry/cab-1", json=BODY)
        issued = await http.post("/api/v1/registry/cab-1/broker-credentials", json={})
        assert issued.status_code == 201, issued.text
        assert issued.headers["cache-control"] == "no-store"
        creds = issued.json()
        assert creds["username"] == "cab-1" and creds["replaced"] is False and len(creds["password"]) >= 40
        stored = await api.store.registry_entry("cab-1")
        assert stored is not None and stored.broker_hash is not None
        assert creds["password"] not in stored.broker_hash
        assert password_matches(creds["password"], stored.broker_hash)
        entry = (await http.get("/api/v1/registry/cab-1")).json()
        assert entry["broker_account"] is True and "broker_hash" not in entry

        twice = await http.post("/api/v1/registry/cab-1/broker-credentials", json={})
        assert twice.status_code == 409 and '"replace": true' in twice.json()["detail"]
        # A PUT of the same place keeps the credentials: unchanged.
        assert (await http.put("/api/v1/registry/cab-1", json=BODY)).json()["outcome"] == "unchanged"
        # An installer never takes over a cabinet that has credentials: replacing is an admin's.
        taken = await http.post("/api/v1/registry/cab-1/broker-credentials", json={"replace": True})
        assert taken.status_code == 403 and "needs an admin" in taken.json()["detail"], taken.text
        kept = await api.store.registry_entry("cab-1")
        assert kept is not None and kept.broker_hash == stored.broker_hash
    async with api.client(Role.ADMIN) as http:
        replaced = await http.post("/api/v1/registry/cab-1/broker-credentials", json={"replace": True})
        assert replaced.status_code == 201 and replaced.json()["replaced"] is True
        new = await api.store.registry_entry("cab-1")
        assert new is not None and new.broker_hash is not None
        assert password_matches(replaced.json()["password"], new.broker_hash)
        assert not password_matches(creds["password"], new.broker_hash)
    async with api.client(Role.ADMIN) as http:
        audit = (await http.get("/api/v1/audit")).json()["entries"]
    text = json.dumps(audit)
    assert creds["password"] not in text and replaced.json()["password"] not in text
    summaries = [e["summary"] for e in audit if e["who"] == "installer-1"]
    assert "broker credentials of cab-1: issued" in summaries
    assert "broker credentials of cab-1: replaced" in [e["summary"] for e in audit if e["who"] == "admin-1"]
    assert "registry cab-1: created (town 'Quetigny')" in summaries


async def test_of_two_requests_for_credentials_at_once_one_gets_them(api: LocalApi) -> None:
    async with api.client(Role.INSTALLER) as http:
        await http.put("/api/v1/registry/cab-1", json=BODY)
        answers = await asyncio.gather(
            *(http.post("/api/v1/registry/cab-1/broker-credentials", json={}) for _ in range(4))
        )
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]
    [won] = [a.json()["password"] for a in answers if a.status_code == 201]
    stored = await api.store.registry_entry("cab-1")
    assert stored is not None and stored.broker_hash is not None
    assert password_matches(won, stored.broker_hash)


async def test_a_revoked_cabinet_stays_revoked(api: LocalApi) -> None:
    async with api.client(Role.INSTALLER) as http:
        await http.put("/api/v1/registry/cab-1", json=BODY)
        assert (await http.post("/api/v1/registry/cab-1/revoke")).status_code == 403  # admins only
    async with api.client(Role.ADMIN) as http:
        assert (await http.post("/api/v1/registry/nobody/revoke")).status_code == 404
        done = await http.post("/api/v1/registry/cab-1/revoke")
        assert done.status_code == 200 and done.json()["outcome"] == "revoked"
        assert done.json()["entry"]["revoked"] is True
        assert (await http.post("/api/v1/registry/cab-1/revoke")).json()["outcome"] == "already revoked"
        assert (await http.get("/api/v1/registry")).json() == {"entries": []}
        [listed] = (await http.get("/api/v1/registry", params={"revoked": "true"})).json()["entries"]
        assert listed["cabinet"] == "cab-1" and listed["revoked"] is True
    async with api.client(Role.INSTALLER) as http:
        again = await http.put("/api/v1/registry/cab-1", json=BODY)
        assert again.status_code == 409 and "new id" in again.json()["detail"]
        creds = await http.post("/api/v1/registry/cab-1/broker-credentials", json={"replace": True})
        assert creds.status_code == 409


async def test_an_installer_reads_like_a_viewer_but_never_commands(api: LocalApi) -> None:
    await add_cabinet(api.store, "cab-1")
    async with api.client(Role.INSTALLER) as http:
        assert (await http.get("/api/v1/cabinets")).status_code == 200
        command = {"target": {"cabinet": "cab-1"}, "action": "switch", "args": {"on": False}}
        refused = await http.post("/api/v1/commands", json=command)
        assert refused.status_code == 403 and "operator" in refused.json()["detail"]
        assert (await http.get("/api/v1/registry")).status_code == 403
    assert await api.store.commands() == []


async def test_cabinets_carry_their_registry_fields(api: LocalApi) -> None:
    await add_cabinet(api.store, "cab-1")  # seen, registered below
    await add_cabinet(api.store, "cab-2")  # seen, never registered
    async with api.client(Role.INSTALLER) as http:
        await http.put("/api/v1/registry/cab-1", json=BODY)
        await http.put("/api/v1/registry/cab-3", json=BODY | {"town": "Talant"})  # registered, never seen
    async with api.client(Role.VIEWER) as http:
        listed = {c["id"]: c for c in (await http.get("/api/v1/cabinets")).json()}
        assert list(listed) == ["cab-1", "cab-2", "cab-3"]
        assert {k: listed["cab-1"][k] for k in ("town", "label", "latitude", "longitude")} == {
            "town": "Quetigny",
            "label": "Place Centrale",
            "latitude": 47.3156,
            "longitude": 5.1062,
        }
        assert listed["cab-1"]["registered"] is True and listed["cab-1"]["revoked"] is False
        assert listed["cab-2"]["registered"] is False and listed["cab-2"]["town"] is None
        assert listed["cab-3"]["town"] == "Talant" and listed["cab-3"]["last_seen_ms"] is None
        assert listed["cab-3"]["online"] is False
        detail = (await http.get("/api/v1/cabinets/cab-3")).json()
        assert detail["registered"] is True and detail["inventory"] == []
        one = (await http.get("/api/v1/cabinets/cab-1")).json()
        assert one["town"] == "Quetigny" and one["inventory"][0]["name"] == "lc1"
        assert (await http.get("/api/v1/cabinets/cab-9")).status_code == 404


def make_token(db: Path, role: str, name: str) -> subprocess.CompletedProcess[str]:
    command = ["central", "token", "create", "--role", role, "--name", name, "--db", str(db)]
    return subprocess.run(
        [sys.executable, "-m", "cityedge", *command],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )


async def test_the_cli_makes_an_installer_token_that_may_register(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    made = await asyncio.to_thread(make_token, db, "installer", "tech-1")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert "installer" in made.stderr and token not in made.stderr
    async with local_api(db) as local, local.client(token=token) as http:
        assert (await http.put("/api/v1/registry/cab-1", json=BODY)).status_code == 201
        assert (await http.post("/api/v1/commands", json={})).status_code == 403


class CountingStore(SqliteStore):
    """A real SQLite store that counts its registry reads."""

    registry_reads = 0

    async def registry(self, *, include_revoked: bool = False) -> list[RegistryEntry]:
        self.registry_reads += 1
        return await super().registry(include_revoked=include_revoked)

    async def registry_entry(self, cabinet: str) -> RegistryEntry | None:
        self.registry_reads += 1
        return await super().registry_entry(cabinet)


async def test_the_cabinet_list_reads_the_registry_once_whatever_its_length(tmp_path: Path) -> None:
    async with CountingStore(tmp_path / "central.db", durable=False) as store:
        for i in range(40):
            await add_cabinet(store, f"cab-{i:02d}")
            await store.put_registry(
                RegistryEntry(f"cab-{i:02d}", "Dijon", "", 47.3, 5.0, None, None, None, TS0_MS, TS0_MS, None)
            )
        token = await new_token(store, Role.VIEWER)
        app = create_app(store=store)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://central.test", headers=bearer(token)
        ) as http:
            store.registry_reads = 0
            listed = (await http.get("/api/v1/cabinets")).json()
    assert len(listed) == 40 and all(c["town"] == "Dijon" for c in listed)
    assert store.registry_reads == 1


async def test_an_installer_may_not_change_a_registered_cabinets_baselines(api: LocalApi) -> None:
    async with api.client(Role.INSTALLER) as http:
        assert (await http.put("/api/v1/registry/cab-1", json=BODY)).status_code == 201
        moved = await http.put("/api/v1/registry/cab-1", json=BODY | {"label": "moved across the street"})
        assert moved.status_code == 200 and moved.json()["outcome"] == "updated"
        for field in ("rated_power_w", "baseline_kwh_per_day"):
            changed = await http.put("/api/v1/registry/cab-1", json=BODY | {field: 1.0})
            assert changed.status_code == 403 and field in changed.json()["detail"], changed.text
    async with api.client(Role.ADMIN) as http:
        done = await http.put("/api/v1/registry/cab-1", json=BODY | {"rated_power_w": 1.0})
        assert done.status_code == 200 and done.json()["outcome"] == "updated"
        audit = (await http.get("/api/v1/audit")).json()["entries"]
    assert any("rated_power_w changed" in e["summary"] for e in audit if e["who"] == "admin-1")
