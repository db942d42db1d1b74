"""The simulated lighting output of a fleet-sim cabinet: a relay and a dimming level held in memory.

A real ``FieldDriver`` as far as the agent's lighting runner and command execution can tell (points
with the ``relay`` and ``dim_level`` roles, writes read back), with no socket: thousands of them cost
only their Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocols.driver import PointSpec, PointValue
from protocols.errors import DriverError

RELAY = "relay"
LEVEL = "dim_level_pct"

_POINTS = (
    PointSpec(RELAY, type="bool", writable=True, role="relay", description="lamp relay (simulated)"),
    PointSpec(LEVEL, type="int", unit="%", writable=True, role="dim_level", description="dimming level"),
)


class SimLightingDriver:
    """One lighting controller's outputs, in memory; a write is taken and reads back at once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.values: dict[str, float | int | bool] = {RELAY: False, LEVEL: 100}
        self.writes = 0

    @property
    def points(self) -> Sequence[PointSpec]:
        return _POINTS

    async def connect(self) -> None:
        return None

    async def read(self) -> list[PointValue]:
        return [PointValue(point.name, self.values[point.name]) for point in _POINTS]

    async def write(self, quantity: str, value: float | int | bool) -> None:
        if quantity not in self.values:
            raise DriverError(self.name, f"no writable point {quantity!r}")
        self.values[quantity] = value
        self.writes += 1

    async def close(self) -> None:
        return None
