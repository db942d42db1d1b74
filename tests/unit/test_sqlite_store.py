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
from central.store.sqlite.blocks import unpack
from central.store.sqlite.migrate import migrate
from central.store.sqlite.schema import READINGS_TABLE, SCHEMA_VERSION
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
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'held'").fetchone()
        assert "WITHOUT ROWID" in sql
        assert conn.execute("SELECT sql FROM sqlite_master WHERE name = 'readings'").fetchone() is None
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


_V2_READINGS = READINGS_TABLE.format(options="WITHOUT ROWID")


async def _as_version_2(path: Path) -> None:
    """Rewrite a current file the way version 2 kept it: a row per reading, latest by reference."""
    async with SqliteStore(path) as store:
        raw = []
        with sqlite3.connect(path) as db:
            points = list(db.execute("SELECT id, name FROM points"))
            streams = dict(db.execute("SELECT id, stream FROM streams"))
        for pk, name in points:
            async for chunk in store.reading_chunks(CAB, name, start_ms=0, end_ms=2**62):
                raw += [(pk, r) for r in chunk]
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executescript(_V2_READINGS)
        seqs = {}
        for stream_pk, first_seq, data in db.execute("SELECT stream_pk, first_seq, data FROM blocks"):
            for r in unpack(stream_pk, first_seq, data):
                seqs[(r.point, r.ts, r.value)] = (stream_pk, r.seq)
        db.executemany(
            "INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*seqs[(pk, r.ts_ms, r.value)], pk, r.ts_ms, r.value, r.quality, r.reason) for pk, r in raw],
        )
        db.executescript(
            "ALTER TABLE latest_readings RENAME TO l4;"
            " CREATE TABLE latest_readings (point_pk INTEGER PRIMARY KEY, stream_pk, seq);"
            " INSERT INTO latest_readings SELECT point_pk, stream_pk, seq FROM l4; DROP TABLE l4;"
            " DROP TABLE blocks; DROP TABLE held; DROP TABLE rollups; PRAGMA user_version = 2;"
        )
        assert streams
    finally:
        db.close()


async def test_a_version_2_file_is_refused_until_migrated_then_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "central.db"
    points = ("a/x", "m/energy_wh")
    async with SqliteStore(path) as store:
        await store.write([batch(count=40, points=points), batch(first=41, count=10, points=points)])
        before = (
            await store.latest_values(CAB),
            await store.readings(CAB, "a/x", start_ms=0, end_ms=2**62, limit=1000),
            await store.rollups(CAB, "m/energy_wh", resolution="15m", start_ms=0, end_ms=2**62, limit=99),
            await store.rollups(CAB, "a/x", resolution="1d", start_ms=0, end_ms=2**62, limit=99),
        )
    await _as_version_2(path)
    with pytest.raises(StoreError, match="cityedge central migrate"):
        await SqliteStore(path).open()
    assert migrate(path) == (2, SCHEMA_VERSION)
    assert migrate(path) == (SCHEMA_VERSION, SCHEMA_VERSION)
    async with SqliteStore(path) as store:
        after = (
            await store.latest_values(CAB),
            await store.readings(CAB, "a/x", start_ms=0, end_ms=2**62, limit=1000),
            await store.rollups(CAB, "m/energy_wh", resolution="15m", start_ms=0, end_ms=2**62, limit=99),
            await store.rollups(CAB, "a/x", resolution="1d", start_ms=0, end_ms=2**62, limit=99),
        )
        assert after == before
        [again] = await store.write([batch(first=45, count=10, points=points)])  # 45..50 held already
        assert (again.readings_new, again.duplicates) == (4, 6)


async def test_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "central.db"
    async with SqliteStore(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this version"):
        await SqliteStore(path).open()


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
