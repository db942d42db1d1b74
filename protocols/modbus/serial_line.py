"""One RS-485 line (one serial port) shared by every Modbus RTU unit wired to it.

A ``SerialLine`` owns the port (a pymodbus ``AsyncModbusSerialClient`` with the RTU framer) and runs
one transaction at a time on it; ``ModbusRtuDriver`` objects, one per unit, send their requests through
it, each with its own timeout.

Why a dead neighbour costs a healthy unit (almost) nothing
---------------------------------------------------------
The line is a shared, half-duplex medium: while a request waits for an answer nobody else may talk, so
a unit that never answers holds the line for its whole timeout, and a line where every poll of every
dead unit costs a timeout starves the live ones. The line bounds what a failing unit can take:

1. **Its own timeout, at most, per attempt.** A transaction is bounded by the unit's ``timeout``
   (request sent to answer complete). A corrupt answer is usually recognised from its first bytes
   (address, function, byte count) or at the latest by its CRC, and failed at once instead of waiting
   for the timeout (``rtu.judge_answer``). pymodbus only ever sees frames that passed that check.
2. **Clean line for the next unit.** After a failure the failing unit keeps the line until it has been
   quiet for ``resync_quiet_s`` (the tail of a garbage answer), within its timeout, then the input is
   flushed; every request is preceded by the 3.5-character inter-frame silence and a flush; a valid
   frame from another address (a late answer to a timed-out request) is skipped, not taken as ours.
3. **Backoff.** After ``backoff.after_failures`` consecutive failures a unit is not put on the line
   again for ``initial_s``, doubling per further failure up to ``max_s`` (jittered): its reads fail at
   once meanwhile, with the same kind of error as the last real attempt (``DeviceTimeout``,
   ``CorruptFrame``), saying so. The first request after the delay is the probe; an answer restores
   the unit at once. Writes (operator commands) are always attempted.
4. **Fair order.** The line is granted one operation at a time (``session``: a read of all the unit's
   blocks, or a write and its read-back; a failing operation ends at its first failed transaction),
   in arrival order, except that a failing unit's operations give way to healthy units' for up to
   ``backoff.defer_s`` (``LineScheduler``); even on an idle line a failing unit waits a few
   milliseconds (``LineScheduler.grace``) so that healthy reads falling due at the same tick (pollers
   with one interval tick together) go first. A healthy unit's due read therefore waits for at most
   the one operation already on the line, never behind a queue of probes or retries, and a probe can
   never slip in between the blocks of a healthy read.

So a healthy read is delayed by at most one failing transaction (its unit's ``timeout``), and only
when it falls due while a probe is already on the line: rarely, once per failing neighbour per backoff
period at most. Its poll rate does not change as long as its own read plus one neighbour's timeout fits
in its poll interval, and mostly even when it does not. Measured by the integration tests
(test_modbus_serial.py): at 9,600 baud, 0.3 s polls and 0.2 s timeouts, a 3-phase controller (0.15 s
per read) next to a dead and a corrupt unit polled at the same ticks keeps 100 % of its poll rate;
with neither backoff nor fair order it drops to 80 %, with either one alone it stays at 100 %, but
only backoff gives the line time back (a dead unit polled every 0.3 s would hold it 2/3 of the time).

Errors: ``DeviceTimeout`` (no answer), ``CorruptFrame`` (a ``DriverError``, reason ``corrupt_frame``),
``DeviceException`` (a Modbus exception answer), ``DeviceUnreachable`` (the port cannot be opened, with
the reason and the fix, or it went away: the next request reopens it).
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import random
import termios
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Final, Self

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from protocols.errors import DeviceTimeout, DeviceUnreachable, DriverError
from protocols.modbus.base import answer_or_raise, issue
from protocols.modbus.codec import Request
from protocols.modbus.rtu import CorruptFrame, Parity, char_time, frame_silence, judge_answer
from protocols.modbus.scheduling import BackoffPolicy, LineScheduler, UnitHealth
from protocols.modbus.serial_port import check_settings, explain_open_failure

# pymodbus's own response timeout; ours (per unit) always fires first.
_PYMODBUS_TIMEOUT_S: Final = 60.0
_DEFAULT_RESYNC_QUIET_S: Final = 0.02  # covers the latency timer of common USB-RS485 adapters


@dataclass(slots=True)
class LineStats:
    """Counters of one line since it was created."""

    transactions: int = 0  # requests put on the line
    answered: int = 0  # valid answers (exception answers included)
    timeouts: int = 0
    corrupt: int = 0
    stale_frames: int = 0  # valid frames from another unit, skipped
    resyncs: int = 0
    refused: int = 0  # requests failed at once by a unit's backoff, without using the line
    opens: int = 0
    open_failures: int = 0
    busy_s: float = 0.0  # time the line was held by transactions


@dataclass(slots=True)
class _Exchange:
    """The transaction on the line: what answer is expected, and how it failed if it did."""

    unit: int
    request: Request
    device: str
    failure: asyncio.Future[CorruptFrame]
    complete: bool = False
    received: bytes = b""  # every byte received since the request was sent
    seen: int = 0  # length of pymodbus's receive buffer at the last call of the packet hook
    skipped: int = 0  # bytes of stale frames at the start of ``received``


class SerialLine:
    """One serial port and the Modbus RTU units on it. ``async with SerialLine(port=...) as line:``."""

    def __init__(
        self,
        *,
        port: str | os.PathLike[str],
        baudrate: int = 19_200,
        parity: Parity = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        backoff: BackoffPolicy | None = None,
        resync_quiet_s: float = _DEFAULT_RESYNC_QUIET_S,
        reopen_after_s: float = 1.0,
        seed: int | None = None,
    ) -> None:
        check_settings(baudrate, parity, stopbits, bytesize)
        self.port = os.fspath(port)
        self.baudrate = baudrate
        self.parity: Parity = parity
        self.stopbits = stopbits
        self.bytesize = bytesize
        self.backoff = backoff or BackoffPolicy()
        self.resync_quiet_s = resync_quiet_s
        self.reopen_after_s = reopen_after_s
        self.char_time = char_time(baudrate, bytesize=bytesize, parity=parity, stopbits=stopbits)
        self.silence = frame_silence(baudrate, bytesize=bytesize, parity=parity, stopbits=stopbits)
        self.stats = LineStats()
        self._rng = random.Random(seed)
        self._scheduler = LineScheduler()
        self._health: dict[int, UnitHealth] = {}
        self._users: set[object] = set()
        self._client: AsyncModbusSerialClient | None = None
        self._lost = asyncio.Event()
        self._lost.set()
        self._current: _Exchange | None = None
        self._holder: asyncio.Task[Any] | None = None  # the task in a session, holding the line
        self._last_activity = -math.inf  # last byte sent or received
        self._unsettled = False  # a transaction failed or was abandoned: resync before the next
        self._reopen_not_before = 0.0
        self._open_failure = ""

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._client is not None and self._client.connected and not self._lost.is_set()

    async def open(self, *, device: str | None = None) -> None:
        """Open the port now (transactions also open it when needed). Raises DeviceUnreachable."""
        async with self._scheduler.turn():
            await self._ensure_open(device or self.port)

    async def close(self) -> None:
        """Close the port. Safe to call any number of times; the next transaction reopens it."""
        self._drop()

    def attach(self, user: object) -> None:
        """Count ``user`` (a driver) as using the line."""
        self._users.add(user)

    async def detach(self, user: object) -> None:
        """``user`` is done; the port closes when the last user is."""
        self._users.discard(user)
        if not self._users:
            self._drop()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def settings(self) -> str:
        """Like ``19200 8N1``."""
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"

    def health(self, unit: int) -> UnitHealth:
        """The line's record of ``unit``: failures in a row, backoff, attempts."""
        if unit not in self._health:
            self._health[unit] = UnitHealth(unit)
        return self._health[unit]

    # -- transactions ----------------------------------------------------------------------------

    @asynccontextmanager
    async def session(self, *, unit: int, device: str, urgent: bool = False) -> AsyncIterator[None]:
        """Hold the line for one operation on ``unit``: the transactions of one read, or a write and
        its read-back, made by ``transact`` inside the block without queueing again.

        Unless ``urgent`` (a write: an operator's command), a unit that is backed off is refused at
        once (DeviceTimeout or CorruptFrame, like its last failure), and a failing unit queues behind
        healthy units for up to ``backoff.defer_s``.
        """
        if self._holder is not None and self._holder is asyncio.current_task():
            yield  # already holding the line: a nested call
            return
        health = self.health(unit)
        if not urgent and (refusal := health.refusal(device, time.monotonic())) is not None:
            self.stats.refused += 1
            raise refusal
        defer = self.backoff.defer_s if health.failing and not urgent else 0.0
        async with self._scheduler.turn(defer=defer):
            self._holder = asyncio.current_task()
            try:
                yield
            finally:
                self._holder = None

    async def transact(self, request: Request, *, unit: int, device: str, timeout: float) -> ModbusPDU:
        """Send ``request`` to ``unit`` and return its answer; inside a ``session`` or in one of its own.

        ``timeout`` bounds the transaction once it has the line. Raises DeviceTimeout, CorruptFrame,
        DeviceException or DeviceUnreachable (``device`` names the unit's device in them).
        """
        async with self.session(unit=unit, device=device, urgent=request.is_write):
            health = self.health(unit)
            started = time.monotonic()
            try:
                return await self._exchange(request, unit, device, timeout, health)
            finally:
                held = time.monotonic() - started
                self.stats.busy_s += held
                health.busy_s += held

    async def _exchange(
        self, request: Request, unit: int, device: str, timeout: float, health: UnitHealth
    ) -> ModbusPDU:
        client = await self._ensure_open(device)
        exchange = _Exchange(unit, request, device, asyncio.get_running_loop().create_future())
        sent = time.monotonic()
        try:
            await self._settle(client, deadline=sent + timeout)
            self._current = exchange
            sent = time.monotonic()
            self.stats.transactions += 1
            health.attempts += 1
            try:
                response = await self._await_answer(client, exchange, timeout)
            finally:
                self._current = None
                # Failed or abandoned (cancelled): the rest of an answer may still be on its way.
                self._unsettled = self._unsettled or not exchange.complete
        except (DeviceTimeout, CorruptFrame) as exc:
            health.failed(exc, time.monotonic(), self.backoff, self._rng)
            await self._settle(client, deadline=sent + timeout)  # charged to the failing unit
            raise
        except DeviceUnreachable:
            self._drop()
            raise
        except (ConnectionException, OSError, termios.error) as exc:  # termios: flushing a port gone
            self._drop()
            raise DeviceUnreachable(device, f"serial port {self.port}: {exc}") from exc
        self.stats.answered += 1
        health.answered()
        return answer_or_raise(device, response)

    async def _await_answer(
        self, client: AsyncModbusSerialClient, exchange: _Exchange, timeout: float
    ) -> ModbusPDU:
        """The answer, or the first of: a corrupt frame, the port lost, the unit's timeout."""
        device, unit = exchange.device, exchange.unit
        answer = asyncio.ensure_future(issue(client, exchange.request, unit))
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            async with asyncio.timeout(timeout):
                await asyncio.wait((answer, exchange.failure, lost), return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError as exc:
            self.stats.timeouts += 1
            raise DeviceTimeout(device, f"unit {unit} on {self.port}: no answer within {timeout}s") from exc
        finally:
            for waiter in (answer, lost):
                _discard(waiter)
        if exchange.failure.done():
            self.stats.corrupt += 1
            raise exchange.failure.result()
        if not answer.done():
            raise DeviceUnreachable(device, f"serial port {self.port} lost")
        try:
            return answer.result()
        except ModbusIOException as exc:
            self.stats.timeouts += 1
            raise DeviceTimeout(device, f"unit {unit} on {self.port}: {exc}") from exc
        except ConnectionException:
            raise
        except ModbusException as exc:
            raise DriverError(device, f"unit {unit} on {self.port}: {exc}") from exc

    async def _settle(self, client: AsyncModbusSerialClient, *, deadline: float) -> None:
        """Wait for the inter-frame silence (after a failure: ``resync_quiet_s``), then flush input.

        A line that never goes quiet (a babbling device) is given up on at ``deadline``; it stays
        unsettled so that the next transaction waits for quiet again.
        """
        quiet = max(self.resync_quiet_s, self.silence) if self._unsettled else self.silence
        while True:
            now = time.monotonic()
            gap = now - self._last_activity
            if gap >= quiet or now >= deadline:
                break
            await asyncio.sleep(min(quiet - gap, deadline - now))
        if self._unsettled and gap >= quiet:
            self._unsettled = False
            self.stats.resyncs += 1
        client.ctx.recv_buffer = b""
        port = getattr(client.ctx.transport, "sync_serial", None)
        if port is not None:
            port.reset_input_buffer()

    def _on_packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus's packet hook: every frame sent, and pymodbus's receive buffer at each arrival.

        Returns what pymodbus may decode: nothing until a complete, valid answer is there.
        """
        self._last_activity = time.monotonic()
        exchange = self._current
        if sending:
            return data
        if exchange is None or exchange.complete or exchange.failure.done():
            return b""  # stray bytes between transactions: flushed before the next one
        # pymodbus passes its whole buffer, which grows while we return nothing (and restarts empty
        # when it overflows): keep our own copy of what arrived.
        exchange.received += data[exchange.seen :] if len(data) >= exchange.seen else data
        exchange.seen = len(data)
        while True:
            judgement = judge_answer(
                exchange.received[exchange.skipped :],
                unit=exchange.unit,
                request=exchange.request,
                others=self._health,
            )
            if not judgement.stale:
                break
            exchange.skipped += judgement.stale
            self.stats.stale_frames += 1
        if judgement.problem is not None:
            detail = f"unit {exchange.unit} on {self.port}: corrupt answer: {judgement.problem}"
            frame = exchange.received[exchange.skipped :]
            exchange.failure.set_result(CorruptFrame(exchange.device, detail, frame, judgement.problem))
            return b""
        if judgement.complete:
            exchange.complete = True
            return exchange.received[exchange.skipped : exchange.skipped + judgement.length]
        return b""

    # -- the port ------------------------------------------------------------------------------

    async def _ensure_open(self, device: str) -> AsyncModbusSerialClient:
        if self._client is not None and self.is_open:
            return self._client
        self._drop()
        now = time.monotonic()
        if now < self._reopen_not_before:
            raise DeviceUnreachable(device, self._open_failure)
        lost = asyncio.Event()
        client = AsyncModbusSerialClient(
            self.port,
            framer=FramerType.RTU,
            baudrate=self.baudrate,
            bytesize=self.bytesize,
            parity=self.parity,
            stopbits=self.stopbits,
            name=f"rtu:{self.port}",
            timeout=_PYMODBUS_TIMEOUT_S,
            retries=0,
            reconnect_delay=0,  # 0 disables pymodbus's background reconnect task
            trace_packet=self._on_packet,
            trace_connect=partial(_on_connection_change, lost),
        )
        refused = False
        try:
            # False when pyserial cannot open the port: pymodbus logs the OSError and swallows it.
            opened = await client.connect()
            failure = "" if opened else explain_open_failure(self.port)
        except (termios.error, ValueError) as exc:  # the port exists but refuses the settings
            failure = f"cannot open serial port {self.port}: it refuses {self.settings}: {exc}"
            refused = True
        if refused:
            # pymodbus's SerialTransport failed after pyserial opened (and locked) the port, leaving
            # the open port in a reference cycle: collect it now, or the port stays locked to us.
            gc.collect()
        if failure:
            client.close()
            self.stats.open_failures += 1
            self._reopen_not_before = now + self.reopen_after_s
            self._open_failure = failure
            raise DeviceUnreachable(device, failure)
        self.stats.opens += 1
        self._client, self._lost = client, lost
        self._last_activity = -math.inf
        self._unsettled = False
        return client

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._lost.set()
        if client is not None:
            client.close()


def _on_connection_change(lost: asyncio.Event, connected: bool) -> None:
    if not connected:
        lost.set()


def _discard(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.cancel()
    elif not waiter.cancelled():
        waiter.exception()  # retrieved: no "exception was never retrieved" at garbage collection
