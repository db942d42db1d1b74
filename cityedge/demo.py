"""`cityedge demo`: a broker, the aggregator and simulated cabinets on one machine.

Each cabinet is a real agent with its own SQLite buffer and config file, polling real Modbus TCP
simulators of street-lighting controllers over loopback. Everything runs in one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from central.auth import Tokens
from central.auth_rows import Role
from central.server import CentralServer
from cityedge.broker import EmbeddedBroker, MosquittoBroker, mosquitto_path
from edge_agent.agent import Agent
from edge_agent.clock import SystemClock
from edge_agent.clock_sync import ClockTrust
from edge_agent.config import load_config
from protocols.modbus.profile import default_profile_dirs, load_profile
from protocols.modbus.simulator import LightingControllerSimulator

CONTROLLERS_PER_CABINET = 2
DEMO_PROFILE = "lighting-single-circuit"
# The demo's API token: made again at each start (the previous one is revoked), with every right.
DEMO_TOKEN_NAME = "demo"


@contextlib.asynccontextmanager
async def _broker(url: str | None, announce: Callable[[str], None]) -> AsyncIterator[str]:
    if url is not None:
        yield url
        return
    if mosquitto_path() is not None:
        async with MosquittoBroker() as mosquitto:
            announce(f"broker: Mosquitto at {mosquitto.url}")
            yield mosquitto.url
        return
    async with EmbeddedBroker() as embedded:
        announce(f"broker: embedded Python broker at {embedded.url} (install mosquitto for production)")
        yield embedded.url


def cabinet_config(*, cabinet: str, broker_url: str, controller_ports: list[int]) -> str:
    """The TOML a technician would write for this cabinet, pointing at the simulators."""
    lines = [
        "[cabinet]",
        f'id = "{cabinet}"',
        "",
        "[broker]",
        f'url = "{broker_url}"',
        "",
        "[buffer]",
        'path = "buffer.db"',
        "max_mb = 64",
        "",
        "[sync]",
        "ack_timeout_s = 10",
        "reconnect_max_s = 5",
    ]
    for index, port in enumerate(controller_ports, start=1):
        lines += [
            "",
            "[[devices]]",
            f'name = "lc{index}"',
            'driver = "modbus-tcp"',
            f'address = "127.0.0.1:{port}"',
            f'profile = "{DEMO_PROFILE}"',
            "poll_interval_s = 2",
        ]
    # The lights follow the sun over Dijon: on and dimmed at night, off by day.
    lines += [
        "",
        "[lighting.schedule]",
        "latitude = 47.32",
        "longitude = 5.04",
        'timezone = "Europe/Paris"',
        'dimming = [{ start = "22:00", end = "05:00", level_pct = 70 }]',
    ]
    return "\n".join(lines) + "\n"


def _write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "agent.toml"
    path.write_text(text)
    return path


async def run_demo(
    *,
    cabinets: int,
    data_dir: Path,
    http_host: str,
    http_port: int,
    broker_url: str | None,
    announce: Callable[[str], None],
) -> None:
    profile = load_profile(DEMO_PROFILE, default_profile_dirs())
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(_broker(broker_url, announce))
        central = await stack.enter_async_context(
            CentralServer(
                db_path=data_dir / "central.db",
                broker_url=url,
                http_host=http_host,
                http_port=http_port,
            )
        )
        agents: list[Agent] = []
        for number in range(1, cabinets + 1):
            cabinet = f"demo-{number:03d}"
            ports = []
            for unit in range(CONTROLLERS_PER_CABINET):
                simulator = LightingControllerSimulator(profile=profile, seed=number * 10 + unit)
                await stack.enter_async_context(simulator)
                ports.append(simulator.port)
            folder = data_dir / cabinet
            folder.mkdir(exist_ok=True)
            config_path = folder / "agent.toml"
            config_path.write_text(cabinet_config(cabinet=cabinet, broker_url=url, controller_ports=ports))
            # Simulated cabinets on the host's clock, taken as set: a laptop or a VM often reports
            # itself unsynchronised (its host keeps the time), and the demo is not about that.
            host_clock = SystemClock(trust=ClockTrust(status=lambda: True))
            agents.append(Agent(load_config(config_path), clock=host_clock))
        base = central.url
        token = await Tokens(central.store).replace(DEMO_TOKEN_NAME, Role.ADMIN)
        announce(f"aggregator: {base} (database {data_dir / 'central.db'})")
        announce(
            f"{cabinets} simulated cabinets, {CONTROLLERS_PER_CABINET} lighting controllers each,"
            " lit by the schedule of Dijon's street lights"
        )
        announce(f"API token ({Role.ADMIN.value}, named {DEMO_TOKEN_NAME!r}; a new one at each start):")
        announce(f"  {token}")
        announce("the API needs it in each request, e.g.:")
        announce(f"  curl -H 'Authorization: Bearer {token}' {base}/api/v1/cabinets")
        announce("read:")
        announce(f"  {base}/api/v1/cabinets                       fleet status")
        announce(f"  {base}/api/v1/cabinets/demo-001/points       latest values of one cabinet")
        announce(f"  {base}/api/v1/events                         events (device lost, evictions)")
        announce(f"  {base}/docs                                  the API to try ('Authorize': the token)")
        announce("Ctrl-C stops everything.")
        async with asyncio.TaskGroup() as tasks:
            for agent in agents:
                tasks.create_task(agent.run(), name=f"agent-{agent.config.cabinet.id}")
