"""Whose time central believes: a record's timestamp is the cabinet's word, checked against central's.

A cabinet's clock can be wrong (a board without RTC boots at 1970 or 2099; a stolen cabinet says what
it likes). Two rules follow, for every store:

- **order within a cabinet is by sequence number** (stream, then seq), never by timestamp: the newest
  record of a point or an alarm is the last one the cabinet appended, whatever its stamp says;
- **a record stamped ahead of its receive time** by more than ``AHEAD_BOUND_MS`` is stored, flagged
  as such, and never becomes a point's latest value nor changes an alarm's state: no record can be
  received before it was made, so such a stamp is always wrong (10 minutes leave room for a clock a
  little fast and for central's own).

- **a record stamped before the protocol existed** (``PROTOCOL_EPOCH_MS``, 2024) is flagged too,
  and a reading so stamped is never a latest value: it comes from a board that booted at 1970, not
  from a backlog.

Other old stamps are not flagged: a cabinet back after three days offline sends three days of
records, all old in time and old in sequence, and no bound on age tells that backlog from a slow
clock. Ordering by sequence makes an old stamp harmless to alarms (an alarm cleared with a 1970 stamp
is cleared: the door did close); the agent marks the readings it takes on a clock it does not trust
``clock_unsynchronised``.
"""

from __future__ import annotations

from protocols.release import PROTOCOL_EPOCH_MS

AHEAD_BOUND_MS = 10 * 60 * 1000


def stamped_ahead(ts_ms: int, received_ms: int) -> bool:
    """The record claims a time later than central could have received it."""
    return ts_ms > received_ms + AHEAD_BOUND_MS


def time_suspect(ts_ms: int, received_ms: int) -> bool:
    """Stamped ahead of its receipt, or before the protocol existed: stored, flagged, never a latest
    value."""
    return ts_ms < PROTOCOL_EPOCH_MS or stamped_ahead(ts_ms, received_ms)
