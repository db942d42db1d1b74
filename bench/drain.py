"""A cabinet back after a day offline: how long its backlog takes to drain, and what the others feel.

    .venv/bin/python bench/drain.py [--hours 24] [--cabinets 100] [--baseline-s 30] [--limits unlimited]
                                    [--central sqlite|null]

One run:
1. builds the backlog: a buffer file of ``--hours`` of 100 points read every second (24 h: 8.64 M
   readings), written as the agent writes it (one block a second) but straight into SQLite;
2. starts its own Mosquitto and central (ingest + API, SQLite, in this process);
3. starts ``--cabinets`` other cabinets in a second process: the real agent buffer and sync, each
   sending 40 points every 10 s (commit every second), and records the latency of every ack they get
   (batch published -> its ack received), for ``--baseline-s`` without the drain;
4. starts the draining cabinet in a third process (the real agent buffer and sync on the built
   file), and times its first publish -> its buffer empty (every record acknowledged), while the
   other cabinets go on;
5. prints the drain time and rate, each process's CPU, and the other cabinets' ack latency (p50,
   p99, max) during the drain beside the same without it.
Goal: 24 h drained in < 60 s, the others' ack p99 during the drain not far from the baseline.
``--limits default`` keeps central's per-cabinet rate limits as shipped (``central.ingest_limits``);
``--central null`` puts in central's place a stand-in that decodes and acknowledges every batch at
once, storing nothing: the edge's side of the drain alone (its sender, its buffer, the broker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import sample

if TYPE_CHECKING:  # imported where used: a spawned process imports only what its part needs
    from edge_agent.buffer import Buffer
    from edge_agent.sync import Sync
    from protocols.fleet import Status

POINTS = 100
TS0_MS = 1_714_557_600_000
GOAL_S = 60.0
DRAIN_CABINET = "drain-cab"
DEFAULT_CAP = 256 * 1024 * 1024  # edge_agent.config.BufferSection.max_mb


# -- the backlog ---------------------------------------------------------------------------------


def build_backlog(path: Path, hours: float) -> tuple[int, int]:
    """(readings, file bytes): ``hours`` of 100 points at 1 Hz, one block per second, as the agent
    commits them; the file is made by the agent's Buffer (schema, stream, format), then filled."""
    from edge_agent.buffer import ROW_OVERHEAD, Buffer
    from edge_agent.record_blocks import Block, Kind, pack
    from protocols.fleet import Reading, encode

    async def make() -> None:
        async with Buffer(path, max_bytes=1 << 40, clock_ms=lambda: TS0_MS):
            pass

    asyncio.run(make())
    seconds = int(hours * 3600)
    names = [f"lc{i // 10}/q{i % 10}" for i in range(POINTS)]
    kinds = bytes([Kind.READING]) * POINTS
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")  # a bench fixture: the buffer's own commits are FULL
    db.execute("BEGIN")
    body_bytes = 0
    rows = []
    for second in range(seconds):
        first = second * POINTS + 1
        ts = TS0_MS + second * 1000
        bodies = [
            encode(Reading(first + i, names[i], ts, round(220.0 + ((second * 7 + i * 13) % 200) / 10, 1)))
            for i in range(POINTS)
        ]
        body = pack(Block(list(range(first, first + POINTS)), kinds, bodies))
        body_bytes += len(body) + ROW_OVERHEAD
        rows.append((first, first + POINTS - 1, POINTS, POINTS, ts, ts, body))
        if len(rows) == 1000:
            db.executemany("INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            rows = []
    db.executemany("INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return seconds * POINTS, path.stat().st_size


# -- cabinets (real agent buffer + sync) -----------------------------------------------------------


def _status(cabinet: str, online: bool) -> Status:
    from protocols.fleet import PROTOCOL_VERSION, Status

    return Status(v=PROTOCOL_VERSION, cabinet=cabinet, online=online, ts=TS0_MS)


def _sync(cabinet: str, broker_url: str, buffer: Buffer, latencies: list[float] | None) -> Sync:
    from edge_agent.config import SyncSection
    from edge_agent.send_window import SendWindow
    from edge_agent.sync import Sync
    from protocols.fleet.broker_url import parse_broker_url

    sync = Sync(
        cabinet=cabinet,
        broker=parse_broker_url(broker_url),
        keepalive_s=30,
        buffer=buffer,
        settings=SyncSection(),
        birth=lambda: _status(cabinet, True),
        death=lambda: _status(cabinet, False),
        clock_ms=lambda: time.time_ns() // 1_000_000,
        on_command=lambda payload: None,
    )
    if latencies is not None:
        flow, record = sync.flow, latencies

        class Recorded(SendWindow):
            def on_ack(self, latency_s: float, now: float) -> None:
                record.append(latency_s)
                super().on_ack(latency_s, now)

        sync.flow = Recorded(max_window=flow.max_window, max_batch=flow.max_batch, target_s=flow.target_s)
    return sync


def drain_main(path: str, broker_url: str, conn: Connection) -> None:
    asyncio.run(_drain(Path(path), broker_url, conn))


async def _drain(path: Path, broker_url: str, conn: Connection) -> None:
    from edge_agent.buffer import Buffer

    # The agent's default cap: a day of 100 points at 1 Hz must fit in it.
    async with Buffer(path, max_bytes=DEFAULT_CAP, clock_ms=lambda: TS0_MS) as buffer:
        total = buffer.backlog
        sync = _sync(DRAIN_CABINET, broker_url, buffer, None)
        conn.send(("ready", total))
        await asyncio.to_thread(conn.recv)  # go
        started = time.perf_counter()
        task = asyncio.create_task(sync.run())
        next_commit = started + 1.0
        while buffer.backlog > 0 and time.perf_counter() - started < 600:
            await asyncio.sleep(0.05)
            if time.perf_counter() >= next_commit:  # the agent's commit loop, every second
                await buffer.flush()  # (deletes the acknowledged blocks in bulk)
                next_commit += 1.0
        seconds = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        stats = sync.stats
        conn.send(
            ("done", (seconds, total - buffer.backlog, stats.batches_sent, stats.resends, sync.flow.batches))
        )


def fleet_main(count: int, broker_url: str, folder: str, conn: Connection) -> None:
    asyncio.run(_fleet(count, broker_url, Path(folder), conn))


async def _fleet(count: int, broker_url: str, folder: Path, conn: Connection) -> None:
    from edge_agent.buffer import Buffer

    latencies: list[float] = []
    buffers = [
        Buffer(folder / f"cab{i:04d}.db", max_bytes=256 << 20, clock_ms=lambda: TS0_MS) for i in range(count)
    ]
    for buffer in buffers:
        await buffer.open()
    syncs = [_sync(f"fleet-cab{i:04d}", broker_url, b, latencies) for i, b in enumerate(buffers)]
    tasks = [asyncio.create_task(s.run()) for s in syncs]

    async def cabinet(i: int, buffer: Buffer) -> None:
        await asyncio.sleep(10.0 * i / count)  # spread over the 10 s like a real fleet
        cycle = 0
        while True:
            ts = time.time_ns() // 1_000_000
            for p in range(40):
                buffer.append_reading(f"lc{p // 10}/q{p % 10}", ts, float((cycle + p) % 100))
            cycle += 1
            for _ in range(10):  # the agent commits every second
                await buffer.flush()
                await asyncio.sleep(1.0)

    loops = [asyncio.create_task(cabinet(i, b)) for i, b in enumerate(buffers)]
    conn.send("ready")
    marks: dict[str, int] = {}
    while True:
        command = await asyncio.to_thread(conn.recv)
        if command == "stop":
            break
        marks[command] = len(latencies)  # "mark:<name>": where a phase starts or ends
    for task in [*loops, *tasks]:
        task.cancel()
    await asyncio.gather(*loops, *tasks, return_exceptions=True)
    for buffer in buffers:
        await buffer.close()
    conn.send((latencies, marks))


# -- central and the run -------------------------------------------------------------------------


class NullCentral:
    """Decodes every batch as central does and acknowledges it at once, storing nothing: what the
    edge, the broker and the wire can do without the store."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.readings = self.batches = 0

    async def __aenter__(self) -> NullCentral:
        from protocols.mqtt_client import FastClient

        # Central's own client (burst reads, messages handled as they are decoded).
        self._client = FastClient(self.host, self.port, message_handler=self._on_message)
        self._client.pending_calls_threshold = 1_000
        await self._client.__aenter__()
        await self._client.subscribe("cityedge/+/data", qos=1)
        self._acks: set[asyncio.Task[None]] = set()
        return self

    def _on_message(self, topic: str, payload: bytes) -> bool:
        from protocols.fleet import Topics, ack_for, decode_data_batch, encode, parse_topic

        cabinet, _ = parse_topic(topic)
        batch = decode_data_batch(payload, topic_cabinet=cabinet)
        self.readings += len(batch.readings)
        self.batches += 1
        task = asyncio.create_task(self._client.publish(Topics(cabinet).ack, encode(ack_for(batch)), qos=0))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)
        return True

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*self._acks, return_exceptions=True)
        await self._client.__aexit__(None, None, None)


@dataclass(frozen=True)
class Latency:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @staticmethod
    def of(values: list[float]) -> Latency:
        if len(values) < 2:
            return Latency(len(values), float("nan"), float("nan"), float("nan"))
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        return Latency(len(values), cuts[49] * 1000, cuts[98] * 1000, max(values) * 1000)

    def line(self, what: str) -> str:
        return (
            f"{what}: ack p50 {self.p50_ms:7.1f} ms  p99 {self.p99_ms:7.1f} ms  max {self.max_ms:7.1f} ms"
            f"  ({self.count} acks)"
        )


async def run(args: argparse.Namespace, workdir: Path, backlog: Path) -> int:
    from central.ingest_limits import RateLimit, TopicLimits
    from central.server import CentralServer
    from cityedge.broker import MosquittoBroker

    if args.limits == "unlimited":
        # Capacity, not policy: what this machine can drain when central lets a cabinet go flat out.
        unlimited = RateLimit(rate=1e12, burst=1e12)
        limits = TopicLimits(messages=unlimited, bytes=unlimited, records=unlimited)
    else:
        limits = TopicLimits()
    ctx = multiprocessing.get_context("spawn")
    async with contextlib.AsyncExitStack() as stack:
        broker = await stack.enter_async_context(MosquittoBroker())
        if args.central == "sqlite":
            server = await stack.enter_async_context(
                CentralServer(
                    db=workdir / "central.db", broker_url=broker.url, http_port=0, ingest_limits=limits
                )
            )
            async with asyncio.timeout(10):
                await server.ingestor.wait_subscribed()
            counters = lambda: (server.ingestor.stats.readings_stored, server.ingestor.stats.commits)  # noqa: E731
        else:
            acker = await stack.enter_async_context(NullCentral(broker.host, broker.port))
            counters = lambda: (acker.readings, acker.batches)  # noqa: E731
        fleet_dir = workdir / "fleet"
        fleet_dir.mkdir()
        fleet_conn, fleet_child = ctx.Pipe()
        fleet = ctx.Process(target=fleet_main, args=(args.cabinets, broker.url, str(fleet_dir), fleet_child))
        fleet.start()
        drain_conn, drain_child = ctx.Pipe()
        drainer = ctx.Process(target=drain_main, args=(str(backlog), broker.url, drain_child))
        drainer.start()
        try:
            await asyncio.wait_for(asyncio.to_thread(fleet_conn.recv), 120)
            _, total = await asyncio.wait_for(asyncio.to_thread(drain_conn.recv), 120)
            await asyncio.sleep(12.0)  # every cabinet connected and sending
            fleet_conn.send("baseline")
            await asyncio.sleep(args.baseline_s)
            fleet_conn.send("drain")
            me = os.getpid()
            broker_pid = broker._process.pid if broker._process is not None else me
            before = {pid: sample(pid).cpu_s for pid in (me, drainer.pid or 0, fleet.pid or 0, broker_pid)}
            wall = time.monotonic()
            drain_conn.send("go")
            _, value = await asyncio.wait_for(asyncio.to_thread(drain_conn.recv), 700)
            elapsed = time.monotonic() - wall
            cpu = {pid: (sample(pid).cpu_s - s) / elapsed for pid, s in before.items()}
            fleet_conn.send("after")
            fleet_conn.send("stop")
            latencies, marks = await asyncio.wait_for(asyncio.to_thread(fleet_conn.recv), 60)
        finally:
            for process in (fleet, drainer):
                process.join(timeout=20)
                if process.is_alive():
                    process.kill()
        seconds, acked, batches, resends, window = value
        stored, commits = counters()
    base = Latency.of(latencies[marks["baseline"] : marks["drain"]])
    during = Latency.of(latencies[marks["drain"] : marks["after"]])
    print(
        f"drain: {acked:,} of {total:,} readings acknowledged in {seconds:.1f} s = {acked / seconds:,.0f}/s"
        f" ({batches} batches, {resends} resends, window at the end {window})"
    )
    print(
        f"cpu (share of one core, during the drain): central {cpu[me]:.0%}, draining agent"
        f" {cpu[drainer.pid or 0]:.0%}, {args.cabinets} other cabinets {cpu[fleet.pid or 0]:.0%},"
        f" mosquitto {cpu[broker_pid]:.0%}; central ({args.central}) took {stored:,} readings"
        f" in {commits} commits"
    )
    print(base.line(f"{args.cabinets} cabinets at 40 points/10 s, without the drain"))
    print(during.line(f"{args.cabinets} cabinets at 40 points/10 s, during the drain"))
    scaled = seconds * 24 / args.hours
    print(
        f"goal: 24 h drained in < {GOAL_S:.0f} s: {'met' if scaled < GOAL_S else 'MISSED'}"
        f"{'' if args.hours == 24 else f' (scaled from {args.hours:g} h: {scaled:.0f} s)'};"
        f" others' ack p99 during / without: {during.p99_ms / base.p99_ms:.2f}"
    )
    return 0 if acked == total else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=float, default=24.0, help="backlog of 100 points at 1 Hz")
    parser.add_argument("--cabinets", type=int, default=100, help="other cabinets sending meanwhile")
    parser.add_argument("--baseline-s", type=float, default=30.0, help="their latency measured first")
    parser.add_argument("--limits", choices=("unlimited", "default"), default="unlimited")
    parser.add_argument(
        "--central",
        choices=("sqlite", "null"),
        default="sqlite",
        help="null: decodes each batch and acks it at once, storing nothing (the edge's side alone)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cityedge-drain-", dir="/var/tmp") as tmp:
        workdir = Path(tmp)
        backlog = workdir / "backlog.db"
        started = time.monotonic()
        readings, size = build_backlog(backlog, args.hours)
        print(
            f"backlog: {readings:,} readings ({args.hours:g} h of {POINTS} points at 1 Hz) in"
            f" {size / 1e6:.0f} MB of buffer, built in {time.monotonic() - started:.0f} s;"
            f" {os.cpu_count()} CPUs, SQLite {sqlite3.sqlite_version}"
        )
        return asyncio.run(run(args, workdir, backlog))


if __name__ == "__main__":
    sys.exit(main())
