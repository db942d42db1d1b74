"""Where the demo's cabinets stand: towns of Dijon Métropole, near their town, the same every start."""

from __future__ import annotations

import math
from collections import Counter

from central.store.registry_rules import check_entry
from cityedge.metropole import KM_PER_DEGREE_LAT, TOWNS, place_of, registry_entry


def test_cabinets_spread_over_every_town_each_near_its_centre() -> None:
    towns = Counter()
    for number in range(1, 1001):
        town, lat, lon = place_of(number)
        towns[town.name] += 1
        dy = (lat - town.latitude) * KM_PER_DEGREE_LAT
        dx = (lon - town.longitude) * KM_PER_DEGREE_LAT * math.cos(math.radians(town.latitude))
        assert math.hypot(dx, dy) <= town.radius_km + 0.01, (number, town.name)
        # All of them around Dijon (47.32 N, 5.04 E): within 12 km.
        assert abs(lat - 47.32) < 0.11 and abs(lon - 5.04) < 0.16
    assert set(towns) == {t.name for t in TOWNS}
    assert towns["Dijon"] == 334  # one in three
    others = [n for name, n in towns.items() if name != "Dijon"]
    assert max(others) - min(others) <= 1


def test_the_same_place_at_every_start_and_a_valid_registry_entry() -> None:
    assert place_of(7) == place_of(7)
    entry = registry_entry("demo-007", 7, rated_power_w=300.0, now_ms=1_000)
    check_entry(entry)
    assert (entry.town, entry.label, entry.rated_power_w) == ("Dijon", "Dijon 007", 300.0)
    assert entry.broker_hash is None and entry.revoked_ms is None
