"""The agent's footprint on a cabinet board: resident memory, CPU and buffer writes.

Runs `cityedge agent run` as its own process against one simulated Modbus TCP lighting controller
(in another process, so its CPU is not counted) and a real Mosquitto, with no central: everything
polled stays in the buffer, the worst case for the SD card. Polls 100 points per second.

Its resident memory is printed next to a reference measured in the same run: a bare Python that
imported only asyncio, sqlite3 and ssl (what any asyncio agent with a SQLite buffer and TLS costs), so
the agent's own share is read off the same machine and interpreter.

Also measures, in the same run, how fast the buffer itself can take readings (append + batched commit)
against the raw SQLite insert rate of this machine, as a ratio.

    .venv/bin/python bench/agent.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import sample
from _sim import PROFILE, start_simulator

from cityedge.broker import MosquittoBroker
from cityedge.ports import free_port
from cityedge.testing import wait_until, write_agent_config
from edge_agent.buffer import Buffer, Kind, read_file_records
from protocols.fleet import Reading, decode_record
from protocols.modbus.profile import default_profile_dirs, load_profile

POINTS_PER_SECOND = 100
REFERENCE = "import asyncio, sqlite3, ssl, sys; print('ready', flush=True); sys.stdin.read()"


async def reference_rss_kb() -> int:
    """Resident memory of a Python that imported asyncio, sqlite3 and ssl, then waits."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", REFERENCE, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        async with asyncio.timeout(30):
            await process.stdout.readline()
        return sample(process.pid).rss_kb
    finally:
        process.stdin.close()
        await process.wait()


async def measure_agent(seconds: float) -> None:
    points = len(load_profile(PROFILE, default_profile_dirs()).quantities)
    interval = points / POINTS_PER_SECOND
    port = free_port()
    simulator = start_simulator(port)
    with tempfile.TemporaryDirectory() as tmp:
        async with MosquittoBroker() as broker:
            config = write_agent_config(
                Path(tmp),
                cabinet="bench-agent",
                broker_url=broker.url,
                devices=[("lc1", port)],
                poll_interval_s=interval,
                commit_interval_s=1.0,
            )
            agent = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cityedge", "agent", "run", "--config", str(config),
                stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            buffer_db = Path(tmp) / "buffer.db"

            def committed(since_ms: int = 0, until_ms: int = 2**62) -> int:
                """Readings committed with a poll time in [since_ms, until_ms)."""
                if not buffer_db.exists():
                    return 0
                try:
                    records = read_file_records(buffer_db)
                except sqlite3.OperationalError:  # the agent has not created its tables yet
                    return 0
                stamps = (
                    decode_record(Reading, body).ts for _, kind, body in records if kind == Kind.READING
                )
                return sum(1 for ts in stamps if since_ms <= ts < until_ms)

            try:
                await wait_until(lambda: committed() > 0, timeout=30, what="first commit")
                start, t0, wall0 = sample(agent.pid), time.monotonic(), time.time_ns() // 10**6
                await asyncio.sleep(seconds)  # the measurement window itself
                end, t1, wall1 = sample(agent.pid), time.monotonic(), time.time_ns() // 10**6
            finally:
                agent.terminate()  # a clean stop commits what was polled in the window
                await agent.wait()
                simulator.kill()
            # Counted by poll timestamp, so commit boundaries do not blur the rate.
            rows = committed(wall0, wall1)
    elapsed = t1 - t0
    reference = await reference_rss_kb()
    print(f"agent, one Modbus device, {points} points every {interval:.3f} s, {elapsed:.0f} s window")
    print(f"  readings buffered        {rows / elapsed:10.1f} /s (target {POINTS_PER_SECOND})")
    print(f"  resident memory          {end.rss_kb / 1024:10.1f} MB (peak {end.hwm_kb / 1024:.1f} MB)")
    print(f"  reference: python + asyncio, sqlite3, ssl {reference / 1024:6.1f} MB")
    print(f"  the agent's own share    {(end.rss_kb - reference) / 1024:10.1f} MB")
    print(f"  CPU                      {100 * (end.cpu_s - start.cpu_s) / elapsed:10.2f} % of one core")
    written = end.write_bytes - start.write_bytes
    print(f"  bytes written to disk    {written / elapsed / 1024:10.1f} KiB/s")
    print(f"  bytes written per reading{written / max(rows, 1):10.0f} B")


async def measure_buffer(count: int, batch: int) -> None:
    """Append+commit throughput of the buffer, and the raw SQLite rate of the same rows."""
    with tempfile.TemporaryDirectory() as tmp:
        async with Buffer(Path(tmp) / "b.db", max_bytes=10**10, clock_ms=lambda: 0) as buffer:
            t0 = time.perf_counter()
            for i in range(count):
                buffer.append_reading("lc1/power_w", 1_700_000_000_000 + i, 100.0 + i % 7)
                if buffer.pending >= batch:
                    await buffer.flush()
            await buffer.flush()
            buffered = count / (time.perf_counter() - t0)
        body = b"\x96\x01\xabl" + b"x" * 30
        db = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # the buffer's own durability: like for like
        db.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, kind INTEGER, ts INTEGER, body BLOB)")
        t0 = time.perf_counter()
        for start in range(0, count, batch):
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO records VALUES (?, 0, ?, ?)",
                [(i + 1, i, body) for i in range(start, min(start + batch, count))],
            )
            db.execute("COMMIT")
        raw = count / (time.perf_counter() - t0)
        db.close()
    print(f"buffer write rate, {count} readings, commits of {batch}")
    print(f"  agent buffer             {buffered:10.0f} readings/s")
    print(f"  raw SQLite insert        {raw:10.0f} rows/s")
    print(f"  ratio                    {buffered / raw:10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    args = parser.parse_args()
    asyncio.run(measure_agent(args.seconds))
    asyncio.run(measure_buffer(200_000, 1000))


if __name__ == "__main__":
    main()
