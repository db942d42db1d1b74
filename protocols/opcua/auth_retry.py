"""When to log in again after a controller refused the user or password.

A wrong password retried on the reconnect backoff (seconds) is a hundred logins an hour, and a
controller locks the account after a few. After a refusal the next login waits ``minimum`` seconds,
doubling to ``maximum``; each delay is stretched by up to a tenth (never shortened), so that a
cabinet's controllers do not all retry in the same instant.
"""

from __future__ import annotations

import random

JITTER = 0.1


class AuthRetry:
    """Delays of ``minimum * 2**n`` capped at ``maximum``, each drawn in [d, d * (1 + JITTER)]."""

    def __init__(self, *, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self._rng = rng or random.Random()
        self._refusals = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.minimum * 2 ** min(self._refusals, 32))
        self._refusals += 1
        return self._rng.uniform(delay, delay * (1 + JITTER))

    def reset(self) -> None:
        self._refusals = 0
