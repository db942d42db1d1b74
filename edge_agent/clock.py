"""Time for the agent: wall-clock UTC milliseconds, and sleeping until a wall-clock instant.

Injected wherever tests need to control it: ``ScaledClock`` runs days of schedule in minutes, so a
test can keep a cabinet offline for three simulated days while every part stays real.

A clock also says whether it is ``synchronised`` (``edge_agent.clock_sync``): until it is, readings
say so, the lighting follows its fail-safe, and the cabinet does not judge a command's expiry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from edge_agent.clock_sync import ClockTrust

ClockMs = Callable[[], int]

# A wall clock can jump (NTP, a board that booted without RTC): never sleep long on one reading of it.
MAX_SLEEP_S = 30.0


def utc_ms() -> int:
    return time.time_ns() // 1_000_000


class Clock(Protocol):
    def now_ms(self) -> int: ...

    def seconds_until(self, when_ms: int) -> float:
        """Real seconds to wait for wall-clock ``when_ms`` (0 if past), capped at MAX_SLEEP_S."""
        ...

    def synchronised(self) -> bool:
        """The time it reads can be trusted (NTP has set it, and it is not before the build floor)."""
        ...


class SystemClock:
    def __init__(self, *, trust: ClockTrust | None = None) -> None:
        self.trust = trust or ClockTrust()

    def now_ms(self) -> int:
        return utc_ms()

    def synchronised(self) -> bool:
        return self.trust.synchronised(utc_ms())

    def seconds_until(self, when_ms: int) -> float:
        return min(max((when_ms - utc_ms()) / 1000, 0.0), MAX_SLEEP_S)


class ScaledClock:
    """Simulated wall time from ``start_ms``, running ``factor`` times faster than real time.

    Synchronised unless given a ``trust`` to decide (a test of a wrong clock gives one).
    """

    def __init__(self, *, start_ms: int, factor: float, trust: ClockTrust | None = None) -> None:
        self.start_ms = start_ms
        self.factor = factor
        self.trust = trust
        self._t0 = time.monotonic()

    def now_ms(self) -> int:
        return self.start_ms + int((time.monotonic() - self._t0) * 1000 * self.factor)

    def synchronised(self) -> bool:
        return self.trust is None or self.trust.synchronised(self.now_ms())

    def seconds_until(self, when_ms: int) -> float:
        return min(max((when_ms - self.now_ms()) / 1000 / self.factor, 0.0), MAX_SLEEP_S)
