"""What every Modbus field driver shares, whatever carries its requests (TCP, RTU over a serial line).

A driver reads its profile in the few requests ``plan_reads`` plans, decodes each point (a point that
does not decode is reported bad, the rest of the device stays good), and writes one point then reads it
back to check that the device took it. Subclasses provide the transport:

    _transact(request)   send one request to the unit and return its answer (raising protocols.errors)
    _guard(operation)    run one read, or one write and its read-back, within the transport's bounds
                         (the TCP driver bounds the whole operation by its timeout; the RTU driver
                         bounds each transaction, on a line it shares)
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from types import TracebackType
from typing import Self, TypeVar

from pymodbus.client import ModbusBaseClient
from pymodbus.pdu import ModbusPDU

from protocols.driver import IMPLAUSIBLE, AlarmRule, PointSpec, PointType, PointValue
from protocols.errors import DeviceException, DriverError, WriteRejected
from protocols.modbus.codec import (
    BIT_TABLES,
    WRITE_MULTIPLE_REGISTERS,
    WRITE_SINGLE_COIL,
    WRITE_SINGLE_REGISTER,
    ReadBlock,
    Request,
    decode_point,
    encode_point,
    plan_reads,
    read_request,
    write_request,
)
from protocols.modbus.profile import Point, PointAlarm, Profile
from protocols.quality import Quality

T = TypeVar("T")


class ModbusDriverBase(ABC):
    """The transport-independent half of a ``protocols.driver.FieldDriver`` for one Modbus unit."""

    def __init__(self, *, device: str, unit: int, profile: Profile, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError(f"{device}: timeout must be positive, got {timeout!r}")
        self.device = device
        self.unit = unit
        self.profile = profile
        self.timeout = timeout
        self._blocks = plan_reads(profile.points, max_gap=profile.profile.max_gap)
        self._lock = asyncio.Lock()  # one operation at a time per unit: a read, or a write+verify
        self._specs = tuple(point_spec(point, profile.role_of(point)) for point in profile.points)

    @property
    def quantities(self) -> Sequence[str]:
        return self.profile.quantities

    @property
    def points(self) -> Sequence[PointSpec]:
        return self._specs

    @property
    def requests_per_read(self) -> int:
        """Modbus transactions one ``read()`` costs."""
        return len(self._blocks)

    @property
    def read_requests(self) -> list[Request]:
        """The requests one ``read()`` sends, in order."""
        return [read_request(block.table, block.address, block.count) for block in self._blocks]

    async def read(self) -> list[PointValue]:
        """Every point of the profile, in profile order."""
        return await self._run(self._read_all, write=False)

    async def write(self, quantity: str, value: float | int | bool) -> None:
        """Write one writable point and read it back to check that the device took it."""
        point = self._writable_point(quantity)
        try:
            words = encode_point(point, value)
        except ValueError as exc:
            raise WriteRejected(self.device, str(exc)) from exc
        await self._run(partial(self._write_verified, point, value, words), write=True)

    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        """Connection is lazy: entering never fails, the first ``read`` connects."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the transport ------------------------------------------------------------------------

    @abstractmethod
    async def _transact(self, request: Request) -> ModbusPDU:
        """Send ``request`` to the unit; its answer, or a ``DriverError``."""

    @abstractmethod
    async def _guard(self, operation: Callable[[], Awaitable[T]], *, write: bool) -> T:
        """Run one operation (``write``: a write and its read-back) within the transport's bounds."""

    async def _run(self, operation: Callable[[], Awaitable[T]], *, write: bool) -> T:
        async with self._lock:
            return await self._guard(operation, write=write)

    # -- operations -----------------------------------------------------------------------------

    async def _read_all(self) -> list[PointValue]:
        values: dict[str, PointValue] = {}
        for block in self._blocks:
            data = await self._read_block(block)
            for point in block.points:
                values[point.name] = point_value(point, block.words_of(point, data))
        return [values[quantity] for quantity in self.quantities]

    async def _write_verified(self, point: Point, value: float | bool, words: list[int] | list[bool]) -> None:
        await self._transact(write_request(point, words))
        block: ReadBlock[Point] = ReadBlock(
            table=point.table, address=point.address, count=point.size, points=()
        )
        readback = await self._read_block(block)
        if [int(w) for w in readback] != [int(w) for w in words]:
            shown = point_value(point, readback)
            raise WriteRejected(
                self.device,
                f"{point.name}: wrote {value!r}, read back {shown.value!r} ({list(readback)})",
            )

    async def _read_block(self, block: ReadBlock[Point]) -> Sequence[int] | Sequence[bool]:
        response = await self._transact(read_request(block.table, block.address, block.count))
        data = response.bits if block.table in BIT_TABLES else response.registers
        if len(data) < block.count:
            raise DriverError(
                self.device,
                f"short answer reading {block.count} {block.table} from {block.address}: {len(data)} values",
            )
        return data[: block.count]

    def _writable_point(self, quantity: str) -> Point:
        try:
            point = self.profile.point(quantity)
        except KeyError:
            raise WriteRejected(
                self.device, f"{quantity}: no such point in profile {self.profile.name}"
            ) from None
        if not point.writable:
            raise WriteRejected(self.device, f"{quantity}: point is not writable")
        return point


def point_spec(point: Point, role: str | None = None) -> PointSpec:
    """What the agent core is told of a register point: its name, unit, type, role and alarm, never
    its address."""
    if point.type == "bool":
        kind: PointType = "bool"
    elif point.type.startswith("float") or point.scale != 1.0:
        kind = "float"
    else:
        kind = "int"
    return PointSpec(
        name=point.name,
        type=kind,
        unit=point.unit,
        writable=point.writable,
        role=role,
        alarm=None if point.alarm is None else alarm_rule(point.alarm),
        description=point.description,
        plausible=None if point.plausible is None else (point.plausible[0], point.plausible[1]),
    )


def alarm_rule(alarm: PointAlarm) -> AlarmRule:
    return AlarmRule(
        name=alarm.name,
        severity=alarm.severity,
        when_true=alarm.when_true,
        when_in=alarm.when_in,
        above=alarm.above,
        below=alarm.below,
        hysteresis_pct=alarm.hysteresis_pct,
        description=alarm.description or "",
    )


def point_value(point: Point, words: Sequence[int] | Sequence[bool]) -> PointValue:
    """A point that does not decode (NaN, ...) is reported bad, and so is one outside its plausible
    range (a wrong word order reads -2.4e-41 V): the value is kept, the reason says ``implausible``.
    The rest of the device is fine."""
    try:
        value = decode_point(point, words)
    except ValueError as exc:
        return PointValue(point.name, None, Quality.BAD, f"decode: {exc}")
    if point.implausible(value):
        return PointValue(point.name, value, Quality.BAD, IMPLAUSIBLE)
    return PointValue(point.name, value)


def issue(client: ModbusBaseClient, request: Request, unit: int) -> Awaitable[ModbusPDU]:
    """Hand ``request`` to a pymodbus async client (TCP or serial); the awaitable of its answer."""
    readers = {
        1: client.read_coils,
        2: client.read_discrete_inputs,
        3: client.read_holding_registers,
        4: client.read_input_registers,
    }
    if (reader := readers.get(request.function)) is not None:
        return reader(request.address, count=request.count, device_id=unit)
    values = list(request.values)
    if request.function == WRITE_SINGLE_COIL:
        return client.write_coil(request.address, bool(values[0]), device_id=unit)
    if request.function == WRITE_SINGLE_REGISTER:
        return client.write_register(request.address, values[0], device_id=unit)
    if request.function == WRITE_MULTIPLE_REGISTERS:
        return client.write_registers(request.address, values, device_id=unit)
    raise ValueError(f"function code {request.function} is not supported")


def answer_or_raise(device: str, response: ModbusPDU) -> ModbusPDU:
    """The answer, or DeviceException when the unit answered with a Modbus exception."""
    if response.isError():
        code = int(response.exception_code)
        raise DeviceException(
            device, f"Modbus exception {code} to function {response.function_code & 0x7F}", code
        )
    return response
