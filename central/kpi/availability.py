"""The share of a period each device was available, per equipment class. Pure: rows in, figures out.

What central knows of a device over time is what its agent sent: readings (kept as 15-minute rollups
for the contract's life) and its ``device_lost`` episodes (raised when the device stops answering,
cleared by ``device_back``, stamped by the cabinet). Central keeps no history of a cabinet's link:
a cabinet that is offline keeps polling and buffering, so a link outage is not an equipment outage,
and what the agent sends when it is back fills the quarters it missed.

A device is available for the part of each quarter in which its probe point (the first point of its
inventory) read good: a quarter's share is its good readings over all its readings (for a text
point, whose readings the rollup does not count as numbers: 1 when its last reading was good, else
0), and never more than the part of the quarter outside its device_lost episodes. A quarter from
which nothing arrived (cabinet down, data evicted, or not yet delivered) counts as unavailable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from central.kpi.period import QUARTER_MS
from central.store.rows import Rollup
from protocols.quality import Quality

# The classes of ``central.equipment_view``, always reported (a class with no device: no figure).
CLASSES = ("lighting", "traffic_controller", "camera")


@dataclass(frozen=True, slots=True)
class Outage:
    """A device_lost episode: [raised_ms, cleared_ms), open (None) while it lasts."""

    raised_ms: int
    cleared_ms: int | None


@dataclass(frozen=True, slots=True)
class DeviceInput:
    cabinet: str
    town: str | None
    device: str
    equipment_class: str
    probe: Sequence[Rollup]  # the probe point's 15-minute rollups in the period
    outages: Sequence[Outage] = ()


@dataclass(slots=True)
class AvailabilityFigures:
    devices: int = 0
    period_ms: int = 0  # device x ms
    available_ms: int = 0

    @property
    def share(self) -> float | None:
        return self.available_ms / self.period_ms if self.period_ms > 0 else None

    def add_device(self, period_ms: int, available_ms: int) -> None:
        self.devices += 1
        self.period_ms += period_ms
        self.available_ms += available_ms


def lost_intervals(outages: Sequence[Outage], start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """The outages cut to [start_ms, end_ms) and merged where they overlap, in time order."""
    cut = sorted(
        (max(o.raised_ms, start_ms), min(end_ms if o.cleared_ms is None else o.cleared_ms, end_ms))
        for o in outages
    )
    merged: list[tuple[int, int]] = []
    for a, b in cut:
        if b <= a:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def quarter_share(r: Rollup) -> float:
    """The share of a quarter its readings say the device read good."""
    if r.count <= 0:
        return 0.0
    if r.good > 0:
        return min(r.good / r.count, 1.0)
    return 1.0 if r.last_quality == Quality.GOOD else 0.0


def device_available_ms(device: DeviceInput, start_ms: int, end_ms: int) -> int:
    """How long within [start_ms, end_ms) (on the quarter grid) the device was available."""
    return round(available_ms(device.probe, device.outages, start_ms, end_ms))


def available_ms(probe: Sequence[Rollup], outages: Sequence[Outage], start_ms: int, end_ms: int) -> float:
    """``device_available_ms`` before it is rounded (a sum of parts of quarters)."""
    lost = lost_intervals(outages, start_ms, end_ms)
    total = 0.0
    seen: set[int] = set()
    for r in probe:
        q0 = r.bucket_ms
        if not start_ms <= q0 < end_ms or q0 in seen:
            continue
        seen.add(q0)
        q1 = min(q0 + QUARTER_MS, end_ms)
        lost_ms = sum(max(0, min(b, q1) - max(a, q0)) for a, b in lost)
        total += min(quarter_share(r) * (q1 - q0), (q1 - q0) - lost_ms)
    return total


@dataclass(frozen=True, slots=True)
class DeviceAvailability:
    cabinet: str
    town: str | None
    device: str
    equipment_class: str
    available_ms: int


def device_availability(device: DeviceInput, start_ms: int, end_ms: int) -> DeviceAvailability:
    available = device_available_ms(device, start_ms, end_ms)
    return DeviceAvailability(device.cabinet, device.town, device.device, device.equipment_class, available)


@dataclass(slots=True)
class AvailabilityReport:
    by_class: dict[str, AvailabilityFigures]
    by_town: dict[tuple[str | None, str], AvailabilityFigures]  # (town, class)


def availability(devices: Sequence[DeviceAvailability], period_ms: int) -> AvailabilityReport:
    """Availability per equipment class and per (town, class) of devices over a period this long."""
    by_class = {name: AvailabilityFigures() for name in CLASSES}
    by_town: dict[tuple[str | None, str], AvailabilityFigures] = {}
    for device in devices:
        by_class.setdefault(device.equipment_class, AvailabilityFigures()).add_device(
            period_ms, device.available_ms
        )
        key = (device.town, device.equipment_class)
        by_town.setdefault(key, AvailabilityFigures()).add_device(period_ms, device.available_ms)
    ordered = dict(sorted(by_town.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or "", kv[0][1])))
    return AvailabilityReport(by_class, ordered)
