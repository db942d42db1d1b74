"""Central's CPU per stored reading on SQLite, step by step, beside a raw insert of the same rows.

    .venv/bin/python bench/central_cpu.py [--shape drain|fleet] [--readings 400000] [--group 20000]
                                          [--profile]

No broker: the steps central takes for every batch, in this process, each timed in CPU (this
process's user + system, every thread: SQLite's own work included):
1. decode: ``decode_data_batch`` of the encoded batches (what ingest does on every message);
2. store: ``SqliteStore.write`` of the decoded batches in groups of about ``--group`` records (the
   writer's group commit: blocks, held ranges, latest values, rollups, counters), on a new file
   with synchronous NORMAL like the reference (CPU, not the disk's wait, is measured here);
3. ack: ``_ack`` + ``encode`` of each batch's ack;
4. the reference: an ``executemany`` of the same rows into a plain row-per-reading table (keyed by
   stream and seq, indexed by point and time), one transaction per group.
Shapes: ``drain`` is one cabinet's backlog (100 points at 1 Hz, batches of 5,000 readings, what
bench/drain.py sends); ``fleet`` is many cabinets' live batches (40 points every 10 s, one batch of
40 readings per cabinet, what bench/fleet.py sends). ``--profile`` prints cProfile's top functions
of the store step instead of timing it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from central.ingest import _ack
from central.store.rows import ReceivedBatch
from central.store.sqlite import SqliteStore
from central.store.sqlite.schema import INSERT_READING, READINGS_TABLE, connect
from protocols.fleet import DataBatch, Reading, decode_data_batch, encode
from protocols.quality import Quality

TS0_MS = 1_714_557_600_000
STREAM = "0123456789abcdef"


def drain_batches(readings: int) -> list[bytes]:
    """One cabinet's backlog: 100 points at 1 Hz, batches of 5,000 readings in seq order."""
    names = [f"lc{i // 10}/q{i % 10}" for i in range(100)]
    out = []
    for first in range(1, readings + 1, 5000):
        batch = [
            Reading(seq, names[(seq - 1) % 100], TS0_MS + (seq - 1) // 100 * 1000, float(seq % 997) / 3)
            for seq in range(first, min(first + 5000, readings + 1))
        ]
        out.append(_encoded("drain-cab", batch))
    return out


def fleet_batches(readings: int) -> list[bytes]:
    """Live batches: 1,000 cabinets of 40 points every 10 s, one batch per cabinet and round."""
    names = [f"lc{i // 10}/q{i % 10}" for i in range(40)]
    out = []
    rounds = max(1, readings // 40_000)
    t0 = time.time_ns() // 1_000_000 - rounds * 10_000  # live: stamped now, as the agents do
    for k in range(rounds):
        for c in range(1000):
            first = k * 40 + 1
            ts = t0 + k * 10_000
            batch = [Reading(first + i, names[i], ts, float((c + i + k) % 101)) for i in range(40)]
            out.append(_encoded(f"fleet-cab{c:04d}", batch))
    return out


def _encoded(cabinet: str, readings: list[Reading]) -> bytes:
    return encode(DataBatch(1, cabinet, STREAM, readings[0].seq, readings[-1].seq, readings, backlog=0))


def cpu(fn: Callable[[], object]) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


def groups_of(batches: list[ReceivedBatch], records: int) -> list[list[ReceivedBatch]]:
    out: list[list[ReceivedBatch]] = [[]]
    size = 0
    for b in batches:
        if out[-1] and size + len(b.batch.readings) > records:
            out.append([])
            size = 0
        out[-1].append(b)
        size += len(b.batch.readings)
    return out


def store_step(groups: list[list[ReceivedBatch]], path: Path, *, profile: bool) -> float:
    async def run() -> float:
        async with SqliteStore(path, durable=False) as store:
            profiler = cProfile.Profile() if profile else None
            started = time.process_time()
            if profiler is not None:
                # The writer thread does the work: profile what it runs.
                await store._on_writer("profile", profiler.enable)
            for group in groups:
                await store.write(group)
            if profiler is not None:
                await store._on_writer("profile", profiler.disable)
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return time.process_time() - started

    return asyncio.run(run())


def raw_step(groups: list[list[ReceivedBatch]], path: Path) -> float:
    """The same rows, one executemany per batch, one transaction per group (stream 1, points
    numbered per cabinet like the store does)."""
    conn = connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(READINGS_TABLE.format(options="WITHOUT ROWID"))
    points: dict[tuple[str, str], int] = {}
    streams: dict[str, int] = {}
    rows = []
    for group in groups:
        rows.append(
            [
                [
                    (
                        streams.setdefault(b.batch.cabinet, len(streams) + 1),
                        r.seq,
                        points.setdefault((b.batch.cabinet, r.point), len(points) + 1),
                        r.ts,
                        r.value,
                        Quality.GOOD,
                        None,
                    )
                    for r in b.batch.readings
                ]
                for b in group
            ]
        )

    def insert() -> None:
        for group_rows in rows:
            conn.execute("BEGIN IMMEDIATE")
            for batch_rows in group_rows:
                conn.executemany(INSERT_READING, batch_rows)
            conn.execute("COMMIT")

    spent = cpu(insert)
    conn.close()
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=("drain", "fleet"), default="drain")
    parser.add_argument("--readings", type=int, default=400_000)
    parser.add_argument("--group", type=int, default=20_000, help="records per group commit")
    parser.add_argument("--profile", action="store_true", help="cProfile the store step")
    args = parser.parse_args()

    payloads = drain_batches(args.readings) if args.shape == "drain" else fleet_batches(args.readings)
    decoded: list[DataBatch] = []
    decode_s = cpu(lambda: decoded.extend(decode_data_batch(p) for p in payloads))
    n = sum(len(b.readings) for b in decoded)
    now = time.time_ns() // 1_000_000
    received = [ReceivedBatch(b, now, "bench", p) for b, p in zip(decoded, payloads, strict=True)]
    groups = groups_of(received, args.group)
    ack_s = cpu(lambda: [encode(_ack(b)) for b in decoded])
    with tempfile.TemporaryDirectory(prefix="central-cpu-") as tmp:
        store_s = store_step(groups, Path(tmp) / "central.db", profile=args.profile)
        if args.profile:
            return
        raw_s = raw_step(groups, Path(tmp) / "raw.db")

    def us(seconds: float) -> float:
        return seconds / n * 1e6

    total = decode_s + store_s + ack_s
    print(
        f"shape {args.shape}: {n:,} readings in {len(decoded):,} batches, groups of ~{args.group:,} records"
    )
    print(f"  decode (decode_data_batch):         {us(decode_s):6.2f} µs CPU per reading")
    print(f"  store (SqliteStore.write):          {us(store_s):6.2f} µs CPU per reading")
    print(f"  ack (build + encode):               {us(ack_s):6.2f} µs CPU per reading")
    print(f"  central, these steps:               {us(total):6.2f} µs CPU per reading")
    print(f"  raw executemany, row per reading:   {us(raw_s):6.2f} µs CPU per reading (reference)")
    print(f"ratio raw / central steps:            {raw_s / total:6.2f}")


if __name__ == "__main__":
    main()
