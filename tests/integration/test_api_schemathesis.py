"""Schemathesis against the app's own /openapi.json: whatever a client sends, never a 5xx.

Every operation gets valid requests (positive) and invalid ones (negative: wrong types, values out of
range, missing fields), with an admin's token so that every handler is reached, on a real SQLite
store that knows a cabinet, its readings, a group and a command. Hypothesis is derandomised: the
same cases every run, so that CI is repeatable; raise EXAMPLES to search further.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase

from central.api import create_app
from central.auth import Identity, Tokens
from central.commands import CommandService
from central.store.auth_rows import Role
from central.store.rows import GroupMember, ReceivedBatch, ReceivedStatus
from central.store.sqlite import SqliteStore
from central.testing import TS0_MS, batch_payload
from protocols.fleet import PROTOCOL_VERSION, DeviceInfo, Status, decode_data_batch

pytestmark = pytest.mark.integration

EXAMPLES = 30
CAB = "cab-1"


async def _seed(store: SqliteStore) -> str:
    inventory = [DeviceInfo(name="lc1", driver="modbus", points=["power_w", "energy_wh"])]
    status = Status(v=PROTOCOL_VERSION, cabinet=CAB, online=True, ts=TS0_MS, inventory=inventory)
    payload = batch_payload(CAB, "0123abcd", 1, 50, points=("lc1/power_w", "lc1/energy_wh"))
    batch = ReceivedBatch(decode_data_batch(payload), TS0_MS, f"cityedge/{CAB}/data", payload)
    await store.write([batch], [ReceivedStatus(status, TS0_MS)])
    service = CommandService(store=store, sender=None)
    await service.put_group("g1", [GroupMember(CAB, "lc1")])
    await service.submit(
        cabinet=CAB, device="lc1", group=None, action="dim", args={"level_pct": 10},
        not_after=None, issued_by=Identity("seed", Role.OPERATOR),
    )  # fmt: skip
    return await Tokens(store).create("fuzzer", Role.ADMIN)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    """A store opened outside any running loop: the ASGI client runs the app in a loop of its own."""
    store = SqliteStore(tmp_path / "central.db", durable=False)
    asyncio.run(store.open())
    try:
        yield store
    finally:
        asyncio.run(store.close())


def test_no_input_makes_the_api_answer_a_server_error(
    store: SqliteStore, record_property: pytest.RecordProperty
) -> None:
    token = asyncio.run(_seed(store))
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(store=store))
    headers = {"Authorization": f"Bearer {token}"}
    cases = 0
    errors: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:
        for mode in schemathesis.GenerationMode:
            if mode == schemathesis.GenerationMode.NEGATIVE and not list(operation.iter_parameters()):
                continue  # nothing to make invalid (open data's catalogue takes no input, no token)

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                nonlocal cases
                cases += 1
                response = case.call(headers=headers)
                if response.status_code >= 500:
                    errors.append(f"{response.status_code} for {case.as_curl_command()}")

            run()
    record_property("schemathesis_cases", cases)
    print(f"schemathesis: {cases} cases over {len(operations)} operations")
    assert errors == [], "\n".join(errors[:10])
    assert cases >= len(operations) * EXAMPLES
