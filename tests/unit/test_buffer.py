"""The SQLite buffer on a real file: sequence numbers, batched commits, acks, the size cap."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer
from protocols.fleet import Event, Reading, decode_record, encode
from protocols.quality import Quality


def clock() -> int:
    return 1_700_000_000_000


async def test_records_get_increasing_seqs_and_reach_disk_only_on_flush(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=clock) as buffer:
        assert buffer.append_reading("lc1/power_w", 1, 10.5) == 1
        assert buffer.append_event(ts=2, source="lc1", kind="door_open", severity="alarm", message="x") == 2
        assert await buffer.read_batch(0, 100) is None  # not committed yet
        await buffer.flush()
        batch = await buffer.read_batch(0, 100)
        assert batch is not None
        assert (batch.first, batch.last, len(batch.readings), len(batch.events)) == (1, 2, 1, 1)
        assert decode_record(Reading, batch.readings[0]) == Reading(1, "lc1/power_w", 1, 10.5)
        assert decode_record(Event, batch.events[0]).kind == "door_open"


async def test_reopen_keeps_stream_and_seq_and_counts_boots(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    async with Buffer(path, max_bytes=10**7, clock_ms=clock) as buffer:
        stream = buffer.stream
        for i in range(5):
            buffer.append_reading("lc1/power_w", i, i)
        await buffer.flush()
        buffer.mark_acked(1, 5)
        await buffer.flush()
        assert buffer.backlog == 0
    async with Buffer(path, max_bytes=10**7, clock_ms=clock) as buffer:
        assert buffer.stream == stream
        assert buffer.boot_count == 2
        # Every record was acknowledged and deleted; numbering still continues, never restarts.
        assert buffer.append_reading("lc1/power_w", 9, 9) == 6


async def test_new_file_is_a_new_stream(tmp_path: Path) -> None:
    async with (
        Buffer(tmp_path / "a.db", max_bytes=10**7, clock_ms=clock) as a,
        Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=clock) as b,
    ):
        assert a.stream != b.stream


async def test_uncommitted_records_are_not_sent_and_crash_loses_only_them(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    buffer = Buffer(path, max_bytes=10**7, clock_ms=clock)
    await buffer.open()
    buffer.append_reading("lc1/power_w", 1, 1.0)
    await buffer.flush()
    buffer.append_reading("lc1/power_w", 2, 2.0)  # never flushed: the "power cut" below loses it
    # Simulate a crash: no close(), open the file again from another connection.
    async with Buffer(path, max_bytes=10**7, clock_ms=clock) as again:
        batch = await again.read_batch(0, 10)
        assert batch is not None and (batch.first, batch.last) == (1, 1)
        assert again.append_reading("lc1/power_w", 3, 3.0) == 2
    buffer._executor.shutdown()


async def test_ack_deletes_exactly_the_range(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=clock) as buffer:
        for i in range(10):
            buffer.append_reading("lc1/power_w", i, i)
        await buffer.flush()
        buffer.mark_acked(3, 6)
        await buffer.flush()
        assert buffer.backlog == 6
        first = await buffer.read_batch(0, 100)
        assert first is not None
        seqs = [decode_record(Reading, body).seq for body in first.readings]
        assert seqs == [1, 2, 7, 8, 9, 10]


async def test_resend_of_a_range_covers_the_original_range(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=clock) as buffer:
        for i in range(10):
            buffer.append_reading("lc1/power_w", i, i)
        await buffer.flush()
        buffer.mark_acked(1, 2)
        await buffer.flush()
        again = await buffer.read_range(1, 5)
        assert again is not None
        assert (again.first, again.last, len(again.readings)) == (1, 5, 3)
        buffer.mark_acked(1, 10)
        await buffer.flush()
        assert await buffer.read_range(1, 5) is None


async def test_batch_is_limited_by_count(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=clock) as buffer:
        for i in range(25):
            buffer.append_reading("lc1/power_w", i, i)
        await buffer.flush()
        batch = await buffer.read_batch(0, 10)
        assert batch is not None and (batch.first, batch.last) == (1, 10)
        batch = await buffer.read_batch(10, 10)
        assert batch is not None and (batch.first, batch.last) == (11, 20)


async def test_full_buffer_evicts_oldest_readings_keeps_events_and_says_what_went(
    tmp_path: Path,
) -> None:
    # Blocks are compressed: 2,000 readings of one point take about 6 KB, over a 4 KB cap.
    async with Buffer(tmp_path / "b.db", max_bytes=4_000, clock_ms=clock) as buffer:
        buffer.append_event(ts=0, source="lc1", kind="device_lost", severity="alarm", message="lost")
        produced = [buffer.append_reading("lc1/power_w", ts, float(ts)) for ts in range(1, 2001)]
        eviction = await buffer.flush()  # the eviction and the event naming it: one transaction
        assert eviction is not None
        assert buffer.size_bytes <= 4_000
        remaining = await buffer.read_batch(0, 100_000)
        assert remaining is not None
        events = [decode_record(Event, body) for body in remaining.events]
        kept = {decode_record(Reading, body).seq for body in remaining.readings}
        assert events[0].kind == "device_lost"  # events outlive readings
        evicted_events = [e for e in events if e.kind == "evicted"]
        assert len(evicted_events) == 1
        named: set[int] = set()
        for part in str(evicted_events[0].data["seq_ranges"]).split(","):
            a, _, b = part.partition("-")
            named.update(range(int(a), int(b or a) + 1))
        # Exactly what was evicted is named: kept + named = produced, and nothing in both.
        assert kept | named == set(produced)
        assert not kept & named
        assert evicted_events[0].data["count"] == len(named)
        assert min(named) == 2  # the oldest reading went first
        assert max(kept) == produced[-1]


async def test_bad_quality_reading_round_trips(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=clock) as buffer:
        buffer.append_reading("lc1/power_w", 5, None, Quality.BAD, "timeout")
        await buffer.flush()
        batch = await buffer.read_batch(0, 10)
        assert batch is not None
        reading = decode_record(Reading, batch.readings[0])
        assert (reading.value, reading.quality, reading.reason) == (None, Quality.BAD, "timeout")


async def test_corrupt_file_gives_a_buffer_error_naming_it(tmp_path: Path) -> None:
    from edge_agent.errors import BufferError

    path = tmp_path / "b.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BufferError, match=str(path)):
        await Buffer(path, max_bytes=10**7, clock_ms=clock).open()


async def test_a_record_central_would_refuse_is_refused_at_the_source(tmp_path: Path) -> None:
    """One bad record must not poison a batch (central would quarantine it and never ack it)."""
    async with Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=clock) as buffer:
        buffer.append_reading("lc1/energy_wh", 1, 2**64)  # no database stores this integer
        buffer.append_event(
            ts=2, source="lc1", kind="x", severity="info", message="m", data={str(i): i for i in range(99)}
        )
        await buffer.flush()
        batch = await buffer.read_batch(0, 10)
        assert batch is not None
        reading = decode_record(Reading, batch.readings[0])
        assert (reading.value, reading.quality) == (None, Quality.BAD)
        assert reading.reason is not None and reading.reason.startswith("refused")
        event = decode_record(Event, batch.events[0])
        assert event.kind == "record_refused" and "'x'" in event.message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
async def test_a_non_finite_value_becomes_a_bad_reading_that_says_why(tmp_path: Path, value: float) -> None:
    async with Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=clock) as buffer:
        buffer.append_reading("lc1/voltage_v", 1, value)
        await buffer.flush()
        batch = await buffer.read_batch(0, 10)
        assert batch is not None
        reading = decode_record(Reading, batch.readings[0])
        assert (reading.value, reading.quality) == (None, Quality.BAD)
        assert reading.reason is not None and reading.reason.startswith("not_finite")


def _format_1_file(path: Path, records: list[tuple[int, int, int, bytes]], last_seq: int) -> None:
    """A buffer file as the agent wrote it before blocks: a row per record."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE records (seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, ts INTEGER NOT NULL,"
            " body BLOB NOT NULL);"
        )
        db.executemany("INSERT INTO records VALUES (?, ?, ?, ?)", records)
        db.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [
                ("stream", "00112233aabbccdd"),
                ("boot_count", "7"),
                ("last_seq", str(last_seq)),
                ("setting.x", "1"),
            ],
        )


async def test_a_format_1_file_keeps_every_unsent_record_its_stream_and_its_numbering(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    # Seqs 1..2 acknowledged and deleted long ago, 5 evicted: 3, 4 and 6..2505 wait for central.
    kept = [3, 4, *range(6, 2506)]
    rows = [(seq, 0, seq * 10, encode(Reading(seq, "lc1/power_w", seq * 10, float(seq)))) for seq in kept]
    rows.append((2506, 1, 1, encode(Event(2506, 1, "lc1", "door_open", "alarm", "open"))))
    _format_1_file(path, rows, last_seq=2506)
    async with Buffer(path, max_bytes=10**7, clock_ms=clock) as buffer:
        assert (buffer.stream, buffer.boot_count, buffer.committed_seq) == ("00112233aabbccdd", 8, 2506)
        assert buffer.backlog == len(rows)
        assert await buffer.get_setting("x") == "1"
        batch = await buffer.read_batch(0, 10_000)
        assert batch is not None
        assert batch.seqs == [*kept, 2506]
        assert batch.readings == [body for _, kind, _, body in rows if kind == 0]
        assert [decode_record(Event, b).kind for b in batch.events] == ["door_open"]
        assert buffer.append_reading("lc1/power_w", 1, 1.0) == 2507
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "records" not in tables
        assert db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0] == "2"
    async with Buffer(path, max_bytes=10**7, clock_ms=clock) as buffer:
        assert buffer.committed_seq == 2507  # and it opens again as a block file
        assert buffer.backlog == len(rows) + 1


async def test_a_format_1_file_with_nothing_left_keeps_its_numbering(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    _format_1_file(path, [], last_seq=41)
    async with Buffer(path, max_bytes=10**7, clock_ms=clock) as buffer:
        assert buffer.backlog == 0
        assert buffer.append_reading("lc1/power_w", 1, 1.0) == 42


async def test_a_file_of_a_newer_format_is_refused_and_left_alone(tmp_path: Path) -> None:
    from edge_agent.errors import BufferError

    path = tmp_path / "b.db"
    async with Buffer(path, max_bytes=10**7, clock_ms=clock) as buffer:
        buffer.append_reading("lc1/power_w", 1, 1.0)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '3' WHERE key = 'format'")
    before = path.read_bytes()
    with pytest.raises(BufferError, match=r"newer agent \(buffer format '3'.*upgrade the agent"):
        await Buffer(path, max_bytes=10**7, clock_ms=clock).open()
    assert path.read_bytes() == before


async def test_acknowledged_records_are_left_out_at_once_and_deleted_in_bulk(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db", max_bytes=10**7, clock_ms=clock) as buffer:
        for second in range(5):
            for i in range(100):
                buffer.append_reading(f"lc1/q{i}", second, float(i))
            await buffer.flush()
        buffer.mark_acked(1, 250)  # two blocks and a half
        assert buffer.backlog == 250
        batch = await buffer.read_batch(0, 1000)
        assert batch is not None and batch.seqs == list(range(251, 501))
        on_file = buffer.size_bytes
        await buffer.flush()  # nothing new, the deletion not due: no commit at all
        assert buffer.size_bytes == on_file
        await buffer.flush(delete=True)
        assert buffer.size_bytes < on_file  # the two whole blocks went; the half one stays
        assert buffer.backlog == 250
        batch = await buffer.read_batch(0, 1000)
        assert batch is not None and batch.seqs == list(range(251, 501))
    with sqlite3.connect(tmp_path / "b.db") as db:
        assert db.execute("SELECT min(first), count(*) FROM blocks").fetchone() == (201, 3)


async def test_a_day_of_100_points_at_1_hz_fits_the_default_cap() -> None:
    """24 h x 100 points = 8.64 M readings in 256 MB: about 31 bytes each, blocks and pages included."""
    from edge_agent.record_blocks import Block, Kind, pack

    bodies = [
        encode(Reading(10**6 + i, f"lc{i // 10}/q{i % 10}", 1_714_557_600_000, 231.4 + i / 10))
        for i in range(100)
    ]
    block = pack(Block(list(range(10**6, 10**6 + 100)), bytes([Kind.READING]) * 100, bodies))
    per_reading = (len(block) + 24) / 100
    assert per_reading * 8_640_000 < 256 * 1024 * 1024 * 0.9  # under the cap's eviction mark
