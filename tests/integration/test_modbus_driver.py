"""The Modbus TCP driver against the lighting-controller simulator, over real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from protocols.driver import FieldDriver, PointValue
from protocols.errors import DeviceException, DeviceTimeout, DeviceUnreachable, WriteRejected
from protocols.modbus.client import ModbusTcpDriver
from protocols.modbus.profile import Profile, default_profile_dirs, load_profile, parse_profile
from protocols.modbus.simulator import LightingControllerSimulator
from protocols.quality import Quality
from protocols.testing import wait_until

pytestmark = pytest.mark.integration

NOMINAL_W = 150.0


class FakeClock:
    """A clock the test moves by hand: hours of simulated time in no time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def profile() -> Profile:
    return load_profile("lighting-single-circuit", default_profile_dirs())


@pytest.fixture
async def sim(profile: Profile) -> AsyncIterator[LightingControllerSimulator]:
    async with LightingControllerSimulator(profile=profile, seed=7) as simulator:
        yield simulator


def make_driver(
    sim: LightingControllerSimulator, timeout: float = 1.0, profile: Profile | None = None
) -> ModbusTcpDriver:
    return ModbusTcpDriver(
        device="lc1",
        host=sim.host,
        port=sim.port,
        unit=sim.unit,
        profile=profile or sim.profile,
        timeout=timeout,
    )


@pytest.fixture
async def driver(sim: LightingControllerSimulator) -> AsyncIterator[ModbusTcpDriver]:
    async with make_driver(sim) as field_driver:
        yield field_driver


async def read(driver: FieldDriver) -> dict[str, PointValue]:
    return {value.quantity: value for value in await driver.read()}


async def values(driver: FieldDriver) -> dict[str, Any]:
    return {quantity: value.value for quantity, value in (await read(driver)).items()}


async def test_reads_every_point_in_profile_order(
    sim: LightingControllerSimulator, driver: ModbusTcpDriver, profile: Profile
) -> None:
    readings = await driver.read()
    assert [r.quantity for r in readings] == list(profile.quantities)
    assert all(r.quality is Quality.GOOD and r.reason is None for r in readings)
    got = await values(driver)
    assert got["relay"] is False
    assert got["dim_level_pct"] == 100
    assert got["power_w"] == 0.0
    assert 220 <= got["voltage_v"] <= 240
    assert got["lamp_failure"] is False
    assert got["door_open"] is False
    assert driver.requests_per_read == 4  # one per table


async def test_power_follows_relay_and_dim_level(
    sim: LightingControllerSimulator, driver: ModbusTcpDriver
) -> None:
    await driver.write("relay", True)
    assert sim.relay_on
    got = await values(driver)
    assert got["power_w"] == pytest.approx(NOMINAL_W, rel=0.03)
    assert got["current_a"] == pytest.approx(got["power_w"] / got["voltage_v"], abs=0.011)

    await driver.write("dim_level_pct", 40)
    assert sim.dim_level == 40
    got = await values(driver)
    assert got["dim_level_pct"] == 40
    assert got["power_w"] == pytest.approx(0.4 * NOMINAL_W, rel=0.03)

    await driver.write("relay", False)
    got = await values(driver)
    assert (got["relay"], got["power_w"], got["current_a"]) == (False, 0.0, 0.0)


async def test_energy_is_the_integral_of_power(profile: Profile) -> None:
    clock = FakeClock()
    async with (
        LightingControllerSimulator(profile=profile, clock=clock) as sim,
        make_driver(sim) as driver,
    ):
        await driver.write("relay", True)
        clock.now += 3600
        assert (await values(driver))["energy_wh"] == 150
        await driver.write("dim_level_pct", 50)
        clock.now += 1800
        assert (await values(driver))["energy_wh"] == 150 + 37
        await driver.write("relay", False)
        clock.now += 3600
        assert (await values(driver))["energy_wh"] == 187


async def test_energy_counter_grows_while_lit(profile: Profile) -> None:
    # One real second is one simulated hour, so the Wh counter visibly moves within the timeout.
    def fast_clock() -> float:
        return 3600 * time.monotonic()

    async with (
        LightingControllerSimulator(profile=profile, clock=fast_clock) as sim,
        make_driver(sim) as driver,
    ):
        await driver.write("relay", True)
        start = (await values(driver))["energy_wh"]
        assert isinstance(start, int)

        async def grew() -> bool:
            return bool((await values(driver))["energy_wh"] > start)

        await wait_until(grew)


async def test_lamp_failure_and_door_are_visible(
    sim: LightingControllerSimulator, driver: ModbusTcpDriver
) -> None:
    await driver.write("relay", True)
    sim.inject_lamp_failure(True)
    sim.set_door_open(True)
    got = await values(driver)
    assert got["lamp_failure"] is True
    assert got["door_open"] is True
    assert got["power_w"] < 1.0
    sim.inject_lamp_failure(False)
    sim.set_door_open(False)
    got = await values(driver)
    assert (got["lamp_failure"], got["door_open"]) == (False, False)
    assert got["power_w"] == pytest.approx(NOMINAL_W, rel=0.03)


async def test_writes_refused_before_reaching_the_device(
    sim: LightingControllerSimulator, driver: ModbusTcpDriver
) -> None:
    with pytest.raises(WriteRejected, match="power_w: point is not writable"):
        await driver.write("power_w", 10.0)
    with pytest.raises(WriteRejected, match="dim_level_pct: 150 is out of range"):
        await driver.write("dim_level_pct", 150)
    with pytest.raises(WriteRejected, match="no_such_point: no such point"):
        await driver.write("no_such_point", 1)
    assert sim.dim_level == 100


async def test_device_refusing_a_write_is_a_device_exception(
    sim: LightingControllerSimulator, profile: Profile
) -> None:
    # This driver's profile forgot the 0..100 limit; the controller itself refuses 150.
    lax = parse_profile(profile_text().replace("min = 0\nmax = 100\n", ""), "lax.toml")
    async with make_driver(sim, profile=lax) as driver:
        with pytest.raises(DeviceException) as caught:
            await driver.write("dim_level_pct", 150)
        assert caught.value.code == 3  # illegal data value
        await driver.write("dim_level_pct", 30)  # the connection is still good
    assert sim.dim_level == 30


async def test_write_that_does_not_read_back_is_rejected() -> None:
    # A (bad) controller that accepts writes to its power register but keeps measuring into it.
    odd = parse_profile(
        """
        [profile]
        name = "odd-meter"
        description = "Accepts writes to a measured register"

        [[points]]
        name = "power_w"
        table = "holding"
        address = 0
        type = "float32"
        writable = true
        """,
        "odd-meter.toml",
    )
    async with LightingControllerSimulator(profile=odd) as sim, make_driver(sim) as driver:
        with pytest.raises(WriteRejected, match=r"power_w: wrote 42\.0, read back 1[45]\d\."):
            await driver.write("power_w", 42.0)


async def test_undecodable_point_is_bad_and_the_rest_good(profile: Profile) -> None:
    extended = parse_profile(
        profile_text()
        + '\n[[points]]\nname = "temperature_c"\ntable = "input"\naddress = 6\ntype = "float32"\n',
        "extended.toml",
    )
    async with LightingControllerSimulator(profile=extended) as sim, make_driver(sim) as driver:
        sim.set_raw("temperature_c", [0x7FC0, 0x0000])  # NaN
        got = await read(driver)
        assert got["temperature_c"].quality is Quality.BAD
        assert got["temperature_c"].value is None
        assert "finite" in (got["temperature_c"].reason or "")
        assert got["voltage_v"].quality is Quality.GOOD
        sim.set_point("temperature_c", 21.5)
        assert (await values(driver))["temperature_c"] == 21.5


async def test_a_value_outside_its_plausible_range_is_bad_and_kept(profile: Profile) -> None:
    """231.5 V stored CDAB, read ABCD (a wrong profile), is -2.4e-41 V: flagged, not good."""
    point = '\n[[points]]\nname = "supply_v"\ntable = "input"\naddress = 6\ntype = "float32"\n'
    device = parse_profile(profile_text() + point + 'word_order = "CDAB"\n', "device.toml")
    wrong = parse_profile(profile_text() + point + "plausible = [180, 260]\n", "wrong.toml")
    async with LightingControllerSimulator(profile=device) as sim, make_driver(sim, profile=wrong) as driver:
        sim.set_point("supply_v", 231.5)
        got = await read(driver)
        assert got["supply_v"] == PointValue("supply_v", -2.41794e-41, Quality.BAD, "implausible")
        assert got["voltage_v"].quality is Quality.GOOD
        sim.set_raw("supply_v", [0x4367, 0x8000])  # 231.5 as the wrong profile expects it
        assert (await read(driver))["supply_v"] == PointValue("supply_v", 231.5)


async def test_an_on_off_output_in_a_holding_register_is_written_1_and_0() -> None:
    profile = load_profile("lighting-register-relay", default_profile_dirs())
    async with LightingControllerSimulator(profile=profile) as sim, make_driver(sim) as driver:
        await driver.write("relay", True)
        assert sim.relay_on
        assert (await values(driver))["relay"] is True
        await driver.write("relay", False)
        assert not sim.relay_on
        sim.set_raw("relay", [0xFF00])  # any nonzero register reads true
        assert (await values(driver))["relay"] is True
        with pytest.raises(WriteRejected, match="relay: expected true or false"):
            await driver.write("relay", 2)


async def test_exception_response_keeps_the_connection(
    sim: LightingControllerSimulator, driver: ModbusTcpDriver
) -> None:
    sim.inject_exception(6)
    with pytest.raises(DeviceException) as caught:
        await driver.read()
    assert caught.value.code == 6
    assert caught.value.reason == "exception"
    sim.inject_exception(None)
    assert len(await driver.read()) == len(driver.quantities)


async def test_stopped_device_is_unreachable_quickly_and_read_again_after_restart(
    sim: LightingControllerSimulator,
) -> None:
    async with make_driver(sim, timeout=2.0) as driver:
        await driver.write("relay", True)
        port = sim.port
        await sim.stop()
        for _ in range(2):  # the dropped connection, then a refused reconnect
            started = time.monotonic()
            with pytest.raises(DeviceUnreachable):
                await driver.read()
            assert time.monotonic() - started < 1.0
        await sim.start()
        assert sim.port == port
        got = await values(driver)
        assert got["relay"] is True  # the controller kept its state
        assert got["power_w"] == pytest.approx(NOMINAL_W, rel=0.03)


async def test_unresponsive_device_times_out_then_recovers(
    sim: LightingControllerSimulator,
) -> None:
    async with make_driver(sim, timeout=0.3) as driver:
        await driver.read()
        sim.set_unresponsive(True)
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(DeviceTimeout) as caught:
                await driver.read()
            assert 0.25 <= time.monotonic() - started < 0.8
            assert caught.value.reason == "timeout"
        sim.set_unresponsive(False)
        assert len(await driver.read()) == len(driver.quantities)


async def test_connect_to_nothing_is_unreachable(profile: Profile) -> None:
    sim = LightingControllerSimulator(profile=profile)
    async with sim:
        pass  # now sim.port is a port nobody listens on
    driver = make_driver(sim)
    with pytest.raises(DeviceUnreachable) as caught:
        await driver.connect()
    assert caught.value.device == "lc1"
    await driver.close()
    await driver.close()  # idempotent


async def test_two_simulators_in_one_loop_are_independent(profile: Profile) -> None:
    async with (
        LightingControllerSimulator(profile=profile, seed=1) as first,
        LightingControllerSimulator(profile=profile, seed=2) as second,
        make_driver(first) as first_driver,
        make_driver(second) as second_driver,
    ):
        assert first.port != second.port
        await first_driver.write("relay", True)
        await second_driver.write("dim_level_pct", 20)
        a, b = await asyncio.gather(values(first_driver), values(second_driver))
        assert (a["relay"], a["dim_level_pct"]) == (True, 100)
        assert (b["relay"], b["dim_level_pct"]) == (False, 20)
        assert (first.relay_on, second.relay_on) == (True, False)


async def test_a_hung_device_does_not_stall_another(profile: Profile) -> None:
    async with (
        LightingControllerSimulator(profile=profile) as hung,
        LightingControllerSimulator(profile=profile) as healthy,
        make_driver(hung, timeout=1.0) as hung_driver,
        make_driver(healthy, timeout=1.0) as healthy_driver,
    ):
        hung.set_unresponsive(True)
        hung_read = asyncio.create_task(hung_driver.read())
        started = time.monotonic()
        await healthy_driver.read()
        assert time.monotonic() - started < 0.5
        with pytest.raises(DeviceTimeout):
            await hung_read


def profile_text() -> str:
    return (default_profile_dirs()[0] / "lighting-single-circuit.toml").read_text()
