"""Sharing one serial line between units: who gets the line next, and when a failing unit is tried again.

    LineScheduler   one transaction at a time; waiters are served in order of (arrival + deferral), so
                    a failing unit's request yields the line to healthy units' requests for a while
    BackoffPolicy   how a unit that keeps failing is backed off: exponential, capped, jittered
    UnitHealth      one unit's consecutive failures and the time of its next allowed attempt

No I/O here; clocks and random generators are passed in, so the unit tests drive them by hand.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from protocols.errors import DeviceTimeout, DriverError
from protocols.modbus.rtu import CorruptFrame


class LineScheduler:
    """A lock granting the line to the waiter with the earliest (arrival + ``defer``), then FIFO.

    With ``defer=0`` for everyone this is a FIFO lock. A request made with ``defer=d`` (a failing
    unit's) is served after every request that arrives less than ``d`` seconds after it, and never
    later than that: it yields to healthy traffic, yet cannot starve. Even on an idle line it waits
    ``grace`` seconds before taking it, so that healthy requests falling due at the same moment (pollers
    with the same interval tick together) go first: a failing unit gets idle line time only.
    """

    def __init__(self, *, grace: float = 0.005, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self._clock = clock
        self._busy = False
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def waiting(self) -> int:
        return sum(not future.done() for _, _, future in self._waiting)

    @asynccontextmanager
    async def turn(self, *, defer: float = 0.0) -> AsyncIterator[None]:
        """Hold the line for the body of the ``async with``."""
        await self._acquire(defer)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, defer: float) -> None:
        if not self._busy and not self._waiting and defer <= 0:
            self._busy = True
            return
        loop = asyncio.get_running_loop()
        entry = (self._clock() + max(defer, 0.0), next(self._order), loop.create_future())
        heapq.heappush(self._waiting, entry)
        if not self._busy:
            if defer <= 0:
                self._dispatch()  # the line is free: serve the head of the queue, surely us
            else:
                loop.call_later(self.grace, self._dispatch)
        try:
            await entry[2]
        except asyncio.CancelledError:
            if entry[2].done() and not entry[2].cancelled():
                self._release()  # handed the line just as we were cancelled: pass it on
            else:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
            raise

    def _dispatch(self) -> None:
        """Give a free line to the first waiter."""
        if not self._busy:
            self._busy = True
            self._release()

    def _release(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)  # the line passes directly to the next waiter: stays busy
                return
        self._busy = False


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How a unit that keeps failing (no answer, corrupt answers) is backed off.

    After ``after_failures`` consecutive failures the unit is not asked again for ``initial_s``, then
    twice that after each further failure, up to ``max_s``; each delay is shortened by up to ``jitter``
    (a fraction) at random so that several dead units do not probe in step. While a unit is failing,
    its requests give way on the line to healthy units' requests for up to ``defer_s``.
    """

    after_failures: int = 2
    initial_s: float = 2.0
    max_s: float = 60.0
    jitter: float = 0.2
    defer_s: float = 1.0

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (0: try again normally)."""
        if failures < self.after_failures:
            return 0.0
        exponent = min(failures - self.after_failures, 32)
        return min(math.ldexp(self.initial_s, exponent), self.max_s) * (1 - self.jitter * rng.random())


@dataclass(slots=True)
class UnitHealth:
    """One unit's record on its line: consecutive failures, and when it may be asked again."""

    unit: int
    failures: int = 0
    attempts: int = 0  # transactions that reached the line
    refused: int = 0  # requests answered from the backoff without using the line
    busy_s: float = 0.0  # time its transactions held the line
    not_before: float = 0.0
    last_error: DriverError | None = field(default=None, repr=False)

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def refusal(self, device: str, now: float) -> DriverError | None:
        """The error to raise at once while the unit is backed off, or None if it may be asked."""
        if now >= self.not_before or self.last_error is None:
            return None
        self.refused += 1
        last = self.last_error
        detail = (
            f"{self.failures} failures in a row (last: {last.detail}); "
            f"not asked again for {self.not_before - now:.1f}s"
        )
        if isinstance(last, CorruptFrame):
            return CorruptFrame(device, detail, last.frame, last.problem)
        return DeviceTimeout(device, detail)

    def failed(self, error: DriverError, now: float, policy: BackoffPolicy, rng: random.Random) -> None:
        self.failures += 1
        self.last_error = error
        self.not_before = now + policy.delay(self.failures, rng)

    def answered(self) -> None:
        self.failures = 0
        self.not_before = 0.0
        self.last_error = None
