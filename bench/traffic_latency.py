"""A traffic controller's state change to the reading stored at central: p50 and p99.

Starts its own Mosquitto, `cityedge central serve` and `cityedge agent run` as separate processes, and
a simulated traffic-light controller (an OPC UA server) in this one. The agent subscribes to the
controller's mode (a monitored item, published every ``--publishing-ms``); the bench switches the mode
between normal and flashing ``--count`` times, at random moments, and times each switch from the
moment the simulator changed its node to the moment central's API shows the new mode of that point.
The path: OPC UA publish -> agent (a pushed change is committed at once, not at the next
``--commit-s``) -> broker -> central (committed) -> HTTP. The agent runs with the shipped defaults
unless told otherwise.

    .venv/bin/python bench/traffic_latency.py [--count 40] [--publishing-ms 500] [--commit-s 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _central import central_and_agent

from cityedge.broker import MosquittoBroker
from cityedge.testing import wait_until
from protocols.opcua.simulator import TrafficControllerSimulator

CABINET = "bench-traffic"
POLL_S = 0.002  # how often the bench asks central: adds at most this to a figure


def agent_config(
    folder: Path, *, broker_url: str, endpoint: str, publishing_ms: int, commit_s: float
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "agent.toml"
    path.write_text(
        "\n".join(
            [
                "[cabinet]",
                f'id = "{CABINET}"',
                "[broker]",
                f'url = "{broker_url}"',
                "[buffer]",
                'path = "buffer.db"',
                f"commit_interval_s = {commit_s}",
                "[[devices]]",
                'name = "tc1"',
                'driver = "opcua"',
                f'endpoint = "{endpoint}"',
                'profile = "traffic-controller-generic"',
                f"publishing_interval_ms = {publishing_ms}",
                "poll_interval_s = 10",
                "timeout_s = 2",
            ]
        )
        + "\n"
    )
    return path


async def latencies(count: int, publishing_ms: int, commit_s: float) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with MosquittoBroker() as broker, TrafficControllerSimulator() as controller:
            config = agent_config(
                Path(tmp) / "agent",
                broker_url=broker.url,
                endpoint=controller.endpoint,
                publishing_ms=publishing_ms,
                commit_s=commit_s,
            )
            async with central_and_agent(Path(tmp), broker_url=broker.url, agent_config=config) as api:

                async def mode() -> str | None:
                    response = await api.get(f"/cabinets/{CABINET}/points")
                    if response.status_code != 200:
                        return None
                    points = {p["point"]: p["value"] for p in response.json()["points"]}
                    value = points.get("tc1/mode")
                    return value if isinstance(value, str) else None

                async def normal() -> bool:
                    return await mode() == "normal"

                await wait_until(normal, timeout=60, what="the controller's mode at central")
                rng = random.Random(1)
                samples = []
                for index in range(count):
                    wanted = "flashing" if index % 2 == 0 else "normal"
                    await asyncio.sleep(rng.uniform(0.1, 1.0))  # de-phase from publish and commit
                    start = time.perf_counter()
                    await controller.set_mode(wanted)
                    while await mode() != wanted:  # noqa: ASYNC110 (central is another process)
                        await asyncio.sleep(POLL_S)
                    samples.append((time.perf_counter() - start) * 1000)
                return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--count", type=int, default=40, help="mode changes to time")
    parser.add_argument(
        "--publishing-ms", type=int, default=500, help="the subscription's publishing interval"
    )
    parser.add_argument("--commit-s", type=float, default=1.0, help="the agent's buffer commit interval")
    args = parser.parse_args()
    times = sorted(asyncio.run(latencies(args.count, args.publishing_ms, args.commit_s)))
    centiles = statistics.quantiles(times, n=100, method="inclusive")
    print(
        f"traffic controller mode change -> stored at central, {len(times)} changes, publishing interval "
        f"{args.publishing_ms} ms, agent commit interval {args.commit_s} s, loopback"
    )
    print(f"  p50  {centiles[49]:8.1f} ms")
    print(f"  p90  {centiles[89]:8.1f} ms")
    print(f"  p99  {centiles[98]:8.1f} ms")
    print(f"  max  {times[-1]:8.1f} ms")
    print(
        f"  (bounds: the server's publishing interval, {args.publishing_ms} ms, plus up to 1 s when a change"
        " comes within a second of the last commit a push asked for)"
    )


if __name__ == "__main__":
    main()
