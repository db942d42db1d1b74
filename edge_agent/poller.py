"""One poll loop per device. A slow or dead device costs only its own loop: never the others'.

A failed read gives bad-quality readings for every point (so a gap in the data is explicit, not silent)
and a single ``device_lost`` event; the first good read after that gives one ``device_back`` event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.buffer import Buffer
from edge_agent.clock import ClockMs
from protocols.driver import FieldDriver, PointValue
from protocols.errors import DriverError
from protocols.quality import Quality

log = logging.getLogger(__name__)

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
    ) -> None:
        self.name = name
        self.driver = driver
        self.interval_s = interval_s
        # Bound the whole read; a driver reading several blocks gets one timeout per block.
        self.read_timeout_s = timeout_s * 4
        self.buffer = buffer
        self.clock_ms = clock_ms
        self.observer = observer
        self.stats = PollStats()
        self._lost = False

    @property
    def setting_key(self) -> str:
        return f"device_lost.{self.name}"

    def restore(self, lost: bool) -> None:
        """Lost before a restart: the first good read after it reports the device back."""
        self._lost = lost

    async def run(self) -> None:
        next_poll = time.monotonic()
        try:
            while True:
                await self.poll_once()
                next_poll += self.interval_s
                now = time.monotonic()
                next_poll = max(next_poll, now)  # overran: skip the missed slots rather than burst
                await asyncio.sleep(next_poll - now)
        finally:
            await self.driver.close()

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
        if self._lost or not self.stats.online:
            self._on_back(ts)
        for value in values:
            self.buffer.append_reading(
                f"{self.name}/{value.quantity}", ts, value.value, value.quality, value.reason
            )
        if self.observer is not None:
            self.observer(ts, values)

    def _on_failure(self, ts: int, reason: str, detail: str) -> None:
        self.stats.failures += 1
        self.stats.online = False
        self.stats.last_error = detail
        for quantity in self.driver.quantities:
            self.buffer.append_reading(f"{self.name}/{quantity}", ts, None, Quality.BAD, reason)
        if not self._lost:
            self._lost = True
            self.buffer.stage_setting(self.setting_key, "1")
            log.warning("device %s lost: %s", self.name, detail)
            self.buffer.append_event(
                ts=ts,
                source=self.name,
                kind="device_lost",
                severity="alarm",
                message=f"device {self.name} does not answer: {detail}",
                data={"reason": reason},
            )

    def _on_back(self, ts: int) -> None:
        self.stats.online = True
        if self._lost:
            self._lost = False
            self.buffer.stage_setting(self.setting_key, "0")
            log.info("device %s back", self.name)
            self.buffer.append_event(
                ts=ts,
                source=self.name,
                kind="device_back",
                severity="info",
                message=f"device {self.name} answers again",
            )
