"""A device's alarms, raised and cleared once each, with hysteresis: the lighting alarms (found by
the roles its points declare: ``power``, ``current``, ``lamp_failure``, ``door``) and the alarms its
driver declares on points (``AlarmRule``, see ``edge_agent.point_alarms``).

An alarm is raised after ``raise_after`` consecutive polls find its condition, and cleared after
``clear_after`` consecutive polls find it gone; thresholds clear only ``hysteresis_pct`` back inside the
limit. A value that flickers around a limit therefore gives one raise and one clear, not one per poll.
Alarms travel as events (``alarm_raised`` / ``alarm_cleared``; data: alarm, device, and the total power
of a lighting alarm or the point and value of a point's alarm). A device
that does not answer is the ``device_lost`` event of its poller, not an alarm here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from edge_agent.buffer import Buffer
from edge_agent.journal import SEVERITY_LEVELS, story
from edge_agent.lighting.state import LightingState
from edge_agent.point_alarms import rule_holds
from protocols.device import AlarmSettings
from protocols.driver import AlarmRule, PointSpec, PointValue
from protocols.fleet.messages import Severity
from protocols.quality import Quality

log = logging.getLogger(__name__)

Values = Mapping[str, float | int | bool | str | None]
# (values, lighting) -> True: condition present, False: absent (with hysteresis), None: cannot tell.
Check = Callable[[Values, LightingState | None, bool], bool | None]


@dataclass(frozen=True, slots=True)
class AlarmKind:
    name: str
    severity: Severity
    describe: str
    check: Check
    point: str | None = None  # a point's own alarm: the point it watches
    # The points its check reads: a pushed batch that carries none of them leaves its streak alone.
    inputs: tuple[str, ...] = ()


def _with_role(points: Sequence[PointSpec], role: str) -> tuple[str, ...]:
    return tuple(point.name for point in points if point.role == role)


def _numbers(values: Values, names: Sequence[str]) -> list[float]:
    found = [values.get(name) for name in names]
    return [float(v) for v in found if isinstance(v, int | float) and not isinstance(v, bool)]


def _flag(values: Values, names: Sequence[str]) -> bool | None:
    flags = [v for v in (values.get(name) for name in names) if isinstance(v, bool)]
    return any(flags) if flags else None


def _sum(numbers: list[float]) -> float | None:
    return sum(numbers) if numbers else None


def _above(limit: float | None, hysteresis: float, value: float | None, active: bool) -> bool | None:
    if limit is None or value is None:
        return None
    return value > (limit * (1 - hysteresis) if active else limit)


def _below(limit: float, hysteresis: float, value: float | None, active: bool) -> bool | None:
    if value is None:
        return None
    return value < (limit * (1 + hysteresis) if active else limit)


def alarm_kinds(settings: AlarmSettings, points: Sequence[PointSpec]) -> list[AlarmKind]:
    """The lighting alarms its points' roles allow, then each point's own alarm."""
    h = settings.hysteresis_pct / 100
    powers, currents = _with_role(points, "power"), _with_role(points, "current")
    lamps, doors = _with_role(points, "lamp_failure"), _with_role(points, "door")

    def _power(values: Values) -> float | None:
        return _sum(_numbers(values, powers))

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
        known = _numbers(values, currents)
        return _above(settings.current_max_a, h, max(known) if known else None, active)

    kinds = []
    if lamps:
        kinds.append(
            AlarmKind("lamp_failure", "alarm", "lamp failure", lambda v, _, __: _flag(v, lamps), inputs=lamps)
        )
    if doors:
        kinds.append(
            AlarmKind(
                "door_open", "warning", "cabinet door open", lambda v, _, __: _flag(v, doors), inputs=doors
            )
        )
    if powers:
        kinds += [
            AlarmKind("lit_in_daytime", "warning", "lamps lit in daytime", lit_in_daytime, inputs=powers),
            AlarmKind("dark_at_night", "alarm", "lamps dark at night", dark_at_night, inputs=powers),
            AlarmKind(
                "power_out_of_range", "warning", "power out of range", power_out_of_range, inputs=powers
            ),
        ]
    if currents:
        kinds.append(
            AlarmKind(
                "current_out_of_range",
                "warning",
                "current out of range",
                current_out_of_range,
                inputs=currents,
            )
        )
    taken = {kind.name for kind in kinds}
    for point in points:
        if point.alarm is not None:
            name = point.alarm.name if point.alarm.name not in taken else f"{point.name}.{point.alarm.name}"
            taken.add(name)
            kinds.append(_point_kind(name, point.name, point.alarm))
    return kinds


def _point_kind(name: str, point: str, rule: AlarmRule) -> AlarmKind:
    def check(values: Values, _: LightingState | None, active: bool) -> bool | None:
        return rule_holds(rule, values.get(point), active)

    return AlarmKind(
        name, rule.severity, rule.description or f"{name} ({point})", check, point=point, inputs=(point,)
    )


@dataclass(slots=True)
class _Track:
    active: bool = False
    streak: int = 0  # consecutive polls disagreeing with ``active``


class DeviceAlarms:
    """The alarm states of one device, fed with each good poll and each pushed change."""

    def __init__(
        self, *, device: str, settings: AlarmSettings, points: Sequence[PointSpec], buffer: Buffer
    ) -> None:
        self.device = device
        self.settings = settings
        self.buffer = buffer
        self.kinds = alarm_kinds(settings, points)
        self._powers = _with_role(points, "power")
        self.tracks = {kind.name: _Track() for kind in self.kinds}

    @property
    def setting_key(self) -> str:
        return f"alarms.{self.device}"

    def restore(self, active: list[str], ts: int) -> None:
        """Alarms raised before a restart stay raised until a poll clears them (central must hear it).
        One the device no longer has (its profile changed) is cleared now: else it would stay raised
        at central for ever."""
        gone = []
        for name in filter(None, active):
            if name in self.tracks:
                self.tracks[name].active = True
            else:
                gone.append(name)
        for name in gone:
            log.info(
                "%s: %s cleared: the device no longer has this alarm",
                self.device,
                name,
                extra=story("alarm_cleared", device=self.device, alarm=name, reason="no_longer_configured"),
            )
            self.buffer.append_event(
                ts=ts,
                source=self.device,
                kind="alarm_cleared",
                severity="info",
                message=f"{self.device}: {name} cleared: the device no longer has this alarm",
                data={"alarm": name, "device": self.device, "reason": "no_longer_configured"},
            )
        if gone:
            self.buffer.stage_setting(self.setting_key, ",".join(self.active))

    @property
    def active(self) -> list[str]:
        return [name for name, track in self.tracks.items() if track.active]

    def observe(self, ts: int, readings: list[PointValue], lighting: LightingState | None) -> None:
        values = {r.quantity: r.value for r in readings if r.quality == Quality.GOOD}
        given = {r.quantity for r in readings}
        for kind in self.kinds:
            if kind.inputs and given.isdisjoint(kind.inputs):
                continue  # a pushed change of other points: this alarm's evidence is unchanged
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
        data: dict[str, str | int | float | bool | None] = {"alarm": kind.name, "device": self.device}
        if kind.point is None:
            data["power_w"] = _sum(_numbers(values, self._powers))
        else:
            data["point"], data["value"] = kind.point, values.get(kind.point)
        severity = kind.severity if raised else "info"
        log.log(
            SEVERITY_LEVELS[severity],
            "%s: %s %s",
            self.device,
            kind.describe,
            "raised" if raised else "cleared",
            extra=story(
                "alarm_raised" if raised else "alarm_cleared",
                device=self.device,
                alarm=kind.name,
                severity=severity,
                point=kind.point,
                value=values.get(kind.point) if kind.point is not None else data.get("power_w"),
            ),
        )
        self.buffer.append_event(
            ts=ts,
            source=self.device,
            kind="alarm_raised" if raised else "alarm_cleared",
            severity=severity,
            message=f"{self.device}: {kind.describe} {'raised' if raised else 'cleared'}",
            data=data,
        )
