"""Time at the aggregator: integers in milliseconds since 1970-01-01 UTC, the unit of the fleet protocol.

Operators type times as milliseconds or ISO 8601; ``to_ms`` reads both and says what it expected when
it cannot. Pure, except ``now_ms`` which reads the wall clock (callers take it as a parameter so that
tests can pass their own).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_DIGITS = re.compile(r"^[0-9]{1,16}$")
# The fleet protocol's TimestampMs bound (msgspec refuses larger timestamps on the wire).
MAX_MS = 2**53


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_ms(name: str, raw: str | int) -> int:
    """Milliseconds since 1970 UTC from ms (int or digits) or ISO 8601; ValueError naming ``name``."""
    if isinstance(raw, bool):  # a JSON true is not a time, although Python calls it an int
        raise ValueError(_expected(name))
    ms = raw if isinstance(raw, int) else _parse_text(name, raw)
    if ms < 0:
        raise ValueError(f"{name} is before 1970-01-01T00:00:00Z")
    if ms > MAX_MS:
        raise ValueError(f"{name} is too far in the future (milliseconds, not microseconds?)")
    return ms


def _parse_text(name: str, raw: str) -> int:
    text = raw.strip()
    if _DIGITS.match(text):
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(_expected(name)) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // _MS


def _expected(name: str) -> str:
    return (
        f"{name} must be milliseconds since 1970-01-01 UTC (e.g. 1714557600000) or ISO 8601"
        " (e.g. 2024-05-01T10:00:00Z); a time without an offset is taken as UTC"
    )
