"""The KPI report: each cabinet's energy summed per town and in total, availability and delays, and
the flat tables of its CSV form. Pure.

CSV tables (``csv_table``), one header row then one row per figure; empty cells are unknown figures
(no baseline, no device of a class, no episode acknowledged):

    energy        scope (cabinet | town | total), cabinet, town, date (YYYY-MM-DD; empty: the whole
                  period), kwh, lit_hours, lit_known_hours, full_power_kwh, full_power_saved_pct,
                  historical_kwh, historical_saved_pct, coverage, reset, interpolated, absurd
    availability  scope (class | town), town, equipment_class, devices, period_h, available_h,
                  availability_pct
    delays        scope (total | severity | town | town_severity), town, severity, episodes,
                  acknowledged, ack_median_s, ack_p90_s, cleared, clear_median_s, clear_p90_s
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from central.kpi.availability import AvailabilityFigures, AvailabilityReport, DeviceAvailability, availability
from central.kpi.delays import DelayFigures, DelayReport, delays
from central.kpi.energy import CabinetEnergy, DayFigures, EnergyFigures
from central.kpi.period import Period
from central.store.rows import EpisodeTimes

CsvTable = Literal["energy", "availability", "delays"]
CSV_TABLES: tuple[CsvTable, ...] = ("energy", "availability", "delays")
Cell = str | int | float | None


@dataclass(slots=True)
class GroupEnergy:
    """The energy of several cabinets (a town, or all of them): over the period and per day."""

    town: str | None
    total: EnergyFigures
    days: list[DayFigures]


@dataclass(slots=True)
class EnergyReport:
    cabinets: list[CabinetEnergy]
    towns: list[GroupEnergy]
    total: GroupEnergy


TownSums = Callable[[str | None, Sequence[CabinetEnergy], Period], GroupEnergy]


def town_energy(town: str | None, cabinets: Sequence[CabinetEnergy], period: Period) -> GroupEnergy:
    """The sum of the town's cabinets (in the order given), over the period and per day."""
    group = _group(town, period)
    _add_to(group, [(c.total, c.days) for c in cabinets])
    return group


def energy_report(
    cabinets: Sequence[CabinetEnergy], period: Period, *, town_sums: TownSums = town_energy
) -> EnergyReport:
    """Each town's cabinets summed (in cabinet order), and the towns summed in town order for the
    total. ``town_sums`` may give a town's sum kept from an earlier report (``town_energy`` of the
    same cabinets): a group it gives is read, never changed."""
    ordered_cabinets = sorted(cabinets, key=lambda c: c.cabinet)
    members: dict[str | None, list[CabinetEnergy]] = {}
    for cabinet in ordered_cabinets:
        members.setdefault(cabinet.town, []).append(cabinet)
    towns = [town_sums(town, members[town], period) for town in sorted(members, key=_town_order)]
    total = _group(None, period)
    _add_to(total, [(t.total, t.days) for t in towns])
    return EnergyReport(ordered_cabinets, towns, total)


def _town_order(town: str | None) -> tuple[bool, str]:
    return town is None, town or ""


def _add_to(group: GroupEnergy, parts: Sequence[tuple[EnergyFigures, Sequence[DayFigures]]]) -> None:
    for total, days in parts:
        group.total.add(total)
        for mine, theirs in zip(group.days, days, strict=True):
            mine.figures.add(theirs.figures)


def _group(town: str | None, period: Period) -> GroupEnergy:
    return GroupEnergy(town, EnergyFigures(), [DayFigures(d.date) for d in period.days])


@dataclass(slots=True)
class KpiReport:
    period: Period
    tz: str
    energy: EnergyReport
    availability: AvailabilityReport
    delays: DelayReport


def kpi_report(
    period: Period,
    tz: str,
    *,
    cabinets: Sequence[CabinetEnergy],
    devices: Sequence[DeviceAvailability],
    episodes: Sequence[EpisodeTimes],
    towns: Mapping[str, str | None],
    town_sums: TownSums = town_energy,
    delay_report: DelayReport | None = None,
) -> KpiReport:
    """The whole report from each cabinet's energy and each device's availability (computed cabinet
    by cabinet, so that a month of a city's rollups is never held at once); ``episodes`` raised in
    the period count for the delays. ``town_sums`` and ``delay_report``: what an earlier report of
    the same inputs made (``central.api.kpi_parts``), else computed."""
    return KpiReport(
        period=period,
        tz=tz,
        energy=energy_report(cabinets, period, town_sums=town_sums),
        availability=availability(devices, period.length_ms),
        delays=delay_report or delays(episodes, towns, period.start_ms, period.end_ms),
    )


# -- CSV ---------------------------------------------------------------------------------------------

ENERGY_HEADER = (
    "scope", "cabinet", "town", "date", "kwh", "lit_hours", "lit_known_hours", "full_power_kwh",
    "full_power_saved_pct", "historical_kwh", "historical_saved_pct", "coverage", "reset",
    "interpolated", "absurd",
)  # fmt: skip
AVAILABILITY_HEADER = (
    "scope", "town", "equipment_class", "devices", "period_h", "available_h", "availability_pct",
)  # fmt: skip
DELAYS_HEADER = (
    "scope", "town", "severity", "episodes", "acknowledged", "ack_median_s", "ack_p90_s", "cleared",
    "clear_median_s", "clear_p90_s",
)  # fmt: skip


# A spreadsheet runs a cell that starts with one of these as a formula (a town named "=HYPERLINK(…)").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(cell: Cell) -> str | int | float:
    """A cell as written: empty for no figure, a text that a spreadsheet would run quoted with '."""
    if cell is None:
        return ""
    if isinstance(cell, str) and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


def rounded(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def energy_cells(figures: EnergyFigures) -> tuple[Cell, ...]:
    return (
        rounded(figures.kwh, 6),
        rounded(figures.lit_hours),
        rounded(figures.lit_known_hours),
        rounded(figures.full_power_kwh, 6),
        rounded(figures.full_power_saved_pct, 2),
        rounded(figures.historical_kwh, 6),
        rounded(figures.historical_saved_pct, 2),
        rounded(figures.coverage, 4),
        int(figures.reset),
        int(figures.interpolated),
        int(figures.absurd),
    )


def _energy_rows(report: EnergyReport) -> Iterator[tuple[Cell, ...]]:
    def rows(scope: str, cabinet: str | None, town: str | None, total: EnergyFigures,
             days: Sequence[DayFigures]) -> Iterator[tuple[Cell, ...]]:  # fmt: skip
        yield (scope, cabinet, town, None, *energy_cells(total))
        for day in days:
            yield (scope, cabinet, town, day.date.isoformat(), *energy_cells(day.figures))

    for cabinet in report.cabinets:
        yield from rows("cabinet", cabinet.cabinet, cabinet.town, cabinet.total, cabinet.days)
    for town in report.towns:
        yield from rows("town", None, town.town, town.total, town.days)
    yield from rows("total", None, None, report.total.total, report.total.days)


def availability_cells(figures: AvailabilityFigures) -> tuple[Cell, ...]:
    share = figures.share
    return (
        figures.devices,
        rounded(figures.period_ms / 3_600_000),
        rounded(figures.available_ms / 3_600_000),
        None if share is None else round(share * 100, 3),
    )


def _availability_rows(report: AvailabilityReport) -> Iterator[tuple[Cell, ...]]:
    for name, figures in report.by_class.items():
        yield ("class", None, name, *availability_cells(figures))
    for (town, name), figures in report.by_town.items():
        yield ("town", town, name, *availability_cells(figures))


def delay_cells(figures: DelayFigures) -> tuple[Cell, ...]:
    return (
        figures.episodes,
        len(figures.to_ack_s),
        rounded(figures.percentile("ack", 50)),
        rounded(figures.percentile("ack", 90)),
        len(figures.to_clear_s),
        rounded(figures.percentile("clear", 50)),
        rounded(figures.percentile("clear", 90)),
    )


def _delay_rows(report: DelayReport) -> Iterator[tuple[Cell, ...]]:
    yield ("total", None, None, *delay_cells(report.total))
    for severity, figures in report.by_severity.items():
        yield ("severity", None, severity, *delay_cells(figures))
    for town, figures in report.by_town.items():
        yield ("town", town, None, *delay_cells(figures))
    for (town, severity), figures in report.by_town_severity.items():
        yield ("town_severity", town, severity, *delay_cells(figures))


def csv_table(report: KpiReport, table: CsvTable) -> tuple[tuple[str, ...], Iterator[tuple[Cell, ...]]]:
    """(header, rows) of one of the report's CSV tables."""
    if table == "energy":
        return ENERGY_HEADER, _energy_rows(report.energy)
    if table == "availability":
        return AVAILABILITY_HEADER, _availability_rows(report.availability)
    return DELAYS_HEADER, _delay_rows(report.delays)
