"""Pure parts of the aggregator: time parsing of the API, backoff, configuration errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from fastapi.exceptions import RequestValidationError

from central.api.params import parse_time
from central.errors import ServerError
from central.ingest import Ingestor
from central.server import CentralServer
from central.store.sqlite import SqliteStore
from protocols.backoff import Backoff


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 0),
        ("1714557600000", 1_714_557_600_000),
        ("2024-05-01T10:00:00Z", 1_714_557_600_000),
        ("2024-05-01T12:00:00+02:00", 1_714_557_600_000),
        ("2024-05-01T10:00:00.250Z", 1_714_557_600_250),
        ("2024-05-01T10:00:00", 1_714_557_600_000),  # no offset: UTC
        ("2024-05-01", 1_714_521_600_000),
    ],
)
def test_parse_time_accepts_ms_and_iso_8601(raw: str, expected: int) -> None:
    assert parse_time("start", raw) == expected


@pytest.mark.parametrize("raw", ["yesterday", "-5", "1.5", "", "1969-12-31T23:59:59Z"])
def test_parse_time_refuses_with_a_message_naming_the_field(raw: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        parse_time("since", raw)
    [error] = info.value.errors()
    assert error["loc"] == ("query", "since")
    assert "since" in error["msg"]


def test_backoff_grows_jittered_and_capped() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_a_bad_broker_url_fails_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match=r"broker URL.*mqtt://"):
        Ingestor(store=SqliteStore(tmp_path / "c.db"), broker_url="http://example")
    with pytest.raises(ServerError, match="broker URL"):
        CentralServer(db=tmp_path / "c.db", broker_url="127.0.0.1:1883")
