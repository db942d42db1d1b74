"""Many simulated cabinets in one event loop: a staggered start, outages, periodic reports.

Cabinet ``i`` starts at ``i / n`` of the start spread and takes its readings at the same fraction of
the interval, so neither connections nor batches arrive in step. At most ``CONNECTING`` cabinets are
making their first connection at once: the MQTT client connects its TCP socket on a thread of the
loop's default executor (a handful of threads), and a broker's accept queue that overflows drops SYNs,
which each cost a thread a second or more; unbounded, a start of thousands turns into minutes of
timeouts and reconnects. The default executor is widened to as many threads, for the same reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from cityedge.fleet_sim.cabinet import SimCabinet
from cityedge.fleet_sim.light import LightCabinet
from cityedge.fleet_sim.plan import FleetPlan
from cityedge.fleet_sim.stats import FleetCounters, FleetReport, percentile
from protocols.fleet.broker_url import BrokerAddress

CONNECTING = 32


class MissingCredentials(ValueError):
    """A credentials file was given but lacks some cabinets; the message names the first ones."""


def cabinet_addresses(
    plan: FleetPlan, broker: BrokerAddress, credentials: Mapping[str, str] | None
) -> dict[str, BrokerAddress]:
    """Each cabinet's broker address: its own account (username = cabinet id) when ``credentials``
    (``user:password``) are given, else the address as it is (one shared or no account)."""
    ids = plan.cabinet_ids
    if credentials is None:
        return dict.fromkeys(ids, broker)
    missing = [cabinet for cabinet in ids if cabinet not in credentials]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise MissingCredentials(f"the credentials file has no password for {shown}")
    return {c: dataclasses.replace(broker, username=c, password=credentials[c]) for c in ids}


class Fleet:
    """``await Fleet(plan, broker=...).run()`` until cancelled; ``report`` gets a FleetReport every
    ``stats_every_s``."""

    def __init__(
        self,
        plan: FleetPlan,
        *,
        broker: BrokerAddress,
        credentials: Mapping[str, str] | None = None,
        report: Callable[[FleetReport], None] | None = None,
        stats_every_s: float = 10.0,
    ) -> None:
        self.plan = plan
        self.counters = FleetCounters()
        addresses = cabinet_addresses(plan, broker, credentials)
        kind = LightCabinet if plan.light else SimCabinet
        self.cabinets: list[SimCabinet | LightCabinet] = [
            kind(cabinet, plan=plan, broker=addresses[cabinet], counters=self.counters)
            for cabinet in plan.cabinet_ids
        ]
        self._report = report
        self._stats_every_s = stats_every_s
        self._rng = random.Random(plan.seed)
        self.started_at = time.monotonic()
        self._last_report_at = self.started_at
        self._resends = 0
        self.reports: list[FleetReport] = []

    @property
    def connected(self) -> int:
        return sum(1 for cabinet in self.cabinets if cabinet.connected)

    @property
    def backlog(self) -> int:
        return sum(cabinet.backlog for cabinet in self.cabinets)

    async def run(self) -> None:
        n = len(self.cabinets)
        spread, interval = self.plan.start_spread_s, self.plan.interval_s
        self.started_at = self._last_report_at = time.monotonic()
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=CONNECTING, thread_name_prefix="fleet-connect")
        )
        gate = asyncio.Semaphore(CONNECTING)
        async with asyncio.TaskGroup() as tasks:
            for i, cabinet in enumerate(self.cabinets):
                start, phase = spread * i / n, interval * i / n
                tasks.create_task(cabinet.run(start, phase, gate), name=f"sim-{cabinet.cabinet}")
            if self._report is not None:
                tasks.create_task(self._report_forever(), name="fleet-stats")
            if self.plan.outages is not None:
                tasks.create_task(self._outages_forever(), name="fleet-outages")

    def take_report(self) -> FleetReport:
        """The period since the last report (or the start)."""
        now = time.monotonic()
        generated, acked, commands, latencies = self.counters.take_period()
        latencies.sort()
        resends = sum(cabinet.resends for cabinet in self.cabinets)
        report = FleetReport(
            elapsed_s=now - self.started_at,
            period_s=now - self._last_report_at,
            cabinets=len(self.cabinets),
            connected=self.connected,
            generated=generated,
            acked=acked,
            ack_p50_ms=percentile(latencies, 0.50) if latencies else None,
            ack_p99_ms=percentile(latencies, 0.99) if latencies else None,
            ack_max_ms=latencies[-1] if latencies else None,
            backlog=self.backlog,
            resends=resends - self._resends,
            commands=commands,
            offline=sum(1 for cabinet in self.cabinets if not cabinet.link_up),
        )
        self._last_report_at, self._resends = now, resends
        self.reports.append(report)
        return report

    async def _report_forever(self) -> None:
        assert self._report is not None
        while True:
            await asyncio.sleep(self._stats_every_s)
            self._report(self.take_report())

    async def _outages_forever(self) -> None:
        outages = self.plan.outages
        assert outages is not None
        count = max(1, round(outages.fraction * len(self.cabinets)))
        while True:
            await asyncio.sleep(outages.every_s)
            for cabinet in self._rng.sample(self.cabinets, count):
                cabinet.cut_link(outages.duration_s)
