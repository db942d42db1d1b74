"""End-to-end ingest throughput of the aggregator, against this machine's raw insert rate.

    .venv/bin/python bench/ingest.py [--readings 400000] [--batch 1000] [--cabinets 8] [--window 32]
    .venv/bin/python bench/ingest.py --db postgresql://postgres@127.0.0.1:5432/postgres

One run:
1. starts its own Mosquitto and a CentralServer (ingest + API) on a temporary SQLite file, or with
   ``--db postgresql://…`` on a database it creates on that server (and drops at the end);
2. a publisher in a separate process (its CPU is not central's) pre-encodes batches from several
   simulated cabinets, publishes them with a bounded window of unacknowledged batches, like edges do,
   and times first publish -> last ack received (MQTT in, committed, acknowledged);
3. inserts the same rows into a plain row-per-reading table (keyed by stream and seq, indexed by point
   and time) with executemany, one transaction per group of the size that ingest used on average:
   the raw rate of this machine. On PostgreSQL the reference is
   a binary COPY of the same rows into the same partitioned readings table (emptied first), one
   transaction per group; the two set-oriented idempotent inserts (what the store does: INSERT ...
   SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING; and COPY into a temporary table, then INSERT ...
   SELECT ... ON CONFLICT DO NOTHING) are measured beside it, for comparison.
Prints both and their ratio. Exits non-zero if the run itself failed (not for missing a floor).
"""

from __future__ import annotations

import argparse
import asyncio
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

FLOOR_READINGS_PER_S = 100_000
FLOOR_RATIO = 0.25
GOAL_PG_RATIO = 0.75
POINTS_PER_CABINET = 50
TS0_MS = 1_714_557_600_000


@dataclass(frozen=True)
class Plan:
    readings: int
    batch: int
    cabinets: int
    window: int

    @property
    def batches_per_cabinet(self) -> int:
        return max(1, self.readings // (self.batch * self.cabinets))

    @property
    def total_readings(self) -> int:
        return self.batches_per_cabinet * self.cabinets * self.batch


def cabinet_id(i: int) -> str:
    return f"bench-cab{i:03d}"


def stream_id(i: int) -> str:
    return f"{i + 1:08x}"


def point_name(i: int) -> str:
    return f"lc{i % 10}/q{i % POINTS_PER_CABINET}"


def encoded_batches(plan: Plan) -> list[tuple[str, str, int, int, bytes]]:
    """(cabinet, stream, first, last, payload), interleaved across cabinets as they would arrive."""
    from protocols.fleet import Reading, encode, encode_data_batch
    from protocols.quality import Quality

    points = [point_name(i) for i in range(POINTS_PER_CABINET)]
    out = []
    for k in range(plan.batches_per_cabinet):
        for c in range(plan.cabinets):
            first = k * plan.batch + 1
            readings = [
                encode(
                    Reading(first + i, points[i % len(points)], TS0_MS + first + i, float(i), Quality.GOOD)
                )
                for i in range(plan.batch)
            ]
            last = first + plan.batch - 1
            payload = encode_data_batch(
                cabinet=cabinet_id(c), stream=stream_id(c), first=first, last=last, readings=readings
            )
            out.append((cabinet_id(c), stream_id(c), first, last, payload))
    return out


# -- publisher process ---------------------------------------------------------------------------


def publisher_main(broker_host: str, broker_port: int, plan: Plan, conn: Connection) -> None:
    """Runs in its own process: encode, report ready, wait for go, publish, report timings."""
    from aiomqtt import MqttError

    try:
        result = asyncio.run(_publish(broker_host, broker_port, plan, conn))
    except (MqttError, OSError, RuntimeError, TimeoutError, ValueError) as exc:  # the parent exits 1
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    else:
        conn.send(("done", result))


async def _publish(host: str, port: int, plan: Plan, conn: Connection) -> tuple[float, int, int, int]:
    import aiomqtt

    from protocols.fleet import decode_ack
    from protocols.fleet.topics import Topics, all_cabinets, parse_topic

    batches = encoded_batches(plan)
    pending: dict[tuple[str, str, int, int], asyncio.Event] = {}
    window = asyncio.Semaphore(plan.window)
    acked = 0
    last_ack = 0.0
    done = asyncio.Event()

    async with aiomqtt.Client(host, port, max_inflight_messages=plan.window * 2, timeout=60) as client:
        client.pending_calls_threshold = 10_000
        await client.subscribe(all_cabinets("ack"), qos=1)

        async def on_acks() -> None:
            nonlocal acked, last_ack
            async for message in client.messages:
                cabinet, _ = parse_topic(message.topic.value)
                ack = decode_ack(message.payload, topic_cabinet=cabinet)
                event = pending.pop((ack.cabinet, ack.stream, ack.first, ack.last), None)
                if event is None:
                    continue  # a duplicate ack
                acked += 1
                last_ack = time.perf_counter()
                window.release()
                if acked == len(batches):
                    done.set()

        conn.send(("ready", len(batches)))
        await asyncio.to_thread(conn.recv)  # "go"
        listener = asyncio.create_task(on_acks())
        publishes: set[asyncio.Task[None]] = set()
        started = time.perf_counter()
        for cabinet, stream, first, last, payload in batches:
            await window.acquire()
            pending[(cabinet, stream, first, last)] = asyncio.Event()
            task = asyncio.create_task(client.publish(Topics(cabinet).data, payload, qos=1))
            publishes.add(task)
            task.add_done_callback(publishes.discard)
        try:
            async with asyncio.timeout(120):
                await done.wait()
        finally:
            listener.cancel()
            await asyncio.gather(listener, *publishes, return_exceptions=True)
    return last_ack - started, acked, len(batches), sum(len(b[4]) for b in batches)


# -- central side --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndToEnd:
    seconds: float
    readings: int
    batches: int
    payload_bytes: int
    commits: int
    duplicates: int

    @property
    def rate(self) -> float:
        return self.readings / self.seconds

    @property
    def batches_per_commit(self) -> float:
        return self.batches / max(1, self.commits)


async def run_end_to_end(plan: Plan, workdir: Path, pg_dsn: str | None = None) -> EndToEnd:
    from central.ingest_limits import RateLimit, TopicLimits
    from central.server import CentralServer
    from central.store import Store
    from cityedge.broker import MosquittoBroker

    ctx = multiprocessing.get_context("spawn")
    # Capacity, not policy: each simulated cabinet here sends far more than one cabinet may (the
    # per-cabinet rate limits, which bench/flood.py measures, would refuse most of it).
    unlimited = RateLimit(rate=1e12, burst=1e12)
    limits = TopicLimits(messages=unlimited, bytes=unlimited, records=unlimited)
    db: Path | Store = workdir / "central.db"
    if pg_dsn is not None:
        from central.store.postgres import PostgresStore

        db = PostgresStore(pg_dsn, migrate=True)
    async with (
        MosquittoBroker() as broker,
        CentralServer(db=db, broker_url=broker.url, http_port=0, ingest_limits=limits) as server,
    ):
        async with asyncio.timeout(10):
            await server.ingestor.wait_subscribed()
        parent, child = ctx.Pipe()
        process = ctx.Process(target=publisher_main, args=(broker.host, broker.port, plan, child))
        process.start()
        try:
            kind, value = await asyncio.wait_for(asyncio.to_thread(parent.recv), 120)
            if kind != "ready":
                raise RuntimeError(f"publisher failed before publishing: {value}")
            parent.send("go")
            kind, value = await asyncio.wait_for(asyncio.to_thread(parent.recv), 180)
            if kind != "done":
                raise RuntimeError(f"publisher failed: {value}")
        finally:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        seconds, acked, sent, payload_bytes = value
        stats = server.ingestor.stats
        if acked != sent:
            raise RuntimeError(f"only {acked} of {sent} batches were acknowledged")
        if stats.readings_stored != plan.total_readings:
            raise RuntimeError(f"stored {stats.readings_stored} readings, expected {plan.total_readings}")
        return EndToEnd(
            seconds=seconds,
            readings=plan.total_readings,
            batches=sent,
            payload_bytes=payload_bytes,
            commits=stats.commits,
            duplicates=stats.duplicate_records,
        )


# -- raw SQLite --------------------------------------------------------------------------------


def raw_insert_rate(plan: Plan, group: int, workdir: Path, *, table_options: str) -> float:
    """executemany of the rows ingest writes, batch by batch, one transaction per ``group`` batches."""
    # The plain row-per-reading table (the store itself keeps blocks: central.store.sqlite.blocks).
    from central.store.sqlite.schema import INSERT_READING, READINGS_TABLE, connect
    from protocols.quality import Quality

    path = workdir / f"raw-{'norowid' if table_options else 'rowid'}.db"
    conn = connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(READINGS_TABLE.format(options=table_options))
    batches = []
    for k in range(plan.batches_per_cabinet):
        for c in range(plan.cabinets):
            first = k * plan.batch + 1
            batches.append(
                [
                    (
                        c + 1,
                        first + i,
                        c * POINTS_PER_CABINET + i % POINTS_PER_CABINET + 1,
                        TS0_MS + first + i,
                        float(i),
                        Quality.GOOD,
                        None,
                    )
                    for i in range(plan.batch)
                ]
            )
    started = time.perf_counter()
    for g in range(0, len(batches), group):
        conn.execute("BEGIN IMMEDIATE")
        for rows in batches[g : g + group]:
            conn.executemany(INSERT_READING, rows)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return plan.total_readings / seconds


# -- raw PostgreSQL -------------------------------------------------------------------------------


def pg_rows(plan: Plan) -> list[list[tuple[int, int, int, int, int, None, float]]]:
    """The rows ingest stored, batch by batch: (stream_pk, seq, point_pk, ts, quality, reason, vf)."""
    from protocols.quality import Quality

    return [
        [
            (
                c + 1,
                k * plan.batch + 1 + i,
                c * POINTS_PER_CABINET + i % POINTS_PER_CABINET + 1,
                TS0_MS + k * plan.batch + 1 + i,
                int(Quality.GOOD),
                None,
                float(i),
            )
            for i in range(plan.batch)
        ]
        for k in range(plan.batches_per_cabinet)
        for c in range(plan.cabinets)
    ]


_PG_COLUMNS = "stream_pk, seq, point_pk, ts, quality, reason, vf"
_PG_TYPES = ["int4", "int8", "int4", "int8", "int2", "text", "float8"]


def pg_raw_rates(plan: Plan, group: int, dsn: str) -> dict[str, float]:
    """Readings/s of three ways to put the same rows in the same (emptied) partitioned table."""
    import psycopg

    batches = pg_rows(plan)
    rates: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:

        def timed(name: str, write_group: object) -> None:
            conn.execute("TRUNCATE readings")
            assert callable(write_group)
            started = time.perf_counter()
            for g in range(0, len(batches), group):
                with conn.transaction():
                    write_group(batches[g : g + group])
            rates[name] = plan.total_readings / (time.perf_counter() - started)

        def copy(rows_of_group: list[list[tuple[object, ...]]]) -> None:
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY readings ({_PG_COLUMNS}) FROM STDIN (FORMAT BINARY)") as cp,
            ):
                cp.set_types(_PG_TYPES)
                for rows in rows_of_group:
                    for row in rows:
                        cp.write_row(row)

        def unnest(rows_of_group: list[list[tuple[object, ...]]]) -> None:
            for rows in rows_of_group:
                cols = list(zip(*rows, strict=True))
                conn.execute(
                    f"INSERT INTO readings ({_PG_COLUMNS}) SELECT * FROM unnest(%s::int4[], %s::int8[],"
                    " %s::int4[], %s::int8[], %s::int2[], %s::text[], %s::float8[]) ON CONFLICT DO NOTHING",
                    [list(c) for c in cols],
                )

        columns = ", ".join(f"{n} {t}" for n, t in zip(_PG_COLUMNS.split(", "), _PG_TYPES, strict=True))
        conn.execute(f"CREATE TEMP TABLE stage ({columns}) ON COMMIT DELETE ROWS")

        def staged(rows_of_group: list[list[tuple[object, ...]]]) -> None:
            with conn.cursor() as cur:
                for rows in rows_of_group:  # one COPY and one INSERT per batch, as a writer would
                    with cur.copy(f"COPY stage ({_PG_COLUMNS}) FROM STDIN (FORMAT BINARY)") as cp:
                        cp.set_types(_PG_TYPES)
                        for row in rows:
                            cp.write_row(row)
                    cur.execute(
                        f"INSERT INTO readings ({_PG_COLUMNS}) SELECT {_PG_COLUMNS} FROM stage"
                        " ON CONFLICT DO NOTHING"
                    )
                    cur.execute("DELETE FROM stage")

        timed("copy", copy)
        timed("unnest", unnest)
        timed("staged", staged)
    return rates


def pg_store_rate(plan: Plan, group: int, dsn: str) -> tuple[float, float]:
    """Readings/s of ``PostgresStore.write`` alone on the decoded batches, groups of ``group``: the
    store's share of the end-to-end time (no MQTT, no decoding); and this process's CPU µs per
    reading meanwhile (central's own work, the database's apart)."""
    from central.store.postgres import PostgresStore
    from central.store.rows import ReceivedBatch
    from protocols.fleet import decode_data_batch

    batches = [ReceivedBatch(decode_data_batch(p), TS0_MS, "bench", p) for *_, p in encoded_batches(plan)]

    async def run() -> tuple[float, float]:
        async with PostgresStore(dsn, migrate=True) as store:
            started, cpu = time.perf_counter(), time.process_time()
            for g in range(0, len(batches), group):
                await store.write(batches[g : g + group])
            return (
                plan.total_readings / (time.perf_counter() - started),
                (time.process_time() - cpu) / plan.total_readings * 1e6,
            )

    return asyncio.run(run())


def pg_bench_database(server_dsn: str) -> tuple[str, str]:
    """A new database on the server of ``server_dsn``: (its name, its DSN)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"cityedge_bench_{os.getpid()}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, make_conninfo(server_dsn, dbname=name)


def pg_drop_database(server_dsn: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _load() -> str:
    """The load averages (1, 5, 15 minutes), to read a round's figures by."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main_pg(plan: Plan, server_url: str, rounds: int) -> int:
    """End to end, then the raw references, ``rounds`` times, each in a new database. The ratio is
    each round's (its end to end over its own COPY, measured right after it: both under the same
    load); the medians of the rounds are reported (this machine is shared: a round beside other
    work is slower, the median is not the luckiest one)."""
    from central.errors import StoreError
    from central.store import parse_db_url

    try:
        parsed = parse_db_url(server_url)
    except StoreError as exc:
        print(f"FAILED: --db: {exc}", file=sys.stderr)
        return 1
    assert parsed.dsn is not None
    runs: list[tuple[EndToEnd, dict[str, float], int]] = []
    for _ in range(rounds):
        name, dsn = pg_bench_database(parsed.dsn)
        try:
            with tempfile.TemporaryDirectory(prefix="cityedge-bench-") as tmp:
                try:
                    e2e = asyncio.run(run_end_to_end(plan, Path(tmp), pg_dsn=dsn))
                except (RuntimeError, TimeoutError, OSError, StoreError) as exc:
                    print(f"FAILED: end-to-end run: {exc}", file=sys.stderr)
                    return 1
            group = max(1, round(e2e.batches_per_commit))
            raw = pg_raw_rates(plan, group, dsn)
        finally:
            pg_drop_database(parsed.dsn, name)
        name, dsn = pg_bench_database(f"{parsed.dsn}")
        try:
            raw["store"], raw["store_cpu_us"] = pg_store_rate(plan, group, dsn)
        finally:
            pg_drop_database(parsed.dsn, name)
        runs.append((e2e, raw, group))
        print(
            f"  round {len(runs)}: end to end {e2e.rate:,.0f}/s, raw COPY {raw['copy']:,.0f}/s,"
            f" ratio {e2e.rate / raw['copy']:.2f}; load average {_load()}"
        )
    e2e = sorted((r[0] for r in runs), key=lambda e: e.rate)[(len(runs) - 1) // 2]  # the median run
    raw = {k: statistics.median(r[1][k] for r in runs) for k in runs[0][1]}
    group = runs[0][2]
    ratio = statistics.median(r[0].rate / r[1]["copy"] for r in runs)
    print(
        f"end to end on PostgreSQL (MQTT in, committed, acked): {e2e.rate:>10,.0f} readings/s"
        f"  ({e2e.readings:,} in {e2e.seconds:.2f} s, {e2e.commits} commits,"
        f" {e2e.batches_per_commit:.1f} batches/commit)"
    )
    print(
        f"raw COPY, same partitioned table:           {raw['copy']:>10,.0f} readings/s  (groups of {group})"
    )
    print(f"  INSERT SELECT unnest ON CONFLICT:         {raw['unnest']:>10,.0f} readings/s  (for comparison)")
    print(f"  COPY to a stage, INSERT ON CONFLICT:      {raw['staged']:>10,.0f} readings/s  (for comparison)")
    print(
        f"  PostgresStore.write alone (no MQTT):      {raw['store']:>10,.0f} readings/s  (same groups,"
        f" central CPU {raw['store_cpu_us']:.1f} µs per reading)"
    )
    print(f"ratio end-to-end / raw COPY:                {ratio:>10.2f}  (median of {rounds} rounds)")
    print(f"goal: ratio >= {GOAL_PG_RATIO}: {'met' if ratio >= GOAL_PG_RATIO else 'MISSED'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=400_000)
    parser.add_argument("--batch", type=int, default=1_000, help="readings per batch")
    parser.add_argument("--cabinets", type=int, default=8, help="simulated cabinets, one stream each")
    parser.add_argument("--window", type=int, default=32, help="unacknowledged batches in flight")
    parser.add_argument(
        "--db",
        default=None,
        help="postgresql://USER@HOST:PORT/DB: run on PostgreSQL, in a database this run creates on"
        " that server and drops (DB is only where it connects to create it). Default: SQLite.",
    )
    parser.add_argument("--rounds", type=int, default=1, help="PostgreSQL: runs; medians are reported")
    args = parser.parse_args()
    plan = Plan(readings=args.readings, batch=args.batch, cabinets=args.cabinets, window=args.window)
    if args.db is not None and not args.db.startswith("sqlite"):
        print(
            f"plan: {plan.total_readings:,} readings in {plan.batches_per_cabinet * plan.cabinets} batches"
            f" of {plan.batch} from {plan.cabinets} cabinets, window {plan.window}; {os.cpu_count()} CPUs,"
            " PostgreSQL"
        )
        return main_pg(plan, args.db, args.rounds)
    print(
        f"plan: {plan.total_readings:,} readings in {plan.batches_per_cabinet * plan.cabinets} batches of"
        f" {plan.batch} from {plan.cabinets} cabinets, window {plan.window}; {os.cpu_count()} CPUs,"
        f" SQLite {sqlite3.sqlite_version}"
    )
    with tempfile.TemporaryDirectory(prefix="cityedge-bench-") as tmp:
        workdir = Path(tmp)
        try:
            e2e = asyncio.run(run_end_to_end(plan, workdir))
        except (RuntimeError, TimeoutError, OSError) as exc:
            print(f"FAILED: end-to-end run: {exc}", file=sys.stderr)
            return 1
        group = max(1, round(e2e.batches_per_commit))
        raw = raw_insert_rate(plan, group, workdir, table_options="WITHOUT ROWID")
        raw_rowid = raw_insert_rate(plan, group, workdir, table_options="")
    ratio = e2e.rate / raw
    print(
        f"end to end (MQTT in, committed, acked): {e2e.rate:>10,.0f} readings/s"
        f"  ({e2e.readings:,} in {e2e.seconds:.2f} s, {e2e.payload_bytes / e2e.seconds / 1e6:.1f} MB/s,"
        f" {e2e.commits} commits, {e2e.batches_per_commit:.1f} batches/commit)"
    )
    print(
        f"raw SQLite executemany, row per reading:     {raw:>10,.0f} readings/s  (groups of {group} batches)"
    )
    print(f"  same with a rowid readings table:      {raw_rowid:>10,.0f} readings/s  (for comparison)")
    print(f"ratio end-to-end / raw:                  {ratio:>10.2f}")
    rate_ok = "met" if e2e.rate >= FLOOR_READINGS_PER_S else "MISSED"
    ratio_ok = "met" if ratio >= FLOOR_RATIO else "MISSED"
    print(f"floors: >= {FLOOR_READINGS_PER_S:,} readings/s: {rate_ok}; ratio >= {FLOOR_RATIO}: {ratio_ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
