"""Large API answers travel compressed to a client that accepts it; small ones and the live stream
as they are (the stream is read as it comes: tests/integration/test_live_stream.py sends
``Accept-Encoding: gzip`` too, as every httpx client does)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from central.store.auth_rows import Role
from central.store.rows import ReceivedStatus
from central.store.sqlite import SqliteStore
from central.testing import TS0_MS
from protocols.fleet import PROTOCOL_VERSION, Status
from tests.integration.api_client import local_api

pytestmark = pytest.mark.integration


async def _cabinets(store: SqliteStore, count: int) -> None:
    statuses = [
        ReceivedStatus(Status(v=PROTOCOL_VERSION, cabinet=f"cab-{i:04d}", online=True, ts=TS0_MS), TS0_MS)
        for i in range(count)
    ]
    await store.write([], statuses)


async def test_a_large_cabinet_list_is_gzipped_and_a_small_answer_is_not(tmp_path: Path) -> None:
    async with local_api(tmp_path / "central.db") as api:
        await _cabinets(api.store, 200)
        async with api.client(Role.VIEWER) as http:
            plain = await http.get("/api/v1/cabinets", headers={"Accept-Encoding": "identity"})
            packed = await http.get("/api/v1/cabinets", headers={"Accept-Encoding": "gzip"})
            small = await http.get("/api/v1/whoami", headers={"Accept-Encoding": "gzip"})
        assert plain.status_code == packed.status_code == 200
        assert "content-encoding" not in plain.headers
        assert packed.headers["content-encoding"] == "gzip"
        assert packed.json() == plain.json()  # httpx decodes it
        assert len(gzip.compress(plain.content)) < len(plain.content) / 4
        assert "content-encoding" not in small.headers
