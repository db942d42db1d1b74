"""Keeps the driver off a camera that refused its password, so an account is never locked by retries.

After a refusal nothing is sent to the camera until the backoff has passed, however often the driver
is asked; then exactly one request goes (the probe) while the other callers are still turned away. The
requests sent while the credentials are not yet known to be good go one at a time (``lock``), so the
first contact of several tasks costs one attempt, not one per task. The
delays double from ``minimum_s`` to ``maximum_s``: with 60 s .. 1 h that is 6 attempts in the first
hour and one an hour after. No jitter: one camera, one cabinet, nothing to spread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class AuthGate:
    def __init__(
        self, *, minimum_s: float, maximum_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.minimum_s = minimum_s
        self.maximum_s = maximum_s
        self._clock = clock
        self._refusals = 0
        self._open_at = 0.0
        self._probing = False
        self.verified = False  # the camera accepted our credentials since the last refusal
        self.lock = asyncio.Lock()

    @property
    def refused(self) -> bool:
        """The last answer to our credentials was a refusal."""
        return self._refusals > 0

    def wait_s(self) -> float:
        """Seconds before a request may go to the camera: 0 when it may go now."""
        if self._probing:
            return self._current_delay()
        return max(0.0, self._open_at - self._clock())

    def enter(self) -> bool:
        """May a request go now? After a refusal, True once (the probe) until it is answered."""
        if self._refusals == 0:
            return True
        if self._probing or self._clock() < self._open_at:
            return False
        self._probing = True
        return True

    def accepted(self) -> None:
        self._refusals, self._probing, self._open_at = 0, False, 0.0
        self.verified = True

    def answered(self) -> None:
        """The probe got an answer that says nothing about the credentials (a timeout): let it retry."""
        self._probing = False

    def refusal(self) -> float:
        """The camera refused: returns the seconds until the next attempt."""
        self._refusals += 1
        self._probing, self.verified = False, False
        delay = self._current_delay()
        self._open_at = self._clock() + delay
        return delay

    def _current_delay(self) -> float:
        return min(self.maximum_s, self.minimum_s * 2.0 ** min(self._refusals - 1, 40))
