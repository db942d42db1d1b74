"""Ingest with two `central serve` workers against one, on the same load and a fresh database each.

    .venv/bin/python bench/workers.py [--backend postgresql] [--readings 600000] [--cabinets 400]
                                      [--batch 500] [--window 64] [--rounds 3] [--quiet 0.3]
                                      [--max-other 0.25]

For 1 worker, then 2: a fresh database (PostgreSQL: a database of its own on 127.0.0.1:5432, made with
`cityedge central migrate` and dropped after; SQLite: a file), a Mosquitto of its own, N `cityedge
central serve` processes (the MQTT 5 shared subscription splits the data between them), then the
publisher of bench/ingest.py in its own process: pre-encoded batches from many cabinets, a bounded
window of unacknowledged batches, timed from the first publish to the last ack (MQTT in, committed,
acknowledged). Many cabinets, so that each stays within central's per-cabinet rate limits, which
`central serve` applies as shipped.

Runs 1 worker then 2, ``--rounds`` times, alternating so that load elsewhere on the machine weighs on
both alike; prints each rate, the median ratio (goal >= 1.7), and the CPU each process used over each
run as a share of one core: each worker, the broker, the publisher, the database server's backends,
the rest of the machine (other work may share it). A process at ~100% of a core is the bottleneck.
Each run waits (up to 60 s) for a second in which the machine is quiet, and a round in which other
processes took more than ``--max-other`` of a core beside either run is left out of the median: a
run beside other work measures the scheduler's share, not ingest.
Exits non-zero if a run failed (not for missing the goal).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _proc import TICKS, sample
from ingest import Plan, publisher_main

from cityedge.broker import MosquittoBroker
from cityedge.ports import free_port, wait_for_port
from cityedge.testing import wait_until

GOAL_RATIO = 1.7
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
START_S = 60.0
QUIET_WAIT_S = 60.0


# -- CPU ---------------------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    try:
        return sample(pid).cpu_s
    except (OSError, KeyError):  # gone: a backend that closed
        return 0.0


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / TICKS, sum(fields) / TICKS


async def quiet_machine(*, threshold: float, max_wait_s: float) -> float:
    """Wait (at most ``max_wait_s``) for a second in which the machine is busy less than ``threshold``
    of one core: other work on a shared machine comes and goes, and a run beside it measures the
    scheduler. Returns how busy the last second was, as a share of one core."""
    deadline = time.monotonic() + max_wait_s
    while True:
        before = machine_busy_s()
        await asyncio.sleep(1.0)
        after = machine_busy_s()
        busy = (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)
        if busy < threshold or time.monotonic() >= deadline:
            return busy


def pid_of_cmdline(needle: str) -> int | None:
    """The process whose command line contains ``needle`` (the broker, found by its config file)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    return int(entry.name)
    return None


# -- the database ------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(backend: str, workdir: Path, tag: str) -> Iterator[tuple[str, str | None]]:
    """(URL, PostgreSQL database name or None) of an empty database, migrated."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'{tag}.db'}", None
        return
    import psycopg

    name = f"cityedge_bench_{tag}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        cli("central", "migrate", "--db", url)
        yield url, name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def backend_pids(database: str | None) -> list[int]:
    """The server processes serving ``database`` (PostgreSQL: one per connection)."""
    if database is None:
        return []
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)).fetchall()
    return [int(r[0]) for r in rows]


class WaitSampler:
    """What the database's backends are waiting on, sampled every 50 ms in a thread: lock waits mean
    the workers' transactions queue behind each other, WAL waits mean the disk is the wall."""

    def __init__(self, database: str | None) -> None:
        self._database = database
        self.samples: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WaitSampler:
        if self._database is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        import psycopg

        query = (
            "SELECT coalesce(wait_event_type || ':' || wait_event, 'running') FROM pg_stat_activity"
            " WHERE datname = %s AND state = 'active'"
        )
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            while not self._stop.wait(0.05):
                self.samples.update(row[0] for row in conn.execute(query, (self._database,)))

    def top(self) -> str:
        total = sum(self.samples.values())
        if not total:
            return "no sample"
        return ", ".join(f"{name} {count / total:.0%}" for name, count in self.samples.most_common(4))


def cli(*args: str) -> str:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "cityedge", *args], capture_output=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"cityedge {' '.join(args[:2])} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode().strip()


# -- one run -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    workers: int
    seconds: float
    readings: int
    worker_cpu: list[float]  # share of one core, each worker
    worker_readings: list[int]
    worker_commits: list[int]
    broker_cpu: float
    publisher_cpu: float
    database_cpu: float
    machine_busy: float  # share of all cores
    busy_before: float  # the machine in the second before the run, share of one core
    waits: str  # what the database's active backends waited on

    @property
    def rate(self) -> float:
        return self.readings / self.seconds

    @property
    def ours_cpu(self) -> float:
        """Workers, broker, publisher and database together, as a share of one core."""
        return sum(self.worker_cpu) + self.broker_cpu + self.publisher_cpu + self.database_cpu

    @property
    def ceiling(self) -> float:
        """The rate all of this machine's cores would give at this run's CPU cost per reading."""
        return (os.cpu_count() or 1) * self.rate / max(self.ours_cpu, 1e-9)

    @property
    def others_cpu(self) -> float:
        """What the rest of the machine used meanwhile, as a share of one core."""
        return max(0.0, self.machine_busy * (os.cpu_count() or 1) - self.ours_cpu)


@contextlib.asynccontextmanager
async def workers(n: int, db: str, broker_url: str, workdir: Path) -> AsyncIterator[list[tuple[int, int]]]:
    """N `central serve` processes; (pid, HTTP port) of each. SIGTERM when the block ends."""
    processes = []
    ports = [free_port() for _ in range(n)]
    try:
        for i, port in enumerate(ports):
            args = ["central", "serve", "--db", db, "--broker", broker_url, "--http", f"127.0.0.1:{port}"]
            log = (workdir / f"worker{n}-{i}.log").open("ab")
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "cityedge", *args, stdout=log, stderr=log
                )
            )
            log.close()
        async with asyncio.timeout(START_S):
            for port in ports:
                await wait_for_port("127.0.0.1", port)
        yield [(p.pid, port) for p, port in zip(processes, ports, strict=True)]
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            await process.wait()


async def ingest_health(port: int, token: str) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"http://127.0.0.1:{port}/api/v1/health", headers={"Authorization": f"Bearer {token}"}
        )
    ingest: dict[str, object] = response.json()["ingest"]
    return ingest


async def run_once(n: int, plan: Plan, backend: str, workdir: Path, quiet: float) -> Run:
    ctx = multiprocessing.get_context("spawn")
    with fresh_database(backend, workdir, f"w{n}") as (db, pg_name):
        token = cli("central", "token", "create", "--role", "viewer", "--name", "bench", "--db", db)
        async with MosquittoBroker() as broker, workers(n, db, broker.url, workdir) as running:
            broker_pid = pid_of_cmdline(str(broker.data_dir / "mosquitto.conf"))
            assert broker_pid is not None, "the broker's process was not found"

            async def subscribed() -> bool:
                states = [await ingest_health(port, token) for _, port in running]
                return all(s["mqtt_connected"] and s["shared_subscription"] for s in states)

            await wait_until(subscribed, timeout=START_S, what="every worker on the shared subscription")
            parent, child = ctx.Pipe()
            publisher = ctx.Process(target=publisher_main, args=(broker.host, broker.port, plan, child))
            publisher.start()
            try:
                kind, value = await asyncio.wait_for(asyncio.to_thread(parent.recv), 180)
                if kind != "ready":
                    raise RuntimeError(f"publisher failed before publishing: {value}")
                assert publisher.pid is not None
                busy_before = await quiet_machine(threshold=quiet, max_wait_s=QUIET_WAIT_S)
                pids = [pid for pid, _ in running]
                database = backend_pids(pg_name)
                before = [cpu_s(p) for p in (*pids, broker_pid, publisher.pid, *database)]
                machine_before = machine_busy_s()
                wall = time.perf_counter()
                with WaitSampler(pg_name) as waits:
                    parent.send("go")
                    kind, value = await asyncio.wait_for(asyncio.to_thread(parent.recv), 300)
                wall = time.perf_counter() - wall
                machine_after = machine_busy_s()
                database_after = backend_pids(pg_name)
                after = [cpu_s(p) for p in (*pids, broker_pid, publisher.pid, *database)]
                # Backends opened during the run count from 0 (they did not exist before).
                opened = sum(cpu_s(p) for p in database_after if p not in database)
                if kind != "done":
                    raise RuntimeError(f"publisher failed: {value}")
            finally:
                publisher.join(timeout=10)
                if publisher.is_alive():
                    publisher.kill()
            seconds, acked, sent, _ = value
            if acked != sent:
                raise RuntimeError(f"only {acked} of {sent} batches were acknowledged")
            states = [await ingest_health(port, token) for _, port in running]
    used = [(a - b) / wall for a, b in zip(after, before, strict=True)]
    stored = [int(str(s["readings_stored"])) for s in states]
    commits = [int(str(s["commits"])) for s in states]
    if sum(stored) != plan.total_readings:
        raise RuntimeError(f"the workers stored {sum(stored)} readings, expected {plan.total_readings}")
    busy = (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1])
    return Run(
        workers=n,
        seconds=seconds,
        readings=plan.total_readings,
        worker_cpu=used[:n],
        worker_readings=stored,
        worker_commits=commits,
        broker_cpu=used[n],
        publisher_cpu=used[n + 1],
        database_cpu=sum(used[n + 2 :]) + opened / wall,
        machine_busy=busy,
        busy_before=busy_before,
        waits=waits.top(),
    )


def show(run: Run) -> None:
    each = ", ".join(
        f"{cpu:.0%} ({count:,} readings, {commits} commits)"
        for cpu, count, commits in zip(run.worker_cpu, run.worker_readings, run.worker_commits, strict=True)
    )
    print(
        f"{run.workers} worker{'s' if run.workers > 1 else ' '}: {run.rate:>9,.0f} readings/s"
        f" ({run.readings:,} in {run.seconds:.2f} s)\n"
        f"    CPU (share of one core): worker {each}; broker {run.broker_cpu:.0%};"
        f" publisher {run.publisher_cpu:.0%}; database {run.database_cpu:.0%};"
        f" other processes {run.others_cpu:.0%}; machine {run.machine_busy:.0%} busy"
        f" ({os.cpu_count()} cores), {run.busy_before:.0%} of a core in the second before"
        f"\n    database backends, active: {run.waits}"
        f"\n    {1e6 * run.ours_cpu / run.rate:.1f} µs of CPU per reading in all: the {os.cpu_count()} cores"
        f" would give at most {run.ceiling:,.0f} readings/s at that cost"
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--readings", type=int, default=600_000)
    parser.add_argument("--batch", type=int, default=500, help="readings per batch")
    parser.add_argument("--cabinets", type=int, default=400, help="simulated cabinets, one stream each")
    parser.add_argument("--window", type=int, default=64, help="unacknowledged batches in flight")
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.3,
        help="before each run, wait up to 60 s for a second with the machine below this share of one core",
    )
    parser.add_argument(
        "--max-other",
        type=float,
        default=0.25,
        help="a round where other processes used more than this share of one core beside a run is"
        " disturbed, left out of the median",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="pairs of runs (1 worker, then 2); the median ratio is the figure",
    )
    args = parser.parse_args()
    # SIGTERM (a `timeout`, a CI stop) unwinds like Ctrl-C: workers, broker and database go with it.
    signal.signal(signal.SIGTERM, _interrupt)
    plan = Plan(readings=args.readings, batch=args.batch, cabinets=args.cabinets, window=args.window)
    print(
        f"plan: {plan.total_readings:,} readings in {plan.batches_per_cabinet * plan.cabinets} batches of"
        f" {plan.batch} from {plan.cabinets} cabinets, window {plan.window}; {args.backend};"
        f" {os.cpu_count()} CPUs; {args.rounds} rounds of 1 worker then 2"
    )
    ratios: list[float] = []
    clean: list[float] = []
    with tempfile.TemporaryDirectory(prefix="cityedge-bench-workers-") as tmp:
        try:
            for _ in range(args.rounds):
                # Alternating, so that a load elsewhere on the machine that comes and goes weighs
                # on both sides alike.
                one = asyncio.run(run_once(1, plan, args.backend, Path(tmp), args.quiet))
                show(one)
                two = asyncio.run(run_once(2, plan, args.backend, Path(tmp), args.quiet))
                show(two)
                ratios.append(two.rate / one.rate)
                disturbed = max(one.others_cpu, two.others_cpu) > args.max_other
                if not disturbed:
                    clean.append(ratios[-1])
                print(
                    f"  ratio of this round: {ratios[-1]:.2f}"
                    f"{' (disturbed: other work beside a run)' if disturbed else ''};"
                    f" ceiling at the 2-worker cost per reading: {two.ceiling / one.rate:.2f}"
                )
        except KeyboardInterrupt:
            print("interrupted: workers, broker and database were stopped", file=sys.stderr)
            return 130
        except (RuntimeError, TimeoutError, OSError) as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            for log in sorted(Path(tmp).glob("worker*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
            return 1
    # The figure is the median of the rounds no other work disturbed; of all of them if none was.
    counted = clean or ratios
    ratio = statistics.median(counted)
    verdict = "met" if ratio >= GOAL_RATIO else "MISSED"
    rounds = ", ".join(f"{r:.2f}" for r in counted)
    which = "undisturbed rounds" if clean else "rounds, ALL DISTURBED by other work: not a clean figure"
    print(
        f"ratio 2 workers / 1, median of {len(counted)} {which}: {ratio:.2f} ({rounds});"
        f" goal {GOAL_RATIO}: {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
