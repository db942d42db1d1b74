"""Lighting alarms, raised and cleared once each, with hysteresis.

An alarm is raised after ``raise_after`` consecutive polls find its condition, and cleared after
``clear_after`` consecutive polls find it gone; thresholds clear only ``hysteresis_pct`` back inside the
limit. A value that flickers around a limit therefore gives one raise and one clear, not one per poll.
Alarms travel as events (``alarm_raised`` / ``alarm_cleared``, data: alarm, device, value). A device
that does not answer is the ``device_lost`` event of its poller, not an alarm here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edge_agent.buffer import Buffer
from edge_agent.config import AlarmSettings
from edge_agent.lighting.state import LightingState
from protocols.driver import PointValue
from protocols.fleet.messages import Severity
from protocols.quality import Quality

Values = Mapping[str, float | int | bool | str | None]
# (values, lighting) -> True: condition present, False: absent (with hysteresis), None: cannot tell.
Check = Callable[[Values, LightingState | None, bool], bool | None]


@dataclass(frozen=True, slots=True)
class AlarmKind:
    name: str
    severity: Severity
    describe: str
    check: Check


def _number(values: Values, name: str) -> float | None:
    value = values.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _flag(values: Values, prefix: str) -> bool | None:
    flags = [
        v for k, v in values.items() if (k == prefix or k.startswith(prefix + "_")) and isinstance(v, bool)
    ]
    return any(flags) if flags else None


def _power(values: Values) -> float | None:
    phases = [v for k, v in values.items() if k.startswith("power") and k.endswith("_w")]
    numbers = [float(v) for v in phases if isinstance(v, int | float) and not isinstance(v, bool)]
    return sum(numbers) if numbers else None


def _above(limit: float | None, hysteresis: float, value: float | None, active: bool) -> bool | None:
    if limit is None or value is None:
        return None
    return value > (limit * (1 - hysteresis) if active else limit)


def _below(limit: float, hysteresis: float, value: float | None, active: bool) -> bool | None:
    if value is None:
        return None
    return value < (limit * (1 + hysteresis) if active else limit)


def alarm_kinds(settings: AlarmSettings) -> list[AlarmKind]:
    h = settings.hysteresis_pct / 100

    def lit_in_daytime(values: Values, lighting: LightingState | None, active: bool) -> bool | None:
        if lighting is None or lighting.on:
            return False if lighting is not None else None
        return _above(settings.day_power_max_w, h, _power(values), active)

    def dark_at_night(values: Values, lighting: LightingState | None, active: bool) -> bool | None:
        if lighting is None or not lighting.on:
            return False if lighting is not None else None
        return _below(settings.night_power_min_w, h, _power(values), active)

    def power_out_of_range(values: Values, _: LightingState | None, active: bool) -> bool | None:
        return _above(settings.power_max_w, h, _power(values), active)

    def current_out_of_range(values: Values, _: LightingState | None, active: bool) -> bool | None:
        currents = [_number(values, k) for k in values if k.startswith("current") and k.endswith("_a")]
        known = [c for c in currents if c is not None]
        return _above(settings.current_max_a, h, max(known) if known else None, active)

    return [
        AlarmKind("lamp_failure", "alarm", "lamp failure", lambda v, _, __: _flag(v, "lamp_failure")),
        AlarmKind("door_open", "warning", "cabinet door open", lambda v, _, __: _flag(v, "door_open")),
        AlarmKind("lit_in_daytime", "warning", "lamps lit in daytime", lit_in_daytime),
        AlarmKind("dark_at_night", "alarm", "lamps dark at night", dark_at_night),
        AlarmKind("power_out_of_range", "warning", "power out of range", power_out_of_range),
        AlarmKind("current_out_of_range", "warning", "current out of range", current_out_of_range),
    ]


@dataclass(slots=True)
class _Track:
    active: bool = False
    streak: int = 0  # consecutive polls disagreeing with ``active``


class DeviceAlarms:
    """The alarm states of one device, fed with each good poll."""

    def __init__(self, *, device: str, settings: AlarmSettings, buffer: Buffer) -> None:
        self.device = device
        self.settings = settings
        self.buffer = buffer
        self.kinds = alarm_kinds(settings)
        self.tracks = {kind.name: _Track() for kind in self.kinds}

    @property
    def setting_key(self) -> str:
        return f"alarms.{self.device}"

    def restore(self, active: list[str]) -> None:
        """Alarms raised before a restart stay raised until a poll clears them (central must hear it)."""
        for name in active:
            if name in self.tracks:
                self.tracks[name].active = True

    @property
    def active(self) -> list[str]:
        return [name for name, track in self.tracks.items() if track.active]

    def observe(self, ts: int, readings: list[PointValue], lighting: LightingState | None) -> None:
        values = {r.quantity: r.value for r in readings if r.quality == Quality.GOOD}
        for kind in self.kinds:
            track = self.tracks[kind.name]
            present = kind.check(values, lighting, track.active)
            if present is None or present == track.active:
                track.streak = 0
                continue
            track.streak += 1
            needed = self.settings.clear_after if track.active else self.settings.raise_after
            if track.streak >= needed:
                track.active, track.streak = present, 0
                self._record(ts, kind, raised=present, values=values)
                # Committed with the event: after a reboot the alarm is still known to be raised.
                self.buffer.stage_setting(self.setting_key, ",".join(self.active))

    def _record(self, ts: int, kind: AlarmKind, *, raised: bool, values: Values) -> None:
        power = _power(values)
        self.buffer.append_event(
            ts=ts,
            source=self.device,
            kind="alarm_raised" if raised else "alarm_cleared",
            severity=kind.severity if raised else "info",
            message=f"{self.device}: {kind.describe} {'raised' if raised else 'cleared'}",
            data={"alarm": kind.name, "device": self.device, "power_w": power},
        )
