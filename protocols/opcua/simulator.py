"""A traffic-light controller's OPC UA server, simulated: the node model of the generic profile.

It runs signal plans one after the other, each for ``cycles_per_plan`` cycles unless a client asked
for one in ``Controller.RequestedPlan``; a plan's cycle is a sequence of phases (a green for one
approach, an intergreen, a green for the other, an intergreen). The cycle second advances every
``tick_s`` (1 s in real time; tests shorten it). Vehicles cross each detector on its approach's
green and queue on it on red (count and occupancy). Faults come on demand: flashing, dark, manual,
controller fault, detector fault, a node of the wrong type or status, and a restart (the server goes
away and comes back on the same port, so clients lose their session and their subscriptions). With
a ``username`` it refuses any other user or password, and anonymous sessions; with a certificate it
offers only secured channels.

One simulator is one asyncua ``Server``, which loads the whole standard address space whatever the
model's size: measured on the project's 2-core machine, about 1.2 s to start, 39 to 50 MB of memory
each (besides asyncua's own 40 MB, once per process), and 0.1 % of one core at a 1 s tick with a
subscribed client (0.5 % with a client also reading every point every second).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_server import InternalServer
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes

NAMESPACE = "urn:cityedge:traffic-controller:generic"
APPLICATION_URI = "urn:cityedge:simulator:traffic-controller"
_NULLED = ua.UInt32(StatusCodes.BadWaitingForInitialData)
MODES = {"normal": 0, "flashing": 1, "dark": 2, "manual": 3}

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SignalPlan:
    """A plan's number and its phases' durations (green and the intergreen after it), in seconds."""

    number: int
    phases_s: tuple[int, ...]

    @property
    def cycle_time_s(self) -> int:
        return sum(self.phases_s)

    def phase_at(self, cycle_second: int) -> int:
        """The phase (from 1) running at ``cycle_second``."""
        elapsed = 0
        for phase, duration in enumerate(self.phases_s, start=1):
            elapsed += duration
            if cycle_second < elapsed:
                return phase
        return len(self.phases_s)


# Two approaches, each a green then an intergreen: a peak plan, an off-peak one, a night one.
DEFAULT_PLANS = (SignalPlan(1, (40, 5, 40, 5)), SignalPlan(2, (25, 5, 25, 5)), SignalPlan(3, (55, 5, 55, 5)))


def _node_id(ns: int, name: str) -> ua.NodeId:
    return ua.NodeId.from_string(f"ns={ns};s={name}")


class _PasswordCheck(UserManager):
    """asyncua's user manager: one user, one password, nobody anonymous."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password.encode()
        self.refused = 0  # sessions refused for a wrong user or password

    def get_user(
        self,
        iserver: InternalServer,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is None or password is None:
            return None
        same_user = hmac.compare_digest(username.encode(), self._username.encode())
        same_password = hmac.compare_digest(password.encode(), self._password)
        if not (same_user and same_password):
            self.refused += 1
        return User(role=UserRole.User, name=username) if same_user and same_password else None


@dataclass
class _Detector:
    count: int = 0
    occupancy_pct: float = 0.0
    fault: bool = False


class TrafficControllerSimulator:
    """``async with TrafficControllerSimulator() as sim:`` serves on ``sim.endpoint`` (a free port)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tick_s: float = 1.0,
        plans: tuple[SignalPlan, ...] = DEFAULT_PLANS,
        cycles_per_plan: int = 2,
        detectors: int = 4,
        username: str | None = None,
        password: str | None = None,
        certificate: Path | None = None,
        private_key: Path | None = None,
        seed: int = 7,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        self._host = host
        self._port = port
        self.tick_s = tick_s
        self._plans = plans
        self._cycles_per_plan = cycles_per_plan
        self._credentials = (username, password) if username is not None and password is not None else None
        if (certificate is None) != (private_key is None):
            raise ValueError("certificate and private_key go together")
        # With a certificate the server offers only Basic256Sha256 channels (Sign, SignAndEncrypt).
        self._security = (
            (certificate, private_key) if certificate is not None and private_key is not None else None
        )
        self._rng = random.Random(seed)
        self.mode = "normal"
        self.fault = False
        self.plan = plans[0]
        self.cycle_second = 0
        self._cycles_in_plan = 0
        self.detectors = [_Detector() for _ in range(detectors)]
        self._server: Server | None = None
        self._user_manager: _PasswordCheck | None = None
        self._nodes: dict[str, Any] = {}
        self._data_types: dict[str, ua.NodeId] = {}
        self._written: dict[str, tuple[object, ...]] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._raw_overrides: dict[str, ua.Variant] = {}
        self._statuses: dict[str, int] = {}

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self._host}:{self._port}"

    @property
    def refused_logins(self) -> int:
        """Sessions refused for a wrong user or password since the last start."""
        return self._user_manager.refused if self._user_manager is not None else 0

    @property
    def port(self) -> int:
        return self._port

    async def __aenter__(self) -> TrafficControllerSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Serve the model (on the port of the previous start, after a restart)."""
        if self._server is not None:
            raise RuntimeError(f"the simulator already serves {self.endpoint}")
        user_manager = _PasswordCheck(*self._credentials) if self._credentials else None
        self._user_manager = user_manager
        server = Server(user_manager=user_manager)
        await server.init()
        server.set_endpoint(f"opc.tcp://{self._host}:{self._port}")
        server.set_server_name("cityedge traffic-controller simulator")
        if self._security is not None:
            await server.set_application_uri(APPLICATION_URI)
            await server.load_certificate(str(self._security[0]))
            await server.load_private_key(str(self._security[1]))
            server.set_security_policy(
                [
                    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                    ua.SecurityPolicyType.Basic256Sha256_Sign,
                ]
            )
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens(
            [ua.UserNameIdentityToken] if self._credentials else [ua.AnonymousIdentityToken]
        )
        self._nodes = await self._build_model(server)
        self._data_types = {name: await node.read_data_type() for name, node in self._nodes.items()}
        self._written = {}
        self._server = server
        for node, value in self._raw_overrides.items():
            await self._retype(node, value)
        await server.start()
        if self._port == 0 and server.bserver is not None:
            self._port = server.bserver.port
        await self._publish()
        self._ticker = asyncio.create_task(self._tick_loop(), name=f"traffic-sim-{self._port}")

    async def stop(self) -> None:
        """Stop serving: every client's socket is closed, its session and subscriptions gone."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        server, self._server = self._server, None
        if server is None:
            return
        # asyncua's stop waits out the 1 s sleep of its clock task; cancel that task instead.
        clock = server.iserver.time_task
        if clock is not None:
            server.iserver._time_task_stop = True
            clock.cancel()
            await asyncio.gather(clock, return_exceptions=True)
            server.iserver.time_task = None
        await server.stop()

    async def restart(self) -> None:
        """Stop and start again on the same port, as a controller rebooting does."""
        await self.stop()
        await self.start()

    # Faults and modes, injected and cleared.
    async def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
        self.mode = mode
        await self._publish()

    async def inject_flashing(self) -> None:
        await self.set_mode("flashing")

    async def inject_dark(self) -> None:
        await self.set_mode("dark")

    async def clear_mode(self) -> None:
        await self.set_mode("normal")

    async def set_fault(self, fault: bool) -> None:
        self.fault = fault
        await self._publish()

    async def set_detector_fault(self, detector: int, fault: bool) -> None:
        """``detector`` counts from 1, as the nodes are named."""
        self.detectors[detector - 1].fault = fault
        await self._publish()

    async def set_raw(self, node: str, value: ua.Variant | None) -> None:
        """Serve ``value`` at ``node`` (e.g. ``"Controller.Mode"``) whatever its type, None to stop:
        how a controller with a firmware bug, or read with another model's profile, looks to a client."""
        self._check_node(node)
        if value is None:
            self._raw_overrides.pop(node, None)
        else:
            self._raw_overrides[node] = value
        if self._server is not None:
            await self._retype(node, value)
        await self._publish()

    async def set_status(self, node: str, status: int | None) -> None:
        """Serve ``node`` with this OPC UA status code (``StatusCodes.BadSensorFailure``,
        ``StatusCodes.UncertainLastUsableValue``...), None for good again: a sensor the controller
        itself distrusts."""
        self._check_node(node)
        if status is None:
            self._statuses.pop(node, None)
        else:
            self._statuses[node] = status
        await self._publish()

    def _check_node(self, node: str) -> None:
        names = self._values().keys()
        if node not in names:
            raise ValueError(f"no node {node!r} in the model: expected one of {', '.join(names)}")

    async def _retype(self, node: str, value: ua.Variant | None) -> None:
        # asyncua refuses a value of another type than the node's; a node of a non-standard data type
        # holding null takes anything. Back to the model's type when the override ends.
        assert self._server is not None
        nodeid = self._nodes[node].nodeid
        data_type = (
            _node_id(nodeid.NamespaceIndex, "Malformed") if value is not None else self._data_types[node]
        )
        await self._server.write_attribute_value(
            nodeid, ua.DataValue(ua.Variant(data_type, ua.VariantType.NodeId)), AttributeIds.DataType
        )
        await self._server.write_attribute_value(nodeid, ua.DataValue(StatusCode=ua.StatusCode(_NULLED)))
        self._written.pop(node, None)

    async def _build_model(self, server: Server) -> dict[str, Any]:
        ns = await server.register_namespace(NAMESPACE)
        objects = server.nodes.objects
        nodes: dict[str, Any] = {}
        controller = await objects.add_object(_node_id(ns, "Controller"), ua.QualifiedName("Controller", ns))
        for name, variant in (
            ("Mode", ua.VariantType.Int32),
            ("SignalPlan", ua.VariantType.Int32),
            ("RequestedPlan", ua.VariantType.Int32),
            ("CycleTime", ua.VariantType.Int32),
            ("CycleSecond", ua.VariantType.Int32),
            ("Phase", ua.VariantType.Int32),
            ("Fault", ua.VariantType.Boolean),
            ("Alarm", ua.VariantType.Boolean),
        ):
            nodes[f"Controller.{name}"] = await self._variable(
                controller, ns, f"Controller.{name}", name, variant
            )
        await nodes["Controller.RequestedPlan"].set_writable()
        for index in range(1, len(self.detectors) + 1):
            parent = f"Detector{index}"
            detector = await objects.add_object(_node_id(ns, parent), ua.QualifiedName(parent, ns))
            for name, variant in (
                ("Count", ua.VariantType.UInt32),
                ("Occupancy", ua.VariantType.Double),
                ("Fault", ua.VariantType.Boolean),
            ):
                nodes[f"{parent}.{name}"] = await self._variable(
                    detector, ns, f"{parent}.{name}", name, variant
                )
        return nodes

    @staticmethod
    async def _variable(parent: Any, ns: int, node_id: str, name: str, variant: ua.VariantType) -> Any:
        initial: object = False if variant == ua.VariantType.Boolean else 0
        if variant == ua.VariantType.Double:
            initial = 0.0
        return await parent.add_variable(
            _node_id(ns, node_id), ua.QualifiedName(name, ns), ua.Variant(initial, variant)
        )

    def _values(self) -> dict[str, ua.Variant]:
        int32, boolean = ua.VariantType.Int32, ua.VariantType.Boolean
        values = {
            "Controller.Mode": ua.Variant(MODES[self.mode], int32),
            "Controller.SignalPlan": ua.Variant(self.plan.number, int32),
            "Controller.CycleTime": ua.Variant(self.plan.cycle_time_s, int32),
            "Controller.CycleSecond": ua.Variant(self.cycle_second, int32),
            "Controller.Phase": ua.Variant(self.phase, int32),
            "Controller.Fault": ua.Variant(self.fault, boolean),
            "Controller.Alarm": ua.Variant(self.fault or any(d.fault for d in self.detectors), boolean),
        }
        for index, detector in enumerate(self.detectors, start=1):
            values[f"Detector{index}.Count"] = ua.Variant(detector.count, ua.VariantType.UInt32)
            values[f"Detector{index}.Occupancy"] = ua.Variant(detector.occupancy_pct, ua.VariantType.Double)
            values[f"Detector{index}.Fault"] = ua.Variant(detector.fault, boolean)
        values.update(self._raw_overrides)
        return values

    async def _publish(self) -> None:
        """Write the values that changed since the last write (each write notifies subscribers)."""
        if self._server is None:
            return
        for node, variant in self._values().items():
            status = self._statuses.get(node, 0)
            key = (variant.VariantType, variant.Value, status)
            if self._written.get(node) == key:
                continue
            value = ua.DataValue(variant, StatusCode=ua.StatusCode(ua.UInt32(status)))
            await self._server.write_attribute_value(self._nodes[node].nodeid, value)
            self._written[node] = key

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            await self._tick()

    async def _tick(self) -> None:
        if self.mode in ("normal", "manual"):
            self.cycle_second += 1
            if self.cycle_second >= self.plan.cycle_time_s:
                self.cycle_second = 0
                await self._next_cycle()
        else:
            self.cycle_second = 0
        for index, detector in enumerate(self.detectors):
            self._count(index, detector)
        await self._publish()

    async def _next_cycle(self) -> None:
        self._cycles_in_plan += 1
        requested = await self._nodes["Controller.RequestedPlan"].read_value()
        wanted = next((p for p in self._plans if p.number == requested), None)
        if wanted is not None:
            self.plan, self._cycles_in_plan = wanted, 0
        elif self._cycles_in_plan >= self._cycles_per_plan:
            index = self._plans.index(self.plan) if self.plan in self._plans else -1
            self.plan, self._cycles_in_plan = self._plans[(index + 1) % len(self._plans)], 0

    @property
    def phase(self) -> int:
        """The running phase; 0 while the junction flashes or is dark (no cycle runs)."""
        return self.plan.phase_at(self.cycle_second) if self.mode in ("normal", "manual") else 0

    def _count(self, index: int, detector: _Detector) -> None:
        """One tick of traffic over loop ``index``: vehicles cross it on their approach's green (or
        through a flashing junction); on red the queue stands on it and it reads occupied."""
        if detector.fault or self.mode == "dark":
            detector.occupancy_pct = 0.0  # a faulty loop, or a dark junction's, reports nothing usable
            return
        approach_green = 1 + 2 * (index % 2)  # detectors alternate between the two approaches
        if self.mode == "flashing" or self.phase == approach_green:
            arrivals = self._rng.choices((0, 1, 2), weights=(5, 4, 1))[0]
            detector.count = (detector.count + arrivals) % 2**32
            detector.occupancy_pct = round(min(100.0, arrivals * 18.0 + self._rng.uniform(0, 8)), 1)
        else:
            detector.occupancy_pct = round(self._rng.uniform(55.0, 95.0), 1)
