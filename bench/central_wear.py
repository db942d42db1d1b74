"""Bytes central writes to disk per stored reading (SQLite), beside a minimal insert of the same rows.

    .venv/bin/python bench/central_wear.py [--cabinets 200] [--points 40] [--history 300]
                                           [--ticks 90] [--group 20]

A fleet of ``cabinets`` cabinets of ``points`` points (two of them energy counters) sends one batch
per cabinet every tick (10 s of their time). Each run is a fresh process on a fresh file:
1. **store**: ``SqliteStore`` as ``central serve`` opens it (WAL, synchronous FULL), first filled with
   ``history`` ticks of every point (not measured: the steady state of a store that has run for a
   while, where each point's rows fill pages of their own), then ``ticks`` ticks written in group
   commits of ``group`` batches, as ingest groups the batches of different cabinets;
2. **reference**: the same rows (point, ts, value) appended to one plain table in the same group
   commits with the same settings: what storing them costs at the least.
Measured: ``write_bytes`` of /proc/self/io of that process (WAL, checkpoints and the final
checkpoint at close included) over the measured ticks, per reading. Prints both and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_BYTES_PER_READING = 300
TS0_MS = 1_714_521_600_000
TICK_MS = 10_000
COUNTERS = 2


@dataclass(frozen=True)
class Plan:
    cabinets: int
    points: int
    history: int
    ticks: int
    group: int


@dataclass(frozen=True)
class Result:
    readings: int
    write_bytes: int
    seconds: float
    file_bytes: int

    @property
    def per_reading(self) -> float:
        return self.write_bytes / self.readings


def _write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        name, _, value = line.partition(": ")
        if name == "write_bytes":
            return int(value)
    raise RuntimeError("/proc/self/io has no write_bytes")


def _point(i: int) -> str:
    return f"m{i}/energy_wh" if i < COUNTERS else f"lc{i % 8}/q{i}"


def _value(tick: int, cabinet: int, i: int) -> float:
    if i < COUNTERS:
        return float(tick * 3 + cabinet)  # a counter: it only grows
    return float((tick * 7919 + cabinet * 31 + i * 17) % 1000) / 10


def _batches(plan: Plan, ticks: range) -> list[list[object]]:
    """Groups of batches as ingest would write them: ``group`` cabinets' batches per transaction."""
    from central.store.rows import ReceivedBatch
    from protocols.fleet import PROTOCOL_VERSION, DataBatch, Reading

    points = [_point(i) for i in range(plan.points)]
    groups: list[list[object]] = []
    group: list[object] = []
    for tick in ticks:
        for c in range(plan.cabinets):
            first = tick * plan.points + 1
            ts = TS0_MS + (tick - plan.history) * TICK_MS
            readings = [Reading(first + i, points[i], ts + i, _value(tick, c, i)) for i in range(plan.points)]
            batch = DataBatch(
                v=PROTOCOL_VERSION,
                cabinet=f"cab{c:05d}",
                stream=f"{c + 1:08x}",
                first=first,
                last=first + plan.points - 1,
                readings=readings,
            )
            group.append(ReceivedBatch(batch, TS0_MS + (tick - plan.history) * TICK_MS + 500, "", b""))
            if len(group) == plan.group:
                groups.append(group)
                group = []
    if group:
        groups.append(group)
    return groups


def _history(plan: Plan) -> list[list[object]]:
    """The history as each cabinet's backlog: big batches, in order (fast to store, same pages)."""
    from central.store.rows import ReceivedBatch
    from protocols.fleet import PROTOCOL_VERSION, DataBatch, Reading

    points = [_point(i) for i in range(plan.points)]
    per_batch = max(1, 10_000 // plan.points)
    groups: list[list[object]] = []
    for start in range(-plan.history, 0, per_batch):
        ticks = range(start, min(start + per_batch, 0))
        group: list[object] = []
        for c in range(plan.cabinets):
            readings = [
                Reading(
                    (t + plan.history) * plan.points + i + 1,
                    points[i],
                    TS0_MS + t * TICK_MS + i,
                    _value(t, c, i),
                )
                for t in ticks
                for i in range(plan.points)
            ]
            batch = DataBatch(
                v=PROTOCOL_VERSION,
                cabinet=f"cab{c:05d}",
                stream=f"{c + 1:08x}",
                first=readings[0].seq,
                last=readings[-1].seq,
                readings=readings,
            )
            group.append(ReceivedBatch(batch, TS0_MS, "", b""))
        groups.append(group)
    return groups


def store_main(plan: Plan, conn: Connection) -> None:
    from central.store.sqlite import SqliteStore

    async def run(path: Path) -> Result:
        # The history's seqs are below the measured ticks' (which start at history * points + 1).
        history = _history(plan)
        measured = _batches(plan, range(plan.history, plan.history + plan.ticks))
        async with SqliteStore(path, durable=True) as store:
            for group in history:
                await store.write(group)  # type: ignore[arg-type]
            before = _write_bytes()
            started = time.perf_counter()
            for group in measured:
                await store.write(group)  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        written = _write_bytes() - before
        return Result(plan.cabinets * plan.points * plan.ticks, written, seconds, _file_bytes(path))

    with tempfile.TemporaryDirectory(prefix="wear-") as tmp:
        conn.send(asyncio.run(run(Path(tmp) / "central.db")))


def reference_main(plan: Plan, conn: Connection) -> None:
    with tempfile.TemporaryDirectory(prefix="wear-") as tmp:
        path = Path(tmp) / "raw.db"
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("CREATE TABLE readings (point_pk INTEGER, ts INTEGER, value REAL)")
        rows_per_group = []
        for group in _batches(plan, range(plan.history, plan.history + plan.ticks)):
            rows = []
            for received in group:
                batch = received.batch  # type: ignore[attr-defined]
                base = int(batch.cabinet[3:]) * plan.points
                rows += [(base + i, r.ts, r.value) for i, r in enumerate(batch.readings)]
            rows_per_group.append(rows)
        before = _write_bytes()
        started = time.perf_counter()
        for rows in rows_per_group:
            db.execute("BEGIN")
            db.executemany("INSERT INTO readings VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")
        db.close()
        seconds = time.perf_counter() - started
        result = Result(sum(map(len, rows_per_group)), _write_bytes() - before, seconds, _file_bytes(path))
        conn.send(result)


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.iterdir())


def _in_process(target: object, plan: Plan) -> Result:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=target, args=(plan, child))
    process.start()
    child.close()
    result: Result = parent.recv()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"the {target} process failed")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cabinets", type=int, default=200)
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--history", type=int, default=300, help="ticks stored first, not measured")
    parser.add_argument("--ticks", type=int, default=90, help="ticks measured (90 = 15 minutes)")
    parser.add_argument("--group", type=int, default=20, help="batches per transaction")
    args = parser.parse_args()
    plan = Plan(args.cabinets, args.points, args.history, args.ticks, args.group)
    if not Path("/proc/self/io").exists():
        print("needs Linux /proc/PID/io", file=sys.stderr)
        return 2
    print(
        f"{plan.cabinets} cabinets x {plan.points} points, {plan.history} ticks of history, "
        f"{plan.ticks} ticks measured, {plan.group} batches per transaction"
    )
    store = _in_process(store_main, plan)
    reference = _in_process(reference_main, plan)
    for name, r in (("store", store), ("reference (one plain table)", reference)):
        print(
            f"{name:28s} {r.per_reading:8.1f} bytes written per reading"
            f"  ({r.write_bytes / 1e6:.1f} MB for {r.readings} readings, {r.readings / r.seconds:,.0f}/s,"
            f" files {r.file_bytes / 1e6:.1f} MB)"
        )
    print(f"ratio store / reference: {store.per_reading / reference.per_reading:.2f}")
    print(f"goal: store < {GOAL_BYTES_PER_READING} bytes per reading")
    return 0


if __name__ == "__main__":
    sys.exit(main())
