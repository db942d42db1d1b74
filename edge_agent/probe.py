"""``cityedge agent check --probe``: read every point of every configured device once, and say what
would be reported bad (a device that does not answer, a value outside its plausible range, one that
does not decode). Devices are read at the same time, each within its own timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.config import LoadedConfig, build_drivers
from protocols.device import DeviceConfig
from protocols.driver import IMPLAUSIBLE, FieldDriver, Value
from protocols.errors import DriverError
from protocols.quality import Quality


@dataclass(frozen=True, slots=True)
class ProbedPoint:
    quantity: str
    value: Value
    unit: str | None
    quality: Quality
    reason: str | None
    plausible: tuple[float, float] | None

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD


@dataclass(frozen=True, slots=True)
class ProbedDevice:
    device: str
    points: tuple[ProbedPoint, ...]
    error: str | None = None  # the device did not answer: why

    @property
    def good(self) -> bool:
        return self.error is None and all(point.good for point in self.points)


async def probe(loaded: LoadedConfig) -> list[ProbedDevice]:
    """Each configured device read once, in config order."""
    drivers = build_drivers(loaded)
    async with asyncio.TaskGroup() as tasks:
        reads = [
            tasks.create_task(_probe_one(device, driver), name=device.name)
            for device, driver in zip(loaded.devices, drivers, strict=True)
        ]
    return [read.result() for read in reads]


async def _probe_one(device: DeviceConfig, driver: FieldDriver) -> ProbedDevice:
    try:
        # As the poller bounds a read: a driver reading several blocks gets one timeout per block.
        async with asyncio.timeout(device.timeout_s * 4):
            values = await driver.read()
    except DriverError as exc:
        return ProbedDevice(device.name, (), str(exc))
    except TimeoutError:
        return ProbedDevice(device.name, (), f"{device.name}: no answer within {device.timeout_s * 4}s")
    except Exception as exc:  # noqa: BLE001 (a driver's bug costs its own device, as in the poller)
        return ProbedDevice(device.name, (), f"{device.name}: driver error {type(exc).__name__}: {exc}")
    finally:
        await driver.close()
    specs = {spec.name: spec for spec in driver.points}
    points = []
    for value in values:
        spec = specs.get(value.quantity)
        unit, plausible = (None, None) if spec is None else (spec.unit, spec.plausible)
        points.append(ProbedPoint(value.quantity, value.value, unit, value.quality, value.reason, plausible))
    return ProbedDevice(device.name, tuple(points))


def probe_table(devices: Sequence[ProbedDevice]) -> list[str]:
    """One line per point (one per device that did not answer), in aligned columns."""
    rows = [("device", "point", "value", "unit", "quality", "plausible", "")]
    for device in devices:
        if device.error is not None:
            rows.append((device.device, "-", "-", "", "bad", "", f"NO ANSWER: {device.error}"))
        for point in device.points:
            flag = "" if point.good else _flag(point.reason)
            rows.append(
                (
                    device.device,
                    point.quantity,
                    _value(point.value),
                    point.unit or "",
                    point.quality.name.lower(),
                    "" if point.plausible is None else f"{point.plausible[0]:g}..{point.plausible[1]:g}",
                    flag,
                )
            )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in rows
    ]


def _flag(reason: str | None) -> str:
    return "IMPLAUSIBLE" if reason == IMPLAUSIBLE else f"BAD: {reason or 'no reason given'}"


def _value(value: Value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).lower() if isinstance(value, bool) else str(value)
