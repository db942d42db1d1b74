"""All or nothing at the device: the writes of one lighting change, undone when one of them fails.

Before its first write to a device a ``WriteTransaction`` reads the device once and keeps what each
point held. When a later write fails (the relay refuses, after the level was taken), ``undo`` writes
the kept values back, newest first, each verified by the driver's read-back. What cannot be put back
(the device stopped answering, the value before was unknown) is named exactly in the ``PartialWrite``
it raises, with the value each point was left at.

A write the device refused with a protocol exception changed nothing there; any other failure of a
write (a timeout, a connection lost, a read-back that differs) may have, so that point is put back too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from protocols.driver import FieldDriver, Value
from protocols.errors import DeviceException, DriverError
from protocols.quality import Quality


@dataclass(frozen=True, slots=True)
class Change:
    """One point a transaction wrote (or tried to): ``device/point``, from ``before`` to ``after``."""

    device: str
    point: str
    before: Value
    after: Value

    @property
    def name(self) -> str:
        return f"{self.device}/{self.point}"


class PartialWrite(DriverError):
    """A write failed part way and some points could not be put back.

    ``cause`` is the first failure; ``left`` the points left changed, each with the value it was left
    at (``None``: unknown, the device did not say); ``restored`` those that were put back.
    """

    reason = "left_changed"

    def __init__(
        self,
        cause: DriverError,
        left: Sequence[tuple[Change, Value]],
        restored: Sequence[Change],
        held: Mapping[str, Mapping[str, Value]],
    ) -> None:
        self.cause = cause
        self.left = tuple(left)
        self.restored = tuple(restored)
        self.held = held  # device -> point -> what it holds now, as far as known (None: unknown)
        super().__init__(cause.device, f"left changed: {describe_left(self.left)}; after: {cause}")

    @property
    def devices(self) -> list[str]:
        return list(dict.fromkeys(change.device for change, _ in self.left))


class UndoneWrite(DriverError):
    """A write failed part way and every point it had changed was put back as it was."""

    def __init__(self, cause: DriverError, restored: Sequence[Change]) -> None:
        self.cause = cause
        self.restored = tuple(restored)
        self.reason = cause.reason
        undone = f"; undone: {', '.join(c.name for c in self.restored)} put back" if self.restored else ""
        super().__init__(cause.device, f"{cause.detail}{undone}")


def describe_left(left: Sequence[tuple[Change, Value]]) -> str:
    """``lc1/dim_level_pct=50, lc1/relay=unknown``."""
    return ", ".join(f"{change.name}={describe_value(value)}" for change, value in left)


def describe_value(value: Value) -> str:
    """``on``/``off`` for a bool, ``unknown`` for None, else the value."""
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


class WriteTransaction:
    """``await tx.write(device, driver, point, value)`` for each write; when one fails, ``tx.undo(exc)``."""

    def __init__(self) -> None:
        self._before: dict[str, dict[str, Value]] = {}
        self._drivers: dict[str, FieldDriver] = {}
        self._changes: list[Change] = []  # in write order
        self._uncertain: Change | None = None  # a failed write that may or may not have been taken

    @property
    def changes(self) -> tuple[Change, ...]:
        return tuple(self._changes)

    async def write(self, device: str, driver: FieldDriver, point: str, value: float | int | bool) -> None:
        """Write one point; raises the driver's error (nothing is undone until ``undo``)."""
        before = await self._snapshot(device, driver)
        change = Change(device, point, before.get(point), value)
        try:
            await driver.write(point, value)
        except DeviceException:
            raise  # refused by the device: not changed there
        except DriverError:
            self._changes.append(change)  # it may have been written: put it back too
            self._uncertain = change
            raise
        self._changes.append(change)

    async def undo(self, cause: DriverError) -> DriverError:
        """Put back every point written, newest first; the error to raise for ``cause``: an
        ``UndoneWrite`` when all of them are as before, a ``PartialWrite`` naming what is not."""
        restored: list[Change] = []
        left: list[tuple[Change, Value]] = []
        for change in reversed(self._changes):
            left_at = None if change is self._uncertain else change.after
            if change.before == change.after:
                continue  # written with what it held already
            if change.before is None or isinstance(change.before, str):
                left.append((change, left_at))  # what it held before is not known
                continue
            try:
                await self._drivers[change.device].write(change.point, change.before)
            except DriverError:
                left.append((change, left_at))
            else:
                restored.append(change)
        self._changes.clear()
        self._uncertain = None
        if not left:
            return UndoneWrite(cause, restored)
        left, held = await self._confirm(list(reversed(left)))
        if not left:  # read again, what seemed changed holds what it held before
            return UndoneWrite(cause, restored)
        return PartialWrite(cause, left, restored, held)

    async def _confirm(
        self, left: list[tuple[Change, Value]]
    ) -> tuple[list[tuple[Change, Value]], dict[str, dict[str, Value]]]:
        """Read each device left changed once more: what its points hold now, where it answers."""
        held: dict[str, dict[str, Value]] = {}
        for device in dict.fromkeys(change.device for change, _ in left):
            known = dict(self._before[device])
            try:
                values = await self._drivers[device].read()
            except DriverError:
                known |= {change.point: value for change, value in left if change.device == device}
            else:
                known |= {v.quantity: v.value if v.quality is Quality.GOOD else None for v in values}
            held[device] = known
        confirmed = [
            (change, held[change.device].get(change.point))
            for change, _ in left
            if held[change.device].get(change.point) != change.before
        ]
        return confirmed, held

    async def _snapshot(self, device: str, driver: FieldDriver) -> dict[str, Value]:
        if device not in self._before:
            # One read per device and transaction; a device that cannot be read is not written.
            values = await driver.read()
            self._before[device] = {v.quantity: v.value for v in values if v.quality is Quality.GOOD}
            self._drivers[device] = driver
        return self._before[device]
