"""`cityedge diag` run time on a cabinet with one dead device (the goal: under 5 s).

A cabinet of ``--healthy`` lighting controllers and one dead one (it accepts the connection and never
answers, so its read costs its whole timeout: the worst a dead device does), every device with the
default 1 s timeout, and a broker that does not answer (nothing listens). The whole command is timed,
Python's start-up and imports included, ``--runs`` times; ``inside`` is diag's own figure (from the
config loaded to the report made).

    .venv/bin/python bench/diag_time.py [--runs 5] [--healthy 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cityedge.testing import write_agent_config
from protocols.modbus.profile import default_profile_dirs, load_profile
from protocols.modbus.simulator import LightingControllerSimulator


async def run(runs: int, healthy: int) -> None:
    profile = load_profile("lighting-single-circuit", default_profile_dirs())
    sims = [LightingControllerSimulator(profile=profile, seed=i) for i in range(healthy + 1)]
    for sim in sims:
        await sim.start()
    sims[-1].set_unresponsive(True)
    try:
        with tempfile.TemporaryDirectory(prefix="diag-bench-") as folder:
            devices = [(f"lc{i + 1}", sim.port) for i, sim in enumerate(sims)]
            config = write_agent_config(
                Path(folder),
                cabinet="cab-bench",
                broker_url="mqtt://127.0.0.1:1",
                devices=devices,
                timeout_s=1.0,
            )
            walls, insides = [], []
            for _ in range(runs):
                started = time.monotonic()
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "cityedge", "diag", "--config", str(config), "--json",
                    stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                out, _ = await process.communicate()
                walls.append(time.monotonic() - started)
                report = json.loads(out)
                insides.append(report["took_s"])
                dead = [d["name"] for d in report["devices"] if d["status"] == "fail"]
                assert dead == [devices[-1][0]], dead
    finally:
        for sim in sims:
            await sim.stop()
    print(
        f"diag, {healthy} healthy devices + 1 dead (1 s timeout), broker down, {runs} runs:"
        f" whole command median {statistics.median(walls):.2f} s (max {max(walls):.2f}),"
        f" inside median {statistics.median(insides):.2f} s (max {max(insides):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--healthy", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(run(args.runs, args.healthy))


if __name__ == "__main__":
    main()
