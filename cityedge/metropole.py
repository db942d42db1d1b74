"""Where the demo's cabinets stand: towns of Dijon Métropole, and a registry entry for each cabinet.

Each town has an approximate centre and a radius; a cabinet gets a town (Dijon, the largest, more
often than the others) and a point scattered around its centre, the same one at every start (seeded
by the cabinet's number), so that the map and the KPIs per town have something true-looking to show.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from central.store.rows import RegistryEntry


@dataclass(frozen=True, slots=True)
class Town:
    name: str
    latitude: float
    longitude: float
    radius_km: float


TOWNS = (
    Town("Dijon", 47.3220, 5.0415, 2.2),
    Town("Chenôve", 47.2930, 5.0055, 0.9),
    Town("Talant", 47.3370, 5.0050, 0.7),
    Town("Quetigny", 47.3130, 5.1060, 0.8),
    Town("Longvic", 47.2870, 5.0640, 0.9),
    Town("Fontaine-lès-Dijon", 47.3430, 5.0200, 0.6),
    Town("Chevigny-Saint-Sauveur", 47.3000, 5.1350, 0.9),
    Town("Saint-Apollinaire", 47.3330, 5.0850, 0.8),
    Town("Marsannay-la-Côte", 47.2710, 4.9900, 0.8),
    Town("Plombières-lès-Dijon", 47.3370, 4.9680, 0.7),
    Town("Sennecey-lès-Dijon", 47.2900, 5.1050, 0.6),
    Town("Ahuy", 47.3690, 5.0230, 0.5),
)
# One cabinet in three is in Dijon itself; the others go round the other towns.
_DIJON_EVERY = 3
KM_PER_DEGREE_LAT = 111.2


def town_of(number: int) -> Town:
    if number % _DIJON_EVERY == 1:
        return TOWNS[0]
    others = TOWNS[1:]
    # The k-th cabinet outside Dijon (numbers 1, 4, 7... are in Dijon) goes to the k-th other town.
    return others[(number - (number + _DIJON_EVERY - 1) // _DIJON_EVERY - 1) % len(others)]


def place_of(number: int) -> tuple[Town, float, float]:
    """The town and the (latitude, longitude) of demo cabinet ``number``; the same at every start."""
    town = town_of(number)
    rng = random.Random(number)
    distance = town.radius_km * math.sqrt(rng.random())
    bearing = rng.uniform(0, 2 * math.pi)
    lat = town.latitude + distance * math.cos(bearing) / KM_PER_DEGREE_LAT
    lon = town.longitude + distance * math.sin(bearing) / (
        KM_PER_DEGREE_LAT * math.cos(math.radians(town.latitude))
    )
    return town, round(lat, 6), round(lon, 6)


def registry_entry(cabinet: str, number: int, *, rated_power_w: float, now_ms: int) -> RegistryEntry:
    town, lat, lon = place_of(number)
    return RegistryEntry(
        cabinet=cabinet,
        town=town.name,
        label=f"{town.name} {number:03d}",
        latitude=lat,
        longitude=lon,
        rated_power_w=rated_power_w,
        baseline_kwh_per_day=None,
        broker_hash=None,
        created_ms=now_ms,
        updated_ms=now_ms,
        revoked_ms=None,
    )
