"""What a simulated fleet is: how many cabinets, what each sends and how often, outages. Checked."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.fleet.topics import is_valid_cabinet_id

MAX_CABINETS = 20_000
MAX_POINTS = 1_000
# Readings per cabinet and interval beyond the measured points: the lighting output's relay and level.
LIGHTING_POINTS = 2


@dataclass(frozen=True, slots=True)
class OutagePlan:
    """Every ``every_s``, ``fraction`` of the cabinets (chosen at random) lose their link for
    ``duration_s``; they keep taking readings into their buffers and drain them on return."""

    fraction: float
    duration_s: float
    every_s: float

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ValueError(f"outage fraction {self.fraction}: expected a share in (0, 1], e.g. 0.1")
        if self.duration_s <= 0 or self.every_s <= 0:
            raise ValueError("outage duration and period: expected positive seconds")


@dataclass(frozen=True, slots=True)
class FleetPlan:
    cabinets: int
    points: int = 40  # readings per cabinet and interval, the lighting output's two included
    interval_s: float = 10.0
    prefix: str = "sim"
    first: int = 1  # number of the first cabinet (``sim-00001``): a demo's real cabinets come before
    digits: int = 5  # cabinet numbers are zero-padded to this many digits
    # Start spread over this many seconds: a thousand cabinets connecting at once is a storm that
    # takes seconds to absorb, and a fleet never boots in the same millisecond.
    stagger_s: float | None = None
    outages: OutagePlan | None = None
    ack_timeout_s: float = 30.0
    window: int = 8
    batch_max_records: int = 1000
    keepalive_s: int = 60
    buffer_max_mb: float = 64.0
    seed: int = 1
    # Each cabinet's SQLite work on a thread of its own, as in a real agent (default: on the loop).
    sqlite_threads: bool = False
    # The cheaper stand-in (``light.LightCabinet``): the agent's wire behaviour without its code.
    light: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.cabinets <= MAX_CABINETS:
            raise ValueError(f"cabinets {self.cabinets}: expected 1..{MAX_CABINETS}")
        if not LIGHTING_POINTS <= self.points <= MAX_POINTS:
            raise ValueError(
                f"points {self.points}: expected {LIGHTING_POINTS}..{MAX_POINTS} per cabinet"
                f" ({LIGHTING_POINTS} of them are the lighting output's relay and level)"
            )
        if not 0.05 <= self.interval_s <= 3600:
            raise ValueError(f"interval {self.interval_s} s: expected 0.05..3600 seconds")
        if self.stagger_s is not None and self.stagger_s < 0:
            raise ValueError(f"stagger {self.stagger_s} s: expected zero or more seconds")
        if self.first < 0 or not 1 <= self.digits <= 12:
            raise ValueError(f"cabinet numbers from {self.first}, {self.digits} digits: expected >= 0, 1..12")
        last = self.cabinet_ids[-1]
        if not is_valid_cabinet_id(last):
            raise ValueError(f"prefix {self.prefix!r}: {last!r} is not a valid cabinet id")

    @property
    def cabinet_ids(self) -> list[str]:
        return [f"{self.prefix}-{n:0{self.digits}d}" for n in range(self.first, self.first + self.cabinets)]

    @property
    def start_spread_s(self) -> float:
        """The stagger asked for, else one cabinet every 5 ms (1,000 cabinets in 5 s)."""
        return self.stagger_s if self.stagger_s is not None else self.cabinets * 0.005

    @property
    def readings_per_s(self) -> float:
        return self.cabinets * self.points / self.interval_s
