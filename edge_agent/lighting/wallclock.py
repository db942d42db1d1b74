"""Local wall-clock times to UTC instants, with one rule for the daylight-saving transitions.

A wall time ``HH:MM`` on a local date takes effect at the *first instant at which the local clock reads
that time or later*:

- in the hour the clocks skip (spring forward: 02:30 on 2026-03-29 in Europe/Paris does not exist), it
  takes effect at the jump itself (03:00 CEST = 01:00 UTC), as a clock that has just passed 02:30 would;
- in the hour the clocks repeat (fall back: 02:30 on 2026-10-25 occurs at 00:30 and at 01:30 UTC), it
  takes effect at the first occurrence (00:30 UTC), and the second pass through that hour is not a new
  boundary.

The mapping is monotonic, so periods that do not overlap on the wall clock never overlap in UTC; a period
lying wholly inside the skipped hour becomes empty that day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo


def wall_to_utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The first UTC instant at which the wall clock of ``zone`` reads ``day at`` or later."""
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(first, zone) == wall:
        return first  # exists; fold=0 is the first of two readings in a repeated hour
    # In a gap, fold=0 applies the offset from before the jump (landing after it) and fold=1 the offset
    # from after it (landing before it): the jump lies between, on a whole second.
    before = int(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    after = int(first.timestamp())
    while after - before > 1:
        middle = (before + after) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), zone) >= wall:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def local_date(instant: datetime, zone: ZoneInfo) -> date:
    return instant.astimezone(zone).date()


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)
