"""Response bodies of the cabinet views: lighting, alarms, energy."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from central.api.models import PointValueOut


class ScheduleOut(BaseModel):
    ts_ms: int = Field(description="when the agent started running it")
    hash: str
    source: str | None = Field(description="config (the cabinet's file) or command (sent by central)")
    schedule: dict[str, Any] | None = Field(description="the schedule as JSON; null: see detail or problems")
    detail: str | None = Field(description="why schedule is null: no schedule, or only its hash is known")


class LightingStateOut(BaseModel):
    ts_ms: int = Field(description="when the agent reported it")
    source: str = Field(description="the output that reported it")
    on: bool
    level_pct: int
    reason: str = Field(description="why: schedule, dimming, exception, override...")
    next_change_ms: int | None
    devices: list[str]
    override_until_ms: int | None


class LightingOut(BaseModel):
    cabinet: str
    schedule: ScheduleOut | None = Field(description="null until the agent reported one")
    state: LightingStateOut | None = Field(description="the newest report; null until there is one")
    outputs: list[LightingStateOut] = Field(
        description="the newest report of each output (source), newest first: a cabinet's outputs may differ"
    )
    problems: list[str] = Field(description="what is wrong with the agent's latest events, if anything")


class AlarmOut(BaseModel):
    cabinet: str
    device: str
    alarm: str = Field(description='e.g. "lamp_failure"; "device_lost" when a device stops answering')
    active: bool
    severity: str
    message: str = Field(description="of the newest event about this alarm")
    raised_ms: int | None
    cleared_ms: int | None
    updated_ms: int


class AlarmsPage(BaseModel):
    alarms: list[AlarmOut] = Field(description="active first, then the most recently changed")


class EnergyDayOut(BaseModel):
    date: dt.date
    kwh: float
    coverage: float = Field(description="share of the day that readings account for, 0..1")
    interpolated: bool = Field(description="part of the day's energy was spread over a gap in readings")
    reset: bool = Field(description="a counter reset: what was counted before it is lost")
    absurd: bool = Field(description="a jump beyond max_power_w was left out")


class EnergyPointOut(BaseModel):
    point: str
    total_kwh: float
    resets: int
    absurd: int
    skipped: int = Field(description="readings left out: bad or uncertain quality, or not a number")
    days: list[EnergyDayOut]


class EnergyOut(BaseModel):
    cabinet: str
    tz: str
    start: dt.date
    end: dt.date = Field(description="inclusive")
    max_power_w: float
    total_kwh: float
    days: list[EnergyDayOut] = Field(description="the cabinet: the sum of its counters")
    points: list[EnergyPointOut] = Field(
        description="each counter: points whose quantity ends with energy_wh"
    )


class EquipmentOut(BaseModel):
    device: str
    driver: str
    equipment_class: str = Field(description="lighting, traffic_controller, camera or other")
    profile: str | None
    state: str = Field(description="lost, alarm, degraded (a bad value), ok, or unknown (no value yet)")
    alarms: list[AlarmOut] = Field(description="its active alarms")
    values: list[PointValueOut] = Field(
        description="the latest value of each of its points (named within the device)"
    )


class CabinetEquipmentOut(BaseModel):
    cabinet: str
    equipment: list[EquipmentOut] = Field(description="each device of the cabinet's latest inventory")
    problems: list[str] = Field(description="what is wrong with what the cabinet sent, if anything")
