"""Modbus RTU field driver: one unit on a shared ``SerialLine`` (reading and verified writes: ``base``).

Several drivers share one line, one per unit; each has its own ``timeout``, which bounds each of its
transactions once it has the line (a read of N blocks is N transactions, made in one turn on the
line). Waiting for the line is bounded by the line's fairness, not by this timeout: see
``protocols.modbus.serial_line`` for how a dead or babbling neighbour is kept from stalling it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

from pymodbus.pdu import ModbusPDU

from protocols.driver import FieldDriver
from protocols.modbus.base import ModbusDriverBase
from protocols.modbus.codec import Request
from protocols.modbus.profile import Profile
from protocols.modbus.serial_line import SerialLine

T = TypeVar("T")

# Modbus over serial line v1.02, 2.2: 0 is broadcast (never answered), 248-255 are reserved.
MIN_UNIT: Final = 1
MAX_UNIT: Final = 247


class ModbusRtuDriver(ModbusDriverBase):
    """A ``protocols.driver.FieldDriver`` for unit ``unit`` on ``line``, described by ``profile``."""

    def __init__(
        self,
        *,
        device: str,
        line: SerialLine,
        unit: int,
        profile: Profile,
        timeout: float = 0.5,
    ) -> None:
        if not MIN_UNIT <= unit <= MAX_UNIT:
            raise ValueError(f"{device}: RTU unit must be {MIN_UNIT}..{MAX_UNIT}, got {unit!r}")
        super().__init__(device=device, unit=unit, profile=profile, timeout=timeout)
        self.line = line

    async def connect(self) -> None:
        """Open the line's port now (``read`` and ``write`` also open it when needed)."""
        self.line.attach(self)
        await self.line.open(device=self.device)

    async def close(self) -> None:
        """Stop using the line; its port closes when no driver uses it. Safe to call repeatedly."""
        await self.line.detach(self)

    async def _guard(self, operation: Callable[[], Awaitable[T]], *, write: bool) -> T:
        # The line is held for the whole operation; it translates failures transaction by transaction.
        self.line.attach(self)
        async with self.line.session(unit=self.unit, device=self.device, urgent=write):
            return await operation()

    async def _transact(self, request: Request) -> ModbusPDU:
        return await self.line.transact(request, unit=self.unit, device=self.device, timeout=self.timeout)


if TYPE_CHECKING:
    # mypy proves here that the driver implements the agent's interface.
    _implements: type[FieldDriver] = ModbusRtuDriver
