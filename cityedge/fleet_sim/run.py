"""What ``cityedge fleet-sim`` runs: the fleet for a bounded time (or until stopped), reports printed."""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import Callable, Mapping

from cityedge.fleet_sim.fleet import Fleet
from cityedge.fleet_sim.plan import FleetPlan
from cityedge.fleet_sim.stats import FleetReport
from cityedge.fleet_sim.traffic import CommandTraffic
from protocols.fleet.broker_url import BrokerAddress

# How long the fleet is given to stop (each cabinet says goodbye with an offline status).
STOP_S = 15.0
# Descriptors beyond one socket per cabinet: the interpreter, the event loop, logging.
SPARE_DESCRIPTORS = 64


class TooManyCabinets(ValueError):
    """This process may not open a connection per cabinet; the message says the limit and the fix."""


def raise_descriptor_limit(cabinets: int) -> None:
    """One MQTT socket per cabinet: lift the soft limit of open files to the hard one if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = cabinets + SPARE_DESCRIPTORS
    if needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise TooManyCabinets(
            f"{cabinets} cabinets need {needed} open files and this process may open {hard}:"
            f" raise the limit (`ulimit -Hn`, LimitNOFILE=) or run fewer cabinets per process"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else hard, hard))


def report_json(report: FleetReport) -> str:
    return json.dumps(
        {
            "elapsed_s": round(report.elapsed_s, 3),
            "period_s": round(report.period_s, 3),
            "cabinets": report.cabinets,
            "connected": report.connected,
            "offline": report.offline,
            "generated": report.generated,
            "acked": report.acked,
            "acked_per_s": round(report.acked_per_s, 1),
            "ack_p50_ms": report.ack_p50_ms,
            "ack_p99_ms": report.ack_p99_ms,
            "ack_max_ms": report.ack_max_ms,
            "backlog": report.backlog,
            "resends": report.resends,
            "commands": report.commands,
        }
    )


async def run_fleet_sim(
    plan: FleetPlan,
    *,
    broker: BrokerAddress,
    credentials: Mapping[str, str] | None,
    seconds: float | None,
    stats_every_s: float,
    emit: Callable[[str], None],
    as_json: bool = False,
    traffic: CommandTraffic | None = None,
) -> int:
    """Run the fleet for ``seconds`` (None: until cancelled), emitting a line per report. Returns
    how many cabinets did not stop within ``STOP_S`` of being asked (see ``cabinet._stop``): the
    caller should then end the process, the broker publishing their last wills."""
    raise_descriptor_limit(plan.cabinets)

    def show(report: FleetReport) -> None:
        emit(report_json(report) if as_json else report.line())

    fleet = Fleet(plan, broker=broker, credentials=credentials, report=show, stats_every_s=stats_every_s)
    if not as_json:
        emit(
            f"fleet-sim: {plan.cabinets} cabinets x {plan.points} points every {plan.interval_s:g} s"
            f" ({plan.readings_per_s:,.0f} readings/s) to {broker}, start spread over"
            f" {plan.start_spread_s:g} s"
        )
    task = asyncio.create_task(fleet.run(), name="fleet")
    sender = None if traffic is None else asyncio.create_task(traffic.run(), name="fleet-commands")
    interrupted = False
    try:
        await asyncio.wait((task,), timeout=seconds)
    except asyncio.CancelledError:
        interrupted = True  # Ctrl-C or SIGTERM: stop as after --seconds
    if sender is not None:
        sender.cancel()
    if task.done():
        task.result()  # the fleet stopped by itself: a bug, raised
    task.cancel()
    await asyncio.wait((task,), timeout=STOP_S)
    stuck = 0 if task.done() else sum(1 for cabinet in fleet.cabinets if not cabinet.stopped)
    if not as_json:
        emit(f"fleet-sim: stopped after {time.monotonic() - fleet.started_at:.0f} s")
    if traffic is not None and not as_json:
        t = traffic.stats
        emit(f"fleet-sim: commands sent {t.sent}, refused by central {t.refused}, unanswered {t.failed}")
    if stuck:
        note = f"fleet-sim: {stuck} cabinet(s) did not stop within {STOP_S:g} s: left to their last wills"
        emit(json.dumps({"stuck": stuck, "note": note}) if as_json else note)
    elif interrupted:
        raise asyncio.CancelledError
    return stuck
