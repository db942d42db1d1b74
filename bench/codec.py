"""Why the fleet protocol decodes with msgspec: typed, validated MessagePack, against msgpack + pydantic.

Decodes the same 1,000-reading data batch both ways, validating the same constraints (cabinet id and
point name patterns, seq and timestamp ranges, quality enum), and measures time per batch and the
memory the decoded batch holds. The edge does this for every command and ack, central for every batch.

    .venv/bin/python bench/codec.py
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Annotated, Any

import msgpack
from pydantic import BaseModel, ConfigDict, Field

from protocols.fleet import Reading, decode_data_batch, encode, encode_data_batch
from protocols.fleet.messages import CABINET_ID_PATTERN
from protocols.quality import Quality

READINGS = 1000
ROUNDS = 200


class PydanticReading(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    seq: Annotated[int, Field(ge=1, le=2**63 - 1)]
    point: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}/[A-Za-z0-9_.-]{1,64}$")]
    ts: Annotated[int, Field(ge=0, le=2**53)]
    value: float | int | bool | str | None
    quality: Quality = Quality.GOOD
    reason: Annotated[str, Field(max_length=256)] | None = None


class PydanticBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: int
    cabinet: Annotated[str, Field(pattern=CABINET_ID_PATTERN)]
    stream: Annotated[str, Field(pattern=r"^[0-9a-f]{8,32}$")]
    first: int
    last: int
    readings: list[PydanticReading]
    events: list[Any]
    results: list[Any]
    backlog: int


FIELDS = ("seq", "point", "ts", "value", "quality", "reason")


def decode_pydantic(payload: bytes) -> PydanticBatch:
    raw = msgpack.unpackb(payload)
    raw["readings"] = [dict(zip(FIELDS, r, strict=False)) for r in raw["readings"]]
    return PydanticBatch.model_validate(raw)


def measure(decode: Callable[[bytes], object], payload: bytes) -> tuple[float, float]:
    decode(payload)  # warm up
    start = time.perf_counter()
    for _ in range(ROUNDS):
        decode(payload)
    per_batch_us = (time.perf_counter() - start) / ROUNDS * 1e6
    gc.collect()
    tracemalloc.start()
    kept = decode(payload)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    return per_batch_us, size / 1024


def main() -> None:
    readings = [
        encode(Reading(seq=i + 1, point=f"lc{i % 4}/power_w", ts=1_700_000_000_000 + i, value=150.0 + i % 7))
        for i in range(READINGS)
    ]
    payload = encode_data_batch(
        cabinet="dijon-0001", stream="0123456789abcdef", first=1, last=READINGS, readings=readings
    )
    assert decode_pydantic(payload).readings[5].point == decode_data_batch(payload).readings[5].point
    fast_us, fast_kib = measure(decode_data_batch, payload)
    slow_us, slow_kib = measure(decode_pydantic, payload)
    print(f"decode + validate one batch of {READINGS} readings ({len(payload)} bytes)")
    print(f"  msgspec (typed structs)     {fast_us:9.0f} us   holds {fast_kib:7.0f} KiB")
    print(f"  msgpack + pydantic          {slow_us:9.0f} us   holds {slow_kib:7.0f} KiB")
    print(f"  msgspec is {slow_us / fast_us:.1f}x faster and holds {slow_kib / fast_kib:.1f}x less memory")


if __name__ == "__main__":
    main()
