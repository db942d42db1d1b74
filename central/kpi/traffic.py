"""Hours a traffic controller spent in each state, per local day, at 15-minute resolution. Pure.

From the controller's points as its profile names them (config/profiles/traffic-controller-generic.toml):
``mode`` (an enumeration the agent sends as its label: normal, flashing, dark, manual) and ``fault``
(true while the controller reports a fault). A quarter is ``fault`` when a good reading of ``fault``
in it was true; otherwise it is in the mode of the last reading of ``mode`` in it, when that reading
is good; otherwise (no reading, a bad one) it is ``unknown``. A mode label the profile does not list
counts as ``other``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from central.kpi.energy import QUARTER_H
from central.kpi.period import KpiDay, day_index
from central.store.rows import Rollup
from protocols.quality import Quality

MODE_POINT = "mode"
FAULT_POINT = "fault"
MODES = ("normal", "flashing", "dark", "manual")
STATES = (*MODES, "fault", "other", "unknown")


@dataclass(slots=True)
class StateHours:
    hours: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STATES, 0.0))
    controllers: int = 0

    def add(self, other: StateHours) -> None:
        for state, h in other.hours.items():
            self.hours[state] += h
        self.controllers += other.controllers


def quarter_state(mode: Rollup | None, fault: Rollup | None) -> str:
    if fault is not None and fault.good > 0 and fault.max is not None and fault.max >= 1:
        return "fault"
    if mode is None or mode.last_quality != Quality.GOOD or not isinstance(mode.last_value, str):
        return "unknown"
    return mode.last_value if mode.last_value in MODES else "other"


def controller_hours(
    mode: Sequence[Rollup], fault: Sequence[Rollup], days: Sequence[KpiDay]
) -> list[StateHours]:
    """Hours per state for each of ``days``, of one controller."""
    out = [StateHours(controllers=1) for _ in days]
    modes = {r.bucket_ms: r for r in mode}
    faults = {r.bucket_ms: r for r in fault}
    for bucket in sorted(modes.keys() | faults.keys()):
        i = day_index(days, bucket)
        if i is None:
            continue
        state = quarter_state(modes.get(bucket), faults.get(bucket))
        if state != "unknown":
            out[i].hours[state] += QUARTER_H
    for day, hours in zip(days, out, strict=True):
        known = sum(h for state, h in hours.hours.items() if state != "unknown")
        hours.hours["unknown"] = max(0.0, day.length_ms / 3_600_000 - known)
    return out
