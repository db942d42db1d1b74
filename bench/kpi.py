"""The KPI report's latency over a month, SQLite, through the HTTP app (in process).

    .venv/bin/python bench/kpi.py [--cabinets 100] [--days 30] [--runs 5] [--db PATH]

Each cabinet is registered (a town, a rated power, a baseline) and holds what the report reads: a
lighting controller (relay, energy counter), a traffic controller (mode, fault) and a camera
(reachable), one reading of each point per quarter hour for ``days`` days, written through the
store's ingest (rollups as ingest keeps them), and a door alarm raised and cleared twice a day. Then
``GET /api/v1/kpi`` for the whole period runs ``runs`` times: the first (it fills the day cache of
a new store), then p50 and max of the others.
``--db`` keeps the store (built once, reused when it exists).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from central.api import create_app
from central.auth import Tokens
from central.store.auth_rows import Role
from central.store.rows import ReceivedBatch, ReceivedStatus, RegistryEntry
from central.store.sqlite import SqliteStore
from protocols.fleet import (
    PROTOCOL_VERSION,
    DeviceInfo,
    Event,
    Reading,
    Status,
    decode_data_batch,
    encode,
    encode_data_batch,
)

QUARTER = 15 * 60_000
DAY = 86_400_000
T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
TOWNS = ("Dijon", "Chenove", "Talant", "Fontaine-les-Dijon", "Quetigny", "Longvic")
INVENTORY = [
    DeviceInfo(name="lc1", driver="modbus-tcp", points=["relay", "energy_wh"]),
    DeviceInfo(name="tc1", driver="opcua", points=["mode", "fault"]),
    DeviceInfo(name="cam1", driver="onvif", points=["reachable"]),
]


def _day_batch(cabinet: str, day: int, seq: int) -> tuple[ReceivedBatch, int]:
    readings: list[bytes] = []
    start = T0 + day * DAY
    for q in range(96):
        ts = start + q * QUARTER + 30_000
        lit = q < 24 or q >= 76
        values = (
            ("lc1/relay", lit),
            ("lc1/energy_wh", float(day * 20_000 + q * 200)),
            ("tc1/mode", "normal" if q % 48 else "flashing"),
            ("tc1/fault", False),
            ("cam1/reachable", True),
        )
        for point, value in values:
            seq += 1
            readings.append(encode(Reading(seq=seq, point=point, ts=ts, value=value)))
    events = []
    for k, (raised, cleared) in enumerate(
        ((9 * 3600_000, 9 * 3600_000 + 40_000), (15 * 3600_000, 15 * 3600_000 + 95_000))
    ):
        del k
        for kind, at in (("alarm_raised", raised), ("alarm_cleared", cleared)):
            seq += 1
            data = {"alarm": "door_open", "device": "lc1"}
            events.append(
                encode(
                    Event(
                        seq=seq,
                        ts=start + at,
                        source="lc1",
                        kind=kind,
                        severity="warning",
                        message=kind,
                        data=data,
                    )
                )
            )
    first = seq - len(readings) - len(events) + 1
    payload = encode_data_batch(
        cabinet=cabinet, stream="0123abcd", first=first, last=seq, readings=readings, events=events
    )
    return ReceivedBatch(decode_data_batch(payload), start + DAY, f"cityedge/{cabinet}/data", payload), seq


async def _build(store: SqliteStore, cabinets: int, days: int) -> None:
    started = time.perf_counter()
    seqs = {}
    for c in range(cabinets):
        cab = f"cab-{c:04d}"
        await store.put_registry(
            RegistryEntry(
                cab, TOWNS[c % len(TOWNS)], "", 47.3 + c * 1e-4, 5.04, 1500.0, 20.0, None, T0, T0, None
            )
        )
        status = Status(v=PROTOCOL_VERSION, cabinet=cab, online=True, ts=T0, inventory=INVENTORY)
        await store.write([], [ReceivedStatus(status, T0)])
        seqs[cab] = 0
    for day in range(days):
        group = []
        for cab, seq in list(seqs.items()):
            batch, seqs[cab] = _day_batch(cab, day, seq)
            group.append(batch)
            if len(group) == 20:
                await store.write(group)
                group = []
        if group:
            await store.write(group)
        print(f"  day {day + 1}/{days} written ({time.perf_counter() - started:.0f} s)", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cabinets", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "kpi.db"
        fresh = not db.exists()
        async with SqliteStore(db, durable=False) as store:
            if fresh:
                print(f"building {args.cabinets} cabinets x {args.days} days ...")
                await _build(store, args.cabinets, args.days)
            token = await Tokens(store).create(f"bench-{time.time_ns()}", Role.VIEWER)
            app = create_app(store=store, clock=lambda: T0 + args.days * DAY + 3600_000)
            params = {"from": str(T0), "to": str(T0 + args.days * DAY)}
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://central",
                headers={"Authorization": f"Bearer {token}"},
                timeout=600,
            ) as http:
                times = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    response = await http.get("/api/v1/kpi", params=params)
                    times.append(time.perf_counter() - t0)
                    assert response.status_code == 200, response.text
                body = response.json()
    total = body["energy"]["total"]["total"]
    # The first run fills the day cache (central.api.kpi_days) when the store has none yet.
    warm = times[1:] or times
    print(
        f"KPI report, {args.cabinets} cabinets x {args.days} days (5 points each, one reading a quarter):"
        f" first {times[0] * 1000:.0f} ms; then p50 {statistics.median(warm) * 1000:.0f} ms,"
        f" max {max(warm) * 1000:.0f} ms over {len(warm)} runs;"
        f" {total['kwh']:.1f} kWh, {body['delays']['total']['episodes']} episodes"
    )


if __name__ == "__main__":
    asyncio.run(main())
