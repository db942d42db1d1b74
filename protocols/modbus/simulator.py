"""A street-lighting controller simulator: a real Modbus TCP server driven by a device profile.

It serves every point of the profile (over TCP itself; over RTU as one unit of a
``protocols.modbus.bus_simulator.SerialBusSimulator``). The quantities it knows, by name, behave like
the hardware; ``_cN`` names circuit N, ``_lN`` phase N (a profile without them has one of each):

    relay[_cN], dim_level[_cN]_pct   written by clients (or ``set_point``); start off and at 100 %
    lamp_failure[_cN]                set by ``inject_lamp_failure``; a failed circuit draws no power
    power_lN_w                       sum of the phase's circuits (circuit N is on phase ((N-1) mod 3)+1
                                     of a 3-phase profile): nominal power x dim level while the relay
                                     is on, with small noise
    voltage_lN_v, current_lN_a       ~230 V mains; current = power / (voltage x power factor)
    power_factor_lN                  ~0.95 with a load (1 without one, and 1 when the profile has no
                                     power-factor point at all, so that current = power / voltage)
    energy_lN_wh                     integral of the phase's power over the clock
    power_w, current_a, energy_wh    totals over the phases; voltage_v, power_factor: their mean
    frequency_hz                     ~50 Hz
    door_open                        set by ``set_door_open``

Integer types count energy rounded down. Any other point holds whatever was written or set, initially
0. Faults: ``set_unresponsive`` (answers nothing), ``inject_exception`` (every request refused),
``inject_write_fault`` (writes refused, to one point or after some writes, while reads answer).
Measurements are computed from the clock whenever a client reads, so an injected clock (``clock=``)
makes them deterministic and lets a test run hours of simulated time at once. Each instance owns all
of its state, so any number of them can serve from one event loop.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self, cast

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from protocols.modbus.codec import (
    BIT_TABLES,
    TABLES,
    Table,
    decode_point,
    encode_point,
    encode_registers,
    raw_range,
)
from protocols.modbus.profile import Point, Profile

_TABLE_OF_FUNCTION: Final[Mapping[int, Table]] = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    22: "holding",
    23: "holding",
    4: "input",
}
_WRITTEN_TABLE: Final[Mapping[int, Table]] = {5: "coil", 15: "coil", 6: "holding", 16: "holding"}
MAINS_VOLTAGE_V: Final = 230.0
MAINS_FREQUENCY_HZ: Final = 50.0
LOADED_POWER_FACTOR: Final = 0.95
_CIRCUIT_POINT: Final = re.compile(r"^(relay|dim_level|lamp_failure)(?:_c([0-9]+))?(?:_pct)?$")
_PHASE_POINT: Final = re.compile(r"^(voltage|current|power|power_factor|energy)_l([1-9])(?:_(?:v|a|w|wh))?$")
_TOTALS: Final = frozenset(
    {"power_w", "voltage_v", "current_a", "power_factor", "energy_wh", "frequency_hz", "door_open"}
)

_PduFilter = Callable[[bool, ModbusPDU], ModbusPDU]


@dataclass(frozen=True, slots=True)
class _Circuit:
    """The points of one lighting circuit (None where the profile has none)."""

    number: int
    phase: int
    relay: str | None = None
    dim: str | None = None
    lamp_failure: str | None = None


class LightingControllerSimulator:
    """``async with LightingControllerSimulator(profile=p) as sim:`` serves on ``sim.port``."""

    def __init__(
        self,
        *,
        profile: Profile,
        host: str = "127.0.0.1",
        port: int = 0,
        unit: int = 1,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
        nominal_power_w: float = 150.0,
    ) -> None:
        self.profile = profile
        self.host = host
        self.unit = unit
        self.nominal_power_w = nominal_power_w  # of each circuit
        self._port = port
        self._clock = clock
        self._rng = random.Random(seed)
        self._server: ModbusTcpServer | None = None
        # The register image is the device's memory; pymodbus's own copy is refreshed from it.
        self._size = {table: _table_size(profile, table) for table in TABLES}
        self._image: dict[Table, list[int]] = {t: [0] * n for t, n in self._size.items()}
        self.phases, self._circuits = _layout(profile)
        lamp_failures = {c.lamp_failure for c in self._circuits.values() if c.lamp_failure is not None}
        self._computed = frozenset(
            q for q in profile.quantities if q in _TOTALS or q in lamp_failures or _PHASE_POINT.match(q)
        )
        self._power_factor = (
            LOADED_POWER_FACTOR if any(q.startswith("power_factor") for q in profile.quantities) else 1.0
        )
        self._energy_wh = dict.fromkeys(self.phases, 0.0)
        self._energy_offset_wh = 0.0
        self._last_time = clock()
        self._lamp_failures: set[int] = set()
        self._door_open = False
        self._unresponsive = False
        self._exception: ExcCodes | None = None
        self._write_fault: _WriteFault | None = None
        for circuit in self._circuits.values():
            if circuit.dim is not None:
                self.set_point(circuit.dim, 100)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port; with ``port=0`` the one the OS picked, kept across stop/start."""
        return self._port

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (again) on ``host:port``. Device state survives a stop/start."""
        if self._server is not None:
            return
        server = ModbusTcpServer(
            self.sim_device(self.unit),
            address=(self.host, self._port),
            # Returning None for a received request drops it: see set_unresponsive.
            trace_pdu=cast(_PduFilter, self._filter_pdu),
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise OSError(f"simulator cannot listen on {self.host}:{self._port}") from exc
        listener = server.transport
        assert isinstance(listener, asyncio.Server)
        self._port = listener.sockets[0].getsockname()[1]
        self._server = server

    async def stop(self) -> None:
        """Stop listening and drop every client connection, like a controller losing power."""
        server, self._server = self._server, None
        if server is None:
            return
        await server.shutdown()  # type: ignore[no-untyped-call]  # unannotated in pymodbus
        # shutdown() closes the client connections from callbacks it schedules; let them run so
        # that every connection is closed on our side when stop() returns.
        await asyncio.sleep(0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def sim_device(self, unit: int) -> SimDevice:
        """This controller as pymodbus simulator device ``unit``, for a server to serve.

        The register image stays this object's: every request goes through its action hook.
        """
        return SimDevice(unit, simdata=self._simdata(), action=self._on_access)

    # -- state for assertions ---------------------------------------------------------------

    @property
    def circuits(self) -> tuple[int, ...]:
        return tuple(self._circuits)

    @property
    def relay_on(self) -> bool:
        """The first circuit's relay."""
        return self.circuit_on(self.circuits[0])

    @property
    def dim_level(self) -> float:
        """The first circuit's dim level."""
        return self.circuit_dim_level(self.circuits[0])

    def circuit_on(self, circuit: int) -> bool:
        relay = self._circuits[circuit].relay
        return True if relay is None else bool(self._value(relay, default=True))

    def circuit_dim_level(self, circuit: int) -> float:
        dim = self._circuits[circuit].dim
        return 100.0 if dim is None else float(self._value(dim, default=100))

    @property
    def energy_wh(self) -> float:
        """The exact energy counter (the registers hold it rounded down)."""
        self._advance()
        return self._energy_offset_wh + sum(self._energy_wh.values())

    @property
    def expected_power_w(self) -> float:
        """The total power without noise."""
        return sum(self.expected_phase_power_w(phase) for phase in self.phases)

    def expected_phase_power_w(self, phase: int) -> float:
        return sum(self._circuit_power_w(c) for c in self._circuits.values() if c.phase == phase)

    def _circuit_power_w(self, circuit: _Circuit) -> float:
        if not self.circuit_on(circuit.number) or circuit.number in self._lamp_failures:
            return 0.0
        return self.nominal_power_w * min(max(self.circuit_dim_level(circuit.number), 0.0), 100.0) / 100.0

    @property
    def unresponsive(self) -> bool:
        return self._unresponsive

    # -- faults and local actions -------------------------------------------------------------

    def inject_lamp_failure(self, on: bool, *, circuit: int | None = None) -> None:
        """A failed circuit (every circuit, by default) draws no power; its lamp-failure input follows."""
        self._advance()
        failed = set(self._circuits) if circuit is None else {self._circuits[circuit].number}
        if on:
            self._lamp_failures |= failed
        else:
            self._lamp_failures -= failed

    def set_door_open(self, is_open: bool) -> None:
        self._door_open = is_open

    def set_unresponsive(self, on: bool) -> None:
        """Keep connections open but answer nothing (a hung controller or a dead RS485 leg)."""
        self._unresponsive = on

    def inject_exception(self, code: int | None) -> None:
        """Answer every request with Modbus exception ``code`` (e.g. 6, busy); None to stop."""
        self._exception = None if code is None else ExcCodes(code)

    def inject_write_fault(
        self, quantity: str | None = None, *, code: int = 4, after_writes: int = 0, silent: bool = False
    ) -> None:
        """Refuse writes with Modbus exception ``code`` (4: device failure) while reads still answer:
        writes touching ``quantity`` (any point, when None), once ``after_writes`` more writes have
        been taken. E.g. ``inject_write_fault("relay")``: a dim takes its level, then fails on the
        relay; ``inject_write_fault(after_writes=1)``: one write is taken, every later one fails.
        ``silent``: such writes get no answer at all (over TCP), so the client cannot tell whether
        they were taken (they were not)."""
        point = None if quantity is None else self.profile.point(quantity)
        self._write_fault = _WriteFault(point, ExcCodes(code), after_writes, silent)

    def clear_write_fault(self) -> None:
        self._write_fault = None

    def set_point(self, quantity: str, value: float | bool) -> None:
        """Set a stored point locally (a manual override at the cabinet), or an energy counter."""
        point = self.profile.point(quantity)
        self._advance()
        if quantity == "energy_wh":
            self._energy_offset_wh = float(value) - sum(self._energy_wh.values())
            return
        if (match := _PHASE_POINT.match(quantity)) and match.group(1) == "energy":
            self._energy_wh[int(match.group(2))] = float(value)
            return
        if quantity in self._computed:
            raise ValueError(f"{quantity} is computed by the simulator; use the inject_* methods")
        self._store(point, encode_point(point, value))

    def set_raw(self, quantity: str, words: Sequence[int] | Sequence[bool]) -> None:
        """Put raw registers into a stored point, e.g. a NaN float32 the driver must flag as bad."""
        if quantity in self._computed:
            raise ValueError(f"{quantity} is computed by the simulator")
        point = self.profile.point(quantity)
        if len(words) != point.size:
            raise ValueError(f"{quantity} occupies {point.size} register(s), got {len(words)}")
        self._store(point, words)

    # -- the device's behaviour -------------------------------------------------------------

    def _value(self, quantity: str, *, default: float) -> float | int | bool:
        point = self.profile.point(quantity)
        try:
            return decode_point(point, self._image[point.table][point.address : point.end])
        except ValueError:
            return default

    def _store(self, point: Point, words: Sequence[int] | Sequence[bool]) -> None:
        self._image[point.table][point.address : point.end] = [int(w) for w in words]

    def _advance(self) -> None:
        """Integrate the energy counters up to now with the state that held since the last call."""
        now = self._clock()
        hours = max(now - self._last_time, 0.0) / 3600.0
        for phase in self.phases:
            self._energy_wh[phase] += self.expected_phase_power_w(phase) * hours
        self._last_time = now

    def _measurements(self) -> dict[str, float | bool]:
        values: dict[str, float | bool] = {}
        totals = {"power": 0.0, "current": 0.0, "apparent": 0.0, "voltage": 0.0}
        for phase in self.phases:
            power = self.expected_phase_power_w(phase)
            if power > 0:
                power = max(self._rng.gauss(power, 0.005 * power), 0.0)
            voltage = self._rng.gauss(MAINS_VOLTAGE_V, 0.8)
            factor = min(self._rng.gauss(self._power_factor, 0.005), 1.0) if power > 0 else 1.0
            current = power / (voltage * factor)
            values |= {
                f"power_l{phase}_w": power,
                f"voltage_l{phase}_v": voltage,
                f"current_l{phase}_a": current,
                f"power_factor_l{phase}": factor,
                f"energy_l{phase}_wh": self._energy_wh[phase],
            }
            totals["power"] += power
            totals["current"] += current
            totals["apparent"] += voltage * current
            totals["voltage"] += voltage
        for circuit in self._circuits.values():
            if circuit.lamp_failure is not None:
                values[circuit.lamp_failure] = circuit.number in self._lamp_failures
        return values | {
            "power_w": totals["power"],
            "voltage_v": totals["voltage"] / len(self.phases),
            "current_a": totals["current"],
            "power_factor": totals["power"] / totals["apparent"] if totals["apparent"] else 1.0,
            "energy_wh": self._energy_offset_wh + sum(self._energy_wh.values()),
            "frequency_hz": self._rng.gauss(MAINS_FREQUENCY_HZ, 0.01),
            "door_open": self._door_open,
        }

    def _refresh(self) -> None:
        self._advance()
        for quantity, value in self._measurements().items():
            if quantity in self._computed:
                point = self.profile.point(quantity)
                round_down = quantity.startswith("energy")
                self._store(point, _encode_clamped(point, value, round_down=round_down))

    def _check_write(self, table: Table, address: int, values: Sequence[int | bool]) -> ExcCodes | None:
        """Refuse writes like a controller does: read-only points, values outside min/max."""
        if address + len(values) > self._size[table]:
            return ExcCodes.ILLEGAL_ADDRESS
        candidate = list(self._image[table])
        candidate[address : address + len(values)] = [int(v) for v in values]
        end = address + len(values)
        for point in self.profile.points:
            if point.table != table or not (point.address < end and address < point.end):
                continue
            if not point.writable:
                return ExcCodes.ILLEGAL_ADDRESS
            try:
                encode_point(point, decode_point(point, candidate[point.address : point.end]))
            except ValueError:
                return ExcCodes.ILLEGAL_VALUE
        return None

    async def _on_access(  # noqa: PLR0917 (pymodbus's SimAction signature)
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Called by pymodbus for every request, before it answers from ``registers``."""
        del start_address, count  # our blocks start at 0; for bits ``count`` is in registers
        if self._exception is not None:
            return self._exception
        table = _TABLE_OF_FUNCTION[function_code]
        if self._size[table] == 0:
            return ExcCodes.ILLEGAL_ADDRESS
        if set_values is not None:
            fault = self._write_fault
            if fault is not None and not fault.silent and fault.refuses(table, address, len(set_values)):
                return fault.code
            if rejected := self._check_write(table, address, set_values):
                return rejected
            self._advance()
            self._image[table][address : address + len(set_values)] = [int(v) for v in set_values]
            return None
        self._refresh()
        image = self._image[table]
        words = _pack_bits(image) if table in BIT_TABLES else image
        registers[: len(words)] = words
        return None

    def _filter_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        if sending:
            return pdu
        if self._unresponsive:
            return None
        fault, table = self._write_fault, _WRITTEN_TABLE.get(pdu.function_code)
        if fault is not None and fault.silent and table is not None:
            return None if fault.refuses(table, pdu.address, max(pdu.count, 1)) else pdu
        return pdu

    def _simdata(self) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        """pymodbus's datastore layout: every table served from address 0 to its last point."""

        def bits(table: Table) -> list[SimData]:
            # A table without points still needs one block; _on_access refuses its requests.
            size = self._size[table] or 1
            return [SimData(0, values=[False] * size, datatype=DataType.BITS)]

        def words(table: Table) -> list[SimData]:
            if self._size[table] == 0:
                return [SimData(0, datatype=DataType.INVALID)]
            return [SimData(0, values=[0] * self._size[table], datatype=DataType.REGISTERS)]

        return bits("coil"), bits("discrete"), words("holding"), words("input")


@dataclass(slots=True)
class _WriteFault:
    """Which writes ``inject_write_fault`` refuses: those touching ``point`` (every one, when None),
    after ``spared`` more writes have been taken."""

    point: Point | None
    code: ExcCodes
    spared: int
    silent: bool = False

    def refuses(self, table: Table, address: int, count: int) -> bool:
        point = self.point
        if point is not None and not (
            point.table == table and point.address < address + count and address < point.end
        ):
            return False
        if self.spared > 0:
            self.spared -= 1
            return False
        return True


def _layout(profile: Profile) -> tuple[tuple[int, ...], dict[int, _Circuit]]:
    """The phases and the circuits the profile's point names describe (at least one of each)."""
    phases = sorted({int(m.group(2)) for q in profile.quantities if (m := _PHASE_POINT.match(q))}) or [1]
    points: dict[int, dict[str, str]] = {}
    for quantity in profile.quantities:
        if match := _CIRCUIT_POINT.match(quantity):
            kind, number = match.group(1), int(match.group(2) or 1)
            points.setdefault(number, {})[kind] = quantity
    circuits = {
        number: _Circuit(
            number=number,
            phase=phases[index % len(phases)],
            relay=found.get("relay"),
            dim=found.get("dim_level"),
            lamp_failure=found.get("lamp_failure"),
        )
        for index, (number, found) in enumerate(sorted(points.items()))
    }
    return tuple(phases), circuits or {1: _Circuit(number=1, phase=phases[0])}


def _table_size(profile: Profile, table: Table) -> int:
    return max((p.end for p in profile.points if p.table == table), default=0)


def _encode_clamped(point: Point, value: float | bool, *, round_down: bool) -> list[int]:
    """Encode a simulated value, saturating at the type's range like real meters do."""
    if point.type == "bool":
        return [int(bool(value))]
    raw: float = value / point.scale
    if point.type != "float32":
        raw = math.floor(raw) if round_down else round(raw)
    low, high = raw_range(point.type)
    raw = min(max(raw, low), high)
    return encode_registers(raw, data_type=point.type, word_order=point.word_order)


def _pack_bits(bits: Sequence[int]) -> list[int]:
    """Bits to 16-bit registers, bit 0 first (pymodbus's layout for bit blocks)."""
    return [
        sum(1 << i for i, bit in enumerate(bits[start : start + 16]) if bit)
        for start in range(0, len(bits), 16)
    ]
