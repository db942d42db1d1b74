"""Command round trip on loopback: POST /api/v1/commands to the executed result visible in the API.

Starts its own Mosquitto, `cityedge central serve` and `cityedge agent run` as separate processes, and a
simulated lighting controller in another; then sends ``--count`` dim commands one after the other
(alternating 40 % and 60 %, so each one really writes and reads back) and times each from the POST to
the moment GET /api/v1/commands/{id} says ``executed``. The path: HTTP -> central -> broker -> agent
(claim in SQLite, Modbus write + read-back, result committed) -> broker -> central (committed) -> HTTP.

    .venv/bin/python bench/commands.py [--count 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _central import central_and_agent
from _sim import PROFILE, start_simulator

from cityedge.broker import MosquittoBroker
from cityedge.ports import free_port
from cityedge.testing import wait_until, write_agent_config

CABINET = "bench-cmd"
GOAL_P99_MS = 300.0
POLL_S = 0.002  # how often the bench asks for the status: adds at most this to a figure


async def round_trips(count: int) -> list[tuple[float, float, float, float]]:
    device_port = free_port()
    simulator = start_simulator(device_port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with MosquittoBroker() as broker:
                config = write_agent_config(
                    Path(tmp) / "agent",
                    cabinet=CABINET,
                    broker_url=broker.url,
                    devices=[("lc1", device_port)],
                    profile=PROFILE,
                    poll_interval_s=1.0,
                    commit_interval_s=1.0,
                )
                async with central_and_agent(Path(tmp), broker_url=broker.url, agent_config=config) as api:

                    async def online() -> bool:
                        cabinets = (await api.get("/cabinets")).json()
                        return any(c["id"] == CABINET and c["online"] for c in cabinets)

                    await wait_until(online, timeout=30, what="the cabinet online at central")
                    return [await _one(api, 40 if i % 2 else 60) for i in range(count)]
    finally:
        simulator.kill()


async def _one(api: httpx.AsyncClient, level: int) -> tuple[float, float, float, float]:
    """Total ms, and its parts: central to cabinet's claim, execution, result back to the API."""
    body = {
        "target": {"cabinet": CABINET, "device": "lc1"},
        "action": "dim",
        "args": {"level_pct": level},
    }
    start = time.perf_counter()
    response = await api.post("/commands", json=body)
    response.raise_for_status()
    command_id = response.json()["id"]
    while True:
        command = (await api.get(f"/commands/{command_id}")).json()
        status = command["status"]
        if status == "executed":
            total = (time.perf_counter() - start) * 1000
            seen_ms = time.time() * 1000
            delivered, finished = command["delivered_ms"], command["finished_ms"]
            return total, delivered - command["created_ms"], finished - delivered, seen_ms - finished
        if status in ("failed", "expired", "rejected"):
            raise RuntimeError(f"command {command_id} ended {status}")
        await asyncio.sleep(POLL_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="commands to time")
    args = parser.parse_args()
    samples = asyncio.run(round_trips(args.count))
    times = sorted(s[0] for s in samples)
    centiles = statistics.quantiles(times, n=100, method="inclusive")
    p50, p90, p99 = centiles[49], centiles[89], centiles[98]
    print(f"command round trip (POST -> executed visible in the API), {len(times)} commands, loopback")
    print(f"  p50  {p50:8.1f} ms")
    print(f"  p90  {p90:8.1f} ms")
    print(
        f"  p99  {p99:8.1f} ms   (goal < {GOAL_P99_MS:.0f} ms: {'met' if p99 < GOAL_P99_MS else 'NOT met'})"
    )
    print(f"  max  {times[-1]:8.1f} ms")
    parts = ("central to the cabinet's claim", "execution (write + read-back)", "result back in the API")
    for index, name in enumerate(parts, start=1):
        print(f"  median {name:32s} {statistics.median(s[index] for s in samples):6.1f} ms")


if __name__ == "__main__":
    main()
