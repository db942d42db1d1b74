"""The OPC UA driver against the traffic-controller simulator, over real sockets on free ports."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from cityedge.ports import free_port
from protocols import registry
from protocols.device import BuildContext, BuildError
from protocols.driver import AlarmRule, PointValue
from protocols.errors import DeviceTimeout, DeviceUnreachable, DriverError, WriteRejected
from protocols.modbus.profile import default_profile_dirs
from protocols.opcua.config import OpcuaDevice
from protocols.opcua.driver import OpcuaDriver, build
from protocols.opcua.errors import AccessDenied, SecurityRejected
from protocols.opcua.simulator import APPLICATION_URI, TrafficControllerSimulator
from protocols.quality import Quality
from protocols.testing import wait_until
from tests.integration.opcua_certs import make_certificate

pytestmark = pytest.mark.integration

PUBLISHING_MS = 100
TICK_S = 0.05
SLACK_S = 0.5  # scheduling on a shared 2-core machine, asyncua's publish round trip


def device(endpoint: str, **fields: object) -> OpcuaDevice:
    raw = {
        "driver": "opcua",
        "name": "tc1",
        "endpoint": endpoint,
        "profile": "traffic-controller-generic",
        "timeout_s": 2.0,
        "publishing_interval_ms": PUBLISHING_MS,
        "reconnect_initial_s": 0.1,
        "reconnect_max_s": 0.5,
        "keepalive_s": 0.5,
        **fields,
    }
    return msgspec.convert(raw, OpcuaDevice)


def context(config_dir: Path) -> BuildContext:
    return BuildContext(config_dir=config_dir, profile_dirs=default_profile_dirs(), now_ms=lambda: 0)


@pytest.fixture
async def sim() -> AsyncIterator[TrafficControllerSimulator]:
    async with TrafficControllerSimulator(tick_s=TICK_S) as simulator:
        yield simulator


@pytest.fixture
async def driver(sim: TrafficControllerSimulator, tmp_path: Path) -> AsyncIterator[OpcuaDriver]:
    opcua = build(device(sim.endpoint), context(tmp_path))
    await opcua.connect()
    yield opcua
    await opcua.close()


class Changes:
    """Collects what ``changes()`` yields, each value with the time it arrived."""

    def __init__(self, driver: OpcuaDriver) -> None:
        self.values: list[tuple[float, PointValue]] = []
        self._task = asyncio.create_task(self._collect(driver))

    async def _collect(self, driver: OpcuaDriver) -> None:
        async for batch in driver.changes():
            now = time.monotonic()
            self.values.extend((now, value) for value in batch)

    def latest(self, quantity: str) -> PointValue | None:
        found = [value for _, value in self.values if value.quantity == quantity]
        return found[-1] if found else None

    def arrived(self, quantity: str, value: object, since: float = 0.0) -> float | None:
        """When ``quantity`` first arrived with ``value`` at or after ``since``."""
        for at, point in self.values:
            if at >= since and point.quantity == quantity and point.value == value:
                return at
        return None

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.fixture
async def changes(driver: OpcuaDriver) -> AsyncIterator[Changes]:
    collected = Changes(driver)
    await wait_until(
        lambda: collected.latest("mode") is not None, timeout=5, what="the subscription's first values"
    )
    yield collected
    await collected.stop()


def active_alarms(driver: OpcuaDriver, values: dict[str, PointValue]) -> set[str]:
    """The alarms the profile's rules would raise for these values."""
    active = set()
    for spec in driver.points:
        value = values.get(spec.name)
        good = value is not None and value.quality == Quality.GOOD
        if spec.alarm is not None and value is not None and good and _in_alarm(spec.alarm, value.value):
            active.add(spec.alarm.name)
    return active


def _in_alarm(rule: AlarmRule, value: object) -> bool:
    if rule.when_true:
        return value is True
    if rule.when_in:
        return value in rule.when_in
    return False


async def test_read_gives_every_point_in_profile_order(
    driver: OpcuaDriver, sim: TrafficControllerSimulator
) -> None:
    values = await driver.read()

    assert [v.quantity for v in values] == [p.name for p in driver.points]
    assert all(v.quality == Quality.GOOD for v in values), values
    by_name = {v.quantity: v.value for v in values}
    assert by_name["mode"] == "normal"
    assert by_name["signal_plan"] == sim.plan.number
    assert by_name["cycle_time_s"] == sim.plan.cycle_time_s
    assert isinstance(by_name["d1_occupancy_pct"], float)


async def test_cycle_advances_and_vehicles_are_counted(driver: OpcuaDriver) -> None:
    first = {v.quantity: v.value for v in await driver.read()}

    async def moved() -> bool:
        now = {v.quantity: v.value for v in await driver.read()}
        return now["cycle_second_s"] != first["cycle_second_s"] and now["d1_count"] != first["d1_count"]

    await wait_until(moved, timeout=5, what="the cycle second and detector 1's count to move")


async def test_flashing_arrives_within_one_publishing_interval(
    sim: TrafficControllerSimulator, changes: Changes
) -> None:
    made = time.monotonic()
    await sim.inject_flashing()

    await wait_until(
        lambda: changes.arrived("mode", "flashing", made) is not None, timeout=5, what="mode flashing"
    )
    arrived = changes.arrived("mode", "flashing", made)
    assert arrived is not None
    assert arrived - made <= PUBLISHING_MS / 1000 + SLACK_S


Inject = Callable[[TrafficControllerSimulator], Awaitable[None]]
FAULTS: dict[str, tuple[Inject, Inject]] = {
    "controller_flashing": (lambda s: s.inject_flashing(), lambda s: s.clear_mode()),
    "controller_dark": (lambda s: s.inject_dark(), lambda s: s.clear_mode()),
    "controller_fault": (lambda s: s.set_fault(True), lambda s: s.set_fault(False)),
    "detector_fault_d2": (lambda s: s.set_detector_fault(2, True), lambda s: s.set_detector_fault(2, False)),
}


@pytest.mark.parametrize("alarm", list(FAULTS))
async def test_each_fault_shows_in_the_watched_values_and_clears(
    sim: TrafficControllerSimulator, driver: OpcuaDriver, changes: Changes, alarm: str
) -> None:
    inject, clear = FAULTS[alarm]

    def pushed() -> dict[str, PointValue]:
        return {value.quantity: value for _, value in changes.values}

    assert active_alarms(driver, pushed()) == set()
    await inject(sim)
    await wait_until(lambda: alarm in active_alarms(driver, pushed()), timeout=5, what=f"{alarm} pushed")
    assert active_alarms(driver, pushed()) == {alarm}
    assert active_alarms(driver, {v.quantity: v for v in await driver.read()}) == {alarm}
    assert {v.quantity: v.value for v in await driver.read()}["alarm"] is (
        alarm not in {"controller_flashing", "controller_dark"}
    )

    await clear(sim)
    await wait_until(lambda: not active_alarms(driver, pushed()), timeout=5, what=f"{alarm} cleared")
    assert active_alarms(driver, {v.quantity: v for v in await driver.read()}) == set()


async def test_restart_mid_subscription_is_recovered_by_itself(
    sim: TrafficControllerSimulator, driver: OpcuaDriver, changes: Changes
) -> None:
    await sim.restart()
    made = time.monotonic()
    await sim.inject_dark()

    await wait_until(
        lambda: changes.arrived("mode", "dark", made) is not None, timeout=10, what="mode dark after restart"
    )
    await sim.clear_mode()
    await wait_until(
        lambda: changes.latest("mode") == PointValue("mode", "normal"), timeout=5, what="mode normal"
    )
    assert {v.quantity: v.value for v in await driver.read()}["mode"] == "normal"


async def test_read_after_a_restart_fails_once_then_reconnects(
    sim: TrafficControllerSimulator, driver: OpcuaDriver
) -> None:
    await sim.restart()

    async def readable() -> bool:
        try:
            await driver.read()
        except DriverError:
            return False
        return True

    await wait_until(readable, timeout=10, what="a read after the restart")


async def test_server_down_is_unreachable_within_the_timeout(tmp_path: Path) -> None:
    opcua = build(device(f"opc.tcp://127.0.0.1:{free_port()}", timeout_s=1.0), context(tmp_path))
    started = time.monotonic()

    with pytest.raises(DeviceUnreachable) as raised:
        await opcua.read()

    assert time.monotonic() - started <= 1.0 + SLACK_S
    assert raised.value.device == "tc1"
    await opcua.close()


def password_file(tmp_path: Path, password: str) -> str:
    path = tmp_path / "tc1.password"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path.name


async def test_wrong_password_is_one_clear_error_naming_device_and_fix(tmp_path: Path) -> None:
    async with TrafficControllerSimulator(tick_s=TICK_S, username="ops", password="right-one") as secured:
        wrong = device(secured.endpoint, username="ops", password_file=password_file(tmp_path, "wrong-one"))
        opcua = build(wrong, context(tmp_path))

        with pytest.raises(AccessDenied) as raised:
            await opcua.connect()

        for _ in range(5):  # the poll goes on: the controller is not asked again before the backoff delay
            with pytest.raises(AccessDenied):
                await opcua.read()
        assert secured.refused_logins == 1
        message = str(raised.value)
        assert message.startswith("tc1: ")
        assert (
            "'ops'" in message
            and "tc1.password" in message
            and "check the username and the password" in message
        )
        assert "wrong-one" not in message
        await opcua.close()


async def test_right_password_connects_and_anonymous_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # asyncua logs each request it sends at debug level
    async with TrafficControllerSimulator(tick_s=TICK_S, username="ops", password="right-one") as secured:
        right = build(
            device(secured.endpoint, username="ops", password_file=password_file(tmp_path, "right-one")),
            context(tmp_path),
        )
        await right.connect()
        assert {v.quantity: v.value for v in await right.read()}["mode"] == "normal"
        await right.close()
        assert "Sending: " in caplog.text
        assert "right-one" not in caplog.text and b"right-one".hex() not in caplog.text

        anonymous = build(device(secured.endpoint), context(tmp_path))
        with pytest.raises(AccessDenied, match=r"refuses anonymous sessions.*set username and password_file"):
            await anonymous.connect()
        await anonymous.close()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (ua.Variant("flashing", ua.VariantType.String), "wrong_type: expected int, got str"),
        (ua.Variant(7, ua.VariantType.Int32), "enum_out_of_range: 7 is none of [0, 1, 2, 3]"),
    ],
)
async def test_malformed_node_value_gives_that_point_bad_quality(
    sim: TrafficControllerSimulator, driver: OpcuaDriver, raw: ua.Variant, reason: str
) -> None:
    await sim.set_raw("Controller.Mode", raw)

    values = {v.quantity: v for v in await driver.read()}

    assert values["mode"] == PointValue("mode", None, Quality.BAD, reason)
    assert values["mode_dark"].quality == Quality.BAD
    others = [v for name, v in values.items() if name not in ("mode", "mode_dark")]
    assert all(v.quality == Quality.GOOD for v in others)


async def test_malformed_pushed_value_gives_bad_quality(
    sim: TrafficControllerSimulator, changes: Changes
) -> None:
    await sim.set_raw("Detector1.Fault", ua.Variant(3, ua.VariantType.Int32))

    bad = PointValue("d1_fault", None, Quality.BAD, "wrong_type: expected bool, got int")
    await wait_until(lambda: changes.latest("d1_fault") == bad, timeout=5, what="d1_fault pushed as bad")


async def test_write_requested_plan_is_read_back_and_taken(
    sim: TrafficControllerSimulator, driver: OpcuaDriver
) -> None:
    await driver.write("requested_plan", 3)

    assert {v.quantity: v.value for v in await driver.read()}["requested_plan"] == 3
    await wait_until(lambda: sim.plan.number == 3, timeout=10, what="plan 3 at the next cycle start")


@pytest.mark.parametrize(
    ("quantity", "value", "says"),
    [
        ("requested_plan", 9, "requested_plan takes 0.0..8.0, got 9"),
        ("requested_plan", True, "requested_plan takes a number"),
        ("mode", 1, "mode is not writable"),
        ("nothing", 1, "has no point 'nothing'"),
    ],
)
async def test_write_refused_before_the_controller(
    driver: OpcuaDriver, quantity: str, value: int | bool, says: str
) -> None:
    with pytest.raises(WriteRejected, match=says):
        await driver.write(quantity, value)


async def test_close_ends_changes(sim: TrafficControllerSimulator, driver: OpcuaDriver) -> None:
    ended = asyncio.Event()

    async def consume() -> None:
        async for _ in driver.changes():
            pass
        ended.set()

    task = asyncio.create_task(consume())
    await driver.close()
    await wait_until(ended.is_set, timeout=5, what="changes() to end after close")
    await task


@pytest.fixture
async def secured_sim(tmp_path: Path) -> AsyncIterator[TrafficControllerSimulator]:
    cert, key = await make_certificate(tmp_path, "controller", APPLICATION_URI, server=True)
    async with TrafficControllerSimulator(
        tick_s=TICK_S, username="ops", password="right-one", certificate=cert, private_key=key
    ) as simulator:
        yield simulator


@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
async def test_secured_channel_with_certificate_and_password(
    secured_sim: TrafficControllerSimulator, tmp_path: Path, mode: str
) -> None:
    cert, key = await make_certificate(tmp_path, "agent", "urn:cityedge:edge-agent:tc1", server=False)
    secured = device(
        secured_sim.endpoint,
        security_policy="Basic256Sha256",
        security_mode=mode,
        certificate=cert.name,
        private_key=key.name,
        server_certificate="controller.der",
        username="ops",
        password_file=password_file(tmp_path, "right-one"),
    )
    opcua = build(secured, context(tmp_path))
    await opcua.connect()
    collected = Changes(opcua)
    try:
        await secured_sim.inject_flashing()
        await wait_until(
            lambda: collected.latest("mode") == PointValue("mode", "flashing"), timeout=5, what="flashing"
        )
        assert {v.quantity: v.value for v in await opcua.read()}["mode"] == "flashing"
    finally:
        await collected.stop()
        await opcua.close()


async def test_unsecured_client_is_refused_by_a_secured_controller(
    secured_sim: TrafficControllerSimulator, tmp_path: Path
) -> None:
    plain = device(secured_sim.endpoint, username="ops", password_file=password_file(tmp_path, "right-one"))
    opcua = build(plain, context(tmp_path))

    with pytest.raises(DriverError) as raised:
        await opcua.connect()

    assert isinstance(raised.value, SecurityRejected), raised.value
    assert "no endpoint with security_policy 'None' and security_mode 'None'" in str(raised.value)
    await opcua.close()


def test_unreadable_certificate_is_refused_at_build(tmp_path: Path) -> None:
    (tmp_path / "agent.der").write_bytes(b"not a certificate")
    (tmp_path / "agent.pem").write_bytes(b"not a key")
    (tmp_path / "agent.pem").chmod(0o600)
    secured = device(
        "opc.tcp://127.0.0.1:4840",
        security_policy="Basic256Sha256",
        security_mode="Sign",
        certificate="agent.der",
        private_key="agent.pem",
    )
    with pytest.raises(BuildError, match=r"^certificate: agent.der is no X.509 certificate"):
        build(secured, context(tmp_path))


async def test_private_key_readable_by_others_is_refused_at_build(tmp_path: Path) -> None:
    await make_certificate(tmp_path, "agent", "urn:cityedge:edge-agent:tc1", server=False)
    (tmp_path / "agent.pem").chmod(0o644)
    secured = device(
        "opc.tcp://127.0.0.1:4840",
        security_policy="Basic256Sha256",
        security_mode="Sign",
        certificate="agent.der",
        private_key="agent.pem",
    )
    with pytest.raises(BuildError, match=r"^private_key: .*agent.pem: other users can read it \(mode 0644\)"):
        build(secured, context(tmp_path))


async def test_controller_down_for_a_while_is_resubscribed_when_back(
    sim: TrafficControllerSimulator, driver: OpcuaDriver, changes: Changes
) -> None:
    await sim.stop()
    for _ in range(3):  # the poll sees it, while changes() keeps trying with backoff
        with pytest.raises(DeviceUnreachable):
            await driver.read()

    await sim.start()
    made = time.monotonic()
    await sim.set_fault(True)

    await wait_until(
        lambda: changes.arrived("fault", True, made) is not None, timeout=10, what="fault after the outage"
    )


def test_registry_resolves_the_opcua_driver() -> None:
    assert registry.config_model("opcua") is OpcuaDevice
    assert registry.builder("opcua") is build


async def test_a_controller_that_never_answers_times_out_within_the_timeout(tmp_path: Path) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accepts the connection and answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    opcua = build(device(f"opc.tcp://127.0.0.1:{port}", timeout_s=0.5), context(tmp_path))
    try:
        started = time.monotonic()
        with pytest.raises(DeviceTimeout, match=r"tc1: no answer within 0.5 s while connecting"):
            await opcua.connect()
        assert time.monotonic() - started <= 0.5 + SLACK_S
        assert accepted, "the client never reached the silent server"
    finally:
        await opcua.close()
        for writer in accepted:
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()


async def test_status_codes_of_the_controller_give_bad_or_uncertain_quality(
    sim: TrafficControllerSimulator, driver: OpcuaDriver
) -> None:
    await sim.set_status("Detector3.Fault", StatusCodes.BadSensorFailure)
    await sim.set_status("Detector3.Occupancy", StatusCodes.UncertainLastUsableValue)

    values = {v.quantity: v for v in await driver.read()}
    assert values["d3_fault"] == PointValue("d3_fault", None, Quality.BAD, "status_BadSensorFailure")
    occupancy = values["d3_occupancy_pct"]
    assert (occupancy.quality, occupancy.reason) == (Quality.UNCERTAIN, "status_UncertainLastUsableValue")
    assert isinstance(occupancy.value, float)
    assert values["d2_fault"] == PointValue("d2_fault", False)

    await sim.set_status("Detector3.Fault", None)
    await sim.set_status("Detector3.Occupancy", None)
    values = {v.quantity: v for v in await driver.read()}
    assert values["d3_fault"] == PointValue("d3_fault", False)
    assert values["d3_occupancy_pct"].quality == Quality.GOOD


async def test_phases_follow_the_cycle_and_red_queues_occupy_the_loops(driver: OpcuaDriver) -> None:
    phases: set[object] = set()
    queued: set[float] = set()

    async def seen_every_phase() -> bool:
        values = {v.quantity: v.value for v in await driver.read()}
        phases.add(values["phase"])
        # Phase 3 is the other approach's green, after an intergreen: detector 1's approach has been on
        # red for a while (even a read between two of the simulator's writes sees red values).
        if values["phase"] == 3:
            occupancy = values["d1_occupancy_pct"]
            assert isinstance(occupancy, float)
            queued.add(occupancy)
        return phases >= {1, 2, 3, 4}

    await wait_until(seen_every_phase, timeout=15, what="phases 1 to 4")
    assert phases <= {1, 2, 3, 4}
    assert queued and min(queued) >= 55.0


async def test_changes_has_one_consumer_at_a_time(driver: OpcuaDriver, changes: Changes) -> None:
    second = driver.changes()
    with pytest.raises(RuntimeError, match="tc1: changes\\(\\) is already being iterated"):
        await anext(second)
