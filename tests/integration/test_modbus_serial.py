"""Modbus RTU over real pseudo-terminals (socat): drivers sharing one line, a bus of simulators."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from protocols.driver import FieldDriver
from protocols.errors import DeviceException, DeviceTimeout, DeviceUnreachable, DriverError, WriteRejected
from protocols.modbus.bus_simulator import Fault, SerialBusSimulator
from protocols.modbus.profile import Profile, default_profile_dirs, load_profile
from protocols.modbus.pty_pair import PtyPair
from protocols.modbus.rtu import CorruptFrame
from protocols.modbus.rtu_driver import ModbusRtuDriver
from protocols.modbus.scheduling import BackoffPolicy
from protocols.modbus.serial_line import SerialLine
from protocols.modbus.simulator import LightingControllerSimulator
from protocols.testing import wait_until

pytestmark = pytest.mark.integration

CIRCUIT_W = 1500.0


@pytest.fixture
def single() -> Profile:
    return load_profile("lighting-single-circuit", default_profile_dirs())


@pytest.fixture
def cabinet() -> Profile:
    return load_profile("lighting-cabinet-3phase", default_profile_dirs())


@pytest.fixture
async def pty(tmp_path: Path) -> AsyncIterator[PtyPair]:
    async with PtyPair(tmp_path) as pair:
        yield pair


async def values(driver: FieldDriver) -> dict[str, Any]:
    return {value.quantity: value.value for value in await driver.read()}


def reads_ok(driver: FieldDriver) -> Callable[[], Awaitable[bool]]:
    async def condition() -> bool:
        try:
            await driver.read()
        except DriverError:
            return False
        return True

    return condition


async def test_reads_and_writes_units_on_one_line(pty: PtyPair, single: Profile, cabinet: Profile) -> None:
    units = {
        1: LightingControllerSimulator(profile=single, seed=1),
        7: LightingControllerSimulator(profile=cabinet, seed=2, nominal_power_w=CIRCUIT_W),
    }
    async with (
        SerialBusSimulator(port=pty.server_path, units=units, baudrate=19_200) as bus,
        SerialLine(port=pty.client_path, baudrate=19_200) as line,
    ):
        lamp = ModbusRtuDriver(device="lc1", line=line, unit=1, profile=single, timeout=0.3)
        box = ModbusRtuDriver(device="cab1", line=line, unit=7, profile=cabinet, timeout=0.3)
        assert [v.quantity for v in await lamp.read()] == list(single.quantities)
        await lamp.write("relay", True)
        await lamp.write("dim_level_pct", 60)
        got = await values(lamp)
        assert (got["relay"], got["dim_level_pct"]) == (True, 60)
        assert got["power_w"] == pytest.approx(0.6 * 150.0, rel=0.03)
        assert units[1].relay_on

        for circuit in (1, 2, 4):  # c1 and c4 on L1, c2 on L2, c3 (off) on L3
            await box.write(f"relay_c{circuit}", True)
        await box.write("dim_level_c4_pct", 50)
        got = await values(box)
        assert got["power_l1_w"] == pytest.approx(1.5 * CIRCUIT_W, rel=0.03)
        assert got["power_l2_w"] == pytest.approx(CIRCUIT_W, rel=0.03)
        assert got["power_l3_w"] == 0.0
        assert got["power_w"] == pytest.approx(got["power_l1_w"] + got["power_l2_w"], rel=1e-4)
        for phase in (1, 2):
            assert 225 <= got[f"voltage_l{phase}_v"] <= 235
            assert 0.9 <= got[f"power_factor_l{phase}"] <= 1.0
            expected_a = got[f"power_l{phase}_w"] / got[f"voltage_l{phase}_v"] / got[f"power_factor_l{phase}"]
            assert got[f"current_l{phase}_a"] == pytest.approx(expected_a, abs=0.02)
        assert (got["current_l3_a"], got["power_factor_l3"]) == (0.0, 1.0)
        assert got["frequency_hz"] == pytest.approx(50.0, abs=0.1)

        units[7].inject_lamp_failure(True, circuit=2)
        units[7].set_door_open(True)
        got = await values(box)
        assert (got["lamp_failure_c2"], got["lamp_failure_c1"], got["door_open"]) == (True, False, True)
        assert got["power_l2_w"] == 0.0

        with pytest.raises(WriteRejected, match="out of range"):
            await box.write("dim_level_c1_pct", 120)
        units[7].inject_exception(6)
        with pytest.raises(DeviceException) as caught:
            await box.read()
        assert caught.value.code == 6
        units[7].inject_exception(None)
        assert len(await box.read()) == len(cabinet.quantities)
        assert not line.health(7).failing  # an exception is an answer: no backoff

        assert bus.stats.ignored == 0
        assert line.stats.opens == 1  # the port stayed open across every read
        await lamp.close()
        await box.close()
        assert not line.is_open


async def test_energy_counter_with_little_word_order_grows(pty: PtyPair, cabinet: Profile) -> None:
    # One real second is one simulated hour.
    sim = LightingControllerSimulator(
        profile=cabinet, nominal_power_w=CIRCUIT_W, clock=lambda: 3600 * time.monotonic()
    )
    async with (
        SerialBusSimulator(port=pty.server_path, units={3: sim}) as _bus,
        SerialLine(port=pty.client_path) as line,
        ModbusRtuDriver(device="cab", line=line, unit=3, profile=cabinet, timeout=0.3) as box,
    ):
        sim.set_point("energy_wh", 70_000)  # above 2^16: both words matter
        await box.write("relay_c3", True)
        start = (await values(box))["energy_wh"]
        assert start >= 70_000

        async def grew() -> bool:
            return bool((await values(box))["energy_wh"] > start + CIRCUIT_W / 10)

        await wait_until(grew)


@dataclass
class Poller:
    """Polls one driver like the agent's poller: on a fixed schedule, skipping slots it overran."""

    driver: ModbusRtuDriver
    interval: float
    good: int = 0
    errors: list[DriverError] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)

    async def run(self, *, until: float) -> None:
        next_poll = time.monotonic()
        while next_poll < until:
            started = time.monotonic()
            try:
                await self.driver.read()
                self.good += 1
            except DriverError as exc:
                self.errors.append(exc)
            self.durations.append(time.monotonic() - started)
            next_poll += self.interval
            now = time.monotonic()
            next_poll = max(next_poll, now)  # overran: the slot is lost, as in the agent
            await asyncio.sleep(next_poll - now)


async def poll_together(pollers: Mapping[str, Poller], seconds: float) -> float:
    """Run every poller for ``seconds``, each in its own task; returns the window's length."""
    until = time.monotonic() + seconds
    async with asyncio.TaskGroup() as group:
        for name, poller in pollers.items():
            group.create_task(poller.run(until=until), name=f"poll {name}")
    return seconds


async def test_dead_and_corrupt_neighbours_do_not_slow_a_healthy_unit(
    pty: PtyPair, single: Profile, cabinet: Profile
) -> None:
    """THE line-sharing requirement, on a 9,600 baud line with 0.2 s timeouts.

    The healthy unit is a 3-phase cabinet controller: 4 transactions, ~0.15 s of line time per read.
    Its neighbours are one unit that never answers and one whose answers fail their CRC. Every unit
    is polled every 0.3 s, the faulty ones first at each tick (the worst order for the healthy one).
    One read plus a dead neighbour's timeout does not fit in 0.3 s: without the line's backoff and
    fair order the healthy unit's rate drops to ~80 %; with either of them it stays at ~100 %.
    """
    interval, timeout, window = 0.3, 0.2, 6.0  # 20 polls per window
    baud = 9_600
    sims = {
        1: LightingControllerSimulator(profile=cabinet, seed=1, nominal_power_w=CIRCUIT_W),
        2: LightingControllerSimulator(profile=single, seed=2),
        3: LightingControllerSimulator(profile=single, seed=3),
    }
    backoff = BackoffPolicy(after_failures=2, initial_s=1.0, max_s=4.0)
    async with (
        SerialBusSimulator(port=pty.server_path, units=sims, baudrate=baud, seed=4) as bus,
        SerialLine(port=pty.client_path, baudrate=baud, backoff=backoff, seed=5) as line,
    ):
        healthy = ModbusRtuDriver(device="cab1", line=line, unit=1, profile=cabinet, timeout=timeout)
        dead = ModbusRtuDriver(device="lc2", line=line, unit=2, profile=single, timeout=timeout)
        corrupt = ModbusRtuDriver(device="lc3", line=line, unit=3, profile=single, timeout=timeout)
        for driver in (healthy, dead, corrupt):
            await driver.read()  # everyone answers to begin with

        alone = Poller(healthy, interval)
        await poll_together({"cab1": alone}, window)
        assert alone.errors == []
        rate_alone = alone.good / window

        bus.set_fault(2, Fault.DEAD)
        bus.set_fault(3, Fault.BAD_CRC)
        pollers = {
            "lc2": Poller(dead, interval),
            "lc3": Poller(corrupt, interval),
            "cab1": Poller(healthy, interval),
        }
        before = {unit: (line.health(unit).attempts, line.health(unit).busy_s) for unit in (2, 3)}
        await poll_together(pollers, window)
        with_neighbours = pollers["cab1"]
        rate_with = with_neighbours.good / window
        print(
            f"\nhealthy unit: {rate_alone:.3f} polls/s alone, {rate_with:.3f} with a dead and a corrupt"
            f" neighbour (ratio {rate_with / rate_alone:.3f}); slowest read {max(alone.durations):.3f}s"
            f" alone, {max(with_neighbours.durations):.3f}s with; {line.stats};"
            f" {[line.health(unit) for unit in (1, 2, 3)]}"
        )

        assert with_neighbours.errors == []
        assert rate_alone == pytest.approx(1 / interval, rel=0.05)
        assert rate_with >= 0.9 * rate_alone
        # A healthy read waits for at most one failing transaction.
        assert max(with_neighbours.durations) < max(alone.durations) + timeout + 0.1

        dead_errors, corrupt_errors = pollers["lc2"].errors, pollers["lc3"].errors
        assert len(dead_errors) == len(pollers["lc2"].durations)  # every poll of it failed...
        assert all(type(error) is DeviceTimeout for error in dead_errors)  # ...as a timeout
        assert len(corrupt_errors) == len(pollers["lc3"].durations)
        assert all(isinstance(error, CorruptFrame) and "CRC" in error.problem for error in corrupt_errors)
        assert corrupt_errors[0].reason == "corrupt_frame"
        assert "lc3" in str(corrupt_errors[0]) and "corrupt answer" in str(corrupt_errors[0])
        # Backoff: the faulty units were put on the line a handful of times, not at every poll...
        held = {}
        for unit, name in ((2, "lc2"), (3, "lc3")):
            attempts = line.health(unit).attempts - before[unit][0]
            assert 2 <= attempts <= 6 < len(pollers[name].durations)
            held[unit] = (line.health(unit).busy_s - before[unit][1]) / attempts
        # ...each attempt holding it for its own timeout at most, a corrupt one failed early.
        assert timeout <= held[2] < timeout + 0.05
        assert held[3] < timeout / 2

        bus.set_fault(2, None)
        bus.set_fault(3, None)
        for driver in (healthy, dead, corrupt):
            await wait_until(reads_ok(driver), timeout=backoff.max_s + 3)
        assert not any(line.health(unit).failing for unit in (1, 2, 3))


async def test_garbage_never_poisons_the_next_units_transaction(pty: PtyPair, single: Profile) -> None:
    sims = {unit: LightingControllerSimulator(profile=single, seed=unit) for unit in (1, 2)}
    never_back_off = BackoffPolicy(after_failures=1_000_000)
    async with (
        SerialBusSimulator(port=pty.server_path, units=sims, seed=9) as bus,
        SerialLine(port=pty.client_path, backoff=never_back_off) as line,
    ):
        good = ModbusRtuDriver(device="lc1", line=line, unit=1, profile=single, timeout=0.3)
        babbling = ModbusRtuDriver(device="lc2", line=line, unit=2, profile=single, timeout=0.3)
        bus.set_fault(2, Fault.GARBAGE)
        for _ in range(10):
            with pytest.raises(CorruptFrame) as caught:
                await babbling.read()
            assert "expected 2" in caught.value.problem
            assert len(await good.read()) == len(single.quantities)  # right after: clean
        assert line.stats.corrupt == 10
        assert line.stats.resyncs >= 10


async def test_late_answer_is_skipped_not_taken_for_the_next_one(pty: PtyPair, single: Profile) -> None:
    sims = {unit: LightingControllerSimulator(profile=single, seed=unit) for unit in (1, 2)}
    async with (
        SerialBusSimulator(port=pty.server_path, units=sims, late_s=0.15) as bus,
        SerialLine(port=pty.client_path) as line,
    ):
        good = ModbusRtuDriver(device="lc1", line=line, unit=1, profile=single, timeout=0.5)
        slow = ModbusRtuDriver(device="lc2", line=line, unit=2, profile=single, timeout=0.1)
        await good.write("dim_level_pct", 30)
        bus.set_fault(2, Fault.LATE)
        with pytest.raises(DeviceTimeout):
            await slow.read()
        got = await values(good)  # unit 2's answer arrives during this read
        assert got["dim_level_pct"] == 30
        assert line.stats.stale_frames == 1


async def test_port_that_cannot_be_opened_is_unreachable_with_the_fix(
    tmp_path: Path, single: Profile
) -> None:
    missing = tmp_path / "ttyUSB9"
    async with SerialLine(port=missing) as line:
        driver = ModbusRtuDriver(device="lc1", line=line, unit=1, profile=single)
        with pytest.raises(DeviceUnreachable) as caught:
            await driver.read()
        assert caught.value.device == "lc1"
        assert str(missing) in caught.value.detail and "no such device" in caught.value.detail
        with pytest.raises(DeviceUnreachable, match="no such device"):
            await driver.connect()  # within reopen_after_s: refused without trying again
        assert line.stats.open_failures == 1

    not_a_tty = tmp_path / "notes.txt"
    not_a_tty.write_text("hello")
    async with SerialLine(port=not_a_tty) as line:
        with pytest.raises(DeviceUnreachable, match="not a serial device"):
            await line.open(device="lc1")


async def test_refused_line_settings_are_explained_and_leave_the_port_free(pty: PtyPair) -> None:
    # A pty refuses parity: the error says so, and the half-opened port is not left locked.
    async with SerialLine(port=pty.client_path, parity="E", reopen_after_s=0.0) as line:
        for _ in range(2):
            with pytest.raises(DeviceUnreachable, match=r"it refuses 19200 8E1"):
                await line.open(device="lc1")
    async with SerialLine(port=pty.client_path, parity="N") as line:
        await line.open(device="lc1")
        assert line.is_open


async def test_line_reopens_after_the_port_went_away(pty: PtyPair, single: Profile) -> None:
    sims = {1: LightingControllerSimulator(profile=single, seed=1)}
    bus = SerialBusSimulator(port=pty.server_path, units=sims)
    async with (
        bus,
        SerialLine(port=pty.client_path, reopen_after_s=0.1) as line,
        ModbusRtuDriver(device="lc1", line=line, unit=1, profile=single, timeout=0.3) as driver,
    ):
        await driver.write("relay", True)
        await bus.stop()
        await pty.stop()  # the USB adapter is pulled out
        started = time.monotonic()
        with pytest.raises(DeviceUnreachable):
            await driver.read()
        assert time.monotonic() - started < 0.3
        await pty.start()  # plugged back in, under the same name
        await bus.start()
        await wait_until(reads_ok(driver))
        assert (await values(driver))["relay"] is True
        assert line.stats.opens == 2


async def test_many_lines_in_one_loop_are_independent(tmp_path: Path, single: Profile) -> None:
    async with (
        PtyPair(tmp_path, name="east") as east,
        PtyPair(tmp_path, name="west") as west,
        SerialBusSimulator(
            port=east.server_path, units={1: LightingControllerSimulator(profile=single)}, paced=False
        ),
        SerialBusSimulator(
            port=west.server_path, units={1: LightingControllerSimulator(profile=single)}, paced=False
        ),
        SerialLine(port=east.client_path) as east_line,
        SerialLine(port=west.client_path) as west_line,
    ):
        east_driver = ModbusRtuDriver(device="e1", line=east_line, unit=1, profile=single)
        west_driver = ModbusRtuDriver(device="w1", line=west_line, unit=1, profile=single)
        await east_driver.write("dim_level_pct", 10)
        a, b = await asyncio.gather(values(east_driver), values(west_driver))
        assert (a["dim_level_pct"], b["dim_level_pct"]) == (10, 100)
