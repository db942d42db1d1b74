"""The small interface every field driver implements; the agent core knows only this.

A driver owns one device (one Modbus unit, one OPC UA server, one camera). ``read`` returns one
``PointValue`` per point of the device's profile, or raises a ``DriverError`` when the device as a whole
cannot be read (so the agent can raise one device-lost event, not one per point). A point that cannot be
decoded while the rest of the device answers comes back with a bad quality and a reason instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from protocols.quality import Quality

Value = float | int | bool | str | None


@dataclass(frozen=True, slots=True)
class PointValue:
    """One value read from a device. ``quantity`` is the point's name within its device."""

    quantity: str
    value: Value
    quality: Quality = Quality.GOOD
    reason: str | None = None


class FieldDriver(Protocol):
    """Connect, read every point, write one point, close. All calls are bounded by a timeout."""

    @property
    def quantities(self) -> Sequence[str]:
        """Names of the points this driver reads, in profile order."""
        ...

    async def connect(self) -> None: ...

    async def read(self) -> list[PointValue]: ...

    async def write(self, quantity: str, value: float | int | bool) -> None: ...

    async def close(self) -> None: ...
