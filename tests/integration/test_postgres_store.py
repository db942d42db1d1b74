"""What only the PostgreSQL backend has: migrations, day partitions, concurrent workers, its refusals.

Each test gets a database of its own on the server of tests/contract/backends.py (skipped, saying
why, when there is none), dropped at the end.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from central.errors import StoreError
from central.store.auth_rows import AuditEntry
from central.store.postgres import PostgresStore
from central.store.postgres import partitions as parts
from central.store.postgres.migrations import migrate_database
from central.store.postgres.schema import SCHEMA_VERSION
from central.store.rows import QuarantineEntry, ReceivedBatch, ReceivedStatus
from central.testing import TS0_MS, batch_payload
from protocols.fleet import (
    PROTOCOL_VERSION,
    DataBatch,
    Reading,
    Status,
    decode_data_batch,
    encode,
    encode_data_batch,
)
from protocols.quality import Quality
from tests.contract.backends import PgServer

pytestmark = pytest.mark.integration

CAB = "cab-1"
STREAM = "0123abcd"
DAY = parts.DAY_MS


@pytest.fixture(scope="module")
def server() -> PgServer:
    found = PgServer()
    if found.unavailable is not None:
        pytest.skip(found.unavailable)
    return found


@pytest.fixture
def dsn(server: PgServer) -> Iterator[str]:
    name = server.create_database("cityedge_pgtest")
    try:
        yield server.dsn_of(name)
    finally:
        server.drop_database(name)


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(dsn, migrate=True) as opened:
        yield opened


def readings_batch(readings: list[Reading], received_ms: int, stream: str = STREAM) -> ReceivedBatch:
    payload = encode_data_batch(
        cabinet=CAB,
        stream=stream,
        first=readings[0].seq,
        last=readings[-1].seq,
        readings=[encode(r) for r in readings],
    )
    return ReceivedBatch(decode_data_batch(payload), received_ms, f"cityedge/{CAB}/data", payload)


async def partition_days(dsn: str) -> set[int]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await parts.existing_days(conn)


async def count(dsn: str, table: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {table}")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


def cityedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cityedge", *args], capture_output=True, text=True, timeout=60, check=False
    )


async def test_a_database_behind_is_refused_until_migrated(dsn: str) -> None:
    with pytest.raises(StoreError, match="cityedge central migrate") as caught:
        async with PostgresStore(dsn):
            pass
    assert f"version 0 and this build needs {SCHEMA_VERSION}" in str(caught.value)
    url = "postgresql://postgres@127.0.0.1:5432/" + psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    if "host=127.0.0.1" not in dsn.replace("'", ""):
        pytest.skip("the CLI part needs the default test server")
    served = cityedge(
        "central", "serve", "--db", url, "--broker", "mqtt://127.0.0.1:1", "--http", "127.0.0.1:0"
    )
    assert served.returncode == 2 and "run `cityedge central migrate --db" in served.stderr
    migrated = cityedge("central", "migrate", "--db", url)
    assert migrated.returncode == 0, migrated.stderr
    assert f"migrated from version 0 to {SCHEMA_VERSION}" in migrated.stderr
    again = cityedge("central", "migrate", "--db", url)
    assert f"already at version {SCHEMA_VERSION}" in again.stderr
    async with PostgresStore(dsn) as opened:
        assert (await opened.totals()).readings == 0


async def test_two_migrations_at_once_apply_each_migration_once(dsn: str) -> None:
    (_, applied_a), (_, applied_b) = await asyncio.gather(migrate_database(dsn), migrate_database(dsn))
    assert sorted([len(applied_a), len(applied_b)]) == [0, SCHEMA_VERSION]
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version"
        )
        assert await cur.fetchall() == [(v, 1) for v in range(1, SCHEMA_VERSION + 1)]


async def test_readings_go_to_day_partitions_made_as_data_arrives(store: PostgresStore, dsn: str) -> None:
    received = TS0_MS + 3 * DAY
    readings = [Reading(i + 1, "lc1/power_w", TS0_MS + i * DAY + 5, float(i), Quality.GOOD) for i in range(3)]
    [outcome] = await store.write([readings_batch(readings, received)])
    assert outcome.readings_new == 3
    assert await partition_days(dsn) == {parts.day_of(TS0_MS) + i for i in range(3)}
    assert await count(dsn, "readings_default") == 0
    rows = await store.readings(CAB, "lc1/power_w", start_ms=0, end_ms=2**62, limit=10)
    assert [r.value for r in rows] == [0.0, 1.0, 2.0]


async def test_hostile_stamps_make_no_partitions_and_are_kept(store: PostgresStore, dsn: str) -> None:
    received = TS0_MS
    # 1970, 2099, and a thousand distinct days far from central's clock.
    stamps = [0, 4_070_908_800_000] + [TS0_MS + (400 + d) * DAY for d in range(1000)]
    stamps += [TS0_MS - (400 + d) * DAY for d in range(1000)]
    readings = [Reading(i + 1, "lc1/power_w", ts, float(i), Quality.GOOD) for i, ts in enumerate(stamps)]
    [outcome] = await store.write([readings_batch(readings, received)])
    assert outcome.readings_new == len(stamps)
    assert await partition_days(dsn) == set()
    assert await count(dsn, "readings_default") == len(stamps)
    [again] = await store.write([readings_batch(readings, received)])
    assert (again.readings_new, again.duplicates) == (0, len(stamps))
    rows = await store.readings(CAB, "lc1/power_w", start_ms=0, end_ms=2**62, limit=5000)
    assert len(rows) == len(stamps)


async def test_a_partition_made_late_takes_its_rows_from_the_default_one(
    store: PostgresStore, dsn: str
) -> None:
    ahead = TS0_MS + 3 * DAY  # a clock three days fast: out of the window, to the default partition
    await store.write([readings_batch([Reading(1, "lc1/power_w", ahead, 1.0, Quality.GOOD)], TS0_MS)])
    assert await count(dsn, "readings_default") == 1
    # Three days later that day is today: its partition is made, and takes the early row with it.
    later = readings_batch([Reading(2, "lc1/power_w", ahead + 10, 2.0, Quality.GOOD)], ahead)
    await store.write([later])
    assert parts.day_of(ahead) in await partition_days(dsn)
    assert await count(dsn, "readings_default") == 0
    assert await count(dsn, parts.partition_name(parts.day_of(ahead))) == 2
    rows = await store.readings(CAB, "lc1/power_w", start_ms=ahead, end_ms=ahead + DAY, limit=10)
    assert [r.value for r in rows] == [1.0, 2.0]
    # A second store (another worker) knows nothing of it and finds it in the catalog.
    async with PostgresStore(dsn) as other:
        await other.write([readings_batch([Reading(3, "lc1/power_w", ahead + 20, 3.0, Quality.GOOD)], ahead)])
    assert await count(dsn, "readings") == 3


def _unstorable(*, seq: int) -> ReceivedBatch:
    """A batch of one text reading PostgreSQL cannot hold (a NUL in it)."""
    nul = Reading(seq=seq, point="lc1/label", ts=TS0_MS, value="a\x00b", quality=Quality.GOOD)
    payload = encode_data_batch(cabinet=CAB, stream=STREAM, first=seq, last=seq, readings=[encode(nul)])
    batch = DataBatch(v=PROTOCOL_VERSION, cabinet=CAB, stream=STREAM, first=seq, last=seq, readings=[nul])
    return ReceivedBatch(batch, TS0_MS, f"cityedge/{CAB}/data", payload)


async def test_a_text_postgresql_cannot_hold_quarantines_that_batch_only(store: PostgresStore) -> None:
    bad = _unstorable(seq=1)
    good = ReceivedBatch(
        decode_data_batch(batch_payload(CAB, "abcdef99", 1, 4)), TS0_MS, f"cityedge/{CAB}/data", b""
    )
    outcomes = await store.write([good, bad, good])
    assert outcomes[1].unstorable is not None and "NUL" in outcomes[1].unstorable
    assert [(o.readings_new, o.duplicates) for o in (outcomes[0], outcomes[2])] == [(4, 0), (0, 4)]
    [row] = await store.quarantine()
    assert row.reason == "unstorable" and await store.quarantine_payload(row.id) == bad.payload
    totals = await store.totals()
    assert (totals.readings, totals.quarantined) == (4, 1)


async def test_batches_written_one_by_one_in_a_transaction_each_merge_their_rollups_once(
    store: PostgresStore,
) -> None:
    # A refused batch makes the group go batch by batch in one transaction: the rollups and latest
    # values are staged and merged once per batch, and a merge must take only its own batch's rows.
    bad = _unstorable(seq=100)
    first, second = (
        ReceivedBatch(
            decode_data_batch(batch_payload(CAB, STREAM, seq, 4)), TS0_MS, f"cityedge/{CAB}/data", b""
        )
        for seq in (1, 5)
    )
    outcomes = await store.write([first, bad, second])
    assert [o.readings_new for o in outcomes] == [4, 0, 4] and outcomes[1].unstorable is not None
    for resolution in ("15m", "1d"):
        [rollup] = await store.rollups(
            CAB, "lc1/power_w", resolution=resolution, start_ms=0, end_ms=2 * TS0_MS, limit=10
        )
        assert (rollup.count, rollup.sum, rollup.min, rollup.max) == (8, 36.0, 1.0, 8.0)
        assert rollup.last_seq == 8
    [latest] = await store.latest_values(CAB)
    assert (latest.point, latest.value) == ("lc1/power_w", 8.0)
    # The next group, the usual way: the stage holds nothing of the last transaction.
    [outcome] = await store.write(
        [
            ReceivedBatch(
                decode_data_batch(batch_payload(CAB, STREAM, 9, 2)), TS0_MS, f"cityedge/{CAB}/data", b""
            )
        ]
    )
    assert outcome.readings_new == 2
    [rollup] = await store.rollups(
        CAB, "lc1/power_w", resolution="15m", start_ms=0, end_ms=2 * TS0_MS, limit=10
    )
    assert (rollup.count, rollup.sum, rollup.last_seq) == (10, 55.0, 10)


async def test_workers_writing_the_same_cabinets_in_opposite_orders_never_lose_a_record(dsn: str) -> None:
    cabinets = [f"cab-{i:02d}" for i in range(20)]

    def group(order: list[str], first: int) -> list[ReceivedBatch]:
        return [
            ReceivedBatch(
                decode_data_batch(batch_payload(c, STREAM, first, 50, points=("a/x", "b/y"))),
                TS0_MS + 60_000,
                f"cityedge/{c}/data",
                b"",
            )
            for c in order
        ]

    async with PostgresStore(dsn, migrate=True) as one, PostgresStore(dsn) as two:

        async def work(store: PostgresStore, order: list[str]) -> int:
            new = 0
            for k in range(10):  # both write the same records: each is stored once
                new += sum(o.readings_new for o in await store.write(group(order, k * 50 + 1)))
            return new

        stored = await asyncio.gather(work(one, cabinets), work(two, cabinets[::-1]))
        assert sum(stored) == len(cabinets) * 500
        totals = await one.totals()
        assert (totals.readings, totals.cabinets) == (len(cabinets) * 500, len(cabinets))
        latest = {v.point: v.value for v in await two.latest_values("cab-07")}
        assert latest == {"a/x": 499.0, "b/y": 500.0}


async def test_no_password_in_an_error(server: PgServer) -> None:
    store = PostgresStore("postgresql://postgres:s3cr3t-pw@127.0.0.1:1/nowhere", connect_timeout_s=2)
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert "s3cr3t-pw" not in str(caught.value)
    assert "postgres:***@127.0.0.1:1" in str(caught.value)
    keyed = PostgresStore(
        "host=127.0.0.1 port=1 user=postgres password=s3cr3t-pw dbname=x", connect_timeout_s=2
    )
    with pytest.raises(StoreError) as caught:
        await keyed.open()
    assert "s3cr3t-pw" not in str(caught.value) and "password=***" in str(caught.value)


async def test_a_record_another_worker_commits_during_the_copy_is_stored_once(
    store: PostgresStore, dsn: str
) -> None:
    def received(first: int, count: int) -> ReceivedBatch:
        payload = batch_payload(CAB, STREAM, first, count)
        return ReceivedBatch(decode_data_batch(payload), TS0_MS + 60_000, f"cityedge/{CAB}/data", payload)

    await store.write([received(1, 5)])  # the stream and the point exist now
    later = received(6, 5)
    reading = later.batch.readings[2]
    async with await psycopg.AsyncConnection.connect(dsn) as other:
        # "Another worker" stores one of the records and has not committed when the COPY runs: the
        # probe cannot see it, the COPY waits on its key, then fails once it commits.
        await other.execute(
            "INSERT INTO readings (stream_pk, seq, point_pk, ts, quality, vf)"
            " SELECT s.id, %s, p.id, %s, 0, %s FROM streams AS s, points AS p",
            (reading.seq, reading.ts, reading.value),
        )
        write = asyncio.create_task(store.write([later]))
        async with asyncio.timeout(20):
            while True:
                cur = await other.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                )
                row = await cur.fetchone()
                if row is not None and row[0] > 0:
                    break
                await asyncio.sleep(0.02)
        await other.commit()
    [outcome] = await asyncio.wait_for(write, 20)
    assert (outcome.readings_new, outcome.duplicates) == (4, 1)
    assert await count(dsn, "readings") == 10
    rows = await store.readings(CAB, "lc1/power_w", start_ms=0, end_ms=2**62, limit=20)
    assert [r.ts_ms - TS0_MS for r in rows] == list(range(1, 11))


async def test_days_past_retention_are_dropped_whole_and_rollups_stay(store: PostgresStore, dsn: str) -> None:
    t0 = parts.day_of(TS0_MS) * DAY
    # Five days of two points, every 10 minutes; the only reading of "old/x" is on day 0.
    rows = [Reading(i + 1, f"p{i % 2}/v", t0 + i * 600_000, float(i), Quality.GOOD) for i in range(5 * 144)]
    rows.append(Reading(5 * 144 + 1, "old/x", t0 + 5, 1.0, Quality.GOOD))
    for part in range(0, len(rows), 100):
        await store.write([readings_batch(rows[part : part + 100], t0 + 5 * DAY)])
    assert len(await partition_days(dsn)) == 5
    quarters = await store.rollups(CAB, "p0/v", resolution="15m", start_ms=0, end_ms=2**62, limit=10_000)
    latest = await store.latest_values(CAB)
    horizon = t0 + 3 * DAY
    kept = await store.readings(CAB, "p1/v", start_ms=horizon, end_ms=2**62, limit=10_000)

    dropped = await store.drop_days_before(horizon + 5)  # day 3 is cut by the horizon: not dropped
    assert dropped == 3 * 144 + 1
    assert await partition_days(dsn) == {parts.day_of(t0) + d for d in (3, 4)}
    assert (
        await store.rollups(CAB, "p0/v", resolution="15m", start_ms=0, end_ms=2**62, limit=10_000) == quarters
    )
    assert await store.latest_values(CAB) == latest  # old/x's value too: latest values are kept apart
    assert await store.readings(CAB, "p1/v", start_ms=horizon, end_ms=2**62, limit=10_000) == kept
    assert await store.readings(CAB, "old/x", start_ms=0, end_ms=2**62, limit=5) == []
    assert await store.drop_days_before(horizon + 5) == 0  # idempotent
    # What the horizon cuts is for the bounded purge; a day it empties is dropped with its last rows.
    purged = await store.purge_readings(before_ms=horizon + 5, limit=100)
    assert (purged.deleted, purged.done) == (1, True)
    assert await partition_days(dsn) == {parts.day_of(t0) + d for d in (3, 4)}
    await store.purge_readings(before_ms=horizon + DAY, limit=100)
    await store.purge_readings(before_ms=horizon + DAY, limit=100)
    assert await partition_days(dsn) == {parts.day_of(t0) + 4}
    # A backlog for a dropped day still within the partition window (retention here is shorter than
    # the window) gets the day's partition made again.
    late = readings_batch([Reading(10_000, "p0/v", t0 + 7, 9.0, Quality.GOOD)], t0 + 5 * DAY)
    [outcome] = await store.write([late])
    assert outcome.readings_new == 1
    assert await count(dsn, parts.partition_name(parts.day_of(t0))) == 1


async def test_a_nul_in_a_status_or_about_a_message_never_stops_ingest(store: PostgresStore) -> None:
    # Valid on the wire, refused by a PostgreSQL text: the status is quarantined, the batch beside it
    # stored; what central writes about a message (quarantine detail, audit) keeps a U+FFFD instead.
    birth = Status(v=PROTOCOL_VERSION, cabinet=CAB, online=True, ts=TS0_MS, version="1.0\x00evil")
    payload = encode(birth)
    good = ReceivedBatch(
        decode_data_batch(batch_payload(CAB, STREAM, 1, 3)), TS0_MS, f"cityedge/{CAB}/data", b""
    )
    junk = QuarantineEntry(TS0_MS, "cityedge/x/data", "malformed", "bad byte \x00 here", b"\x00")
    [outcome] = await store.write(
        [good], [ReceivedStatus(birth, TS0_MS, f"cityedge/{CAB}/status", payload)], [junk]
    )
    assert outcome.readings_new == 3
    rows = await store.quarantine()
    assert sorted(r.reason for r in rows) == ["malformed", "unstorable"]
    refused = next(r for r in rows if r.reason == "unstorable")
    assert "status" in refused.detail and await store.quarantine_payload(refused.id) == payload
    assert next(r for r in rows if r.reason == "malformed").detail == "bad byte \ufffd here"
    cabinet = await store.cabinet(CAB)
    assert cabinet is not None and cabinet.version == ""  # the refused birth changed nothing
    await store.add_audit(AuditEntry(TS0_MS, None, None, "GET", "/api/v1/x\x00y", "probe", None, 404))
    [entry] = await store.audit()
    assert entry.entry.path == "/api/v1/x\ufffdy"


def test_psycopg_is_loaded_only_for_a_postgresql_url(tmp_path: object) -> None:
    probe = (
        "import sys; import central.server, edge_agent; from central.store import open_store;"
        " s = open_store(sys.argv[1]); print(type(s).__name__, 'psycopg' in sys.modules)"
    )

    def run(url: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe, url], capture_output=True, text=True, timeout=60, check=True
        )
        return done.stdout.strip()

    assert run(f"sqlite:///{tmp_path}/x.db") == "SqliteStore False"
    assert run("postgresql://cityedge@db.example/cityedge") == "PostgresStore True"


async def test_long_reads_walk_across_day_partitions_and_the_default_one_in_order(
    store: PostgresStore, dsn: str
) -> None:
    t0 = parts.day_of(TS0_MS) * DAY
    stamps = [t0 + d * DAY + i * 7_000 for d in range(3) for i in range(9_000)] + [5, t0 + 400 * DAY]
    readings = [Reading(i + 1, "m/energy_wh", ts, float(i), Quality.GOOD) for i, ts in enumerate(stamps)]
    for part in range(0, len(readings), 5_000):
        await store.write([readings_batch(readings[part : part + 5_000], t0 + 3 * DAY)])
    assert len(await partition_days(dsn)) == 3 and await count(dsn, "readings_default") == 2
    chunks = [c async for c in store.reading_chunks(CAB, "m/energy_wh", start_ms=0, end_ms=2**62)]
    walked = [r.ts_ms for chunk in chunks for r in chunk]
    assert walked == sorted(stamps) and max(len(c) for c in chunks) <= 10_000
    inside = store.reading_chunks(CAB, "m/energy_wh", start_ms=t0 + DAY, end_ms=t0 + 2 * DAY, neighbours=True)
    got = [r.ts_ms async for chunk in inside for r in chunk]
    assert got == [t0 + 8_999 * 7_000, *(t0 + DAY + i * 7_000 for i in range(9_000)), t0 + 2 * DAY]


async def test_migration_3_holds_the_seqs_a_database_stored_before_it(dsn: str) -> None:
    # A database at version 2 with readings (seq 1..5, 8), an event (9) and a result (20).
    (_, applied) = await migrate_database(dsn)
    assert applied  # then rolled back to version 2, as a database made by the previous build
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            "DROP TABLE held, alarm_notes, alarm_episodes, alarm_marks, registry, kpi_changes, kpi_days"
        )
        await conn.execute("DELETE FROM schema_migrations WHERE version >= 3")
        await conn.execute(
            "INSERT INTO streams (cabinet, stream) VALUES (%s, %s), ('cab-2', 'x')", (CAB, STREAM)
        )
        await conn.execute(
            "INSERT INTO readings (stream_pk, seq, point_pk, ts, quality, vf)"
            " SELECT 1, s, 1, %s + s, 0, s FROM unnest(array[1, 2, 3, 4, 5, 8]) AS s",
            (TS0_MS,),
        )
        await conn.execute(
            "INSERT INTO events VALUES (1, 9, %s, %s, 'lc1', 'k', 'info', 'm', '{}'), "
            " (2, 3, 'cab-2', %s, 'lc1', 'k', 'info', 'm', '{}')",
            (CAB, TS0_MS, TS0_MS),
        )
        await conn.execute(
            "INSERT INTO command_results VALUES (1, 20, %s, %s, 'c1', 'executed', NULL)", (CAB, TS0_MS)
        )
    before, applied = await migrate_database(dsn)
    assert (before, [m.version for m in applied]) == (2, [3, 4])
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT stream_pk, lo, hi FROM held ORDER BY 1, 2")
        assert await cur.fetchall() == [(1, 1, 5), (1, 8, 9), (1, 20, 20), (2, 3, 3)]


async def test_a_resend_with_other_stamps_waits_for_the_first_write_then_is_a_duplicate(
    store: PostgresStore, dsn: str
) -> None:
    def received(shift_ms: int) -> ReceivedBatch:
        rows = [
            Reading(s, "lc1/power_w", TS0_MS + s + shift_ms, float(s + shift_ms), Quality.GOOD)
            for s in range(1, 11)
        ]
        return readings_batch(rows, TS0_MS + 60_000)

    await store.write([readings_batch([Reading(100, "lc1/power_w", TS0_MS, 0.0, Quality.GOOD)], TS0_MS)])
    async with await psycopg.AsyncConnection.connect(dsn) as other:
        # Another worker holds the cabinet's row (its write is under way): this write waits for it.
        await other.execute("SELECT 1 FROM cabinets WHERE id = %s FOR UPDATE", (CAB,))
        first = asyncio.create_task(store.write([received(0)]))
        async with asyncio.timeout(20):
            while True:
                cur = await other.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                )
                row = await cur.fetchone()
                if row is not None and row[0] > 0:
                    break
                await asyncio.sleep(0.02)
        second = asyncio.create_task(store.write([received(7_000)]))
        await asyncio.sleep(0)
        await other.commit()
    outcomes = [o for [o] in await asyncio.wait_for(asyncio.gather(first, second), 20)]
    assert sorted((o.readings_new, o.duplicates) for o in outcomes) == [(0, 10), (10, 0)]
    assert await count(dsn, "readings") == 11
