"""Ingest's write (= ack) latency while the retention purge deletes old raw readings, SQLite.

    .venv/bin/python bench/central_purge.py [--cabinets 100] [--points 40] [--old-ticks 1500]
                                            [--ticks 200] [--group 20] [--every-ms 50] [--batch 5000]

A store holds ``old-ticks`` ticks of every cabinet's points, all older than the retention horizon.
Then groups of ``group`` batches (one per cabinet, as ingest groups them) are written every
``every-ms`` ms, twice: alone (the reference), then while the server's purge loop
(``CentralServer.purge_once``: ``purge_readings`` of ``batch`` readings per transaction, the event
loop free between two) deletes the old readings. Prints the latency of each group's write (submitted
to committed: what an ack waits for) at p50/p99/max in both runs, and how fast the purge went.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from central_wear import TICK_MS, TS0_MS, Plan, _batches, _history

from central.store.sqlite import SqliteStore


def _quantiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    return (
        f"p50 {statistics.median(ordered) * 1000:6.1f} ms  p99 {_p99(ordered) * 1000:6.1f} ms"
        f"  max {ordered[-1] * 1000:6.1f} ms"
    )


async def _paced(store: SqliteStore, groups: list[list[object]], every_s: float) -> list[tuple[float, float]]:
    """(submitted at, latency) of each group's write, one group every ``every_s``."""
    latencies: list[tuple[float, float]] = []
    start = time.perf_counter()
    for i, group in enumerate(groups):
        await asyncio.sleep(max(0.0, start + i * every_s - time.perf_counter()))
        t0 = time.perf_counter()
        await store.write(group)  # type: ignore[arg-type]
        latencies.append((t0, time.perf_counter() - t0))
    return latencies


async def _purge(store: SqliteStore, before_ms: int, batch: int) -> tuple[int, float, list[float]]:
    deleted, started, steps = 0, time.perf_counter(), []
    while True:
        t0 = time.perf_counter()
        purged = await store.purge_readings(before_ms=before_ms, limit=batch)
        steps.append(time.perf_counter() - t0)
        deleted += purged.deleted
        if purged.done:
            return deleted, time.perf_counter() - started, steps
        await asyncio.sleep(0)


async def run(plan: Plan, every_s: float, batch: int) -> int:
    with tempfile.TemporaryDirectory(prefix="purge-") as tmp:
        async with SqliteStore(Path(tmp) / "central.db", durable=True) as store:
            for group in _history(plan):
                await store.write(group)  # type: ignore[arg-type]
            # Two runs of new readings after the old ones: seqs and times go on from the history.
            first = _batches(plan, range(plan.history, plan.history + plan.ticks))
            second = _batches(plan, range(plan.history + plan.ticks, plan.history + 2 * plan.ticks))
            alone = [latency for _, latency in await _paced(store, first, every_s)]
            horizon = TS0_MS  # every reading of the history is older
            paced = asyncio.create_task(_paced(store, second, every_s))
            purge_started = time.perf_counter()
            deleted, seconds, steps = await _purge(store, horizon, batch)
            # Only the writes submitted while the purge ran.
            during = [lat for t0, lat in await paced if t0 < purge_started + seconds]
    print(
        f"{plan.cabinets} cabinets x {plan.points} points; {plan.history} ticks"
        f" ({plan.history * TICK_MS // 60_000} min) of old readings; a group of {plan.group} batches"
        f" ({plan.group * plan.points} readings) every {every_s * 1000:.0f} ms; purge {batch}"
        " readings per transaction"
    )
    print(f"write latency alone        {_quantiles(alone)}  ({len(alone)} groups)")
    print(f"write latency during purge {_quantiles(during)}  ({len(during)} groups)")
    print(
        f"purge: {deleted} readings in {seconds:.1f} s ({deleted / seconds:,.0f}/s),"
        f" {len(steps)} transactions: {_quantiles(steps)}"
    )
    if during:
        print(f"p99 during / alone: {_p99(during) / _p99(alone):.2f}")
    return 0


def _p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cabinets", type=int, default=100)
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--old-ticks", type=int, default=1500)
    parser.add_argument("--ticks", type=int, default=60, help="ticks written in each run")
    parser.add_argument("--group", type=int, default=20)
    parser.add_argument("--every-ms", type=float, default=50)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    plan = Plan(args.cabinets, args.points, args.old_ticks, args.ticks, args.group)
    return asyncio.run(run(plan, args.every_ms / 1000, args.batch))


if __name__ == "__main__":
    sys.exit(main())
