"""Inputs that used to make the API answer 500: each is now a 4xx naming what is wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from central.store.auth_rows import Role
from tests.integration.api_client import LocalApi, add_cabinet, local_api

pytestmark = pytest.mark.integration

CAB = "cab-1"
JSON = {"content-type": "application/json"}
DIM = '{"target": {"cabinet": "cab-1"}, "action": "dim", '


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[LocalApi]:
    async with local_api(tmp_path / "central.db") as local:
        await add_cabinet(local.store, CAB)
        yield local


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{"target": {"cabinet": "\\ud800"}, "action": "switch"}', "not half of a pair"),
        ('{"target": {"cabinet": "cab-1"}, "action": "dim", "args": {"\\udfff": 1}}', "not half of a pair"),
        ('{"target": {"cabinet": "cab-1"}, "action": "dim", "args": {"level_pct": NaN}}', "NaN is not JSON"),
        ('{"target": {"cabinet": "cab-1"}, "action": "dim", "args": {"level_pct": Infinity}}', "Infinity"),
        ('{"target": {"cabinet": "cab-1"}, "action": "dim", "args": {"level_pct": -Infinity}}', "Infinity"),
        (
            '{"target": {"cabinet": "cab-1"}, "action": "dim", "args": {"level_pct": 1e999}}',
            "1e999 is too large",
        ),
        (
            '{"target": {"cabinet": "cab-1"}, "action": "dim", "not_after": 1' + "0" * 5000 + "}",
            "beyond 64 bits",
        ),
        ('{"target": NaN}', "NaN is not JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (b'{"target": "\xff"}', "not UTF-8"),
    ],
)
async def test_a_json_body_we_cannot_store_is_a_422_not_a_500(
    api: LocalApi, body: str | bytes, words: str
) -> None:
    async with api.client(Role.OPERATOR) as client:
        response = await client.post("/api/v1/commands", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["type"] == "json_invalid" and error["loc"][0] == "body"
    assert words in error["msg"]
    assert await api.store.commands() == []


async def test_a_lone_surrogate_in_a_body_the_json_module_accepts_is_still_refused_at_its_place(
    api: LocalApi,
) -> None:
    body = '{"target": {"cabinet": "cab-1", "device": "\\ud83d\\ude00 ok \\ud800"}, "action": "switch"}'
    async with api.client(Role.OPERATOR) as client:
        response = await client.post("/api/v1/commands", content=body, headers=JSON)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", body.index("\\ud800")]  # the pair before it is text


async def test_a_pair_of_surrogates_is_text_and_goes_through(api: LocalApi) -> None:
    body = '{"target": {"cabinet": "cab-1", "group": "\\ud83d\\ude00"}, "action": "switch"}'
    async with api.client(Role.OPERATOR) as client:
        response = await client.post("/api/v1/commands", content=body, headers=JSON)
    # Parsed, then refused for what it says (not a group name), echoing the emoji intact.
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["loc"], error["input"]) == (["body", "target", "group"], "\N{GRINNING FACE}")


@pytest.mark.parametrize(
    ("params", "name", "words"),
    [
        ({"start": "9999-12-31"}, "start", "9999-12-30 or before"),
        ({"start": "9999-12-30", "end": "9999-12-31"}, "end", "9999-12-30 or before"),
        ({"start": "2024-01-01", "tz": "America"}, "tz", "IANA time zone"),
        ({"start": "2024-01-01", "tz": "a" * 300}, "tz", "IANA time zone"),
        ({"start": "2024-01-01", "tz": "../../../etc/passwd"}, "tz", "IANA time zone"),
        ({"start": "2024-01-01", "tz": "UTC\x00"}, "tz", "IANA time zone"),
        ({"start": "2024-01-01", "max_power_w": "inf"}, "max_power_w", "finite"),
        ({"start": "2024-01-01", "max_power_w": "nan"}, "max_power_w", ""),
    ],
)
async def test_energy_refuses_days_and_zones_it_cannot_compute(
    api: LocalApi, params: dict[str, str], name: str, words: str
) -> None:
    async with api.client(Role.VIEWER) as client:
        response = await client.get(f"/api/v1/cabinets/{CAB}/energy", params=params)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", name]
    assert words in error["msg"]


@pytest.mark.parametrize(
    ("params", "skipped"),
    [
        # Samoa went from UTC-10 to UTC+14 at the end of 2011-12-29: its 2011-12-30 never was.
        ({"start": "2011-12-29", "end": "2011-12-31", "tz": "Pacific/Apia"}, "2011-12-30"),
        # Kwajalein crossed the date line the other way round in 1993.
        ({"start": "1993-08-20", "end": "1993-08-22", "tz": "Pacific/Kwajalein"}, "1993-08-21"),
        ({"start": "9999-12-29", "end": "9999-12-30", "tz": "Etc/GMT+12"}, None),
        ({"start": "0001-01-01", "tz": "Pacific/Kiritimati"}, None),
    ],
)
async def test_energy_over_days_a_time_zone_skipped_and_at_the_ends_of_the_calendar(
    api: LocalApi, params: dict[str, str], skipped: str | None
) -> None:
    async with api.client(Role.VIEWER) as client:
        response = await client.get(f"/api/v1/cabinets/{CAB}/energy", params=params)
    assert response.status_code == 200, response.text
    days = {day["date"]: day for day in response.json()["days"]}
    assert len(days) == len(
        range(int(params["start"][-2:]), int(params.get("end", params["start"])[-2:]) + 1)
    )
    if skipped is not None:
        assert days[skipped]["kwh"] == 0 and days[skipped]["coverage"] == 1.0
