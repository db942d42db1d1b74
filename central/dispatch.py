"""Sending commands to cabinets until they answer: MQTT QoS 1 is not delivery.

A command is published when it is stored, and again:

- when its cabinet's birth (online status) arrives: the cabinet was away, and a broker without a
  persistent session for it dropped what was sent meanwhile;
- every ``retry_s`` until the cabinet's ``accepted`` (or a final result) arrives in a data batch.

The agent executes each command id at most once, so sending one twice is harmless, but with several
central workers each would republish every pending command every ``retry_s`` and on every birth (every
worker hears every status): N workers, N copies. So the sweep and the resends on birth are the
leader's (``central.leadership``); a command posted to any worker is still published by that worker at
once. Expiring is idempotent (only a pending command expires, and a cabinet's result replaces
central's expiry): the leader does it so that one worker, not N, takes the write lock for it.

A pending command past its not_after (plus ``expiry_grace_s`` for clocks and transit) is marked expired
by central. The cabinet would refuse it anyway; if the cabinet had in fact accepted it in time, its
result replaces central's guess when it arrives (see ``sqlite_commands``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from central.background import Background
from central.commands import to_command
from central.errors import StoreError
from central.leadership import Leadership, SoleLeader
from central.store import Store
from central.store.rows import CommandRow
from central.times import now_ms
from protocols.fleet import Topics, encode

logger = logging.getLogger(__name__)

DEFAULT_RETRY_S = 5.0
DEFAULT_EXPIRY_GRACE_S = 2.0
PUBLISH_CONCURRENCY = 100


class Publisher(Protocol):
    """Publishes QoS 1 and says whether the broker took it; ``central.mqtt_link.MqttLink`` is one."""

    async def publish(self, topic: str, payload: bytes, *, expiry_s: int | None = None) -> bool: ...


@dataclass(slots=True)
class DispatchStats:
    published: int = 0
    publish_failed: int = 0
    republished: int = 0
    expired: int = 0
    sweeps: int = 0
    store_errors: int = 0
    last_error: str | None = None


class CommandDispatcher(Background):
    """``async with CommandDispatcher(store=..., publisher=...)`` sends until the block exits."""

    task_name = "central-command-dispatch"
    what = "command dispatch"

    def __init__(
        self,
        *,
        store: Store,
        publisher: Publisher,
        retry_s: float = DEFAULT_RETRY_S,
        expiry_grace_s: float = DEFAULT_EXPIRY_GRACE_S,
        clock: Callable[[], int] = now_ms,
        leadership: Leadership | None = None,
    ) -> None:
        if retry_s <= 0:
            raise ValueError(f"retry_s must be positive, got {retry_s}")
        self._store = store
        self._publisher = publisher
        self._retry_ms = int(retry_s * 1000)
        self._grace_ms = int(expiry_grace_s * 1000)
        self._clock = clock
        self._leadership = leadership or SoleLeader("dispatch")
        self.stats = DispatchStats()
        self._fresh: list[CommandRow] = []
        self._births: set[str] = set()
        self._wake = asyncio.Event()
        self._limit = asyncio.Semaphore(PUBLISH_CONCURRENCY)
        super().__init__()

    def submitted(self, commands: Sequence[CommandRow]) -> None:
        """Commands just stored: publish them now (from the dispatcher's task)."""
        self._fresh.extend(commands)
        self._wake.set()

    def birth(self, cabinet: str) -> None:
        """``cabinet`` came online: send it what it has not accepted yet."""
        self._births.add(cabinet)
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()  # sweep at once: commands left pending by a previous run
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_sweep - loop.time())):
                    await self._wake.wait()
            self._wake.clear()
            fresh, self._fresh = self._fresh, []
            births, self._births = self._births, set()
            try:
                if fresh:
                    await self._publish(fresh, again=False)
                # Every worker hears every birth and sees every pending command: one of them sends.
                leads = self._leadership.is_leader()
                if births and leads:
                    pending = await self._store.pending_commands(
                        not_after_from_ms=self._clock(), cabinets=sorted(births)
                    )
                    await self._publish(pending, again=True)
                if loop.time() >= next_sweep:
                    if leads:
                        await self.sweep()
                    next_sweep = loop.time() + self._retry_ms / 1000
            except StoreError as exc:
                # The store is down or locked: the commands stay where they are; try again later.
                self.stats.store_errors += 1
                self.stats.last_error = str(exc)
                logger.error("command dispatch: %s", exc)
                next_sweep = loop.time() + self._retry_ms / 1000

    async def sweep(self) -> None:
        """Expire what is past not_after, republish what is pending and was sent a while ago."""
        now = self._clock()
        pending = await self._store.pending_commands(not_after_from_ms=0)
        # Write only when there is something to expire: a write takes the database's write lock away
        # from ingest.
        if any(c.not_after_ms < now - self._grace_ms for c in pending):
            expired = await self._store.expire_commands(before_ms=now - self._grace_ms, now_ms=now)
            self.stats.expired += expired
            logger.info("marked %d unanswered command(s) expired", expired)
        # A command stored less than retry_s ago was published when it was stored.
        due = [c for c in pending if c.created_ms <= now - self._retry_ms and c.not_after_ms > now]
        await self._publish(due, again=True)
        self.stats.sweeps += 1

    async def _publish(self, commands: Sequence[CommandRow], *, again: bool) -> None:
        now = self._clock()
        # Past not_after the cabinet would refuse it: not sent; the next sweep marks it expired.
        # One whose stored args cannot be read is never sent (it would carry other args): it expires.
        sendable = [c for c in commands if c.not_after_ms > now and c.args_unreadable is None]
        results = await asyncio.gather(*(self._publish_one(c, now) for c in sendable))
        sent = sum(results)
        self.stats.published += sent
        self.stats.publish_failed += len(results) - sent
        if again:
            self.stats.republished += sent

    async def _publish_one(self, row: CommandRow, now: int) -> bool:
        remaining_ms = row.not_after_ms - now
        command = to_command(row, dict(row.args))
        # MQTT 5 message expiry: a broker holding it for an offline cabinet drops it at not_after.
        expiry_s = -(-remaining_ms // 1000)
        async with self._limit:
            return await self._publisher.publish(
                Topics(row.cabinet).command, encode(command), expiry_s=expiry_s
            )
