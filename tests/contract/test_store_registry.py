"""The cabinet registry (``RegistryStore``): the same behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from central.store import Store
from central.store.auth_rows import Role, TokenRow
from central.store.registry_rules import RegistryEntryError
from central.store.rows import RegistryEntry
from central.testing import TS0_MS
from tests.contract.backends import Backend


def entry(cabinet: str = "cab-1", **changes: object) -> RegistryEntry:
    base = RegistryEntry(
        cabinet=cabinet,
        town="Chenôve",
        label="Rue de la Libération / av. Roland Carraz",
        latitude=47.2915,
        longitude=5.0083,
        rated_power_w=1840.0,
        baseline_kwh_per_day=None,
        broker_hash=None,
        created_ms=TS0_MS,
        updated_ms=TS0_MS,
        revoked_ms=None,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def test_an_entry_is_stored_and_read_back_exactly(store: Store) -> None:
    assert await store.registry_entry("cab-1") is None
    written = entry(
        broker_hash='{"password": "x", "salt": "y", "iterations": 1000}', baseline_kwh_per_day=12.5
    )
    assert await store.put_registry(written) is True
    assert await store.registry_entry("cab-1") == written
    assert await store.registry() == [written]


async def test_the_same_entry_twice_changes_nothing_and_keeps_its_times(store: Store) -> None:
    first = entry()
    assert await store.put_registry(first) is True
    assert (
        await store.put_registry(dataclasses.replace(first, created_ms=TS0_MS + 9, updated_ms=TS0_MS + 9))
        is False
    )
    assert await store.registry_entry("cab-1") == first


async def test_a_change_is_written_keeping_created_ms(store: Store) -> None:
    await store.put_registry(entry())
    moved = entry(latitude=47.3, longitude=5.01, created_ms=TS0_MS + 5, updated_ms=TS0_MS + 5)
    assert await store.put_registry(moved) is True
    got = await store.registry_entry("cab-1")
    assert got == dataclasses.replace(moved, created_ms=TS0_MS)


@pytest.mark.parametrize(
    "field, value",
    [
        ("town", "Talant"),
        ("label", ""),
        ("latitude", None),
        ("rated_power_w", None),
        ("baseline_kwh_per_day", 3.0),
        ("broker_hash", "{}"),
        ("revoked_ms", TS0_MS + 1),
    ],
)
async def test_each_field_counts_as_a_change(store: Store, field: str, value: object) -> None:
    await store.put_registry(entry())
    changed = entry(**{field: value, "updated_ms": TS0_MS + 1})
    if field == "latitude":  # coordinates come in pairs
        changed = dataclasses.replace(changed, longitude=None)
    assert await store.put_registry(changed) is True
    assert await store.registry_entry("cab-1") == changed


async def test_revoking_keeps_the_row_and_hides_it_from_the_default_list(store: Store) -> None:
    await store.put_registry(entry("cab-1"))
    await store.put_registry(entry("cab-2"))
    assert await store.revoke_cabinet("cab-1", revoked_ms=TS0_MS + 60_000) is True
    assert await store.revoke_cabinet("cab-1", revoked_ms=TS0_MS + 120_000) is False  # once
    assert await store.revoke_cabinet("nobody", revoked_ms=TS0_MS) is False
    revoked = await store.registry_entry("cab-1")
    assert revoked is not None and revoked.revoked_ms == TS0_MS + 60_000
    assert revoked.updated_ms == TS0_MS + 60_000
    assert [e.cabinet for e in await store.registry()] == ["cab-2"]
    assert [e.cabinet for e in await store.registry(include_revoked=True)] == ["cab-1", "cab-2"]


async def test_the_list_is_in_byte_order_of_cabinet_ids(store: Store) -> None:
    ids = ["cab10", "cab-10", "Cab9", "cab_1", "cab.2", "0cab"]
    for cabinet in ids:
        await store.put_registry(entry(cabinet))
    assert [e.cabinet for e in await store.registry()] == sorted(ids)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"cabinet": "bad/id"}, "cabinet"),
        ({"cabinet": "x" * 65}, "cabinet"),
        ({"town": ""}, "town"),
        ({"town": "T" * 101}, "town"),
        ({"town": "Dijon\x00"}, "town"),
        ({"label": "L" * 201}, "label"),
        ({"latitude": 90.5}, "latitude"),
        ({"latitude": float("nan")}, "latitude"),
        ({"longitude": -180.01}, "longitude"),
        ({"longitude": None}, "latitude"),
        ({"rated_power_w": -1.0}, "rated_power_w"),
        ({"rated_power_w": float("inf")}, "rated_power_w"),
        ({"baseline_kwh_per_day": -0.5}, "baseline_kwh_per_day"),
        ({"broker_hash": "h" * 1001}, "broker_hash"),
        ({"updated_ms": TS0_MS - 1}, "updated_ms"),
    ],
)
async def test_an_entry_out_of_bounds_is_refused_and_nothing_written(
    store: Store, changes: dict[str, object], field: str
) -> None:
    bad = entry(**changes)
    with pytest.raises(RegistryEntryError) as caught:
        await store.put_registry(bad)
    assert caught.value.field == field
    assert await store.registry(include_revoked=True) == []


async def test_bounds_themselves_are_accepted(store: Store) -> None:
    edge = entry(
        town="T" * 100,
        label="L" * 200,
        latitude=-90.0,
        longitude=180.0,
        rated_power_w=0.0,
        baseline_kwh_per_day=0.0,
    )
    assert await store.put_registry(edge) is True
    assert await store.registry_entry("cab-1") == edge


async def test_another_store_on_the_same_database_sees_the_registry(backend: Backend) -> None:
    async with backend.store() as one:
        await one.put_registry(entry("cab-1"))
    async with backend.store() as other:
        assert await other.registry_entry("cab-1") == entry("cab-1")


async def test_concurrent_writes_of_one_entry_report_one_change(backend: Backend) -> None:
    async with backend.store() as one, backend.store() as two:
        same = entry("cab-1")
        changed = await asyncio.gather(*(s.put_registry(same) for s in (one, two, one, two)))
        assert sorted(changed) == [False, False, False, True]
        assert await one.registry() == [same]


async def test_a_token_may_have_the_installer_role(store: Store) -> None:
    row = TokenRow("0123456789abcdef", "tech-1", Role.INSTALLER.value, "d" * 64, TS0_MS)
    assert await store.add_token(row) is True
    assert await store.token("0123456789abcdef") == row
