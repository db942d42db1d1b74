"""The one interface every field driver implements; the agent core knows only this.

A driver owns one device (one Modbus unit, one traffic-light controller's OPC UA server, one camera).
It says which points it offers (``points``: name, unit, type, writable, role, and the alarm a value
raises), reads them all at once, writes one, and, when its protocol pushes (OPC UA monitored items, an
ONVIF PullPoint), hands each change to the agent as it arrives (``PushingDriver.changes``).

``read`` returns one ``PointValue`` per point, in ``points`` order, or raises a ``DriverError`` when
the device as a whole cannot be read (so the agent raises one ``device_lost`` event, not one per point).
A point that cannot be decoded while the rest of the device answers comes back with a bad quality and a
reason instead. Constructors do no I/O (``agent check`` builds every driver without touching a device);
``connect`` may, and every call is bounded by the device's timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from protocols.quality import Quality

Value = float | int | bool | str | None
PointType = Literal["bool", "int", "float", "str"]
Severity = Literal["info", "warning", "alarm", "critical"]

# Roles the agent acts on, declared by a profile. Lighting: a writable ``relay`` is switched on and off
# (a bool), a writable ``dim_level`` gets the level in percent; ``power`` (W) and ``current`` (A) feed
# the lighting alarms; ``lamp_failure`` and ``door`` are flags. Other roles are descriptive (a traffic
# controller's ``mode``, a camera's ``clock_drift``): the agent records them and leaves them alone.
LIGHTING_ROLES = ("relay", "dim_level", "power", "current", "lamp_failure", "door")

# The reason of a value read outside its point's ``plausible`` range (kept, with a bad quality).
IMPLAUSIBLE = "implausible"


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """The alarm a point's value raises. Exactly one condition is set.

    ``when_true``: a bool point raises while true. ``when_in``: raises while the value is one of these
    (a controller's mode ``flashing`` or ``dark``). ``above``/``below``: a number raises beyond the limit
    and clears only ``hysteresis_pct`` back inside it. Raised after ``raise_after`` consecutive values
    in alarm (the device's setting when None) and cleared after as many out of it, once each.
    """

    name: str
    severity: Severity = "alarm"
    when_true: bool = False
    when_in: tuple[str | int, ...] = ()
    above: float | None = None
    below: float | None = None
    hysteresis_pct: float = 10.0
    description: str = ""


@dataclass(frozen=True, slots=True)
class PointSpec:
    """One point a driver offers. ``name`` is unique within its device."""

    name: str
    type: PointType = "float"
    unit: str | None = None
    writable: bool = False
    role: str | None = None
    alarm: AlarmRule | None = None
    description: str | None = None
    # [low, high]: a value read outside is reported bad with the reason ``IMPLAUSIBLE``.
    plausible: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class PointValue:
    """One value read from a device. ``quantity`` is the point's name within its device."""

    quantity: str
    value: Value
    quality: Quality = Quality.GOOD
    reason: str | None = None


@runtime_checkable
class FieldDriver(Protocol):
    """Connect, read every point, write one point, close."""

    @property
    def points(self) -> Sequence[PointSpec]:
        """The points this driver offers, in the order ``read`` returns them."""
        ...

    async def connect(self) -> None: ...

    async def read(self) -> list[PointValue]: ...

    async def write(self, quantity: str, value: float | int | bool) -> None:
        """Write one writable point and read it back; a driver with none raises ``DriverError``."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class PushingDriver(FieldDriver, Protocol):
    """A driver whose protocol pushes changes (subscriptions, event pulls), besides being polled.

    ``changes`` yields the values that changed, as they arrive, for as long as the agent runs: the
    driver re-creates its subscription by itself after a reconnect or a server restart, and the
    iterator outlives them. While the device cannot be reached it yields nothing (the poll reports it).
    """

    def changes(self) -> AsyncIterator[list[PointValue]]: ...
