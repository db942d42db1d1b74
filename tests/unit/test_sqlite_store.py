"""What only the SQLite backend promises: its file, locking, schema, indexes and upgrades (the rest of
the store's behaviour is the contract suite's, tests/contract)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from central.errors import StoreError
from central.store.rows import ReceivedBatch
from central.store.sqlite import SqliteStore
from central.store.sqlite.schema import SCHEMA_VERSION
from central.testing import TS0_MS, batch_payload
from protocols.fleet import (
    decode_data_batch,
)

CAB = "cab-1"
STREAM = "0123abcd"


def received(payload: bytes, *, received_ms: int = TS0_MS + 60_000) -> ReceivedBatch:
    batch = decode_data_batch(payload)
    return ReceivedBatch(batch, received_ms, f"cityedge/{batch.cabinet}/data", payload)


def batch(
    cabinet: str = CAB, stream: str = STREAM, first: int = 1, count: int = 10, **kw: object
) -> ReceivedBatch:
    return received(batch_payload(cabinet, stream, first, count, **kw))  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "central.db") as s:
        yield s


async def test_a_failed_transaction_leaves_nothing_and_the_store_recovers(tmp_path: Path) -> None:
    path = tmp_path / "central.db"
    async with SqliteStore(path, busy_timeout_s=0.05) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("PRAGMA busy_timeout = 0")
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
        try:
            await store.write([batch(count=3, points=("new/point",))])
        except StoreError as exc:
            assert exc.operation == "write"
            assert "locked" in exc.detail
        else:
            pytest.fail("the write should have failed while the database was locked")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # The point id handed out in the failed transaction must not be reused from a cache.
        [outcome] = await store.write([batch(count=3, points=("new/point",))])
        assert outcome.readings_new == 3
        assert [v.point for v in await store.latest_values(CAB)] == ["new/point"]


async def test_data_and_ids_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "central.db"
    async with SqliteStore(path) as store:
        await store.write([batch(count=10, points=("a/x", "b/y"))])
    async with SqliteStore(path) as store:
        [outcome] = await store.write([batch(first=5, count=10, points=("a/x", "b/y"))])
        assert (outcome.readings_new, outcome.duplicates) == (4, 6)
        assert len(await store.readings(CAB, "a/x", start_ms=0, end_ms=2**53, limit=100)) == 7
        assert (await store.totals()).readings == 14


async def test_two_stores_on_one_file_like_two_workers(tmp_path: Path) -> None:
    path = tmp_path / "central.db"
    async with SqliteStore(path) as one, SqliteStore(path) as two:
        results = await asyncio.gather(
            *(s.write([batch(first=1 + 10 * (i % 3), count=10)]) for i, s in enumerate([one, two] * 6))
        )
        assert sum(o.readings_new for [o] in results) == 30
        assert (await two.totals()).readings == 30


async def test_schema_settings(store: SqliteStore) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'readings'").fetchone()
        assert "WITHOUT ROWID" in sql
    finally:
        conn.close()


async def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "central.db")
    with pytest.raises(StoreError, match="not open"):
        await store.cabinets()
    await store.open()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.write([batch()])


async def test_an_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match="open"):
        await SqliteStore(tmp_path / "file" / "central.db").open()


async def test_a_database_from_before_latest_readings_gets_them_on_open(tmp_path: Path) -> None:
    path = tmp_path / "central.db"
    async with SqliteStore(path) as store:
        await store.write([batch(count=6, points=("a/x", "b/y"))])
    with sqlite3.connect(path) as db:  # what an older version left: readings, no latest_readings
        db.execute("DROP TABLE latest_readings")
    async with SqliteStore(path) as store:
        latest = {v.point: v.value for v in await store.latest_values(CAB)}
        assert latest == {"a/x": 5.0, "b/y": 6.0}
        await store.write([batch(first=7, count=1, points=("a/x",))])
        assert {v.point: v.value for v in await store.latest_values(CAB)} == {"a/x": 7.0, "b/y": 6.0}


async def test_schema_version_and_the_indexes_the_hot_queries_use(store: SqliteStore) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)

        def plan(sql: str, *params: object) -> str:
            return " ".join(str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))

        assert "commands_status" in plan(
            "SELECT id FROM commands WHERE status = 'pending' AND not_after >= ?", 0
        )
        assert "events_cabinet_kind_source_seq" in plan(
            "SELECT min(source) FROM events WHERE cabinet = ? AND kind = ? AND source > ?", CAB, "k", ""
        )
        assert "events_cabinet_kind_source_seq" in plan(
            "SELECT stream_pk, seq FROM events WHERE cabinet = ? AND kind = ? AND source = ?"
            " ORDER BY stream_pk DESC, seq DESC LIMIT 1",
            *(CAB, "k", "s"),
        )
        assert "alarms_active" in plan("SELECT * FROM alarms WHERE active = 1 ORDER BY updated_ms DESC")
    finally:
        conn.close()
