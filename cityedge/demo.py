"""`cityedge demo`: a broker, the aggregator and simulated cabinets on one machine.

The first cabinets (up to ``REAL_CABINETS``) are real agents with their own SQLite buffer and config
file, polling real Modbus TCP simulators of street-lighting controllers over loopback. Every other of
them stands at a signalised junction: it also watches that junction's traffic-light controller (a
simulated OPC UA server) and its camera (a simulated ONVIF camera, with its own password file).

Cabinets beyond those are fleet-sim cabinets (``cityedge.fleet_sim``): the agent's own buffer, sync
and command execution, with readings generated in memory instead of polled. A real agent with two
Modbus simulators costs the shared event loop enough that a few hundred of them starve it (polls and
command writes time out: false ``device_lost`` alarms, commands failing with "no answer within 1.0s");
a fleet-sim cabinet sends the same messages for a small share of that. Everything runs in one loop.

Every cabinet is in central's registry, in a town of Dijon Métropole with its coordinates and rated
power (``cityedge.metropole``), so that the operator page's map and the KPIs per town have them. So
that the alarm board has something to acknowledge, the demo stages incidents on its real cabinets:
a cabinet door that opens for ``DOOR_OPEN_S`` every ``DOOR_PERIOD_S``, and a failed lamp.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from central.auth import Tokens
from central.server import CentralServer
from central.store import Store
from central.store.auth_rows import Role
from central.times import now_ms
from cityedge.broker import EmbeddedBroker, MosquittoBroker, mosquitto_path
from cityedge.fleet_sim import Fleet, FleetPlan
from cityedge.fleet_sim.run import raise_descriptor_limit
from cityedge.metropole import registry_entry
from edge_agent.agent import Agent
from edge_agent.clock import SystemClock
from edge_agent.clock_sync import ClockTrust
from edge_agent.config import load_config
from protocols.fleet.broker_url import parse_broker_url
from protocols.modbus.profile import Profile, default_profile_dirs, load_profile
from protocols.modbus.simulator import LightingControllerSimulator
from protocols.onvif.simulator import CameraSimulator
from protocols.opcua.simulator import TrafficControllerSimulator

CONTROLLERS_PER_CABINET = 2
# Real agents polling real simulators; the cabinets beyond are fleet-sim ones.
REAL_CABINETS = 10
SIM_POINTS = 20
SIM_INTERVAL_S = 10.0
DEMO_PROFILE = "lighting-single-circuit"
TRAFFIC_PROFILE = "traffic-controller-generic"
# One simulated traffic controller is a whole OPC UA server (about 45 MB and 1 s to start): the demo
# puts one at every other cabinet, up to this many.
MAX_JUNCTIONS = 10
CAMERA_USER = "cityedge"
# The demo's API token: made again at each start (the previous one is revoked), with every right.
DEMO_TOKEN_NAME = "demo"
NOMINAL_POWER_W = 150.0  # of each simulated controller's circuit
# The staged incidents: a door opened soon after the start, then again every period; a lamp failed.
DOOR_FIRST_S = 5.0
DOOR_OPEN_S = 600.0
DOOR_PERIOD_S = 900.0
DOOR_CABINET = 2  # demo-002 (demo-001 when there is only one)
LAMP_CABINET = 3  # demo-003, its second controller


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


@dataclass(frozen=True, slots=True)
class Junction:
    """The traffic controller's endpoint and the camera's address of a cabinet at a junction."""

    controller: str
    camera: str


def cabinet_config(
    *, cabinet: str, broker_url: str, controller_ports: list[int], junction: Junction | None = None
) -> str:
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
    if junction is not None:
        lines += [
            "",
            "[[devices]]",
            'name = "tc1"',
            'driver = "opcua"',
            f'endpoint = "{junction.controller}"',
            f'profile = "{TRAFFIC_PROFILE}"',
            "poll_interval_s = 5",
            "timeout_s = 2",
            "",
            "[[devices]]",
            'name = "cam1"',
            'driver = "onvif"',
            f'address = "{junction.camera}"',
            f'username = "{CAMERA_USER}"',
            'password_file = "camera.secret"',
            "poll_interval_s = 10",
            "timeout_s = 2",
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


async def register_cabinets(store: Store, cabinets: int, now_ms: int) -> None:
    """Put every demo cabinet in the registry (the same entry again changes nothing)."""
    for number in range(1, cabinets + 1):
        rated = CONTROLLERS_PER_CABINET * NOMINAL_POWER_W
        await store.put_registry(
            registry_entry(f"demo-{number:03d}", number, rated_power_w=rated, now_ms=now_ms)
        )


async def stage_incidents(controllers: list[list[LightingControllerSimulator]]) -> None:
    """A failed lamp (from the start) and a door that opens and closes, on the real cabinets."""
    if not controllers:
        return
    if len(controllers) >= LAMP_CABINET:
        controllers[LAMP_CABINET - 1][-1].inject_lamp_failure(True)
    door = controllers[min(DOOR_CABINET, len(controllers)) - 1][0]
    await asyncio.sleep(DOOR_FIRST_S)
    while True:
        door.set_door_open(True)
        await asyncio.sleep(DOOR_OPEN_S)
        door.set_door_open(False)
        await asyncio.sleep(DOOR_PERIOD_S - DOOR_OPEN_S)


def _write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "agent.toml"
    path.write_text(text)
    return path


async def _junction(stack: contextlib.AsyncExitStack, folder: Path, *, seed: int) -> Junction:
    """Start a junction's traffic controller and camera; the camera's password goes in a 0600 file."""
    controller = await stack.enter_async_context(TrafficControllerSimulator(seed=seed))
    password = secrets.token_urlsafe(12)
    secret = folder / "camera.secret"
    secret.touch(mode=0o600)
    secret.chmod(0o600)
    secret.write_text(password + "\n")
    camera = await stack.enter_async_context(
        CameraSimulator(username=CAMERA_USER, password=password, serial=f"SIM{seed:04d}")
    )
    return Junction(controller=controller.endpoint, camera=camera.address)


async def _real_cabinet(
    stack: contextlib.AsyncExitStack,
    number: int,
    *,
    broker_url: str,
    data_dir: Path,
    profile: Profile,
    at_junction: bool,
) -> tuple[Agent, list[LightingControllerSimulator]]:
    """A real agent polling its own simulators (and a junction's, when ``at_junction``)."""
    cabinet = f"demo-{number:03d}"
    simulators = []
    for unit in range(CONTROLLERS_PER_CABINET):
        simulator = LightingControllerSimulator(
            profile=profile, seed=number * 10 + unit, nominal_power_w=NOMINAL_POWER_W
        )
        simulators.append(await stack.enter_async_context(simulator))
    folder = data_dir / cabinet
    folder.mkdir(exist_ok=True)
    junction = await _junction(stack, folder, seed=number) if at_junction else None
    config_path = folder / "agent.toml"
    config_path.write_text(
        cabinet_config(
            cabinet=cabinet,
            broker_url=broker_url,
            controller_ports=[sim.port for sim in simulators],
            junction=junction,
        )
    )
    # Simulated cabinets on the host's clock, taken as set: a laptop or a VM often reports
    # itself unsynchronised (its host keeps the time), and the demo is not about that.
    host_clock = SystemClock(trust=ClockTrust(status=lambda: True))
    return Agent(load_config(config_path), clock=host_clock), simulators


async def run_demo(
    *,
    cabinets: int,
    data_dir: Path,
    http_host: str,
    http_port: int,
    broker_url: str | None,
    announce: Callable[[str], None],
    real_cabinets: int = REAL_CABINETS,
) -> None:
    profile = load_profile(DEMO_PROFILE, default_profile_dirs())
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(_broker(broker_url, announce))
        central = await stack.enter_async_context(
            CentralServer(
                db=data_dir / "central.db",
                broker_url=url,
                http_host=http_host,
                http_port=http_port,
            )
        )
        agents: list[Agent] = []
        controllers: list[list[LightingControllerSimulator]] = []
        junctions = 0
        real = min(cabinets, real_cabinets)
        for number in range(1, real + 1):
            at_junction = number % 2 == 1 and junctions < MAX_JUNCTIONS
            junctions += at_junction
            agent, sims = await _real_cabinet(
                stack, number, broker_url=url, data_dir=data_dir, profile=profile, at_junction=at_junction
            )
            agents.append(agent)
            controllers.append(sims)
        fleet = None
        if cabinets > real:
            plan = FleetPlan(
                cabinets=cabinets - real,
                points=SIM_POINTS,
                interval_s=SIM_INTERVAL_S,
                prefix="demo",
                first=real + 1,
                digits=3,
            )
            raise_descriptor_limit(plan.cabinets)
            fleet = Fleet(plan, broker=parse_broker_url(url))
        base = central.url
        token = await Tokens(central.store).replace(DEMO_TOKEN_NAME, Role.ADMIN)
        await register_cabinets(central.store, cabinets, now_ms())
        announce(f"aggregator: {base} (database {data_dir / 'central.db'})")
        announce(f"operator page: {base}/ (sign in with the API token below)")
        announce(
            f"{real} simulated cabinets with real agents, {CONTROLLERS_PER_CABINET} lighting controllers"
            " each (Modbus TCP simulators), lit by the schedule of Dijon's street lights"
        )
        announce(
            f"{junctions} of them at a junction: its traffic-light controller (OPC UA) and camera (ONVIF)"
        )
        if fleet is not None:
            announce(
                f"{fleet.plan.cabinets} fleet-sim cabinets, demo-{real + 1:03d} to demo-{cabinets:03d}:"
                f" the agent's buffer, sync and commands, {SIM_POINTS} readings every"
                f" {SIM_INTERVAL_S:g} s generated in memory, starting over {fleet.plan.start_spread_s:g} s"
            )
        announce(f"API token ({Role.ADMIN.value}, named {DEMO_TOKEN_NAME!r}; a new one at each start):")
        announce(f"  {token}")
        announce("the API needs it in each request, e.g.:")
        announce(f"  curl -H 'Authorization: Bearer {token}' {base}/api/v1/cabinets")
        announce("read:")
        announce(f"  {base}/api/v1/cabinets                       fleet status")
        announce(f"  {base}/api/v1/cabinets/demo-001/points       latest values of one cabinet")
        announce(f"  {base}/api/v1/cabinets/demo-001/equipment    its lighting, traffic controller, camera")
        announce(f"  {base}/api/v1/events                         events (device lost, evictions)")
        announce(f"  {base}/docs                                  the API to try ('Authorize': the token)")
        door = f"demo-{min(DOOR_CABINET, real):03d}"
        announce(
            f"staged incidents: {door}'s door opens {DOOR_FIRST_S:g} s after the start, for"
            f" {DOOR_OPEN_S / 60:g} min every {DOOR_PERIOD_S / 60:g} min"
            + (f"; demo-{LAMP_CABINET:03d} has a failed lamp" if real >= LAMP_CABINET else "")
        )
        announce("Ctrl-C stops everything.")
        async with asyncio.TaskGroup() as tasks:
            for agent in agents:
                tasks.create_task(agent.run(), name=f"agent-{agent.config.cabinet.id}")
            if fleet is not None:
                tasks.create_task(fleet.run(), name="fleet-sim")
            tasks.create_task(stage_incidents(controllers), name="demo-incidents")


@dataclass(frozen=True, slots=True)
class RunningDemo:
    url: str  # the aggregator's base URL
    token: str  # the demo's admin token
    db: Path  # central's SQLite file
    announced: list[str]


@contextlib.asynccontextmanager
async def demo_in_background(
    *,
    cabinets: int,
    data_dir: Path,
    broker_url: str | None = None,
    real_cabinets: int = REAL_CABINETS,
    http_port: int = 0,
    timeout: float = 90.0,
) -> AsyncIterator[RunningDemo]:
    """The demo running in this event loop while the block runs (tests, benchmarks, screenshots);
    yields once central serves and the token is made. Cancelled when the block ends."""
    announced: list[str] = []
    task = asyncio.create_task(
        run_demo(
            cabinets=cabinets,
            data_dir=data_dir,
            http_host="127.0.0.1",
            http_port=http_port,
            broker_url=broker_url,
            announce=announced.append,
            real_cabinets=real_cabinets,
        ),
        name="demo",
    )
    try:
        async with asyncio.timeout(timeout):
            while not any(line.startswith("Ctrl-C") for line in announced):
                if task.done():
                    task.result()  # raises what stopped it
                    raise RuntimeError("the demo stopped before it was ready")
                await asyncio.sleep(0.05)
        url = next(line.split()[1] for line in announced if line.startswith("aggregator: "))
        token_line = announced.index(next(line for line in announced if line.startswith("API token"))) + 1
        yield RunningDemo(url, announced[token_line].strip(), data_dir / "central.db", announced)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
