"""The KPI day cache on every backend: filled by a report, current until readings land on its days,
and a report from it is the report computed from the rollups (the city of kpi_city)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time

import httpx

from central.api import create_app
from central.api.kpi import report_out
from central.api.kpi_fetch import cabinet_figures, episodes_of, outages_by_device, scope_of
from central.api.kpi_parts import PeriodParts
from central.kpi.period import kpi_period
from central.kpi.report import kpi_report
from central.kpi_warm import KpiWarmer, local_midnight_ms
from central.leadership import SoleLeader
from central.store import Store
from central.store.auth_rows import Role
from central.store.kpi_days import utc_day
from central.store.rows import EpisodeQuery, NewNote
from tests.integration.api_client import bearer, new_token
from tests.integration.kpi_city import DAY, HOUR, MAY1, NOW, T10, Feed, build_city

MAY_1, MAY_2 = dt.date(2024, 5, 1), dt.date(2024, 5, 2)
PERIOD = {"from": "2024-05-01T00:00:00Z", "to": "2024-05-03T00:00:00Z"}


async def _report(store: Store, tz: str = "UTC") -> dict[str, object]:
    """The report through a new app (its own memo: the day cache answers)."""
    token = await new_token(store, Role.VIEWER)
    app = create_app(store=store, clock=lambda: NOW)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://central.test", headers=bearer(token)
    ) as http:
        response = await http.get("/api/v1/kpi", params={**PERIOD, "tz": tz})
        assert response.status_code == 200, response.text
        again = await http.get("/api/v1/kpi", params={**PERIOD, "tz": tz})  # the memo answers
        assert again.content == response.content
        body: dict[str, object] = response.json()
        return body


async def _from_rollups(
    store: Store, tz: str = "UTC", *, start_ms: int = MAY1, end_ms: int = MAY1 + 2 * DAY, now_ms: int = NOW
) -> dict[str, object]:
    """The report as it was made before the cache: every cabinet's quarters of the period."""
    from zoneinfo import ZoneInfo

    period = kpi_period(start_ms, end_ms, ZoneInfo(tz), now_ms=now_ms)
    scope = await scope_of(store, None)
    raised, overlapping = await episodes_of(store, scope, period)
    figures = await cabinet_figures(store, scope, period, outages_by_device(overlapping))
    report = kpi_report(
        period,
        tz,
        cabinets=[f.energy for f in figures if f.energy is not None],
        devices=[d for f in figures for d in f.devices],
        episodes=raised,
        towns=scope.towns,
    )
    body: dict[str, object] = report_out(report).model_dump(mode="json")
    return body


def _cabinet_day_kwh(body: dict[str, object], cabinet: str, date: str) -> float:
    energy = body["energy"]
    assert isinstance(energy, dict)
    mine = next(c for c in energy["cabinets"] if c["cabinet"] == cabinet)
    kwh: float = next(d["kwh"] for d in mine["days"] if d["date"] == date)
    return kwh


async def test_a_report_fills_the_cache_and_late_readings_make_their_day_stale(store: Store) -> None:
    await build_city(store)
    first = await _report(store)
    assert first == await _from_rollups(store)
    rows = await store.kpi_days("UTC", MAY_1, MAY_2)
    assert sorted((r.cabinet, r.date) for r in rows) == [
        ("cab-a", MAY_1),
        ("cab-a", MAY_2),
        ("cab-b", MAY_1),
        ("cab-b", MAY_2),
    ]
    assert await _report(store) == first  # from the cache now
    assert [(r.cabinet, r.date) for r in await store.kpi_days("UTC", MAY_1, MAY_2, cabinets=["cab-b"])] == [
        ("cab-b", MAY_1),
        ("cab-b", MAY_2),
    ]
    assert await store.kpi_days("UTC", MAY_1, MAY_2, cabinets=[]) == []
    edges = await store.kpi_counter_edges(start_ms=MAY1, end_ms=MAY1 + 2 * DAY)
    assert [(e.cabinet, e.point, e.before) for e in edges] == [
        ("cab-a", "lc1/energy_wh", None),
        ("cab-b", "m/import_energy_wh", None),
    ]
    assert edges[1].after == (MAY1 + 2 * DAY, 4800.0)  # read at both ends: the end is after the period
    before = await store.kpi_change_totals(utc_day(MAY1), utc_day(MAY1 + DAY))
    assert sorted(before) == ["cab-a", "cab-b"]

    # A backlog of cab-b arrives: a reading at noon on May 1.
    late = Feed(store, "cab-b")
    late.seq = 100
    await late.send([late.reading("m/import_energy_wh", MAY1 + 12 * HOUR, 2000.0)])
    now = await store.kpi_change_totals(utc_day(MAY1), utc_day(MAY1 + DAY))
    assert now["cab-b"] > before["cab-b"] and now["cab-a"] == before["cab-a"]
    assert await store.kpi_change_totals(utc_day(MAY1) - 10, utc_day(MAY1) - 1) == {}
    assert await store.kpi_changes("cab-b", utc_day(MAY1), utc_day(MAY1 + DAY)) != {}
    current = {(r.cabinet, r.date) for r in await store.kpi_days("UTC", MAY_1, MAY_2)}
    assert ("cab-b", MAY_1) not in current and ("cab-a", MAY_1) in current
    after = await _report(store)
    assert after == await _from_rollups(store)
    # 2000 Wh by noon, then 2800 Wh over 36 h of which 12 on May 1.
    assert _cabinet_day_kwh(after, "cab-b", "2024-05-01") == round(2.0 + 2.8 / 3, 6)
    assert _cabinet_day_kwh(first, "cab-b", "2024-05-01") == 2.4


async def test_days_of_another_zone_are_their_own_rows(store: Store) -> None:
    await build_city(store)
    assert await _report(store, "Europe/Paris") == await _from_rollups(store, "Europe/Paris")
    # The period's ends are Paris' 02:00 (parts of days, computed each time): May 2 alone is whole.
    assert [(r.cabinet, r.date) for r in await store.kpi_days("Europe/Paris", MAY_1, MAY_2)] == [
        ("cab-a", MAY_2),
        ("cab-b", MAY_2),
    ]
    assert await store.kpi_days("UTC", MAY_1, MAY_2) == []


async def test_the_leader_fills_the_days_missing_or_stale(store: Store) -> None:
    await build_city(store)
    warmer = KpiWarmer(store, SoleLeader("kpi-days"), clock=lambda: NOW, days=3)
    assert local_midnight_ms(NOW, warmer._tz) == MAY1 + 2 * DAY
    assert await warmer.warm_once() == 2 * 3  # April 30 (no data: its row says so), May 1 and 2
    assert await warmer.warm_once() == 0
    late = Feed(store, "cab-a")
    late.seq = 1000
    await late.send([late.reading("lc1/relay", MAY1 + DAY + 20 * 900_000, True)])
    assert await warmer.warm_once() == 1
    report = await _report(store)
    assert json.dumps(report, sort_keys=True) == json.dumps(await _from_rollups(store), sort_keys=True)


async def test_days_of_a_fifth_zone_are_computed_but_not_kept(store: Store) -> None:
    await build_city(store)
    for tz in ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"):
        await _report(store, tz)
    assert await store.kpi_zones() == ["America/New_York", "Asia/Tokyo", "Europe/Paris", "UTC"]
    assert await _report(store, "Australia/Sydney") == await _from_rollups(store, "Australia/Sydney")
    assert await store.kpi_zones() == ["America/New_York", "Asia/Tokyo", "Europe/Paris", "UTC"]
    assert await store.kpi_days("Australia/Sydney", MAY_1, MAY_2) == []


async def test_one_app_reuses_the_parts_of_cabinets_whose_inputs_did_not_change(store: Store) -> None:
    """The report made again after a change is the one made from the rollups; the cabinets the
    change did not touch keep their part (the same object), the touched one is computed again."""
    await build_city(store)
    token = await new_token(store, Role.ADMIN)
    app = create_app(store=store, clock=lambda: NOW)

    def kept() -> PeriodParts:
        (found,) = app.state.kpi_parts._kept.values()
        assert isinstance(found, PeriodParts)
        return found

    def parts() -> dict[str, object]:
        return {cabinet: part for cabinet, (_, part) in kept().cabinets.items()}

    def towns() -> dict[str | None, object]:
        return {town: group for town, (_, group) in kept().towns.items()}

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://central.test", headers=bearer(token)
    ) as http:

        async def report() -> dict[str, object]:
            response = await http.get("/api/v1/kpi", params=PERIOD)
            assert response.status_code == 200, response.text
            body: dict[str, object] = response.json()
            return body

        first = await report()
        assert first == await _from_rollups(store)
        before, towns_before, delays_before = parts(), towns(), kept().delays
        assert sorted(before) == ["cab-a", "cab-b"]
        assert set(towns_before) == {"Chenôve", "Dijon"}

        # A backlog of cab-b lands on May 1: its part only is made again.
        late = Feed(store, "cab-b")
        late.seq = 100
        await late.send([late.reading("m/import_energy_wh", MAY1 + 12 * HOUR, 2000.0)])
        after = await report()
        assert after == await _from_rollups(store) and after != first
        assert parts()["cab-a"] is before["cab-a"] and parts()["cab-b"] is not before["cab-b"]
        assert towns()["Dijon"] is towns_before["Dijon"] and towns()["Chenôve"] is not towns_before["Chenôve"]
        assert kept().delays is delays_before  # no episode changed

        # The registry gives cab-a another rated power: its full-power baseline follows.
        entry = next(e for e in await store.registry() if e.cabinet == "cab-a")
        await store.put_registry(dataclasses.replace(entry, rated_power_w=1000.0, updated_ms=NOW))
        kept_b = parts()["cab-b"]
        rated = await report()
        assert rated == await _from_rollups(store)
        assert parts()["cab-b"] is kept_b and parts()["cab-a"] is not before["cab-a"]
        full = rated["energy"]["total"]["total"]["full_power_kwh"]  # type: ignore[index]
        assert full == after["energy"]["total"]["total"]["full_power_kwh"] / 2  # type: ignore[index]

        # An episode acknowledged: the delays change, every part is kept.
        kept_parts = parts()
        door = [e for e in await store.episodes(EpisodeQuery(limit=100)) if e.alarm == "door_open"]
        second = max(door, key=lambda e: e.raised_ms)
        await store.add_note(
            second.id, NewNote(kind="acknowledge", author="ops", ts_ms=second.raised_ms + 60_000)
        )
        acked = await report()
        assert acked == await _from_rollups(store) and acked["delays"] != rated["delays"]
        assert all(parts()[c] is kept_parts[c] for c in kept_parts)
        assert kept().delays is not delays_before


async def test_a_batch_ahead_of_the_quarter_under_way_changes_no_day(store: Store) -> None:
    """Readings the quarter under way or later (a live cabinet, a clock ahead) hold nothing a report
    made now holds: they count no change; one older reading does."""
    await build_city(store)
    first, last = utc_day(MAY1), utc_day(MAY1 + DAY)
    before = await store.kpi_change_totals(first, last)
    ahead = time.time_ns() // 1_000_000 + 3 * HOUR
    feed = Feed(store, "cab-a")
    feed.seq = 5000
    await feed.send([feed.reading("lc1/energy_wh", ahead, 99_000.0)])
    ahead_day = utc_day(ahead)
    assert await store.kpi_change_totals(ahead_day, ahead_day) == {}
    assert await store.kpi_change_totals(first, last) == before
    await feed.send([feed.reading("lc1/relay", MAY1 + 23 * HOUR, True)])
    now = await store.kpi_change_totals(first, last)
    assert now["cab-a"] == before["cab-a"] + 1 and now["cab-b"] == before["cab-b"]


async def test_the_kpi_reads_the_times_of_the_episodes_of_a_period_and_those_still_open(store: Store) -> None:
    await build_city(store)
    old = Feed(store, "cab-b")
    old.seq = 7000
    raised = MAY1 - 30 * DAY
    await old.send(
        [], [old.event("alarm_raised", raised, source="m", severity="alarm", alarm="door_open", device="m")]
    )
    found = await store.kpi_episodes(since_ms=MAY1, until_ms=MAY1 + DAY, limit=100)
    assert [e.id for e in found] == sorted(e.id for e in found)
    assert sorted((e.cabinet, e.alarm, e.raised_ms, e.cleared_ms is None) for e in found) == [
        ("cab-a", "device_lost", T10, False),
        ("cab-a", "door_open", T10, False),
        ("cab-a", "door_open", T10 + 300_000, False),
        ("cab-b", "door_open", raised, True),  # raised before, still open
    ]
    door = next(e for e in found if e.raised_ms == T10 and e.alarm == "door_open")
    assert (door.severity, door.device, door.acked_ms, door.cleared_ms) == (
        "warning",
        "lc1",
        T10 + 120_000,
        T10 + 10_000,
    )
    assert len(await store.kpi_episodes(since_ms=MAY1, until_ms=MAY1 + DAY, limit=2)) == 2
    assert await store.kpi_episodes(since_ms=MAY1 + DAY, until_ms=MAY1 + 2 * DAY, limit=100) == [
        e for e in found if e.cabinet == "cab-b"
    ]
