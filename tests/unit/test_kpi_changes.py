"""Which batches change the KPI figures of a day: those with a reading in a quarter that may be settled
when they are written (a report holds settled quarters only)."""

from __future__ import annotations

from central.kpi.period import SETTLE_MS
from central.store.kpi_days import DAY_MS, LATE_MARGIN_MS, QUARTER_MS, changed_days
from central.store.rows import BatchOutcome, ReceivedBatch
from protocols.fleet import PROTOCOL_VERSION, DataBatch, Reading

# 2026-12-01 14:07:00 UTC: in the quarter 14:00-14:15.
NOW = 1_796_133_600_000 + 7 * 60_000
UNDER_WAY = NOW // QUARTER_MS * QUARTER_MS


def _batch(cabinet: str, *stamps: int) -> ReceivedBatch:
    readings = [Reading(seq=i + 1, point="lc1/energy_wh", ts=ts, value=1.0) for i, ts in enumerate(stamps)]
    batch = DataBatch(
        v=PROTOCOL_VERSION, cabinet=cabinet, stream="s", first=1, last=len(readings), readings=readings
    )
    return ReceivedBatch(batch, NOW, f"cityedge/{cabinet}/data", b"")


def _new(n: int) -> BatchOutcome:
    return BatchOutcome("c", "s", 1, 2, readings_new=n, events_new=0, results_new=0, duplicates=2 - n)


def test_a_live_batch_changes_no_day_and_a_late_one_changes_its_days() -> None:
    live = _batch("live", UNDER_WAY, NOW - 1_000)
    ahead = _batch("ahead", NOW + 3 * 3_600_000)  # a cabinet's clock ahead: no report holds it yet
    late = _batch("late", UNDER_WAY - 1, NOW)
    backlog = _batch("backlog", NOW - 3 * DAY_MS, NOW - DAY_MS)
    found = changed_days([live, ahead, late, backlog], [_new(2), _new(1), _new(2), _new(2)], now_ms=NOW)
    day = NOW // DAY_MS
    assert found == [
        ("backlog", day - 3),
        ("backlog", day - 2),
        ("backlog", day - 1),
        ("late", day),
    ]


def test_a_batch_of_the_quarter_just_ended_counts_once_that_quarter_is_settling() -> None:
    """In the first LATE_MARGIN_MS of a quarter, a reading of the one before is in flight (no report
    holds that quarter yet: it settles after SETTLE_MS); later, it is late."""
    reading = UNDER_WAY - 5_000
    early, later = UNDER_WAY + LATE_MARGIN_MS - 1, UNDER_WAY + LATE_MARGIN_MS
    assert SETTLE_MS > LATE_MARGIN_MS
    assert changed_days([_batch("c", reading)], [_new(1)], now_ms=early) == []
    assert changed_days([_batch("c", reading)], [_new(1)], now_ms=later) == [("c", reading // DAY_MS)]


def test_a_batch_of_duplicates_only_changes_nothing() -> None:
    assert changed_days([_batch("c", NOW - DAY_MS)], [_new(0)], now_ms=NOW) == []
