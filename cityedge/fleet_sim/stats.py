"""What the fleet measures: records acknowledged, ack latency, backlog. Shared by every cabinet.

Ack latency is taken per generation cycle: from the moment a cabinet's readings are taken to the
moment central's ack covering the last of them reaches the cabinet (buffer commit, publish, central's
commit and ack in between). A cycle sent during an outage counts its whole wait: that is the truth a
drained backlog tells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FleetReport:
    """One period of the fleet's life, as printed every ``--stats-every`` seconds."""

    elapsed_s: float
    period_s: float
    cabinets: int
    connected: int
    generated: int  # records taken in the period
    acked: int  # records central acknowledged in the period
    ack_p50_ms: float | None
    ack_p99_ms: float | None
    ack_max_ms: float | None
    backlog: int  # records buffered and not acknowledged, whole fleet, at the end of the period
    resends: int  # batches sent again in the period (ack timeout or reconnect)
    commands: int  # command results reported in the period
    offline: int  # cabinets in a simulated outage now

    @property
    def acked_per_s(self) -> float:
        return self.acked / self.period_s if self.period_s > 0 else 0.0

    @property
    def generated_per_s(self) -> float:
        return self.generated / self.period_s if self.period_s > 0 else 0.0

    def line(self) -> str:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f}"

        return (
            f"t={self.elapsed_s:6.0f}s connected {self.connected}/{self.cabinets}"
            f" offline {self.offline} | acked {self.acked_per_s:9,.0f} rec/s"
            f" (taken {self.generated_per_s:,.0f}/s) | ack p50 {ms(self.ack_p50_ms)} ms"
            f" p99 {ms(self.ack_p99_ms)} ms max {ms(self.ack_max_ms)} ms | backlog {self.backlog:,}"
            f" | resends {self.resends} | command results {self.commands}"
        )


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list (not empty)."""
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


class FleetCounters:
    """Counters every cabinet adds to; the fleet reads and resets the per-period ones."""

    def __init__(self) -> None:
        self.generated = 0
        self.acked = 0
        self.commands = 0
        self.latencies_ms: list[float] = []

    def take_period(self) -> tuple[int, int, int, list[float]]:
        taken = (self.generated, self.acked, self.commands, self.latencies_ms)
        self.generated = self.acked = self.commands = 0
        self.latencies_ms = []
        return taken
