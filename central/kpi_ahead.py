"""Makes the operator page's KPI report ahead: the last ``days`` days to the last settled quarter, the
whole city, in the page's zone, as soon as each quarter settles (``central.kpi.period``).

Its period moves every quarter, so the first operator to open the KPI page after that would wait
for every cabinet's figures over the new period (seconds for a city's month); made here, the page
finds it in the memo of this process (``central.api.kpi_make``), and asked while it is being made,
waits for it. Every worker serving the API runs its own: the memo is per process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException

from central.api.kpi_make import report_body
from central.errors import StoreError
from central.kpi.period import QUARTER_MS, SETTLE_MS, PeriodError, kpi_period, settled_end
from central.store import Store

logger = logging.getLogger(__name__)

# The page's default period (central/web/static/js/kpi.js) and zone.
DEFAULT_DAYS = 30
DEFAULT_TZ = "UTC"
# After a quarter settles: ingest has committed what arrived up to then.
AFTER_SETTLED_MS = 2_000
DAY_MS = 86_400_000


class KpiAhead:
    """The task; ``run`` until cancelled."""

    def __init__(
        self,
        app: FastAPI,
        store: Store,
        *,
        clock: Callable[[], int],
        days: int = DEFAULT_DAYS,
        tz: str = DEFAULT_TZ,
    ) -> None:
        self._app, self._store, self._clock = app, store, clock
        self._days, self._tz_name, self._tz = days, tz, ZoneInfo(tz)
        self.made = 0  # reports this task made or found made

    async def make_once(self) -> None:
        """Make (or find made) the page's report for the period ending at the last settled quarter."""
        now = self._clock()
        end = settled_end(now)
        period = kpi_period(end - self._days * DAY_MS, end, self._tz, now_ms=now)
        await report_body(self._app, self._store, period, self._tz_name, town=None, table=None)
        self.made += 1

    def seconds_to_next_run(self) -> float:
        """Until the next quarter has settled, and a little more."""
        now = self._clock()
        next_settled = settled_end(now) + QUARTER_MS + SETTLE_MS + AFTER_SETTLED_MS
        return max(1.0, (next_settled - now) / 1000)

    async def run(self) -> None:
        # Not at start: the leader's day cache is being filled then (``central.kpi_warm``), and the
        # first report would compute the same days beside it.
        while True:
            await asyncio.sleep(self.seconds_to_next_run())
            try:
                await self.make_once()
            except StoreError as exc:  # the database is down: the next quarter tries again
                logger.warning("KPI report made ahead: failed: %s", exc)
            except HTTPException as exc:  # as many reports as allowed are being made: skip this one
                logger.info("KPI report made ahead: skipped: %s", exc.detail)
            except PeriodError as exc:  # a clock before 1970 and its like: nothing to make
                logger.warning("KPI report made ahead: no period: %s", exc.problem)
