"""One poll loop per device. A slow or dead device costs only its own loop: never the others'.

Every failed read gives bad-quality readings for every point (so a gap in the data is explicit, not
silent). ``lost_after`` failed reads in a row give a single ``device_lost`` event and ``back_after``
good reads in a row one ``device_back``: a single glitch on a noisy line is not an alarm.

A driver whose protocol pushes (``PushingDriver``) is also listened to: each pushed batch is recorded
and committed at once, under the same quality rules, and told to the alarms, so a state change reaches central
within one publishing interval rather than one poll interval. While the device is lost, pushes are
not recorded (the poll says when it is back).

While the cabinet's clock is not synchronised, every reading that was not already bad is bad with the
reason ``clock_unsynchronised``: its value may be right, its timestamp cannot be trusted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.buffer import Buffer
from edge_agent.clock import ClockMs
from edge_agent.journal import story
from protocols.backoff import Backoff
from protocols.driver import FieldDriver, PointValue, PushingDriver
from protocols.errors import DriverError
from protocols.quality import CLOCK_UNSYNCHRONISED, Quality

log = logging.getLogger(__name__)

# At most one commit a second asked by pushed changes; others wait for the periodic commit.
PUSH_COMMIT_MIN_S = 1.0
MAX_DETAIL = 500  # characters of an unexpected error kept in events and logs

# Told of every good read: (timestamp ms, values). Alarms watch the device this way.
Observer = Callable[[int, list[PointValue]], None]


@dataclass(slots=True)
class PollStats:
    polls: int = 0
    failures: int = 0
    online: bool = False
    last_error: str | None = None


class DevicePoller:
    def __init__(
        self,
        *,
        name: str,
        driver: FieldDriver,
        interval_s: float,
        timeout_s: float,
        buffer: Buffer,
        clock_ms: ClockMs,
        observer: Observer | None = None,
        lost_after: int = 1,
        back_after: int = 1,
        synchronised: Callable[[], bool] = lambda: True,
        on_round: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        self._on_round = on_round  # after every poll, done or failed: the loop is alive
        self.driver = driver
        self.interval_s = interval_s
        # Bound the whole read; a driver reading several blocks gets one timeout per block.
        self.read_timeout_s = timeout_s * 4
        self.buffer = buffer
        self.clock_ms = clock_ms
        self.observer = observer
        self.stats = PollStats()
        self.pushes = 0  # pushed batches recorded
        self._pushed_commit = -PUSH_COMMIT_MIN_S  # monotonic time of the last commit a push asked for
        self._trailing_commit: asyncio.Task[None] | None = None
        self.lost_after = lost_after
        self.back_after = back_after
        self.synchronised = synchronised
        self._lost = False
        self._streak = 0  # consecutive reads that disagree with ``_lost``

    @property
    def lost(self) -> bool:
        """The device_lost event was raised and device_back not yet."""
        return self._lost

    @property
    def setting_key(self) -> str:
        return f"device_lost.{self.name}"

    def restore(self, lost: bool) -> None:
        """Lost before a restart: the first good read after it reports the device back."""
        self._lost = lost

    async def run(self) -> None:
        try:
            if isinstance(self.driver, PushingDriver):
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._poll_forever(), name=f"poll-{self.name}")
                    tasks.create_task(self._consume_changes(self.driver), name=f"push-{self.name}")
            else:
                await self._poll_forever()
        finally:
            if self._trailing_commit is not None:
                self._trailing_commit.cancel()  # the buffer commits what is left when it closes
            await self.driver.close()

    async def _poll_forever(self) -> None:
        next_poll = time.monotonic()
        while True:
            await self.poll_once()
            self._on_round()
            next_poll += self.interval_s
            now = time.monotonic()
            next_poll = max(next_poll, now)  # overran: skip the missed slots rather than burst
            await asyncio.sleep(next_poll - now)

    async def _consume_changes(self, driver: PushingDriver) -> None:
        """Listen for as long as the agent runs: a driver whose changes stop or fail is listened to
        again after a backoff (the poll goes on meanwhile), never taking the agent down."""
        backoff = Backoff(initial=1.0, maximum=60.0)
        while True:
            try:
                async for values in driver.changes():
                    backoff.reset()
                    if self._on_pushed(values, {point.name for point in driver.points}):
                        await self._commit_pushed()
                detail = "its changes ended"
            except DriverError as exc:
                detail = str(exc) or exc.reason
            except Exception as exc:  # noqa: BLE001 (a driver's bug costs its own changes, not the agent)
                detail = _printable(f"driver error {type(exc).__name__}: {exc}")
            delay = backoff.next_delay()
            log.warning(
                "device %s: no pushed changes (%s); listening again in %.1f s", self.name, detail, delay
            )
            await asyncio.sleep(delay)

    async def _commit_pushed(self) -> None:
        """A pushed change is a state change (a junction flashing): worth a commit of its own, so it
        leaves now, not at the next commit interval. At most one a second, so a chattering device
        cannot wear the SD card out: a change inside that second gets one commit at its end."""
        wait = self._pushed_commit + PUSH_COMMIT_MIN_S - time.monotonic()
        if wait <= 0:
            self._pushed_commit = time.monotonic()
            await self.buffer.flush()
        elif self._trailing_commit is None or self._trailing_commit.done():
            self._trailing_commit = asyncio.create_task(self._commit_after(wait))

    async def _commit_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._pushed_commit = time.monotonic()
        await self.buffer.flush()

    def _on_pushed(self, values: list[PointValue], offered: set[str]) -> bool:
        """Record what was pushed; whether anything was."""
        if self._lost:
            return False
        # Only the points the driver offers: a pushed name nobody declared has no place downstream.
        known = [value for value in values if value.quantity in offered]
        if known:
            self.pushes += 1
            self._record(self.clock_ms(), known)
        return bool(known)

    async def poll_once(self) -> None:
        ts = self.clock_ms()
        self.stats.polls += 1
        try:
            async with asyncio.timeout(self.read_timeout_s):
                values = await self.driver.read()
        except (DriverError, TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, DriverError) else "timeout"
            self._on_failure(ts, reason, str(exc) or reason)
            return
        except Exception as exc:  # noqa: BLE001 (a driver's bug costs its own device, never the agent)
            detail = _printable(f"driver error {type(exc).__name__}: {exc}")
            if detail != self.stats.last_error:  # once while it lasts, not once per poll
                log.error("device %s: %s", self.name, detail)
            self._on_failure(ts, "driver_error", detail)
            return
        self._on_good(ts)
        self._record(ts, values)

    def _record(self, ts: int, values: list[PointValue]) -> None:
        synchronised = self.synchronised()
        for value in values:
            quality, why = value.quality, value.reason
            if not synchronised and quality != Quality.BAD:
                quality, why = Quality.BAD, CLOCK_UNSYNCHRONISED
            self.buffer.append_reading(f"{self.name}/{value.quantity}", ts, value.value, quality, why)
        if self.observer is not None:
            self.observer(ts, values)

    def _on_failure(self, ts: int, reason: str, detail: str) -> None:
        self.stats.failures += 1
        self.stats.online = False
        self.stats.last_error = detail
        for point in self.driver.points:
            self.buffer.append_reading(f"{self.name}/{point.name}", ts, None, Quality.BAD, reason)
        self._streak = 0 if self._lost else self._streak + 1
        if not self._lost and self._streak >= self.lost_after:
            self._lost, self._streak = True, 0
            self.buffer.stage_setting(self.setting_key, "1")
            log.warning(
                "device %s lost: %s",
                self.name,
                detail,
                extra=story("device_lost", device=self.name, reason=reason),
            )
            self.buffer.append_event(
                ts=ts,
                source=self.name,
                kind="device_lost",
                severity="alarm",
                message=f"device {self.name} does not answer: {detail}",
                data={"reason": reason},
            )

    def _on_good(self, ts: int) -> None:
        self.stats.online = True
        self._streak = self._streak + 1 if self._lost else 0
        if self._lost and self._streak >= self.back_after:
            self._lost, self._streak = False, 0
            self.buffer.stage_setting(self.setting_key, "0")
            log.info("device %s back", self.name, extra=story("device_back", device=self.name))
            self.buffer.append_event(
                ts=ts,
                source=self.name,
                kind="device_back",
                severity="info",
                message=f"device {self.name} answers again",
            )


def _printable(text: str) -> str:
    """An unexpected error's text as one bounded line: it goes to the journal and to central."""
    return "".join(c if c.isprintable() else " " for c in " ".join(text.split()))[:MAX_DETAIL]
