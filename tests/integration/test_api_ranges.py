"""The range API from rollups says what the raw readings say: a bucket cut by either end of the range
is left out, never counted whole (it would hold readings outside the range)."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.store.auth_rows import Role
from central.store.rows import ReceivedBatch
from protocols.fleet import Reading, decode_data_batch, encode, encode_data_batch
from tests.integration.api_client import add_cabinet, local_api

pytestmark = pytest.mark.integration

MINUTE = 60_000
T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z, a bucket boundary
POINT = "/api/v1/cabinets/cab-1/points/lc1/power_w/readings"


def one_an_hour_of_minutes() -> ReceivedBatch:
    readings = [Reading(i + 1, "lc1/power_w", T0 + i * MINUTE, float(i)) for i in range(120)]
    payload = encode_data_batch(
        cabinet="cab-1", stream="0123abcd", first=1, last=120, readings=[encode(r) for r in readings]
    )
    return ReceivedBatch(decode_data_batch(payload), T0 + 121 * MINUTE, "cityedge/cab-1/data", payload)


@pytest.mark.parametrize(
    ("start_min", "end_min", "buckets"),
    [
        (0, 20, [0]),
        (5, 35, [15]),
        (0, 60, [0, 15, 30, 45]),
        (5, 14, []),
        (0, 120, [0, 15, 30, 45, 60, 75, 90, 105]),
    ],
)
async def test_rollup_buckets_are_those_wholly_inside_the_range(
    tmp_path: Path, start_min: int, end_min: int, buckets: list[int]
) -> None:
    async with local_api(tmp_path / "central.db") as api:
        await add_cabinet(api.store)
        await api.store.write([one_an_hour_of_minutes()])
        async with api.client(Role.VIEWER) as http:
            range_ = {"start": T0 + start_min * MINUTE, "end": T0 + end_min * MINUTE}
            got = (await http.get(POINT, params={**range_, "resolution": "15m"})).json()
            assert [(b["start_ms"] - T0) // MINUTE for b in got["buckets"]] == buckets
            # Each bucket's figures are exactly what its raw readings give.
            for bucket in got["buckets"]:
                start = bucket["start_ms"]
                raw = (await http.get(POINT, params={"start": start, "end": start + 15 * MINUTE})).json()
                values = [r["value"] for r in raw["readings"]]
                assert (bucket["count"], bucket["min"], bucket["max"]) == (
                    len(values),
                    min(values),
                    max(values),
                )
