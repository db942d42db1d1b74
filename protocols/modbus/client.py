"""Modbus TCP field driver: reads a device's profile in few requests, writes and verifies one point.

pymodbus is imported here (and in the simulator) only. Its errors are translated at this boundary:

    connection refused, reset, closed, connect timeout   -> DeviceUnreachable
    connected but no answer within ``timeout``            -> DeviceTimeout
    Modbus exception response                             -> DeviceException (with its code)
    write refused by us or not read back as written       -> WriteRejected

The driver owns the timing: pymodbus's retries and reconnect loop are off, each call (connecting
included) is bounded by ``timeout``, and after a transport failure the connection is dropped so the
next call reconnects from scratch (a restarted device is read again without restarting the agent,
and a late answer to a timed-out request can never be taken for the next one's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from protocols.driver import FieldDriver, PointValue
from protocols.errors import (
    DeviceException,
    DeviceTimeout,
    DeviceUnreachable,
    DriverError,
    WriteRejected,
)
from protocols.modbus.codec import BIT_TABLES, ReadBlock, decode_point, encode_point, plan_reads
from protocols.modbus.profile import Point, Profile
from protocols.quality import Quality

T = TypeVar("T")


class ModbusTcpDriver:
    """A ``protocols.driver.FieldDriver`` for one Modbus TCP unit described by ``profile``."""

    def __init__(
        self,
        *,
        device: str,
        host: str,
        port: int,
        unit: int,
        profile: Profile,
        timeout: float = 1.0,
    ) -> None:
        self.device = device
        self.host = host
        self.port = port
        self.unit = unit
        self.profile = profile
        self.timeout = timeout
        self._blocks = plan_reads(profile.points, max_gap=profile.profile.max_gap)
        self._client: AsyncModbusTcpClient | None = None
        self._lost = asyncio.Event()  # set when the current connection is gone
        self._lost.set()
        self._lock = asyncio.Lock()  # one transaction sequence at a time: read, or write+verify

    @property
    def quantities(self) -> Sequence[str]:
        return self.profile.quantities

    @property
    def requests_per_read(self) -> int:
        """Modbus transactions one ``read()`` costs."""
        return len(self._blocks)

    async def connect(self) -> None:
        """Connect now (``read`` and ``write`` also connect when needed)."""
        await self._guarded(self._ensure_connected)

    async def read(self) -> list[PointValue]:
        """Every point of the profile, in profile order."""
        return await self._guarded(self._read_all)

    async def write(self, quantity: str, value: float | int | bool) -> None:
        """Write one writable point and read it back to check that the device took it."""
        point = self._writable_point(quantity)
        try:
            words = encode_point(point, value)
        except ValueError as exc:
            raise WriteRejected(self.device, str(exc)) from exc
        await self._guarded(partial(self._write_verified, point, value, words))

    async def close(self) -> None:
        """Drop the connection. Safe to call any number of times."""
        self._drop()

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

    # -- operations, run inside _guarded ------------------------------------------------------

    async def _read_all(self) -> list[PointValue]:
        client = await self._ensure_connected()
        values: dict[str, PointValue] = {}
        for block in self._blocks:
            data = await self._read_block(client, block)
            for point in block.points:
                values[point.name] = _point_value(point, block.words_of(point, data))
        return [values[quantity] for quantity in self.quantities]

    async def _write_verified(self, point: Point, value: float | bool, words: list[int] | list[bool]) -> None:
        client = await self._ensure_connected()
        if point.table == "coil":
            request = client.write_coil(point.address, bool(words[0]), device_id=self.unit)
        elif len(words) == 1:
            request = client.write_register(point.address, int(words[0]), device_id=self.unit)
        else:
            values = [int(word) for word in words]
            request = client.write_registers(point.address, values, device_id=self.unit)
        await self._execute(request)
        block: ReadBlock[Point] = ReadBlock(
            table=point.table, address=point.address, count=point.size, points=()
        )
        readback = await self._read_block(client, block)
        if [int(w) for w in readback] != [int(w) for w in words]:
            shown = _point_value(point, readback)
            raise WriteRejected(
                self.device,
                f"{point.name}: wrote {value!r}, read back {shown.value!r} ({list(readback)})",
            )

    async def _read_block(
        self, client: AsyncModbusTcpClient, block: ReadBlock[Point]
    ) -> Sequence[int] | Sequence[bool]:
        readers = {
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
        }
        request = readers[block.table](block.address, count=block.count, device_id=self.unit)
        response = await self._execute(request)
        data = response.bits if block.table in BIT_TABLES else response.registers
        if len(data) < block.count:
            raise DriverError(
                self.device,
                f"short answer reading {block.count} {block.table} from {block.address}: {len(data)} values",
            )
        return data[: block.count]

    # -- connection and error boundary --------------------------------------------------------

    async def _guarded(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one operation under the lock and the timeout, translating every failure."""
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    return await operation()
            except (DeviceException, WriteRejected):
                raise  # the device answered: the connection is fine
            except DriverError:
                self._drop()
                raise
            except TimeoutError as exc:
                connecting = self._client is None
                self._drop()
                if connecting:
                    raise DeviceUnreachable(
                        self.device, f"no connection to {self._address} within {self.timeout}s"
                    ) from exc
                raise DeviceTimeout(self.device, f"no answer within {self.timeout}s") from exc
            except (ConnectionException, OSError) as exc:
                self._drop()
                raise DeviceUnreachable(self.device, f"{self._address}: {exc}") from exc
            except ModbusIOException as exc:
                self._drop()
                raise DeviceTimeout(self.device, str(exc)) from exc
            except ModbusException as exc:
                self._drop()
                raise DriverError(self.device, str(exc)) from exc

    async def _ensure_connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected and not self._lost.is_set():
            return self._client
        self._drop()
        lost = asyncio.Event()
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            name=self.device,
            timeout=self.timeout,
            retries=0,
            reconnect_delay=0,  # 0 disables pymodbus's background reconnect task
            trace_connect=partial(_on_connection_change, lost),
        )
        try:
            connected = await client.connect()
        finally:
            if not client.connected:
                client.close()
        if not connected:
            raise DeviceUnreachable(self.device, f"cannot connect to {self._address}")
        self._client, self._lost = client, lost
        return client

    async def _execute(self, request: Awaitable[ModbusPDU]) -> ModbusPDU:
        """Await a pymodbus request, or fail at once if the connection drops meanwhile.

        pymodbus leaves a request waiting for its full timeout when the peer closes the socket
        (a device that is switched off mid-poll); racing the request against the connection's
        ``lost`` event turns that into an immediate DeviceUnreachable.
        """
        answer = asyncio.ensure_future(request)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait((answer, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not answer.done():
                answer.cancel()
        if answer not in done:
            raise DeviceUnreachable(self.device, f"connection to {self._address} lost")
        response = answer.result()
        if response.isError():
            code = int(response.exception_code)
            raise DeviceException(
                self.device, f"Modbus exception {code} to function {response.function_code & 0x7F}", code
            )
        return response

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._lost.set()
        if client is not None:
            client.close()

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

    @property
    def _address(self) -> str:
        return f"{self.host}:{self.port}"


def _on_connection_change(lost: asyncio.Event, connected: bool) -> None:
    if not connected:
        lost.set()


def _point_value(point: Point, words: Sequence[int] | Sequence[bool]) -> PointValue:
    """A point that does not decode (NaN, ...) is reported bad; the rest of the device is fine."""
    try:
        value = decode_point(point, words)
    except ValueError as exc:
        return PointValue(point.name, None, Quality.BAD, f"decode: {exc}")
    return PointValue(point.name, value)


if TYPE_CHECKING:
    # mypy proves here that the driver implements the agent's interface.
    _implements: type[FieldDriver] = ModbusTcpDriver
