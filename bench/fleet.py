"""A city's fleet in one fleet-sim process against one central: does it hold?

    .venv/bin/python bench/fleet.py [--cabinets 5000] [--points 40] [--interval 10] [--seconds 120]

Each run starts its own Mosquitto, `cityedge central serve` on a temporary SQLite file (a process of
its own: its CPU is read from /proc) and `cityedge fleet-sim` (another process: the agent's own buffer,
sync and command code for every cabinet). From two intervals after every cabinet is connected it
measures over the rest of the run, per stats period of the fleet: ack p99 (worst period and median),
records acknowledged against records taken, the backlog's growth, central's and the fleet's CPU.

A fleet holds when: the worst period's ack p99 < 250 ms, the backlog at the end is no larger than at the
start of the window plus one interval's readings, central acknowledges at least 98% of what is taken,
and central uses under 30% of a core. When the asked size does not hold, smaller fleets are tried
(``--search``) and the largest that holds is printed. Exits non-zero only if a run itself failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import sample

from cityedge.broker import MosquittoBroker
from cityedge.ports import free_port, wait_for_port

GOAL_P99_MS = 250.0
GOAL_CENTRAL_CPU_PCT = 30.0
GOAL_ACKED_SHARE = 0.98
STATS_EVERY_S = 5.0


class NotConnected(RuntimeError):
    """The fleet never had every cabinet connected at once: it does not hold."""


@dataclass(frozen=True)
class Outcome:
    cabinets: int
    window_s: float
    connected_at_s: float
    p99_worst_ms: float
    p99_median_ms: float
    p50_median_ms: float
    taken_per_s: float
    acked_per_s: float
    backlog_start: int
    backlog_end: int
    central_cpu_pct: float
    fleet_cpu_pct: float
    allowed_growth: int

    @property
    def acked_share(self) -> float:
        return self.acked_per_s / self.taken_per_s if self.taken_per_s else 0.0

    @property
    def failures(self) -> list[str]:
        failed = []
        if self.p99_worst_ms >= GOAL_P99_MS:
            failed.append(f"ack p99 {self.p99_worst_ms:.0f} ms >= {GOAL_P99_MS:.0f}")
        if self.backlog_end > self.backlog_start + self.allowed_growth:
            failed.append(f"backlog grew {self.backlog_start:,} -> {self.backlog_end:,}")
        if self.acked_share < GOAL_ACKED_SHARE:
            failed.append(f"acked {self.acked_share:.0%} of what was taken")
        if self.central_cpu_pct >= GOAL_CENTRAL_CPU_PCT:
            failed.append(f"central at {self.central_cpu_pct:.0f}% of a core")
        return failed

    def lines(self) -> list[str]:
        verdict = "HOLDS" if not self.failures else "does not hold: " + "; ".join(self.failures)
        return [
            f"{self.cabinets:,} cabinets, all connected {self.connected_at_s:.0f} s after the start,"
            f" {self.window_s:.0f} s measured from two intervals later: {verdict}",
            f"  ack latency: p99 worst {self.p99_worst_ms:.0f} ms, median {self.p99_median_ms:.0f} ms;"
            f" p50 median {self.p50_median_ms:.0f} ms (goal p99 < {GOAL_P99_MS:.0f} ms)",
            f"  records: taken {self.taken_per_s:,.0f}/s, acked {self.acked_per_s:,.0f}/s"
            f" ({self.acked_share:.1%}); backlog {self.backlog_start:,} -> {self.backlog_end:,}"
            f" (allowed growth {self.allowed_growth:,})",
            f"  CPU: central {self.central_cpu_pct:.1f}% of a core (goal < {GOAL_CENTRAL_CPU_PCT:.0f}%),"
            f" fleet-sim {self.fleet_cpu_pct:.1f}% ({self.fleet_cpu_pct / self.cabinets * 1000:.1f}% per"
            " 1,000 cabinets)",
        ]


def _lift_descriptor_limit() -> None:
    """Mosquitto inherits this process's limit and holds one socket per cabinet."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _spawn(
    *args: str, stdout: int | None = None, profile: Path | None = None
) -> asyncio.subprocess.Process:
    """``python -m cityedge ARGS``; with ``profile``, under cProfile writing there at a clean exit."""
    profiler = [] if profile is None else ["-m", "cProfile", "-o", str(profile)]
    return await asyncio.create_subprocess_exec(
        sys.executable, *profiler, "-m", "cityedge", *args,
        stdout=stdout if stdout is not None else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(30):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


async def run_one(
    cabinets: int,
    *,
    points: int,
    interval_s: float,
    seconds: float,
    sqlite_threads: bool,
    light: bool = False,
    profile_dir: Path | None = None,
) -> Outcome:
    warmup_s = 2 * interval_s  # once every cabinet is connected
    start_s = cabinets * 0.005  # fleet-sim's default start spread
    if seconds < start_s + warmup_s + 6 * STATS_EVERY_S:
        raise ValueError(f"--seconds {seconds:g}: too short for {cabinets} cabinets' start and a window")
    with tempfile.TemporaryDirectory(prefix="cityedge-fleet-bench-") as tmp:
        async with MosquittoBroker() as broker:
            http_port = free_port()
            central = await _spawn(
                "central", "serve", "--db", str(Path(tmp) / "central.db"), "--broker", broker.url,
                "--http", f"127.0.0.1:{http_port}",
                profile=None if profile_dir is None else profile_dir / f"central-{cabinets}.prof",
            )  # fmt: skip
            fleet: asyncio.subprocess.Process | None = None
            try:
                async with asyncio.timeout(30):
                    await wait_for_port("127.0.0.1", http_port)
                fleet = await _spawn(
                    "fleet-sim", "--broker", broker.url, "--cabinets", str(cabinets),
                    "--points", str(points), "--interval", str(interval_s), "--seconds", str(seconds),
                    "--stats-every", str(STATS_EVERY_S), "--prefix", "bench", "--json",
                    *(["--sqlite-threads"] if sqlite_threads else []), *(["--light"] if light else []),
                    stdout=asyncio.subprocess.PIPE,
                    profile=None if profile_dir is None else profile_dir / f"fleet-sim-{cabinets}.prof",
                )  # fmt: skip
                return await _measure(
                    fleet, central.pid, cabinets=cabinets, points=points, warmup_s=warmup_s, seconds=seconds
                )
            finally:
                if fleet is not None:
                    await _stop(fleet)
                await _stop(central)


async def _measure(
    fleet: asyncio.subprocess.Process,
    central_pid: int,
    *,
    cabinets: int,
    points: int,
    warmup_s: float,
    seconds: float,
) -> Outcome:
    assert fleet.stdout is not None
    window: list[dict[str, Any]] = []
    first: tuple[float, float, float] | None = None  # (monotonic, central cpu s, fleet cpu s)
    last = first
    connected_at: float | None = None  # elapsed s of the first report with every cabinet connected
    connected = 0
    async with asyncio.timeout(seconds + 120):
        while line := await fleet.stdout.readline():
            report = json.loads(line)
            if "elapsed_s" not in report:
                continue  # a note (cabinets that did not stop), not a stats period
            now = (time.monotonic(), sample(central_pid).cpu_s, sample(fleet.pid).cpu_s)
            connected = report["connected"]
            if connected_at is None and connected == cabinets:
                connected_at = report["elapsed_s"]
            if connected_at is None or report["elapsed_s"] < connected_at + warmup_s:
                continue
            if first is None:
                first = now  # the window starts at the end of this period
                backlog_start = report["backlog"]
                continue
            window.append(report)
            last = now
    if connected_at is None:
        raise NotConnected(f"only {connected:,} of {cabinets:,} cabinets connected by the end of the run")
    if first is None or last is None or len(window) < 2:
        raise RuntimeError(f"fleet-sim gave {len(window)} stats periods after its warm-up: too short a run")
    elapsed = last[0] - first[0]
    p99s = [r["ack_p99_ms"] if r["ack_p99_ms"] is not None else float("inf") for r in window]
    p50s = [r["ack_p50_ms"] if r["ack_p50_ms"] is not None else float("inf") for r in window]
    period = sum(r["period_s"] for r in window)
    return Outcome(
        cabinets=cabinets,
        window_s=elapsed,
        connected_at_s=connected_at,
        p99_worst_ms=max(p99s),
        p99_median_ms=statistics.median(p99s),
        p50_median_ms=statistics.median(p50s),
        taken_per_s=sum(r["generated"] for r in window) / period,
        acked_per_s=sum(r["acked"] for r in window) / period,
        backlog_start=backlog_start,
        backlog_end=window[-1]["backlog"],
        central_cpu_pct=100 * (last[1] - first[1]) / elapsed,
        fleet_cpu_pct=100 * (last[2] - first[2]) / elapsed,
        allowed_growth=cabinets * points,
    )


async def main_async(args: argparse.Namespace) -> int:
    sizes = [args.cabinets] + [n for n in args.search if n < args.cabinets]
    print(
        f"fleet bench: {args.points} points every {args.interval:g} s per cabinet,"
        f" {args.seconds:g} s per run{', SQLite on a thread per cabinet' if args.sqlite_threads else ''}"
        f"{', light stand-in cabinets' if args.light else ''};"
        f" {os.cpu_count()} CPUs; sizes {', '.join(f'{n:,}' for n in sizes)} until one holds"
    )
    for cabinets in sizes:
        try:
            outcome = await run_one(
                cabinets,
                points=args.points,
                interval_s=args.interval,
                seconds=args.seconds,
                sqlite_threads=args.sqlite_threads,
                light=args.light,
                profile_dir=args.profile,
            )
            for line in outcome.lines():
                print(line, flush=True)
            if args.reference:
                # The same central fed by the light stand-in at the same size, in this run: what
                # central costs for this traffic without the real agent code's CPU beside it.
                reference = await run_one(
                    cabinets, points=args.points, interval_s=args.interval, seconds=args.seconds,
                    sqlite_threads=False, light=True,
                )  # fmt: skip
                print("reference (--light stand-in, same size, same run):", flush=True)
                for line in reference.lines():
                    print("  " + line, flush=True)
                print(
                    f"  ratio to the reference: central CPU"
                    f" {outcome.central_cpu_pct / max(reference.central_cpu_pct, 0.1):.2f},"
                    f" ack p99 (median of periods)"
                    f" {outcome.p99_median_ms / max(reference.p99_median_ms, 0.1):.2f},"
                    f" acked/s {outcome.acked_per_s / max(reference.acked_per_s, 0.1):.2f}",
                    flush=True,
                )
        except NotConnected as exc:
            print(f"{cabinets:,} cabinets: does not hold: {exc}", flush=True)
            continue
        except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
            print(f"FAILED: {cabinets} cabinets: {exc}", file=sys.stderr)
            return 1
        if not outcome.failures:
            note = "" if cabinets == args.cabinets else f" (asked {args.cabinets:,})"
            print(f"largest fleet that holds: {cabinets:,} cabinets{note}")
            return 0
    print(f"no fleet of {', '.join(f'{n:,}' for n in sizes)} cabinets holds")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cabinets", type=int, default=5000)
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between a cabinet's readings")
    parser.add_argument("--seconds", type=float, default=120.0, help="length of each run, warm-up included")
    parser.add_argument(
        "--search",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[4000, 3000, 2000, 1500, 1000, 500],
        help="smaller sizes to try, largest first, when the asked one does not hold",
    )
    parser.add_argument(
        "--sqlite-threads",
        action="store_true",
        help="each cabinet's SQLite work on a thread of its own, as in a real agent (fleet-sim's option)",
    )
    parser.add_argument(
        "--light",
        action="store_true",
        help="the fleet's cabinets are fleet-sim's cheaper stand-in (its --light), not the agent's code",
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help="after each run, the same size with --light, printed as the same-run reference with ratios",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run central and fleet-sim under cProfile, writing central-N.prof and fleet-sim-N.prof here"
        " (the profiler's own cost inflates both processes' CPU: not for the figure)",
    )
    _lift_descriptor_limit()
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
