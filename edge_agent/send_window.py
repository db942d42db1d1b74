"""How much the sender keeps in flight: a window of batches and a batch size, adapted to ack latency.

Additive increase, multiplicative decrease, on the latency of central's acks rather than on loss: an
ack back within ``target_s`` means central keeps up, and the window grows by one batch per window's
worth of acks (and the batch size by an eighth of its ceiling); a slower ack means central, or the
broker in front of it, is queueing, and both halve, at most once per round trip (the acks of the
batches already in flight say the same thing again). An ack that never came (a resend after the
timeout) halves them too. The configured window and batch size are where it starts and its ceilings;
it never goes under one batch of ``min_batch`` records.

A cabinet draining a day's backlog thus takes what central can give and backs off when central is
busy with the rest of the fleet, instead of holding the configured maximum in its queue all the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Under this many records a batch costs more in envelopes and acks than it carries.
MIN_BATCH = 50


@dataclass(slots=True)
class SendWindow:
    max_window: int
    max_batch: int
    target_s: float
    min_batch: int = MIN_BATCH
    window: float = 0.0  # batches; fractional while growing
    batch: int = 0
    smoothed_s: float | None = None  # of the ack latency (exponentially weighted, 1/8)
    _hold_until: float = -math.inf  # no second decrease before this (one round trip)
    increases: int = 0
    decreases: int = 0

    def __post_init__(self) -> None:
        if self.max_window < 1 or self.max_batch < 1 or self.target_s <= 0:
            raise ValueError("window, batch size and target latency must be positive")
        self.min_batch = min(self.min_batch, self.max_batch)
        self.window = float(self.max_window)
        self.batch = self.max_batch

    @property
    def batches(self) -> int:
        """Batches allowed in flight now."""
        return max(1, int(self.window))

    def on_ack(self, latency_s: float, now: float) -> None:
        """A batch sent once (not a resend: its latency would be ambiguous) was acknowledged."""
        smoothed = self.smoothed_s
        self.smoothed_s = latency_s if smoothed is None else smoothed + (latency_s - smoothed) / 8
        if latency_s <= self.target_s:
            self.window = min(float(self.max_window), self.window + 1 / max(1.0, self.window))
            self.batch = min(self.max_batch, self.batch + max(1, self.max_batch // 8))
            self.increases += 1
        else:
            self._decrease(now, latency_s)

    def on_timeout(self, now: float) -> None:
        """A batch went unacknowledged for the whole timeout and is sent again."""
        self._decrease(now, self.smoothed_s or self.target_s)

    def _decrease(self, now: float, round_trip_s: float) -> None:
        if now < self._hold_until:
            return
        self.window = max(1.0, self.window / 2)
        self.batch = max(self.min_batch, self.batch // 2)
        self._hold_until = now + round_trip_s
        self.decreases += 1
