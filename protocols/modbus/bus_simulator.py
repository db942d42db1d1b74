"""An RS-485 line of lighting controllers: several simulators served as Modbus RTU units on one port.

    async with PtyPair(tmp) as pty, SerialBusSimulator(
        port=pty.server_path, units={1: sim1, 2: sim2}, baudrate=9600
    ) as bus:
        bus.set_fault(2, Fault.DEAD)     # a driver on pty.client_path now gets no answer from unit 2

Each unit is a ``LightingControllerSimulator`` (its registers, its behaviour, its exception and
unresponsive switches); the bus adds what belongs to the line:

- **RS-485 addressing**: a request for an address that is not on the bus gets no answer at all, as on
  a real line (pymodbus's serial server would answer it with an exception).
- **Faults per unit** (``Fault``): ``DEAD`` never answers (a cut leg, a unit switched off);
  ``BAD_CRC`` answers with one bit flipped in the frame, so the CRC does not match (noise, a missing
  termination); ``GARBAGE`` answers with random bytes, in two bursts (a unit at the wrong baud rate,
  a babbling transceiver); ``LATE`` answers correctly but only ``late_s`` after the request (a unit
  slower than the master's timeout: its answer lands in a later transaction).
- **Line speed** (``paced=True``): a pseudo-terminal moves bytes at memory speed, so the bus delivers
  each answer when its last byte would arrive on a real line at ``baudrate``: the request's own
  transmission, the 3.5-character silence that ends it, then the answer's transmission (characters of
  1 start + ``bytesize`` + parity + ``stopbits`` bits). The master's 3.5-character silence before its
  next request is the master's to keep (``SerialLine`` does). Timing rests on the event loop's timers:
  good to a fraction of a millisecond on an idle machine.

Frames are decoded and answers computed by pymodbus (its RTU framer and its simulator datastore, fed
by each controller's action hook); the bus reads and writes the port itself, to own the timing.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Final, Self, cast

import serial
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.simulator.simcore import SimCore

from protocols.modbus.rtu import Parity, char_time, frame_silence
from protocols.modbus.simulator import LightingControllerSimulator

_SERVED_FUNCTIONS: Final = frozenset({1, 2, 3, 4, 5, 6, 15, 16})
# A pseudo-terminal keeps no byte timing: a partial request older than this is dropped, a real UART
# would use the 3.5-character silence.
_PARTIAL_FRAME_MAX_AGE_S: Final = 0.05
_READ_CHUNK: Final = 4096


class Fault(StrEnum):
    DEAD = "dead"
    BAD_CRC = "bad_crc"
    GARBAGE = "garbage"
    LATE = "late"


@dataclass(slots=True)
class BusStats:
    requests: int = 0  # frames received with a valid CRC
    answered: int = 0  # answers sent, faulty ones included
    ignored: int = 0  # requests for addresses not on the bus, or to dead units
    bad_requests: int = 0  # received bytes that were not a valid request


@dataclass(frozen=True, slots=True)
class _Request:
    pdu: ModbusPDU
    size: int  # bytes of the frame
    received_at: float


class SerialBusSimulator:
    """Serve ``units`` (address -> simulator) as Modbus RTU units on the serial port ``port``."""

    def __init__(
        self,
        *,
        port: str | os.PathLike[str],
        units: Mapping[int, LightingControllerSimulator],
        baudrate: int = 19_200,
        parity: Parity = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        paced: bool = True,
        late_s: float = 0.5,
        seed: int | None = None,
    ) -> None:
        if not units or not all(1 <= unit <= 247 for unit in units):
            raise ValueError(f"units must be addresses 1..247, got {sorted(units)}")
        self.port = os.fspath(port)
        self.units = dict(units)
        self.baudrate = baudrate
        self.parity: Parity = parity
        self.stopbits = stopbits
        self.bytesize = bytesize
        self.paced = paced
        self.late_s = late_s
        self.char_time = char_time(baudrate, bytesize=bytesize, parity=parity, stopbits=stopbits)
        self.silence = frame_silence(baudrate, bytesize=bytesize, parity=parity, stopbits=stopbits)
        self.stats = BusStats()
        self._faults: dict[int, Fault] = {}
        self._rng = random.Random(seed)
        self._core = SimCore([sim.sim_device(unit) for unit, sim in self.units.items()])
        self._framer = FramerRTU(DecodePDU(True))
        self._serial: Any = None
        self._received = b""
        self._last_byte_at = 0.0
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def serving(self) -> bool:
        return self._serial is not None

    async def start(self) -> None:
        """Open the port and answer requests (again: unit state survives stop/start)."""
        if self._serial is not None:
            return
        self._serial = serial.serial_for_url(
            self.port,
            baudrate=self.baudrate,
            bytesize=self.bytesize,
            parity=self.parity,
            stopbits=self.stopbits,
            timeout=0,
            write_timeout=0,
            exclusive=True,
        )
        self._received = b""
        asyncio.get_running_loop().add_reader(self._serial.fileno(), self._on_readable)
        self._worker = asyncio.create_task(self._answer_requests(), name=f"rtu-bus {self.port}")

    async def stop(self) -> None:
        """Stop answering and close the port."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            await asyncio.wait([worker])
        self._close_port()
        self._queue = asyncio.Queue()
        if worker is not None and not worker.cancelled() and (error := worker.exception()) is not None:
            raise error  # a bug in answering: do not let it pass as a dead bus

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- faults ------------------------------------------------------------------------------------

    def set_fault(self, unit: int, fault: Fault | None) -> None:
        """Make ``unit`` misbehave on the line (None: behave again)."""
        if unit not in self.units:
            raise KeyError(f"unit {unit} is not on this bus (units: {sorted(self.units)})")
        if fault is None:
            self._faults.pop(unit, None)
        else:
            self._faults[unit] = fault

    def fault(self, unit: int) -> Fault | None:
        return self._faults.get(unit)

    # -- receiving ---------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data: bytes = self._serial.read(_READ_CHUNK)
        except serial.SerialException:
            self._close_port()  # the other end of the line is gone
            return
        now = time.monotonic()
        if self._received and now - self._last_byte_at > max(_PARTIAL_FRAME_MAX_AGE_S, self.silence):
            self.stats.bad_requests += 1
            self._received = b""
        self._last_byte_at = now
        self._received += data
        while self._received:
            try:
                used, pdu = self._framer.handleFrame(self._received, 0, 0)
            except ModbusIOException:
                used, pdu = len(self._received), None
            if not used:
                return  # an incomplete frame: wait for the rest
            if pdu is None:
                self.stats.bad_requests += 1
            else:
                self.stats.requests += 1
                self._queue.put_nowait(_Request(pdu, used, now))
            self._received = self._received[used:]

    def _close_port(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            asyncio.get_running_loop().remove_reader(port.fileno())
            port.close()

    # -- answering ---------------------------------------------------------------------------------

    async def _answer_requests(self) -> None:
        while True:
            request = await self._queue.get()
            unit = request.pdu.dev_id
            sim = self.units.get(unit)
            if sim is None or sim.unresponsive or self._faults.get(unit) is Fault.DEAD:
                self.stats.ignored += 1
                continue
            frame = self._framer.buildFrame(await self._respond(request.pdu))
            await self._send(unit, frame, request)

    async def _respond(self, pdu: ModbusPDU) -> ModbusPDU:
        if pdu.function_code not in _SERVED_FUNCTIONS:
            response: ModbusPDU = ExceptionResponse(pdu.function_code, ExcCodes.ILLEGAL_FUNCTION)
        else:
            # SimCore is the datastore pymodbus's servers build from SimDevices.
            response = await pdu.datastore_update(cast(Any, self._core), pdu.dev_id)
        response.dev_id = pdu.dev_id
        response.transaction_id = 0
        return response

    async def _send(self, unit: int, frame: bytes, request: _Request) -> None:
        fault = self._faults.get(unit)
        if fault is Fault.BAD_CRC:
            frame = frame[:-3] + bytes([frame[-3] ^ 0x01]) + frame[-2:]
        bursts = self._garbage(len(frame)) if fault is Fault.GARBAGE else [frame]
        at = request.received_at + (request.size + 3.5) * self.char_time
        if fault is Fault.LATE:
            at += self.late_s
        for burst in bursts:
            at += len(burst) * self.char_time
            if self.paced or fault is Fault.LATE:
                await asyncio.sleep(max(at - time.monotonic(), 0.0))
            self._write(burst)
            at += 2 * self.char_time  # a gap inside the answer: shorter than the frame silence
        self.stats.answered += 1

    def _garbage(self, size: int) -> list[bytes]:
        """Random bytes, about as many as the answer, in two bursts; never starting with an address
        of this bus (so that the master can tell at once it is not an answer)."""
        noise = bytearray(self._rng.randbytes(size + self._rng.randint(0, 8)))
        noise[0] = self._rng.randint(248, 255)  # reserved addresses: never a unit's
        half = max(len(noise) // 2, 1)
        return [bytes(noise[:half]), bytes(noise[half:])]

    def _write(self, data: bytes) -> None:
        if self._serial is None or not data:
            return
        try:
            self._serial.write(data)
        except serial.SerialException:
            self._close_port()
