"""The inventory: which cabinets to provision, from a CSV file or from the command line's flags.

The CSV has a header row naming its columns, in any order (UTF-8, an Excel BOM allowed; "," or ";"
between cells, found from the header; with ";" a decimal comma is read too):

    id           required  the cabinet id, also its broker username (1-64 of A-Z a-z 0-9 _ . -)
    town         required  1-100 characters
    lat, lon     optional  degrees (WGS 84), both or neither: -90..90, -180..180
    label        optional  where it stands, in words (at most 200 characters)
    rated_power_w          optional  its lamps at full power, W (>= 0)
    baseline_kwh_per_day   optional  a historical baseline, kWh/day (>= 0)
    devices      optional  its devices, space-separated (``cityedge.provision.devices``); empty:
                           the template's devices

Each row is read on its own: a bad one is reported with its line number and the others go on.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from central.store.registry_rules import RegistryEntryError, check_entry
from central.store.rows import RegistryEntry
from cityedge.provision.devices import DeviceSpecError, parse_devices

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_ROWS = 100_000
COLUMNS = ("id", "town", "lat", "lon", "label", "rated_power_w", "baseline_kwh_per_day", "devices")
REQUIRED = ("id", "town")


class InventoryError(ValueError):
    """The inventory as a whole cannot be read (missing file, no header, unknown column)."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


@dataclass(frozen=True, slots=True)
class CabinetSpec:
    """One cabinet to provision, as the inventory gives it. ``where`` says which row ("line 7")."""

    cabinet: str
    town: str
    where: str
    line: int = 0  # where in the file (0: not from a file), to report in the file's order
    label: str = ""
    latitude: float | None = None
    longitude: float | None = None
    rated_power_w: float | None = None
    baseline_kwh_per_day: float | None = None
    devices: tuple[dict[str, Any], ...] = field(default=())

    def registry_fields(self) -> dict[str, Any]:
        """The body of PUT /registry/{cabinet}."""
        return {
            "town": self.town,
            "label": self.label,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "rated_power_w": self.rated_power_w,
            "baseline_kwh_per_day": self.baseline_kwh_per_day,
        }


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that cannot be provisioned: ``where`` ("line 7"), its cabinet id when it has one."""

    where: str
    cabinet: str | None
    problem: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass(frozen=True, slots=True)
class Inventory:
    cabinets: tuple[CabinetSpec, ...]
    errors: tuple[RowError, ...]


def read_inventory(path: Path) -> Inventory:
    """The cabinets of the CSV at ``path``; raises ``InventoryError`` only when no row can be read."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InventoryError(str(path), f"is {size} bytes, over {MAX_FILE_BYTES}: split it")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InventoryError(str(path), f"cannot read it ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise InventoryError(str(path), f"is not UTF-8 (byte {exc.start}): save it as CSV UTF-8") from exc
    return parse_inventory(text, source=str(path))


def parse_inventory(text: str, *, source: str = "inventory") -> Inventory:
    text = text.removeprefix("\ufeff")  # Excel's "CSV UTF-8" starts with a byte order mark
    header_line = text.partition("\n")[0]
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InventoryError(source, f"line 1: {exc}") from exc
    if header is None:
        raise InventoryError(source, f"is empty: its first line names the columns ({', '.join(COLUMNS)})")
    names = [name.strip().lower() for name in header]
    unknown = [n[:40] for n in names if n not in COLUMNS][:10]
    if unknown:
        raise InventoryError(
            source, f"line 1: unknown column(s) {unknown}: the columns are {', '.join(COLUMNS)}"
        )
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise InventoryError(source, f"line 1: missing column(s) {missing} (required: {', '.join(REQUIRED)})")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InventoryError(source, f"line 1: column(s) {twice} given twice")
    return _rows(reader, names, decimal_comma=delimiter == ";", source=source)


def _rows(reader: Any, names: list[str], *, decimal_comma: bool, source: str) -> Inventory:
    cabinets: list[CabinetSpec] = []
    errors: list[RowError] = []
    first_line: dict[str, str] = {}
    while True:
        line = reader.line_num + 1
        where = f"line {line}"
        try:
            cells = next(reader, None)
        except csv.Error as exc:
            errors.append(RowError(where, None, f"not CSV: {exc}", line))
            break  # the reader cannot resync after a broken quote
        if cells is None:
            break
        if not any(c.strip() for c in cells):
            continue  # a blank line
        if len(cabinets) + len(errors) >= MAX_ROWS:
            raise InventoryError(source, f"over {MAX_ROWS} rows: split it")
        if len(cells) != len(names):
            errors.append(RowError(where, None, f"{len(cells)} cells, the header names {len(names)}", line))
            continue
        row = {name: cell.strip() for name, cell in zip(names, cells, strict=True)}
        spec = spec_of(row, where, line=line, decimal_comma=decimal_comma)
        if isinstance(spec, RowError):
            errors.append(spec)
        elif spec.cabinet in first_line:
            again = f"cabinet {spec.cabinet!r} is already on {first_line[spec.cabinet]}"
            errors.append(RowError(where, spec.cabinet, again, line))
        else:
            first_line[spec.cabinet] = where
            cabinets.append(spec)
    return Inventory(tuple(cabinets), tuple(errors))


def spec_of(
    row: Mapping[str, str], where: str, *, line: int = 0, decimal_comma: bool = False
) -> CabinetSpec | RowError:
    """One cabinet from its cells (CSV or flags), checked with the registry's own bounds."""
    cabinet = row.get("id", "")
    for column, cell in row.items():
        if not _is_text(cell):  # a flag of bytes not UTF-8 (the shell gives them as surrogates)
            shown_id = cabinet if column != "id" and _is_text(cabinet) and len(cabinet) <= 64 else None
            return RowError(where, shown_id, f"{column} must be text (UTF-8): retype it", line)
    shown = cabinet if len(cabinet) <= 64 else None
    try:
        numbers = {
            key: _number(key, row.get(key, ""), decimal_comma)
            for key in ("lat", "lon", "rated_power_w", "baseline_kwh_per_day")
        }
        devices = tuple(parse_devices(row.get("devices", "")))
    except (ValueError, DeviceSpecError) as exc:
        return RowError(where, shown, str(exc), line)
    spec = CabinetSpec(
        cabinet=cabinet,
        town=row.get("town", ""),
        where=where,
        line=line,
        label=row.get("label", ""),
        latitude=numbers["lat"],
        longitude=numbers["lon"],
        rated_power_w=numbers["rated_power_w"],
        baseline_kwh_per_day=numbers["baseline_kwh_per_day"],
        devices=devices,
    )
    try:
        check_entry(_as_entry(spec))
    except RegistryEntryError as exc:
        column = {"cabinet": "id", "latitude": "lat", "longitude": "lon"}.get(exc.field, exc.field)
        return RowError(where, shown, f"{column} {exc.problem}", line)
    return spec


def _is_text(cell: str) -> bool:
    try:
        cell.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_entry(spec: CabinetSpec) -> RegistryEntry:
    return RegistryEntry(
        spec.cabinet,
        spec.town,
        spec.label,
        spec.latitude,
        spec.longitude,
        spec.rated_power_w,
        spec.baseline_kwh_per_day,
        None,
        0,
        0,
        None,
    )


def _number(column: str, cell: str, decimal_comma: bool) -> float | None:
    if not cell:
        return None
    text = cell.replace(",", ".") if decimal_comma else cell
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} {cell[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{column} {cell[:40]!r} is not a finite number")
    return value


def from_flags(values: Mapping[str, str | None]) -> Inventory:
    """One cabinet from ``--cabinet``, ``--town``, ... (the CSV's columns, as flags)."""
    row = {key: value for key, value in values.items() if value is not None}
    spec = spec_of(row, "the flags")
    if isinstance(spec, RowError):
        return Inventory((), (spec,))
    return Inventory((spec,), ())
