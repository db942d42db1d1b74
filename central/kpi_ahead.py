"""Makes the operator page's KPI reports ahead: the last ``days`` days and this month, to the last
settled quarter, the whole city, in the page's zone, as soon as each quarter settles
(``central.kpi.period``).

Their periods move every quarter, so the first operator to open the KPI page after that would wait
for every cabinet's figures over the new period (seconds for a city's month); made here, the page
finds it in the memo of this process (``central.api.kpi_make``), and asked while it is being made,
waits for it. Every worker serving the API runs its own: the memo is per process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException

from central.api.kpi_make import report_body
from central.errors import StoreError
from central.kpi.period import QUARTER_MS, SETTLE_MS, Period, PeriodError, kpi_period, settled_end
from central.store import Store

logger = logging.getLogger(__name__)

# The page's default period (central/web/static/js/kpi.js) and zone.
DEFAULT_DAYS = 30
DEFAULT_TZ = "UTC"
# After a quarter settles: ingest has committed what arrived up to then.
AFTER_SETTLED_MS = 2_000
DAY_MS = 86_400_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def month_start(ms: int, tz: dt.tzinfo, *, months_back: int) -> int:
    """Midnight of the first day of the month of ``ms`` in ``tz``, ``months_back`` months before."""
    day = (_EPOCH + dt.timedelta(milliseconds=ms)).astimezone(tz).date()
    year, month = divmod(day.year * 12 + day.month - 1 - months_back, 12)
    first = dt.datetime(year, month + 1, 1, tzinfo=tz)
    return (first - _EPOCH) // dt.timedelta(milliseconds=1)


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

    def periods(self, now_ms: int) -> list[Period]:
        """The page's periods at ``now_ms``: the last ``days`` days, and this month (the month before
        while nothing of this one has settled), as the page asks for them."""
        end = settled_end(now_ms)
        month = month_start(end, self._tz, months_back=0)
        if month >= end:
            month = month_start(end, self._tz, months_back=1)
        return [
            kpi_period(start, end, self._tz, now_ms=now_ms) for start in (end - self._days * DAY_MS, month)
        ]

    async def make_once(self) -> None:
        """Make (or find made) the page's reports for the periods ending at the last settled quarter;
        one that cannot be made is logged, and the next is made all the same."""
        now = self._clock()
        try:
            periods = self.periods(now)
        except PeriodError as exc:  # a clock before 1970 and its like: nothing to make
            logger.warning("KPI report made ahead: no period: %s", exc.problem)
            return
        for period in periods:
            try:
                # With the time: a report made here stands in for the next while that is made.
                await report_body(
                    self._app, self._store, period, self._tz_name, town=None, table=None, now_ms=now
                )
            except StoreError as exc:  # the database is down: the next quarter tries again
                logger.warning("KPI report made ahead: failed: %s", exc)
            except HTTPException as exc:  # as many reports as allowed are being made: skip this one
                logger.info("KPI report made ahead: skipped: %s", exc.detail)
            except Exception:  # anything else (too many episodes...): this task must go on
                logger.exception("KPI report made ahead: failed")
            else:
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
            await self.make_once()
