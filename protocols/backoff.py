"""Jittered exponential backoff for reconnecting and retrying."""

from __future__ import annotations

import random


class Backoff:
    """Delays of ``initial * 2**n`` capped at ``maximum``, each drawn uniformly in [d/2, d].

    The jitter spreads the reconnects of many workers after a broker restart, so they do not all
    land on the broker in the same instant.
    """

    def __init__(
        self, *, initial: float = 0.2, maximum: float = 30.0, rng: random.Random | None = None
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng or random.Random()
        self._attempt = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return self._rng.uniform(delay / 2, delay)

    def reset(self) -> None:
        self._attempt = 0
