"""``cityedge central migrate`` on SQLite: a file of the previous version is upgraded in place, its
rollups computed from the readings it holds, the same as ingest computes them."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from central.store.rows import RESOLUTIONS, ReceivedBatch
from central.store.sqlite import SqliteStore
from central.store.sqlite.schema import SCHEMA_VERSION
from central.testing import TS0_MS
from protocols.fleet import Reading, decode_data_batch, encode, encode_data_batch
from protocols.quality import Quality

pytestmark = pytest.mark.integration
CAB = "cab-1"


def cityedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cityedge", *args], capture_output=True, text=True, timeout=60, check=False
    )


def batch(readings: list[Reading]) -> ReceivedBatch:
    payload = encode_data_batch(
        cabinet=CAB,
        stream="0123abcd",
        first=readings[0].seq,
        last=readings[-1].seq,
        readings=[encode(r) for r in readings],
    )
    return ReceivedBatch(decode_data_batch(payload), TS0_MS + 3 * 86_400_000, f"cityedge/{CAB}/data", payload)


async def test_a_file_of_the_previous_version_is_upgraded_with_its_rollups(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    rows = [
        Reading(
            i + 1, ("m1/energy_wh", "lc1/power_w")[i % 2], TS0_MS + i * 400_000, float(i * 3), Quality.GOOD
        )
        for i in range(600)  # about three days
    ]
    async with SqliteStore(db) as store:
        for part in range(0, len(rows), 100):
            await store.write([batch(rows[part : part + 100])])
        expected = {
            (point, res): await store.rollups(
                CAB, point, resolution=res, start_ms=0, end_ms=2**62, limit=10_000
            )
            for point in ("m1/energy_wh", "lc1/power_w")
            for res in RESOLUTIONS
        }
    # What the previous version left: the same file without rollups.
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE rollups")
        conn.execute("PRAGMA user_version = 2")
    served = cityedge("central", "serve", "--db", f"sqlite:///{db}", "--broker", "mqtt://127.0.0.1:1")
    assert served.returncode == 2 and "cityedge central migrate" in served.stderr

    migrated = cityedge("central", "migrate", "--db", f"sqlite:///{db}")
    assert migrated.returncode == 0, migrated.stderr
    assert f"migrated from version 2 to {SCHEMA_VERSION}" in migrated.stderr
    assert f"already at version {SCHEMA_VERSION}" in cityedge("central", "migrate", "--db", str(db)).stderr
    async with SqliteStore(db) as store:
        for (point, res), rollups in expected.items():
            got = await store.rollups(CAB, point, resolution=res, start_ms=0, end_ms=2**62, limit=10_000)
            assert got == rollups, (point, res)
        assert (await store.totals()).readings == len(rows)


def test_a_new_file_is_created_at_this_version(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "new.db"
    done = cityedge("central", "migrate", "--db", f"sqlite:///{db}")
    assert done.returncode == 0, done.stderr
    assert f"migrated from version 0 to {SCHEMA_VERSION}" in done.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
