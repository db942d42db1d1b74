"""The agent's resident memory with all three drivers in use, next to Modbus alone, in one run.

Runs `cityedge agent run` twice as its own process, with no central (what is polled stays in the
buffer): once for a cabinet with one Modbus TCP lighting controller, once for a cabinet at a junction
with that controller, a traffic-light controller (OPC UA, subscribed) and a camera (ONVIF, events
pulled). The simulators run in another process, so their memory is not counted. Each agent's RSS is
read once every device has been read and pushed to the buffer, after ``--settle`` seconds more; a bare
Python importing asyncio, sqlite3 and ssl is the reference, measured in the same run.

    .venv/bin/python bench/agent_memory.py [--settle 10]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sqlite3
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import sample
from _sim import PROFILE, start_simulator
from agent import reference_rss_kb

from cityedge.broker import MosquittoBroker
from cityedge.ports import free_port
from cityedge.testing import wait_until
from edge_agent.buffer import Kind, read_file_records
from protocols.fleet import Reading, decode_record
from protocols.quality import CLOCK_UNSYNCHRONISED, Quality

CAMERA_PASSWORD = "bench-camera"


def _serve_junction(pipe: Connection) -> None:
    """A traffic controller and a camera, in this process; their addresses go back through ``pipe``."""

    async def main() -> None:
        from protocols.onvif.simulator import CameraSimulator
        from protocols.opcua.simulator import TrafficControllerSimulator

        async with (
            TrafficControllerSimulator() as controller,
            CameraSimulator(username="bench", password=CAMERA_PASSWORD) as camera,
        ):
            pipe.send((controller.endpoint, camera.address))
            await asyncio.Event().wait()

    asyncio.run(main())


def config(folder: Path, *, broker_url: str, lighting_port: int, junction: tuple[str, str] | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "[cabinet]", 'id = "bench-memory"', "[broker]", f'url = "{broker_url}"',
        "[buffer]", 'path = "buffer.db"',
        "[[devices]]", 'name = "lc1"', 'driver = "modbus-tcp"', f'address = "127.0.0.1:{lighting_port}"',
        f'profile = "{PROFILE}"', "poll_interval_s = 1",
    ]  # fmt: skip
    if junction is not None:
        secret = folder / "camera.secret"
        secret.write_text(CAMERA_PASSWORD + "\n")
        secret.chmod(0o600)
        lines += [
            "[[devices]]", 'name = "tc1"', 'driver = "opcua"', f'endpoint = "{junction[0]}"',
            'profile = "traffic-controller-generic"', "poll_interval_s = 1", "timeout_s = 2",
            "[[devices]]", 'name = "cam1"', 'driver = "onvif"', f'address = "{junction[1]}"',
            'username = "bench"', 'password_file = "camera.secret"', "poll_interval_s = 1", "timeout_s = 2",
        ]  # fmt: skip
    path = folder / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def devices_read(buffer_db: Path, devices: list[str]) -> bool:
    """Every device has a value read in the buffer."""
    if not buffer_db.exists():
        return False
    try:
        bodies = [body for _, kind, body in read_file_records(buffer_db) if kind == Kind.READING]
    except sqlite3.OperationalError:  # the agent has not created its tables yet
        return False
    readings = (decode_record(Reading, body) for body in bodies)
    # A value read, good or only flagged for the clock (a VM often reports its clock unsynchronised).
    read = {
        r.point.partition("/")[0]
        for r in readings
        if r.quality == Quality.GOOD or (r.reason == CLOCK_UNSYNCHRONISED and r.value is not None)
    }
    return set(devices) <= read


async def agent_rss_kb(config_path: Path, devices: list[str], settle_s: float) -> tuple[int, int]:
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cityedge", "agent", "run", "--config", str(config_path),
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        buffer_db = config_path.parent / "buffer.db"
        await wait_until(lambda: devices_read(buffer_db, devices), timeout=60, what="every device read")
        await asyncio.sleep(settle_s)  # the measurement is of a settled agent, not of its start
        end = sample(agent.pid)
        return end.rss_kb, end.hwm_kb
    finally:
        agent.terminate()
        await agent.wait()


async def measure(settle_s: float) -> None:
    lighting_port = free_port()
    lighting = start_simulator(lighting_port)
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    junction_process = context.Process(target=_serve_junction, args=(theirs,), daemon=True)
    junction_process.start()
    try:
        junction = await asyncio.to_thread(ours.recv)
        reference = await reference_rss_kb()
        with tempfile.TemporaryDirectory() as tmp:
            async with MosquittoBroker() as broker:
                alone = config(Path(tmp) / "modbus", broker_url=broker.url, lighting_port=lighting_port,
                               junction=None)  # fmt: skip
                every = config(Path(tmp) / "all", broker_url=broker.url, lighting_port=lighting_port,
                               junction=junction)  # fmt: skip
                modbus_rss, modbus_hwm = await agent_rss_kb(alone, ["lc1"], settle_s)
                all_rss, all_hwm = await agent_rss_kb(every, ["lc1", "tc1", "cam1"], settle_s)
    finally:
        lighting.kill()
        junction_process.kill()
    rows = [
        ("bare Python (asyncio, sqlite3, ssl)", reference, None, "reference, this run"),
        ("Modbus TCP alone", modbus_rss, modbus_hwm, "goal <= 35 MB"),
        ("Modbus + OPC UA + ONVIF", all_rss, all_hwm, "goal <= 60 MB"),
    ]
    print("agent resident memory, settled, no central (what it polls stays in the buffer)")
    for name, rss, hwm, note in rows:
        peak = f"peak {hwm / 1024:.1f} MB, " if hwm is not None else ""
        print(f"  {name:38s}{rss / 1024:6.1f} MB   ({peak}{note})")
    print(f"  {'ratio all drivers / Modbus alone':38s}{all_rss / modbus_rss:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after every device was read")
    args = parser.parse_args()
    asyncio.run(measure(args.settle))


if __name__ == "__main__":
    main()
