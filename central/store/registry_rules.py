"""What a registry entry may hold, and when writing one changes something. Pure: no database.

Every backend checks an entry with ``check_entry`` before it writes it (the API checks the same
bounds first, with the same constants, so a caller sees a 422 naming the field instead).
"""

from __future__ import annotations

import math

from central.store.rows import RegistryEntry
from protocols.fleet.topics import is_valid_cabinet_id

TOWN_MAX_CHARS = 100
LABEL_MAX_CHARS = 200
# Mosquitto's PBKDF2 hash as JSON is ~150 characters; anything much longer is not one.
BROKER_HASH_MAX_CHARS = 1000
# A street cabinet's lamps: far below this; a value above it is a unit mistake (W vs mW).
POWER_MAX_W = 10_000_000.0
KWH_PER_DAY_MAX = 1_000_000.0
# The broker's own accounts (config/broker/dynamic-security.template.json): a cabinet of that name
# would be given their credentials' place, or central's access.
RESERVED_IDS = frozenset({"central", "cityedge-admin"})
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class RegistryEntryError(ValueError):
    """An entry a store refuses; ``field`` names what is wrong (the message says what is expected)."""

    def __init__(self, cabinet: str, field: str, problem: str) -> None:
        super().__init__(f"registry entry {cabinet!r}: {field} {problem}")
        self.cabinet = cabinet
        self.field = field
        self.problem = problem


def _check_range(cabinet: str, field: str, value: float | None, low: float, high: float) -> None:
    if value is None:
        return
    if not math.isfinite(value) or not low <= value <= high:
        raise RegistryEntryError(cabinet, field, f"must be a finite number from {low:g} to {high:g}")


def check_entry(entry: RegistryEntry) -> None:
    """Raise ``RegistryEntryError`` unless every field of ``entry`` is within its bounds."""
    cab = entry.cabinet
    if not is_valid_cabinet_id(cab):
        raise RegistryEntryError(
            cab[:80], "cabinet", "must be 1-64 of A-Z a-z 0-9 _ . - (a letter or digit first)"
        )
    if cab.lower() in RESERVED_IDS:
        raise RegistryEntryError(
            cab, "cabinet", "is the name of one of the broker's own accounts: choose another"
        )
    if not entry.town.strip() or len(entry.town) > TOWN_MAX_CHARS:
        raise RegistryEntryError(cab, "town", f"must be 1 to {TOWN_MAX_CHARS} characters")
    if len(entry.label) > LABEL_MAX_CHARS:
        raise RegistryEntryError(cab, "label", f"must be at most {LABEL_MAX_CHARS} characters")
    for field, text in (("town", entry.town), ("label", entry.label)):
        if any(ord(ch) < 32 or ch in _BIDI_CONTROLS for ch in text):
            # Bidirectional overrides would let a name show as another one on the operators' page.
            raise RegistryEntryError(cab, field, "must not hold control characters")
    if (entry.latitude is None) != (entry.longitude is None):
        raise RegistryEntryError(cab, "latitude", "and longitude must be given together")
    _check_range(cab, "latitude", entry.latitude, -90.0, 90.0)
    _check_range(cab, "longitude", entry.longitude, -180.0, 180.0)
    _check_range(cab, "rated_power_w", entry.rated_power_w, 0.0, POWER_MAX_W)
    _check_range(cab, "baseline_kwh_per_day", entry.baseline_kwh_per_day, 0.0, KWH_PER_DAY_MAX)
    if entry.broker_hash is not None:
        check_broker_hash(cab, entry.broker_hash)
    if entry.created_ms < 0 or entry.updated_ms < entry.created_ms:
        raise RegistryEntryError(cab, "updated_ms", "must not be before created_ms (both >= 0)")


def check_broker_hash(cabinet: str, broker_hash: str) -> None:
    if not 0 < len(broker_hash) <= BROKER_HASH_MAX_CHARS:
        raise RegistryEntryError(cabinet, "broker_hash", f"must be 1 to {BROKER_HASH_MAX_CHARS} characters")


def registry_params(entry: RegistryEntry) -> tuple[object, ...]:
    """The entry's columns in the registry table's order (both backends' upsert takes them so)."""
    return (
        entry.cabinet,
        entry.town,
        entry.label,
        entry.latitude,
        entry.longitude,
        entry.rated_power_w,
        entry.baseline_kwh_per_day,
        entry.broker_hash,
        entry.created_ms,
        entry.updated_ms,
        entry.revoked_ms,
    )
