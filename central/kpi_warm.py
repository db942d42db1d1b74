"""Keeps the KPI day cache warm: the worker that leads "kpi-days" (``central.leadership``) computes
every cabinet's days ahead of the reports.

A while after start (``start_delay_s``), the last ``days`` whole local days of the zone that are
missing from the cache or stale; then, shortly after each local midnight (``after_midnight_s``), the
same again, which computes the day just ended and any day a late backlog made stale. Done twice by
two workers it is only wasted work (a row is keyed by its day and written whole).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from zoneinfo import ZoneInfo

from central.api.kpi_days import fill_days
from central.errors import StoreError
from central.leadership import Leadership
from central.store import Store

logger = logging.getLogger(__name__)

DEFAULT_DAYS = 31
DEFAULT_START_DELAY_S = 60.0
DEFAULT_AFTER_MIDNIGHT_S = 600.0
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def local_midnight_ms(now_ms: int, tz: dt.tzinfo, *, days_back: int = 0) -> int:
    """The local midnight that began the day of ``now_ms``, ``days_back`` days before."""
    today = (_EPOCH + dt.timedelta(milliseconds=now_ms)).astimezone(tz).date()
    day = today - dt.timedelta(days=days_back)
    return (dt.datetime.combine(day, dt.time(0), tzinfo=tz) - _EPOCH) // dt.timedelta(milliseconds=1)


class KpiWarmer:
    """The task; ``run`` until cancelled."""

    def __init__(
        self,
        store: Store,
        leadership: Leadership,
        *,
        clock: Callable[[], int],
        tz: str = "UTC",
        days: int = DEFAULT_DAYS,
        start_delay_s: float = DEFAULT_START_DELAY_S,
        after_midnight_s: float = DEFAULT_AFTER_MIDNIGHT_S,
    ) -> None:
        self._store, self._leadership, self._clock = store, leadership, clock
        self._tz_name, self._tz = tz, ZoneInfo(tz)  # raises for an unknown zone
        self._days = days
        self._start_delay_s, self._after_midnight_s = start_delay_s, after_midnight_s
        self.computed = 0  # cabinet-days this worker computed

    async def warm_once(self) -> int:
        """Compute the last ``days`` whole local days missing or stale; how many were computed."""
        now = self._clock()
        end = local_midnight_ms(now, self._tz)
        start = local_midnight_ms(now, self._tz, days_back=self._days)
        count = await fill_days(self._store, self._tz_name, start, end, now_ms=now)
        self.computed += count.computed
        return count.computed

    def seconds_to_next_run(self) -> float:
        now = self._clock()
        tomorrow = local_midnight_ms(now, self._tz, days_back=-1)
        return max(1.0, (tomorrow + self._after_midnight_s * 1000 - now) / 1000)

    async def run(self) -> None:
        await asyncio.sleep(self._start_delay_s)
        while True:
            if self._leadership.is_leader():
                try:
                    computed = await self.warm_once()
                except StoreError as exc:  # the database is down: the next run tries again
                    logger.warning("KPI day cache: filling failed: %s", exc)
                else:
                    if computed:
                        logger.info("KPI day cache: %d cabinet-days computed", computed)
            await asyncio.sleep(self.seconds_to_next_run())
