"""SD wear at the edge: bytes the buffer makes the kernel write to the card, per reading and per second.

    .venv/bin/python bench/edge_wear.py [--seconds 240] [--commit-s 1.0]

Each workload runs in a process of its own, all at once and in real time (the kernel writes dirty
pages back on its own clock, so a compressed-time run would undercount), and is measured with
``/proc/PID/io`` ``write_bytes`` (what the process caused to be written to the block device, counted
when a page becomes dirty: a whole 4 KiB page for any write into a clean one):

    100/s      100 points read every second (100 readings/s)
    40/10s     a cabinet's nominal rate: 40 points every 10 s
    40/60s     40 points every 60 s

Each is run twice: with the agent's buffer (``edge_agent.buffer``: a compressed block per commit,
512-byte pages, acknowledged blocks deleted in bulk) and, as the reference measured in the same run, with
the previous layout written the previous way (a row per reading, 4 KiB pages, the acknowledged rows
deleted and ``last_seq`` written at every commit). Both commit every ``--commit-s`` seconds when
something is pending, with ``synchronous=FULL`` (a commit is on the card before it is sent), and every
commit's records are acknowledged at once, as a connected cabinet's are.
Goals: <= 40 bytes/reading at 100 readings/s, <= 4 KiB/s at the nominal rate.
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

from bench._proc import sample

TS0_MS = 1_714_557_600_000
GOAL_BYTES_PER_READING = 40
GOAL_BYTES_PER_S = 4096


@dataclass(frozen=True)
class Workload:
    name: str
    points: int
    every_s: float


WORKLOADS = (Workload("100/s", 100, 1.0), Workload("40/10s", 40, 10.0), Workload("40/60s", 40, 60.0))


def _values(points: int, cycle: int) -> list[tuple[str, float]]:
    # Values as meters give them: a few significant digits, changing from one read to the next.
    return [
        (f"d{i // 10}/q{i % 10}", round(200.0 + (i * 7 + cycle * 3) % 400 / 10, 1)) for i in range(points)
    ]


@dataclass(frozen=True)
class Spec:
    kind: str  # "agent" or "reference"
    folder: Path
    work: Workload
    seconds: float
    commit_s: float


async def _agent_buffer(spec: Spec, conn: Connection) -> int:
    from edge_agent.buffer import Buffer

    work, seconds, commit_s = spec.work, spec.seconds, spec.commit_s
    async with Buffer(spec.folder / "buffer.db", max_bytes=256 << 20, clock_ms=lambda: TS0_MS) as buffer:
        await asyncio.to_thread(conn.recv)  # go: the file exists, the parent has sampled our counters
        readings = 0
        started = time.monotonic()
        next_poll = started
        cycle = 0
        while time.monotonic() - started < seconds:
            now = time.monotonic()
            while now >= next_poll:  # every poll due since the last commit
                for point, value in _values(work.points, cycle):
                    buffer.append_reading(point, TS0_MS + cycle * int(work.every_s * 1000), value)
                readings += work.points
                cycle += 1
                next_poll += work.every_s
            before = buffer.committed_seq
            await buffer.flush()
            if buffer.committed_seq > before:  # sent and acknowledged at once
                buffer.mark_acked(before + 1, buffer.committed_seq)
            await asyncio.sleep(commit_s)
        return readings


def _reference(spec: Spec, conn: Connection) -> int:
    """The previous layout, written the previous way: a row per reading."""
    from protocols.fleet import Reading, encode

    work, seconds, commit_s = spec.work, spec.seconds, spec.commit_s
    db = sqlite3.connect(spec.folder / "reference.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE records (seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, ts INTEGER NOT NULL,"
        " body BLOB NOT NULL);"
    )
    conn.recv()  # go
    seq = readings = cycle = 0
    pending: list[tuple[int, int, int, bytes]] = []
    acked: tuple[int, int] | None = None
    started = time.monotonic()
    next_poll = started
    while time.monotonic() - started < seconds:
        while time.monotonic() >= next_poll:
            ts = TS0_MS + cycle * int(work.every_s * 1000)
            for point, value in _values(work.points, cycle):
                seq += 1
                pending.append((seq, 0, ts, encode(Reading(seq, point, ts, value))))
            readings += work.points
            cycle += 1
            next_poll += work.every_s
        if pending or acked:
            with db:
                db.execute("BEGIN")
                if acked:
                    db.execute("DELETE FROM records WHERE seq BETWEEN ? AND ?", acked)
                    acked = None
                if pending:
                    db.executemany("INSERT INTO records VALUES (?, ?, ?, ?)", pending)
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (str(seq),))
                    acked = (pending[0][0], seq)
                    pending = []
        time.sleep(commit_s)
    db.close()
    return readings


def _child(spec: Spec, conn: Connection) -> None:
    readings = asyncio.run(_agent_buffer(spec, conn)) if spec.kind == "agent" else _reference(spec, conn)
    conn.send(readings)
    conn.recv()  # the parent samples again before we exit


@dataclass(frozen=True)
class Result:
    kind: str
    work: Workload
    readings: int
    write_bytes: int
    seconds: float

    @property
    def per_reading(self) -> float:
        return self.write_bytes / max(1, self.readings)

    @property
    def per_s(self) -> float:
        return self.write_bytes / self.seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=240.0, help="how long each workload runs")
    parser.add_argument("--commit-s", type=float, default=1.0, help="the buffer's commit interval")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    runs = []
    with tempfile.TemporaryDirectory(prefix="cityedge-wear-", dir="/var/tmp") as tmp:
        for kind in ("agent", "reference"):
            for work in WORKLOADS:
                folder = Path(tmp) / f"{kind}-{work.name.replace('/', '_')}"
                folder.mkdir()
                parent, child = ctx.Pipe()
                spec = Spec(kind, folder, work, args.seconds, args.commit_s)
                process = ctx.Process(target=_child, args=(spec, child))
                process.start()
                runs.append((kind, work, process, parent))
        time.sleep(3.0)  # imported, files made: what is counted from here is the workload's
        starts = {}
        for kind, work, process, conn in runs:
            starts[(kind, work.name)] = (sample(process.pid or 0).write_bytes, time.monotonic())
            conn.send("go")
        results = []
        for kind, work, process, conn in runs:
            readings = conn.recv()
            written = sample(process.pid or 0).write_bytes - starts[(kind, work.name)][0]
            elapsed = time.monotonic() - starts[(kind, work.name)][1]
            conn.send("bye")
            process.join(timeout=30)
            results.append(Result(kind, work, readings, written, elapsed))
    print(f"{args.seconds:.0f} s each, commit every {args.commit_s:g} s, synchronous=FULL, all at once")
    print(f"{'workload':>8} {'':>9} {'readings':>9} {'written':>11} {'B/reading':>10} {'B/s':>9}")
    by = {(r.kind, r.work.name): r for r in results}
    for work in WORKLOADS:
        for kind in ("agent", "reference"):
            r = by[(kind, work.name)]
            print(
                f"{work.name:>8} {kind:>9} {r.readings:>9,} {r.write_bytes:>11,} {r.per_reading:>10.1f}"
                f" {r.per_s:>9,.0f}"
            )
        agent, ref = by[("agent", work.name)], by[("reference", work.name)]
        print(f"{'':>8} {'ratio':>9} {'':>9} {agent.write_bytes / max(1, ref.write_bytes):>11.2f}")
    high = by[("agent", "100/s")]
    nominal = by[("agent", "40/10s")]
    print(
        f"goals: <= {GOAL_BYTES_PER_READING} B/reading at 100/s: {high.per_reading:.1f}"
        f" {'met' if high.per_reading <= GOAL_BYTES_PER_READING else 'MISSED'};"
        f" <= {GOAL_BYTES_PER_S} B/s at 40 points/10 s: {nominal.per_s:,.0f}"
        f" {'met' if nominal.per_s <= GOAL_BYTES_PER_S else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
