"""Retention in a running central: its periodic task deletes old raw readings, the rollups stay, and
the range API answers the same from them; long ranges come from rollups."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from central.config import Retention
from central.server import CentralServer
from central.store.rows import ReceivedBatch
from central.store.sqlite import SqliteStore
from central.testing import wait_until
from cityedge.broker import MosquittoBroker
from protocols.fleet import Reading, decode_data_batch, encode, encode_data_batch
from tests.integration.api_client import api_client

pytestmark = pytest.mark.integration

CAB = "cab-1"
DAY = 86_400_000
T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
NOW = T0 + 6 * DAY
ENERGY_DAYS = {"start": "2024-05-01", "end": "2024-05-05", "tz": "UTC"}


def _batch(readings: list[Reading]) -> ReceivedBatch:
    payload = encode_data_batch(
        cabinet=CAB,
        stream="0123abcd",
        first=readings[0].seq,
        last=readings[-1].seq,
        readings=[encode(r) for r in readings],
    )
    return ReceivedBatch(decode_data_batch(payload), readings[-1].ts + 1000, f"cityedge/{CAB}/data", payload)


async def _fill(path: Path) -> None:
    """Five days of a power point and an energy counter, one reading of each every 10 minutes."""
    rows: list[Reading] = []
    for i in range(5 * 144):
        ts = T0 + i * 600_000
        rows.append(Reading(2 * i + 1, "lc1/power_w", ts, float(i % 50)))
        rows.append(Reading(2 * i + 2, "m1/energy_wh", ts, float(i * 40)))
    async with SqliteStore(path) as store:
        for start in range(0, len(rows), 200):
            await store.write([_batch(rows[start : start + 200])])


async def _ranges(client: httpx.AsyncClient) -> dict[str, object]:
    answers: dict[str, object] = {}
    for point in ("lc1/power_w", "m1/energy_wh"):
        for resolution in ("15m", "1d", "auto"):
            response = await client.get(
                f"/cabinets/{CAB}/points/{point}/readings",
                params={"start": T0, "end": T0 + 5 * DAY, "resolution": resolution, "limit": 10_000},
            )
            assert response.status_code == 200, response.text
            answers[f"{point} {resolution}"] = response.json()
    return answers


async def test_old_raw_readings_go_rollups_stay_and_the_api_answers_the_same(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    path = tmp_path / "central.db"
    await _fill(path)
    retention = Retention(days=3, interval_s=0.05, batch=100)
    async with CentralServer(
        db=path, broker_url=mosquitto.url, http_port=0, retention=retention, clock=lambda: NOW
    ) as server:
        store = server.store
        await wait_until(
            lambda: server.purged == 3 * 144 * 2, what="the readings older than 3 days deleted", timeout=20
        )
        async with api_client(server) as client:
            after = await _ranges(client)
            raw = (
                await client.get(
                    f"/cabinets/{CAB}/points/lc1/power_w/readings",
                    params={"start": T0, "end": T0 + 5 * DAY, "resolution": "raw", "limit": 10_000},
                )
            ).json()
            latest = (await client.get(f"/cabinets/{CAB}/points")).json()
            energy = (await client.get(f"/cabinets/{CAB}/energy", params=ENERGY_DAYS)).json()
        assert min(r["ts_ms"] for r in raw["readings"]) == NOW - 3 * DAY
        assert len(raw["readings"]) == 2 * 144
        assert await store.purge_readings(before_ms=NOW - 3 * DAY, limit=100) == (0, True)
    # The same answers from a central that never deleted anything.
    fresh = tmp_path / "fresh.db"
    await _fill(fresh)
    async with (
        CentralServer(db=fresh, broker_url=mosquitto.url, http_port=0) as server,
        api_client(server) as client,
    ):
        before = await _ranges(client)
        assert (await client.get(f"/cabinets/{CAB}/points")).json() == latest
        # A max_power_w of its own makes the energy endpoint read the raw readings: the same days.
        raw_energy = (
            await client.get(f"/cabinets/{CAB}/energy", params={**ENERGY_DAYS, "max_power_w": 99_999})
        ).json()
    assert energy["days"] == raw_energy["days"] and energy["points"] == raw_energy["points"]
    assert [d["kwh"] for d in energy["days"]] == [5.76] * 4 + [5.72]
    assert after == before
    power_days = after["lc1/power_w 1d"]
    assert isinstance(power_days, dict)
    assert power_days["resolution"] == "1d" and power_days["readings"] == []
    assert [(b["count"], b["min"], b["max"]) for b in power_days["buckets"]] == [(144, 0.0, 49.0)] * 5
    energy_days = after["m1/energy_wh 1d"]
    assert isinstance(energy_days, dict)
    # 40 Wh every 10 minutes: 5,760 Wh a day, the last day's last interval past the range included.
    assert [b["energy_wh"] for b in energy_days["buckets"]] == [5760.0] * 4 + [5720.0]
    auto = after["lc1/power_w auto"]
    assert isinstance(auto, dict) and auto["resolution"] == "15m"
