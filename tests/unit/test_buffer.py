"""The SQLite buffer on a real file: sequence numbers, batched commits, acks, the size cap."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer
from protocols.fleet import Event, Reading, decode_record
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
