"""Modbus TCP field driver: one connection per unit (reading, decoding, verified writes: ``base``).

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
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from protocols.driver import FieldDriver
from protocols.errors import (
    DeviceException,
    DeviceTimeout,
    DeviceUnreachable,
    DriverError,
    WriteRejected,
)
from protocols.modbus.base import ModbusDriverBase, answer_or_raise, issue
from protocols.modbus.codec import Request
from protocols.modbus.profile import Profile

T = TypeVar("T")


class ModbusTcpDriver(ModbusDriverBase):
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
        super().__init__(device=device, unit=unit, profile=profile, timeout=timeout)
        self.host = host
        self.port = port
        self._client: AsyncModbusTcpClient | None = None
        self._lost = asyncio.Event()  # set when the current connection is gone
        self._lost.set()

    async def connect(self) -> None:
        """Connect now (``read`` and ``write`` also connect when needed)."""
        await self._run(self._ensure_connected, write=False)

    async def close(self) -> None:
        """Drop the connection. Safe to call any number of times."""
        self._drop()

    # -- connection and error boundary --------------------------------------------------------

    async def _guard(self, operation: Callable[[], Awaitable[T]], *, write: bool) -> T:
        """Run one operation under the timeout, translating every failure."""
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

    async def _transact(self, request: Request) -> ModbusPDU:
        """Send one request, or fail at once if the connection drops meanwhile.

        pymodbus leaves a request waiting for its full timeout when the peer closes the socket
        (a device that is switched off mid-poll); racing the request against the connection's
        ``lost`` event turns that into an immediate DeviceUnreachable.
        """
        client = await self._ensure_connected()
        answer = asyncio.ensure_future(issue(client, request, self.unit))
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait((answer, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not answer.done():
                answer.cancel()
        if answer not in done:
            raise DeviceUnreachable(self.device, f"connection to {self._address} lost")
        return answer_or_raise(self.device, answer.result())

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._lost.set()
        if client is not None:
            client.close()

    @property
    def _address(self) -> str:
        return f"{self.host}:{self.port}"


def _on_connection_change(lost: asyncio.Event, connected: bool) -> None:
    if not connected:
        lost.set()


if TYPE_CHECKING:
    # mypy proves here that the driver implements the agent's interface.
    _implements: type[FieldDriver] = ModbusTcpDriver
