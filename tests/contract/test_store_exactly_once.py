"""Exactly-once is keyed by (cabinet, stream, seq): a record re-sent with another stamp or value (a
broken or stolen cabinet, a clock stepped between two sends of an unacked batch) is a duplicate."""

from __future__ import annotations

from collections.abc import Sequence

from central.store import Store
from central.store.rows import ReceivedBatch
from central.testing import TS0_MS
from protocols.fleet import Reading, decode_data_batch, encode, encode_data_batch
from protocols.quality import Quality

CAB = "cab-1"
STREAM = "0123abcd"
POINT = "lc1/power_w"
DAY_MS = 24 * 3600 * 1000


def _received(readings: Sequence[Reading], *, received_ms: int) -> ReceivedBatch:
    payload = encode_data_batch(
        cabinet=CAB,
        stream=STREAM,
        first=min(r.seq for r in readings),
        last=max(r.seq for r in readings),
        readings=[encode(r) for r in readings],
        events=[],
        results=[],
        backlog=0,
    )
    return ReceivedBatch(decode_data_batch(payload), received_ms, f"cityedge/{CAB}/data", payload)


def _readings(first: int, count: int, *, shift_ms: int, value: float) -> list[Reading]:
    return [
        Reading(seq=seq, point=POINT, ts=TS0_MS + seq + shift_ms, value=value + seq, quality=Quality.GOOD)
        for seq in range(first, first + count)
    ]


async def test_a_seq_resent_with_another_stamp_and_value_is_stored_once(store: Store) -> None:
    now = TS0_MS + 60_000
    [first] = await store.write([_received(_readings(1, 10, shift_ms=0, value=0.0), received_ms=now)])
    # The same seqs, stamped 5 s later (same day partition) and a day later (another partition),
    # with other values: in a later group, then twice more in one group.
    [later] = await store.write([_received(_readings(1, 10, shift_ms=5_000, value=100.0), received_ms=now)])
    again = await store.write(
        [
            _received(_readings(6, 10, shift_ms=DAY_MS, value=200.0), received_ms=now + DAY_MS),
            _received(_readings(11, 5, shift_ms=-3_000, value=300.0), received_ms=now + DAY_MS),
        ]
    )
    assert (first.readings_new, first.duplicates) == (10, 0)
    assert (later.readings_new, later.duplicates) == (0, 10)
    # seq 6..15: 6..10 held already, 11..15 new; then 11..15 again in the same group.
    assert [(o.readings_new, o.duplicates) for o in again] == [(5, 5), (0, 5)]
    assert (await store.totals()).readings == 15

    rows = await store.readings(CAB, POINT, start_ms=0, end_ms=2**62, limit=100)
    # The first value of each seq is kept, with its stamp (a value names its seq here).
    assert [(r.ts_ms, r.value) for r in rows] == [(TS0_MS + s, float(s)) for s in range(1, 11)] + [
        (TS0_MS + s + DAY_MS, 200.0 + s) for s in range(11, 16)
    ]
    [latest] = await store.latest_values(CAB)
    assert (latest.ts_ms, latest.value) == (TS0_MS + 15 + DAY_MS, 215.0)
    # A duplicate never reaches a rollup.
    days = await store.rollups(CAB, POINT, resolution="1d", start_ms=0, end_ms=2**62, limit=10)
    assert sum(d.count for d in days) == 15
    assert sum(d.sum for d in days) == sum(range(1, 11)) + sum(200.0 + s for s in range(11, 16))


async def test_the_protocols_last_seq_is_stored_once(store: Store) -> None:
    # 2**63 - 1 is a valid seq: a store must keep it (and know it held) like any other.
    top = 2**63 - 1
    now = TS0_MS + 60_000
    last_two = [
        Reading(seq=s, point=POINT, ts=TS0_MS + i, value=float(i)) for i, s in enumerate((top - 1, top))
    ]
    [once] = await store.write([_received(last_two, received_ms=now)])
    [again] = await store.write([_received(last_two[1:], received_ms=now)])
    assert (once.readings_new, once.unstorable, again.readings_new, again.duplicates) == (2, None, 0, 1)
