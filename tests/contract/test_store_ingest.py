"""SqliteStore against real SQLite files: idempotency, group commit, status, quarantine, queries."""

from __future__ import annotations

import pytest

from central.store import Store, rules
from central.store.rows import QuarantineEntry, ReceivedBatch, ReceivedStatus
from central.store.rules import QUARANTINE_PAYLOAD_BYTES
from central.testing import TS0_MS, batch_payload
from protocols.fleet import (
    PROTOCOL_VERSION,
    CommandResult,
    DataBatch,
    DeviceInfo,
    Event,
    Reading,
    Status,
    decode_data_batch,
    encode,
    encode_data_batch,
)
from protocols.quality import Quality

CAB = "cab-1"
STREAM = "0123abcd"


def received(payload: bytes, *, received_ms: int = TS0_MS + 60_000) -> ReceivedBatch:
    batch = decode_data_batch(payload)
    return ReceivedBatch(batch, received_ms, f"cityedge/{batch.cabinet}/data", payload)


def batch(
    cabinet: str = CAB, stream: str = STREAM, first: int = 1, count: int = 10, **kw: object
) -> ReceivedBatch:
    return received(batch_payload(cabinet, stream, first, count, **kw))  # type: ignore[arg-type]


async def test_the_same_batch_twice_is_stored_once(store: Store) -> None:
    b = batch(count=25)
    [first] = await store.write([b])
    [second] = await store.write([b])
    assert (first.readings_new, first.duplicates) == (25, 0)
    assert (second.readings_new, second.duplicates) == (0, 25)
    assert (await store.totals()).readings == 25


async def test_group_commit_reports_each_batch_in_order(store: Store) -> None:
    a = batch(CAB, STREAM, 1, 10)
    b = batch("cab-2", "feedbeef", 1, 5)
    overlap = batch(CAB, STREAM, 6, 10)  # seq 6..15: 6..10 already in ``a`` of the same group
    outcomes = await store.write([a, b, overlap, a])
    assert [(o.cabinet, o.first, o.last) for o in outcomes] == [
        (CAB, 1, 10),
        ("cab-2", 1, 5),
        (CAB, 6, 15),
        (CAB, 1, 10),
    ]
    assert [(o.readings_new, o.duplicates) for o in outcomes] == [(10, 0), (5, 0), (5, 5), (0, 10)]
    assert (await store.totals()).readings == 20


async def test_same_seq_in_another_stream_or_cabinet_is_another_record(store: Store) -> None:
    outcomes = await store.write([batch(CAB, STREAM), batch(CAB, "99999999"), batch("cab-2", STREAM)])
    assert [o.readings_new for o in outcomes] == [10, 10, 10]


async def test_events_and_results_are_idempotent_too(store: Store) -> None:
    event = Event(seq=11, ts=TS0_MS, source="lc1", kind="door_open", severity="alarm", message="door")
    result = CommandResult(seq=12, ts=TS0_MS + 1, command_id="c1", status="executed")
    b = batch(count=10, events=[event], results=[result])
    [once] = await store.write([b])
    [again] = await store.write([b])
    assert (once.readings_new, once.events_new, once.results_new) == (10, 1, 1)
    assert (again.new, again.duplicates) == (0, 12)
    totals = await store.totals()
    assert (totals.events, totals.results) == (1, 1)


async def test_a_value_sqlite_cannot_hold_quarantines_that_batch_only(store: Store) -> None:
    # The protocol refuses integers past 64 bits; the store still defends itself against one.
    huge = Reading(seq=1, point="lc9/counter", ts=TS0_MS, value=2**63, quality=Quality.GOOD)
    payload = encode_data_batch(cabinet=CAB, stream=STREAM, first=1, last=1, readings=[encode(huge)])
    unchecked = DataBatch(v=PROTOCOL_VERSION, cabinet=CAB, stream=STREAM, first=1, last=1, readings=[huge])
    bad = ReceivedBatch(unchecked, 1_000, f"cityedge/{CAB}/data", payload)
    good = batch(CAB, "abcdef99", 1, 4, points=("lc9/counter",))
    outcomes = await store.write([bad, good])
    assert outcomes[0].unstorable is not None
    assert "too large" in outcomes[0].unstorable
    assert outcomes[1].readings_new == 4 and outcomes[1].unstorable is None
    [row] = await store.quarantine()
    assert row.reason == "unstorable"
    assert await store.quarantine_payload(row.id) == payload
    assert [v.point for v in await store.latest_values(CAB)] == ["lc9/counter"]


async def test_birth_then_last_will(store: Store) -> None:
    inventory = [DeviceInfo(name="lc1", driver="modbus", points=["power_w"])]
    birth = Status(
        v=PROTOCOL_VERSION,
        cabinet=CAB,
        online=True,
        ts=TS0_MS,
        version="1.4.2",
        config_hash="abc",
        stream=STREAM,
        boot_count=7,
        backlog=3,
        inventory=inventory,
    )
    await store.write([], [ReceivedStatus(birth, 5_000)])
    row = await store.cabinet(CAB)
    assert row is not None
    assert (row.online, row.version, row.boot_count, row.backlog, row.last_seen_ms) == (
        True,
        "1.4.2",
        7,
        3,
        5_000,
    )
    assert row.inventory == (DeviceInfo(name="lc1", driver="modbus", points=["power_w"]),)
    will = Status(v=PROTOCOL_VERSION, cabinet=CAB, online=False, ts=TS0_MS)
    await store.write([], [ReceivedStatus(will, 9_000)])
    row = await store.cabinet(CAB)
    assert row is not None
    # Offline, and what the birth said is kept: the will carries nothing newer.
    assert (row.online, row.version, row.boot_count, row.last_seen_ms) == (False, "1.4.2", 7, 5_000)


async def test_a_batch_updates_last_seen_and_backlog(store: Store) -> None:
    await store.write([received(batch_payload(CAB, STREAM, 1, 2, backlog=40), received_ms=7_000)])
    await store.write([received(batch_payload(CAB, STREAM, 3, 2, backlog=38), received_ms=6_000)])
    [row] = await store.cabinets()
    assert (row.id, row.online, row.backlog, row.last_seen_ms) == (CAB, False, 38, 7_000)


async def test_latest_value_of_each_point(store: Store) -> None:
    first = batch(first=1, count=20, points=("a/x", "b/y"))
    # A stream seen later (the cabinet's SD card was replaced) is the newer one, whatever its stamps.
    later = batch(stream="99999999", first=1, count=4, points=("a/x", "c/z"), ts0=TS0_MS - 10_000)
    await store.write([first, later])
    latest = {v.point: (v.ts_ms, v.value) for v in await store.latest_values(CAB)}
    assert latest == {
        "a/x": (TS0_MS - 10_000 + 3, 3.0),
        "b/y": (TS0_MS + 20, 20.0),
        "c/z": (TS0_MS - 10_000 + 4, 4.0),
    }
    assert await store.latest_values("nobody") == []


async def test_readings_over_a_half_open_range_with_a_limit(store: Store) -> None:
    await store.write([batch(count=100, points=("a/x", "b/y"))])  # a/x at TS0+1, +3, ..., +99
    rows = await store.readings(CAB, "a/x", start_ms=TS0_MS + 11, end_ms=TS0_MS + 21, limit=100)
    assert [r.ts_ms - TS0_MS for r in rows] == [11, 13, 15, 17, 19]
    rows = await store.readings(CAB, "a/x", start_ms=TS0_MS + 11, end_ms=TS0_MS + 19, limit=100)
    assert [r.ts_ms - TS0_MS for r in rows] == [11, 13, 15, 17]
    rows = await store.readings(CAB, "a/x", start_ms=0, end_ms=2**53, limit=3)
    assert [r.ts_ms - TS0_MS for r in rows] == [1, 3, 5]
    assert await store.readings(CAB, "no/such", start_ms=0, end_ms=2**53, limit=3) == []
    assert await store.has_point(CAB, "a/x")
    assert not await store.has_point("cab-2", "a/x")


async def test_events_filtered_newest_first(store: Store) -> None:
    def event(seq: int, ts: int) -> Event:
        return Event(
            seq=seq, ts=ts, source="lc1", kind="k", severity="info", message=f"e{seq}", data={"n": seq}
        )

    await store.write(
        [
            batch(CAB, STREAM, 1, 1, events=[event(2, TS0_MS + 2), event(3, TS0_MS + 3)]),
            batch("cab-2", STREAM, 1, 1, events=[event(2, TS0_MS + 1)]),
        ]
    )
    assert [(e.cabinet, e.seq) for e in await store.events()] == [(CAB, 3), (CAB, 2), ("cab-2", 2)]
    assert [e.seq for e in await store.events(cabinet="cab-2")] == [2]
    assert [e.message for e in await store.events(since_ms=TS0_MS + 2)] == ["e3", "e2"]
    [only] = await store.events(limit=1)
    assert (only.stream, only.data) == (STREAM, {"n": 3})


async def test_quarantine_keeps_metadata_a_capped_payload_and_counts(store: Store) -> None:
    big = bytes(range(256)) * 1024  # 256 KiB
    entries = [
        QuarantineEntry(1, "cityedge/a/data", "malformed", "not msgpack", b"\xc1"),
        QuarantineEntry(2, "cityedge/b/data", "too_large", "too big", big),
        QuarantineEntry(3, "cityedge/c/data", "malformed", "bad", b"\x00"),
    ]
    await store.write([], [], entries)
    rows = await store.quarantine()
    assert [(r.received_ms, r.reason, r.size) for r in rows] == [
        (3, "malformed", 1),
        (2, "too_large", len(big)),
        (1, "malformed", 1),
    ]
    assert await store.quarantine_payload(rows[1].id) == big[:QUARANTINE_PAYLOAD_BYTES]
    counts = await store.quarantine_counts()
    assert (dict(counts.by_reason), counts.evicted) == ({"malformed": 2, "too_large": 1}, 0)


async def test_quarantine_is_capped_oldest_first(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rules, "QUARANTINE_MAX_ROWS", 5)
    for i in range(3):
        entries = [QuarantineEntry(i * 3 + j, "t", "malformed", "x", b"") for j in range(3)]
        await store.write([], [], entries)
    rows = await store.quarantine()
    assert [r.received_ms for r in rows] == [8, 7, 6, 5, 4]
    counts = await store.quarantine_counts()
    assert (counts.evicted, counts.by_reason["malformed"]) == (4, 5)
    assert (await store.totals()).quarantined == 9
