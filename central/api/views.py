"""Views of a cabinet computed from what its agent sent: lighting, equipment, energy per day.

(Alarms and their episodes: ``central.api.alarms``.)
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query

from central.api import view_models as m
from central.api.alarms import MAX_ALARMS, alarm_out
from central.api.deps import StoreDep
from central.api.errors import unknown_cabinet
from central.api.json_route import StrictJsonRoute
from central.api.models import ErrorBody, PointValueOut
from central.api.params import parse_zone
from central.energy import (
    DEFAULT_MAX_POWER_W,
    Day,
    DayEnergy,
    EnergyMeter,
    EnergySettings,
    PointEnergy,
    local_days,
)
from central.equipment_view import equipment_views
from central.errors import InvalidRequest
from central.lighting_view import schedule_view, state_view
from central.store import Store
from central.store.rollups import COUNTER_SUFFIX, WIDTH_MS, meter_quarters
from protocols.fleet.events import LIGHTING_STATE, SCHEDULE_ACTIVE

ENERGY_SUFFIX = COUNTER_SUFFIX
# The longest local day (a day a clock goes back: 25 h), in ms.
DAY_MS_MAX = 25 * 3600 * 1000
MAX_ENERGY_DAYS = 366
# The day after the last must exist in the calendar: it is where the last day ends.
LAST_DAY = dt.date.max - dt.timedelta(days=1)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "unknown cabinet"}}


def _date(name: str, raw: str) -> dt.date:
    if not _DATE.fullmatch(raw):
        raise InvalidRequest.field(
            ("query", name), f"{name} must be a date as YYYY-MM-DD (e.g. 2024-05-01)", raw
        )
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest.field(
            ("query", name), f"{name} {raw} is not a day of the calendar", raw
        ) from None
    if day > LAST_DAY:
        raise InvalidRequest.field(("query", name), f"{name} must be {LAST_DAY} or before", raw)
    return day


def _day_range(start: str, end: str | None) -> tuple[dt.date, dt.date]:
    first = _date("start", start)
    last = _date("end", end) if end is not None else first
    if last < first:
        raise InvalidRequest.field(("query", "end"), "end is before start (both are inclusive)", end)
    if (last - first).days + 1 > MAX_ENERGY_DAYS:
        raise InvalidRequest.field(
            ("query", "end"), f"at most {MAX_ENERGY_DAYS} days at once: ask for a shorter range", end
        )
    return first, last


def _kwh(wh: float) -> float:
    return round(wh / 1000, 6)


def _coverage(days: Sequence[DayEnergy], length_ms: int) -> float:
    # A day a time zone skipped (Samoa's 2011-12-30) lasts 0 ms: there is nothing to cover.
    if length_ms <= 0:
        return 1.0
    # The cabinet's coverage is that of its least covered counter.
    return round(min((d.covered_ms for d in days), default=0) / length_ms, 6)


def _day_out(date: dt.date, days: Sequence[DayEnergy], length_ms: int) -> m.EnergyDayOut:
    return m.EnergyDayOut(
        date=date,
        kwh=_kwh(math.fsum(d.wh for d in days)),
        coverage=_coverage(days, length_ms),
        interpolated=any(d.interpolated for d in days),
        reset=any(d.reset for d in days),
        absurd=any(d.absurd for d in days),
    )


def _energy_out(
    cabinet: str, tz: str, days: list[Day], settings: EnergySettings, points: dict[str, PointEnergy]
) -> m.EnergyOut:
    lengths = [day.end_ms - day.start_ms for day in days]
    point_out = [
        m.EnergyPointOut(
            point=name,
            total_kwh=_kwh(energy.total_wh),
            resets=energy.resets,
            absurd=energy.absurd,
            skipped=energy.skipped,
            days=[_day_out(d.date, [d], n) for d, n in zip(energy.days, lengths, strict=True)],
        )
        for name, energy in points.items()
    ]
    cabinet_days = [
        _day_out(day.date, [energy.days[i] for energy in points.values()], lengths[i])
        for i, day in enumerate(days)
    ]
    return m.EnergyOut(
        cabinet=cabinet,
        tz=tz,
        start=days[0].date,
        end=days[-1].date,
        max_power_w=settings.max_power_w,
        total_kwh=_kwh(math.fsum(e.total_wh for e in points.values())),
        days=cabinet_days,
        points=point_out,
    )


def _rollups_agree(days: Sequence[Day], settings: EnergySettings) -> bool:
    """Whether the 15-minute rollups give what the readings give: every day made of whole quarters
    (zones whose offsets are multiples of 15 minutes: all in use today) and the rollups' settings.
    Raw readings go after the retention period; the rollups stay."""
    quarter = WIDTH_MS["15m"]
    return settings == EnergySettings() and all(
        d.start_ms % quarter == 0 and d.end_ms % quarter == 0 for d in days
    )


async def _add_quarters(
    store: Store, meter: EnergyMeter, cabinet: str, point: str, days: Sequence[Day]
) -> None:
    start, end = days[0].start_ms, days[-1].end_ms
    before, after = await store.rollup_neighbours(
        cabinet, point, resolution="15m", start_ms=start, end_ms=end
    )
    limit = len(days) * (DAY_MS_MAX // WIDTH_MS["15m"])
    quarters = await store.rollups(cabinet, point, resolution="15m", start_ms=start, end_ms=end, limit=limit)
    meter_quarters(meter, quarters, before=before, after=after)


router = APIRouter(tags=["views"], route_class=StrictJsonRoute)


async def require_cabinet(store: Store, cabinet: str) -> None:
    if await store.cabinet(cabinet) is None:
        raise unknown_cabinet(cabinet)


@router.get("/cabinets/{cabinet}/lighting", response_model=m.LightingOut, responses=_NOT_FOUND)
async def lighting(cabinet: str, store: StoreDep) -> m.LightingOut:
    await require_cabinet(store, cabinet)
    problems: list[str] = []
    schedule = None
    # The schedule is the cabinet's (one source); states come one per output.
    for event in (await store.latest_events(cabinet, SCHEDULE_ACTIVE))[:1]:
        view, problem = schedule_view(event)
        if view is not None:
            schedule = m.ScheduleOut.model_validate(view, from_attributes=True)
        problems += [problem] if problem else []
    outputs: list[m.LightingStateOut] = []
    for event in await store.latest_events(cabinet, LIGHTING_STATE):
        state, problem = state_view(event)
        if state is not None:
            outputs.append(m.LightingStateOut.model_validate(state, from_attributes=True))
        problems += [problem] if problem else []
    return m.LightingOut(
        cabinet=cabinet,
        schedule=schedule,
        state=outputs[0] if outputs else None,
        outputs=outputs,
        problems=problems,
    )


@router.get("/cabinets/{cabinet}/equipment", response_model=m.CabinetEquipmentOut, responses=_NOT_FOUND)
async def equipment(cabinet: str, store: StoreDep) -> m.CabinetEquipmentOut:
    """Each device's class (lighting, traffic controller, camera), state, active alarms and values."""
    row = await store.cabinet(cabinet)
    if row is None:
        raise unknown_cabinet(cabinet)
    problems: list[str] = []
    inventory = list(row.inventory)
    views = equipment_views(
        inventory,
        await store.latest_values(cabinet),
        await store.alarms(cabinet=cabinet, active=True, limit=MAX_ALARMS),
    )
    return m.CabinetEquipmentOut(
        cabinet=cabinet,
        equipment=[
            m.EquipmentOut(
                device=view.device,
                driver=view.driver,
                equipment_class=view.equipment_class,
                profile=view.profile,
                state=view.state,
                alarms=[alarm_out(alarm) for alarm in view.alarms],
                values=[PointValueOut.of(v) for v in view.values],
            )
            for view in views
        ],
        problems=problems,
    )


@router.get("/cabinets/{cabinet}/energy", response_model=m.EnergyOut, responses=_NOT_FOUND)
async def energy(
    cabinet: str,
    start: Annotated[str, Query(description="first local day, YYYY-MM-DD")],
    end: Annotated[str | None, Query(description="last local day, inclusive; default start")] = None,
    tz: Annotated[str, Query(description="IANA time zone of the days")] = "UTC",
    max_power_w: Annotated[
        float,
        Query(
            gt=0,
            allow_inf_nan=False,
            description="a jump beyond this power is a glitch, not consumption",
        ),
    ] = DEFAULT_MAX_POWER_W,
    *,
    store: StoreDep,
) -> m.EnergyOut:
    first, last = _day_range(start, end)
    zone = parse_zone(tz)
    await require_cabinet(store, cabinet)
    days = local_days(first, last, zone)
    settings = EnergySettings(max_power_w=max_power_w)

    points: dict[str, PointEnergy] = {}
    from_rollups = _rollups_agree(days, settings)
    for name in await store.points_ending_with(cabinet, ENERGY_SUFFIX):
        meter = EnergyMeter(days, settings)
        if from_rollups:
            await _add_quarters(store, meter, cabinet, name, days)
        else:
            chunks = store.reading_chunks(
                cabinet, name, start_ms=days[0].start_ms, end_ms=days[-1].end_ms, neighbours=True
            )
            async for chunk in chunks:
                meter.add((r.ts_ms, r.value, r.quality) for r in chunk)
        points[name] = meter.result
    return _energy_out(cabinet, tz, days, settings, points)
