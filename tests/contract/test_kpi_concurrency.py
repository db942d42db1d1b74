"""The KPI report's kept parts under concurrent makers, a day not settled yet, the bounded reads and
the task that makes the page's reports ahead: on every backend, against the report made from the
rollups (``_from_rollups``)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import types
from typing import Any

import httpx
import pytest

import central.api.kpi_days as kpi_days_module
import central.store.kpi_days as store_kpi_days
from central.api import create_app, kpi_fetch, kpi_make, kpi_parts
from central.api.kpi_days import days_of_cabinets
from central.api.kpi_fetch import scope_of
from central.kpi.period import Period, days_of, settled_end
from central.kpi_ahead import KpiAhead
from central.store import Store
from central.store.auth_rows import Role
from central.store.kpi_days import utc_day
from central.store.rows import EpisodeQuery, NewNote
from protocols.testing import wait_until
from tests.contract.test_kpi_day_cache import PERIOD, _from_rollups, _report
from tests.integration.api_client import bearer, new_token
from tests.integration.kpi_city import DAY, HOUR, MAY1, NOW, Feed, build_city

MIDNIGHT = MAY1 + 2 * DAY  # 2024-05-03T00:00:00Z
MAY_1, MAY_2 = dt.date(2024, 5, 1), dt.date(2024, 5, 2)


def _clock_of(monkeypatch: pytest.MonkeyPatch, module: types.ModuleType, now_ms: int) -> None:
    """This module's reading of the host's clock at ``now_ms`` (it reads time.time_ns())."""
    monkeypatch.setattr(module, "time", types.SimpleNamespace(time_ns=lambda: now_ms * 1_000_000))


async def test_two_makers_of_one_period_each_use_their_own_parts(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A maker of older inputs puts its parts among the period's while a maker of newer ones is
    computing: the newer one's body and town sums are made of the parts it found and computed."""
    await build_city(store)
    token = await new_token(store, Role.ADMIN)
    real = kpi_parts.cached_figures
    calls = 0
    entered = {1: asyncio.Event(), 3: asyncio.Event()}
    go = {1: asyncio.Event(), 3: asyncio.Event()}

    async def paced(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        mine = calls
        if mine in go:
            entered[mine].set()
            await go[mine].wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(kpi_parts, "cached_figures", paced)
    app = create_app(store=store, clock=lambda: NOW)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://central.test", headers=bearer(token)
    ) as http:

        async def get() -> httpx.Response:
            return await http.get("/api/v1/kpi", params=PERIOD)

        older = asyncio.create_task(get())  # reads its inputs, then waits in its figures
        await asyncio.wait_for(entered[1].wait(), 10)
        entry = next(e for e in await store.registry() if e.cabinet == "cab-a")
        await store.put_registry(dataclasses.replace(entry, rated_power_w=1000.0, updated_ms=NOW))
        assert (await get()).status_code == 200  # made whole, with the new rated power
        late = Feed(store, "cab-b")
        late.seq = 100
        await late.send([late.reading("m/import_energy_wh", MAY1 + 12 * HOUR, 2000.0)])
        newer = asyncio.create_task(get())  # cab-a's part found, cab-b's computed: waits
        await asyncio.wait_for(entered[3].wait(), 10)
        go[1].set()
        assert (await older).status_code == 200  # puts its cab-a part (the old rated power)
        go[3].set()
        assert (await newer).status_code == 200
        assert (await get()).json() == await _from_rollups(store)  # from the memo
        # One more change that touches no part: the town sums kept are found by the same keys.
        door = [e for e in await store.episodes(EpisodeQuery(limit=100)) if e.alarm == "door_open"]
        second = max(door, key=lambda e: e.raised_ms)
        await store.add_note(second.id, NewNote(kind="acknowledge", author="ops", ts_ms=second.raised_ms + 1))
        assert (await get()).json() == await _from_rollups(store)


async def test_a_day_not_settled_yet_is_not_kept(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five seconds after midnight, yesterday's last readings are in flight: they would count no
    change (the writer judges them of a quarter under way), so the day is computed, not kept."""
    await build_city(store)
    _clock_of(monkeypatch, kpi_days_module, MIDNIGHT + 5_000)
    period = Period(MAY1, MIDNIGHT, tuple(days_of(MAY1, MIDNIGHT, dt.UTC)))
    await days_of_cabinets(store, await scope_of(store, None), period, "UTC")
    assert sorted({r.date for r in await store.kpi_days("UTC", MAY_1, MAY_2)}) == [MAY_1]


async def test_open_data_just_after_midnight_keeps_no_unsettled_day(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await build_city(store)
    app = create_app(store=store, clock=lambda: MIDNIGHT + 5_000)  # an anonymous harvester
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://central.test"
    ) as http:
        answer = await http.get("/opendata/lighting-energy-daily.csv")
        assert answer.status_code == 200, answer.text
    assert ("cab-b", MAY_2) not in {(r.cabinet, r.date) for r in await store.kpi_days("UTC", MAY_1, MAY_2)}
    # cab-b's reading of 23:59:50 is written at 00:00:10: no change counted, none needed.
    before = await store.kpi_change_totals(utc_day(MAY1), utc_day(MAY1 + DAY))
    _clock_of(monkeypatch, store_kpi_days, MIDNIGHT + 10_000)
    late = Feed(store, "cab-b")
    late.seq = 100
    await late.send([late.reading("m/import_energy_wh", MIDNIGHT - 10_000, 4700.0)])
    monkeypatch.undo()
    assert await store.kpi_change_totals(utc_day(MAY1), utc_day(MAY1 + DAY)) == before
    assert await _report(store) == await _from_rollups(store)


async def test_the_reads_of_reports_are_bounded(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await build_city(store)
    token = await new_token(store, Role.VIEWER)
    real = kpi_make.read_inputs
    inside = 0
    release = asyncio.Event()
    callers = kpi_make.MAX_CONCURRENT_READS + 3

    async def held(*args: Any) -> Any:
        nonlocal inside
        inside += 1
        await release.wait()
        return await real(*args)

    monkeypatch.setattr(kpi_make, "read_inputs", held)
    app = create_app(store=store, clock=lambda: NOW)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://central.test", headers=bearer(token)
    ) as http:
        tasks = [asyncio.create_task(http.get("/api/v1/kpi", params=PERIOD)) for _ in range(callers)]
        reads = kpi_make._reads(app)
        # A caller is counted as it asks, and reads at once when a slot is free.
        await wait_until(lambda: reads.asked == callers, timeout=10, what="every caller asking")
        assert inside == kpi_make.MAX_CONCURRENT_READS  # the others wait
        release.set()
        assert [r.status_code for r in await asyncio.gather(*tasks)] == [200] * callers


async def test_the_task_making_reports_ahead_outlives_what_fails(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await build_city(store)
    monkeypatch.setattr(kpi_fetch, "MAX_EPISODES", 1)  # an alarm storm: the report is refused
    app = create_app(store=store, clock=lambda: NOW)
    ahead = KpiAhead(app, store, clock=lambda: NOW)
    await ahead.make_once()  # logs, raises nothing
    assert ahead.made == 0
    assert "more than 1 alarm episodes" in caplog.text
    monkeypatch.undo()
    await ahead.make_once()
    assert ahead.made == 2


async def test_the_report_of_a_quarter_just_settled_is_stood_in_for_while_it_is_made(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked for the last 30 days as a quarter settles, a caller gets the report made a quarter
    earlier at once (its period says so) while the new one is made; then the new one."""
    await build_city(store)
    token = await new_token(store, Role.VIEWER)
    now = NOW
    app = create_app(store=store, clock=lambda: now)
    real = kpi_parts.cached_figures
    hold = asyncio.Event()
    hold.set()

    async def paced(*args: Any, **kwargs: Any) -> Any:
        await hold.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(kpi_parts, "cached_figures", paced)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://central.test", headers=bearer(token)
    ) as http:

        async def last_30_days() -> Any:
            end = settled_end(now)
            answer = await http.get("/api/v1/kpi", params={"from": str(end - 30 * DAY), "to": str(now)})
            assert answer.status_code == 200, answer.text
            return answer.json()

        first = await last_30_days()
        assert first["period"]["to_ms"] == settled_end(NOW)
        now = NOW + 15 * 60_000  # the next quarter has settled
        hold.clear()
        stood_in = await asyncio.wait_for(last_30_days(), 10)  # not waiting for the making
        assert stood_in == first
        hold.set()
        making = kpi_make._making(app)
        await wait_until(lambda: not making, timeout=10, what="the new report made")
        new = await last_30_days()
        assert new["period"]["to_ms"] == settled_end(NOW) + 15 * 60_000
        reference = await _from_rollups(
            store, start_ms=new["period"]["from_ms"], end_ms=new["period"]["to_ms"], now_ms=now
        )
        assert new == reference


async def test_a_report_made_ahead_stands_in_for_the_next(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await build_city(store)
    token = await new_token(store, Role.VIEWER)
    now = NOW
    app = create_app(store=store, clock=lambda: now)
    ahead = KpiAhead(app, store, clock=lambda: now)
    await ahead.make_once()
    real = kpi_parts.cached_figures
    hold = asyncio.Event()

    async def held(*args: Any, **kwargs: Any) -> Any:
        await hold.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(kpi_parts, "cached_figures", held)
    now = NOW + 15 * 60_000
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://central.test", headers=bearer(token)
    ) as http:
        end = settled_end(now)
        params = {"from": str(end - 30 * DAY), "to": str(now)}
        answer = await asyncio.wait_for(http.get("/api/v1/kpi", params=params), 10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["period"]["to_ms"] == settled_end(NOW)  # the one made ahead
        hold.set()
        making = kpi_make._making(app)
        await wait_until(lambda: not making, timeout=10, what="the new report made")
        assert (await http.get("/api/v1/kpi", params=params)).json()["period"]["to_ms"] == end
