"""One simulated cabinet: the agent's own buffer, sync and command execution, simulated devices.

What differs from ``edge_agent.agent.Agent``, and why:

- the buffer is an in-memory SQLite database (the same ``Buffer`` code and SQL): thousands of files
  would need four descriptors and an fsync per commit each, and what a commit costs the SD card is
  measured by ``bench/agent.py`` on one real agent;
- readings are generated straight into the buffer once per interval (one commit per interval, acked
  deletions riding with it): no poller, no Modbus socket, so no ``device_lost`` a starved event loop
  would invent;
- its lighting output is a ``SimLightingDriver`` held in memory, driven by the real lighting runner
  and command executor (claims in the ledger, results reported like any record).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cityedge.fleet_sim.device import LEVEL, RELAY, SimLightingDriver
from cityedge.fleet_sim.plan import LIGHTING_POINTS, FleetPlan
from cityedge.fleet_sim.stats import FleetCounters
from edge_agent.agent import AGENT_VERSION
from edge_agent.buffer import Buffer
from edge_agent.clock import SystemClock
from edge_agent.clock_sync import ClockTrust
from edge_agent.command_ledger import CommandLedger
from edge_agent.commands import CommandExecutor
from edge_agent.config import SyncSection
from edge_agent.lighting.runner import LightingRunner, lighting_outputs
from edge_agent.sync import Sync
from protocols.fleet import PROTOCOL_VERSION, DeviceInfo, Status
from protocols.fleet.broker_url import BrokerAddress

IN_MEMORY = Path(":memory:")  # sqlite3 opens a private in-memory database for this name
DEVICE = "lc1"
DRIVER = "fleet-sim"
CONFIG_HASH = "fleet-sim"

_T = TypeVar("_T")
STOP_RETRY_S = 1.0
STOP_TRIES = 5
log = logging.getLogger(__name__)
# The longest a starting cabinet holds a connecting slot (see ``Fleet``).
CONNECT_WAIT_S = 10.0


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel ``task``, again if it goes on, a few times. On Python 3.11 ``asyncio.wait_for``
    (which aiomqtt awaits every SUBACK and PUBACK with) loses a cancellation that arrives as its
    future completes: the sync's session then carries on as if never asked to stop. Stopping
    thousands of cabinets mid-connect meets that race every time."""
    for _ in range(STOP_TRIES):
        if task.done():
            return
        task.cancel()
        await asyncio.wait((task,), timeout=STOP_RETRY_S)
    # Still running: the cancellation was lost inside the session's TaskGroup, which cancels its
    # tasks only once, so no retry reaches them. Left as it is (``run_fleet_sim`` says how many).
    log.warning("%s did not stop when asked (a cancellation lost by asyncio.wait_for)", task.get_name())


class TimedBuffer(Buffer):
    """The agent's buffer, counting what central acknowledges and how long each cycle waited.

    With ``inline`` its SQLite statements run on the event loop rather than on a thread of the
    buffer's own. On an in-memory database a statement takes microseconds and never waits for a
    disk; a thread per cabinet (what a real agent needs, its commits waiting on the card's fsync)
    means thousands of threads handing the GIL around on every socket send and queue put, which
    costs the fleet process more than the cabinets' own work (see bench/fleet.py, ``--sqlite-threads``).
    """

    def __init__(
        self, *, max_bytes: int, clock_ms: Callable[[], int], counters: FleetCounters, inline: bool
    ) -> None:
        super().__init__(IN_MEMORY, max_bytes=max_bytes, clock_ms=clock_ms)
        self.counters = counters
        self.inline = inline
        # (last seq of a cycle's readings, monotonic time they were taken), oldest first.
        self.cycles: collections.deque[tuple[int, float]] = collections.deque()

    @property
    def unacked(self) -> int:
        """Records buffered that central has not acknowledged (acknowledged ones awaiting their bulk
        deletion are not counted: ``Buffer.backlog`` leaves them out)."""
        return self.backlog

    async def _run(self, fn: Callable[[], _T]) -> _T:
        if self.inline:
            return fn()
        return await super()._run(fn)

    def mark_acked(self, first: int, last: int) -> None:
        super().mark_acked(first, last)
        self.counters.acked += last - first + 1
        cycles = self.cycles
        if cycles and cycles[0][0] <= last:
            now = time.monotonic()
            latencies = self.counters.latencies_ms
            while cycles and cycles[0][0] <= last:
                latencies.append((now - cycles.popleft()[1]) * 1000)

    def append_result(self, *, ts: int, command_id: str, status: str, reason: str | None = None) -> int:
        self.counters.commands += 1
        return super().append_result(ts=ts, command_id=command_id, status=status, reason=reason)


class SimCabinet:
    """``await cabinet.run(start_delay_s)`` until cancelled; ``cut_link(s)`` simulates an outage."""

    def __init__(
        self, cabinet: str, *, plan: FleetPlan, broker: BrokerAddress, counters: FleetCounters
    ) -> None:
        self.cabinet = cabinet
        self.plan = plan
        # The host's clock, taken as set (as in the demo): the fleet is not about clock trust.
        self.clock = clock = SystemClock(trust=ClockTrust(status=lambda: True))
        self.counters = counters
        self.buffer = buffer = TimedBuffer(
            max_bytes=int(plan.buffer_max_mb * 1024 * 1024),
            clock_ms=clock.now_ms,
            counters=counters,
            inline=not plan.sqlite_threads,
        )
        self.driver = SimLightingDriver(DEVICE)
        self.lighting = LightingRunner(
            outputs=lighting_outputs([(DEVICE, self.driver)], None),
            configured=None,  # no schedule: the lamps move only on an operator's command
            buffer=buffer,
            clock=clock,
        )
        self.ledger = CommandLedger(buffer)
        self.commands = CommandExecutor(
            cabinet=cabinet, buffer=buffer, ledger=self.ledger, lighting=self.lighting, clock=clock
        )
        settings = SyncSection(
            batch_max_records=plan.batch_max_records,
            window=plan.window,
            ack_timeout_s=plan.ack_timeout_s,
            reconnect_min_s=0.5,
            reconnect_max_s=30.0,
        )
        self.sync = Sync(
            cabinet=cabinet,
            broker=broker,
            keepalive_s=plan.keepalive_s,
            buffer=buffer,
            settings=settings,
            birth=self._birth,
            death=lambda: self._status(online=False),
            clock_ms=clock.now_ms,
            on_command=self.commands.submit,
        )
        measured = [f"{DEVICE}/m{i:03d}" for i in range(plan.points - LIGHTING_POINTS)]
        self.point_names = [f"{DEVICE}/{RELAY}", f"{DEVICE}/{LEVEL}", *measured]
        seed = random.Random(f"{plan.seed}:{cabinet}")
        self._bases = [seed.uniform(10, 1000) for _ in measured]
        self._rng = seed
        self._up = asyncio.Event()  # set while the link is up
        self._up.set()
        self._down = asyncio.Event()  # set during an outage
        self._born = asyncio.Event()  # set at the first birth
        self.started = False
        self.stopped = False  # its run() has returned (or raised)

    def _birth(self) -> Status:
        self._born.set()  # the sync is connected and subscribed: it publishes its birth now
        return self._status(online=True)

    def _status(self, *, online: bool) -> Status:
        return Status(
            v=PROTOCOL_VERSION,
            cabinet=self.cabinet,
            online=online,
            ts=self.clock.now_ms(),
            version=AGENT_VERSION,
            config_hash=CONFIG_HASH,
            stream=self.buffer.stream or None,
            boot_count=self.buffer.boot_count,
            backlog=self.buffer.backlog,
            inventory=[
                DeviceInfo(name=DEVICE, driver=DRIVER, points=[n.split("/", 1)[1] for n in self.point_names])
            ],
        )

    @property
    def connected(self) -> bool:
        return self.sync.stats.connected

    @property
    def link_up(self) -> bool:
        return self._up.is_set()

    @property
    def backlog(self) -> int:
        return self.buffer.unacked

    @property
    def resends(self) -> int:
        return self.sync.stats.resends

    async def run(
        self, start_delay_s: float = 0.0, phase_s: float = 0.0, gate: asyncio.Semaphore | None = None
    ) -> None:
        """Start after ``start_delay_s``; take readings at ``phase_s`` into each interval. ``gate``:
        a slot of it is held from the first connection attempt until connected (or CONNECT_WAIT_S)."""
        try:
            await self._run(start_delay_s, phase_s, gate)
        finally:
            self.stopped = True

    async def _run(self, start_delay_s: float, phase_s: float, gate: asyncio.Semaphore | None) -> None:
        await asyncio.sleep(start_delay_s)
        async with self.buffer:
            self.buffer.append_event(
                ts=self.clock.now_ms(),
                source="agent",
                kind="agent_started",
                severity="info",
                message=f"simulated agent {AGENT_VERSION} started (boot {self.buffer.boot_count})",
                data={"boot_count": self.buffer.boot_count, "config_hash": CONFIG_HASH},
            )
            await self.ledger.open()
            await self.lighting.open()
            await self.buffer.flush()
            self.started = True
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._take_readings(phase_s), name=f"readings-{self.cabinet}")
                tasks.create_task(self.lighting.run(), name=f"lighting-{self.cabinet}")
                tasks.create_task(self.commands.run(), name=f"commands-{self.cabinet}")
                if gate is not None:
                    await gate.acquire()
                    tasks.create_task(self._release_when_connected(gate), name=f"gate-{self.cabinet}")
                tasks.create_task(self._keep_link(), name=f"link-{self.cabinet}")

    async def _release_when_connected(self, gate: asyncio.Semaphore) -> None:
        try:
            async with asyncio.timeout(CONNECT_WAIT_S):
                await self._born.wait()
        except TimeoutError:
            pass  # its sync goes on retrying with its own backoff; the slot goes to the next one
        finally:
            gate.release()

    def cut_link(self, seconds: float) -> None:
        """An outage: the sync stops (as a link going down) and starts again ``seconds`` later."""
        if not self._up.is_set():
            return
        self._up.clear()
        self._down.set()
        asyncio.get_running_loop().call_later(seconds, self._restore_link)

    def _restore_link(self) -> None:
        self._down.clear()
        self._up.set()

    async def _keep_link(self) -> None:
        while True:
            await self._up.wait()
            sync = asyncio.create_task(self.sync.run(), name=f"sync-{self.cabinet}")
            down = asyncio.create_task(self._down.wait(), name=f"outage-{self.cabinet}")
            try:
                await asyncio.wait((sync, down), return_when=asyncio.FIRST_COMPLETED)
            finally:
                down.cancel()
                await _stop(sync)
            error = None if sync.cancelled() else sync.exception()
            if error is not None:
                raise error  # a bug in the sync: loud

    async def _take_readings(self, phase_s: float) -> None:
        """Every interval, one reading of every point, then one commit (acked deletions ride along)."""
        interval = self.plan.interval_s
        loop = asyncio.get_running_loop()
        due = loop.time() + phase_s
        buffer, rng, bases, names = self.buffer, self._rng, self._bases, self.point_names
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            now_ms = self.clock.now_ms()
            values = self.driver.values
            buffer.append_reading(names[0], now_ms, bool(values[RELAY]))
            last = buffer.append_reading(names[1], now_ms, int(values[LEVEL]))
            for name, base in zip(names[LIGHTING_POINTS:], bases, strict=True):
                last = buffer.append_reading(name, now_ms, round(base * (0.95 + 0.1 * rng.random()), 2))
            buffer.cycles.append((last, time.monotonic()))
            self.counters.generated += len(names)
            await buffer.flush()
            due += interval
            if due < loop.time():  # fell behind (a stalled loop): skip, never burst to catch up
                due = loop.time() + interval
