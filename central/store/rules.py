"""The domain rules every backend applies the same way. Pure: rows in, rows out, no database.

- **Command status only moves forward**: pending -> delivered -> one final state (executed, failed,
  expired, rejected), so applying the same result twice, or an old result after a newer one, changes
  nothing. The one exception is a final state central set itself (``finished_by = "central"``: no
  answer before not_after): it was a guess, and the cabinet's word replaces it, because the cabinet
  is the one that knows whether the lights switched.
- **An alarm's state is its newest event's**, in the cabinet's sequence order (``central.alarms``
  says which events are about which alarm; ``central.record_time`` which stamps are not believed).
  Its episodes, and what operators' notes do to them, are ``central.store.episodes``'s rules.
- **The quarantine is capped**: the newest ``QUARANTINE_MAX_ROWS`` are kept, each payload cut to
  ``QUARANTINE_PAYLOAD_BYTES``; what is deleted is counted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from central.alarms import alarm_change
from central.record_time import stamped_ahead
from central.store.rows import CommandRow, QuarantineEntry, ReceivedBatch
from protocols.fleet import CommandResult, Event

# A quarantined payload keeps at most this many bytes (the size column says how large it was).
QUARANTINE_PAYLOAD_BYTES = 64 * 1024
# The quarantine keeps the newest rows; older ones are deleted and counted.
QUARANTINE_MAX_ROWS = 10_000

EXPIRED_BY_CENTRAL = "no answer from the cabinet before not_after (marked expired by central)"


# -- commands ----------------------------------------------------------------------------------------


def _replaceable(row: CommandRow) -> bool:
    """The states a cabinet's word may move a command out of."""
    return row.status == "pending" or (row.status == "expired" and row.finished_by == "central")


def after_result(row: CommandRow, result: CommandResult) -> CommandRow | None:
    """The command once its cabinet reported ``result``; None when the result changes nothing."""
    if result.status == "accepted":
        if not _replaceable(row):
            return None
        return dataclasses.replace(
            row,
            status="delivered",
            delivered_ms=row.delivered_ms if row.delivered_ms is not None else result.ts,
            finished_ms=None,
            finished_by=None,
            reason=None,
        )
    if not (row.status == "delivered" or _replaceable(row)):
        return None
    # executed and failed imply that the cabinet accepted it: delivered_ms is set if the accepted
    # result never came (or comes later). rejected and expired were refused on arrival: never delivered.
    delivered_ms = row.delivered_ms
    if delivered_ms is None and result.status in ("executed", "failed"):
        delivered_ms = result.ts
    return dataclasses.replace(
        row,
        status=result.status,
        reason=result.reason,
        finished_ms=result.ts,
        finished_by="cabinet",
        delivered_ms=delivered_ms,
    )


def results_in_order(results: list[CommandResult]) -> list[CommandResult]:
    """A batch's results are applied in the cabinet's sequence order."""
    return sorted(results, key=lambda r: r.seq)


def expired_by_central(row: CommandRow, *, now_ms: int) -> CommandRow:
    return dataclasses.replace(
        row, status="expired", finished_ms=now_ms, finished_by="central", reason=EXPIRED_BY_CENTRAL
    )


# -- alarms ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlarmUpdate:
    """What one event does to the state of one (cabinet, device, alarm); ``seq`` orders updates."""

    cabinet: str
    device: str
    alarm: str
    active: bool
    severity: str
    message: str
    raised_ms: int | None  # None when the event clears: the raise time of the episode is kept
    cleared_ms: int | None
    updated_ms: int
    seq: int


def alarm_updates(cabinet: str, events: list[Event], received_ms: int) -> list[AlarmUpdate]:
    """The alarm updates of a batch's events; events stamped ahead of their receipt change nothing."""
    updates = []
    for event in events:
        change = alarm_change(event)
        if change is None or stamped_ahead(event.ts, received_ms):
            continue
        updates.append(
            AlarmUpdate(
                cabinet=cabinet,
                device=change.device,
                alarm=change.alarm,
                active=change.active,
                severity=event.severity,
                message=event.message,
                raised_ms=event.ts if change.active else None,
                cleared_ms=None if change.active else event.ts,
                updated_ms=event.ts,
                seq=event.seq,
            )
        )
    return updates


# -- quarantine --------------------------------------------------------------------------------------


def quarantine_excess(kept: int) -> int:
    """How many of the oldest quarantined rows go, with ``kept`` rows now in the quarantine."""
    return max(0, kept - QUARANTINE_MAX_ROWS)


def unstorable_entry(received: ReceivedBatch, detail: str | None) -> QuarantineEntry:
    """A valid batch the database refused, quarantined in its place."""
    return QuarantineEntry(
        received.received_ms,
        received.topic,
        "unstorable",
        f"the database refused this batch: {detail}",
        received.payload,
    )
