"""Wall-clock time in UTC milliseconds; injected wherever tests need to control it."""

from __future__ import annotations

import time
from collections.abc import Callable

ClockMs = Callable[[], int]


def utc_ms() -> int:
    return time.time_ns() // 1_000_000
