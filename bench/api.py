"""API latency of central with a city's month of data in the store, beside its own HTTP floor.

    .venv/bin/python bench/api.py [--data DIR] [--cabinets 1000] [--points 40] [--days 30]
                                  [--interval 3600] [--probe-interval 10] [--requests 200]

The store (SQLite, as ``central serve`` opens it) is built once in ``DIR`` (default
``bench-data/api`` under the system's temporary directory) and reused while its plan is the same:
``cabinets`` cabinets of ``points`` points (four lighting controllers: power, an energy counter,
level, relay...), each with ``days`` days of readings every ``interval`` seconds written through the
store's own ingest path (so its rollups are the real ones), a birth with its inventory, a registry
entry (town, coordinates, rated power) and two alarm episodes a week. One cabinet, the probe, sends
every point every ``probe-interval`` seconds for the whole period (8,640 readings a day and point at
10 s): the range queries read it, so a 24-hour raw range is a real cabinet's day.

Then a server process (the app of ``central serve``, on uvicorn; its KPI day cache filled first, as
the leader of ``central serve`` fills it at start) answers this process's requests,
one at a time, ``requests`` of each (a quarter of that for the KPI reports). Three KPI reports: the
month of the store (whole days); the same month with a backlog landing before each request (one
cabinet's late reading on a day of the month, written by the server's store: the report must be
made again, the other cabinets' parts kept); and the KPI page's period, the last 30 days to the last
settled quarter (the days of this month cached, the parts of days at its ends computed). Printed per
route: p50 and p99 in ms, the ratio of its p99 to the p99 of ``GET /api/v1/health`` measured in the
same run (the HTTP stack's floor on this machine), and the first request's time (for a KPI report:
made with nothing kept in this process, what ``central serve`` makes ahead as each quarter settles).
The goal (issue "control room"): every p99 < 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from central.store.rows import ReceivedBatch, ReceivedStatus
from protocols.fleet import PROTOCOL_VERSION, DataBatch, DeviceInfo, Event, Reading, Status

SETTLE_MS, QUARTER_MS = 60_000, 900_000  # central.kpi.period: a report ends at the last settled quarter

GOAL_P99_MS = 300.0
DAY_MS = 86_400_000
TOWNS = ("Dijon", "Chenôve", "Talant", "Quetigny", "Longvic", "Fontaine-lès-Dijon")
POINT_NAMES = (
    "power_w",
    "energy_wh",
    "level_pct",
    "relay",
    "voltage_v",
    "current_a",
    "temperature_c",
    "lamp_fault",
    "door_open",
    "hours",
)
BATCH_READINGS = 5_000


@dataclass(frozen=True)
class Plan:
    cabinets: int
    points: int
    days: int
    interval_s: int
    probe_interval_s: int
    # Whole days ending at a UTC midnight: a KPI month is whole days. A new store ends at the last
    # midnight before now; a store built on an earlier day is reused with its own end.
    end_ms: int = field(default_factory=lambda: (int(time.time() * 1000) // DAY_MS) * DAY_MS)

    @property
    def start_ms(self) -> int:
        return self.end_ms - self.days * DAY_MS


def cabinet_id(i: int) -> str:
    return f"city-{i:04d}"


PROBE = cabinet_id(0)


def point_names(points: int) -> list[str]:
    return [f"lc{1 + k // len(POINT_NAMES)}/{POINT_NAMES[k % len(POINT_NAMES)]}" for k in range(points)]


def value_of(name: str, ts_ms: int, cabinet: int) -> float | bool:
    hour = (ts_ms // 3_600_000) % 24
    lit = hour >= 18 or hour < 7
    if name.endswith("energy_wh"):
        # 80 W for the lit hours so far: a counter that only grows.
        day, into = divmod(ts_ms, DAY_MS)
        lit_hours_today = min(into / 3_600_000, 7) + max(0, into / 3_600_000 - 18)
        return round((day * 13 + lit_hours_today) * 80.0 + cabinet, 3)
    if name.endswith(("relay", "lamp_fault", "door_open")):
        return lit if name.endswith("relay") else False
    if name.endswith("level_pct"):
        return 70.0 if lit else 0.0
    if name.endswith("power_w"):
        return 80.0 if lit else 0.0
    return float((ts_ms // 60_000) % 1000) / 10.0


def inventory(points: list[str]) -> list[DeviceInfo]:
    devices: dict[str, list[str]] = {}
    for point in points:
        device, _, name = point.partition("/")
        devices.setdefault(device, []).append(name)
    return [
        DeviceInfo(name=name, driver="modbus-tcp", profile="lighting-generic", points=members)
        for name, members in devices.items()
    ]


def alarm_events(start_ms: int, end_ms: int, first_seq: int) -> list[Event]:
    """Two door-open episodes a week: raised, then cleared 10 minutes later."""
    events: list[Event] = []
    seq = first_seq
    ts = start_ms + 3 * 3_600_000
    while ts + 600_000 < end_ms:
        for kind, at in (("alarm_raised", ts), ("alarm_cleared", ts + 600_000)):
            events.append(
                Event(
                    seq=seq,
                    ts=at,
                    source="lc1",
                    kind=kind,
                    severity="warning" if kind == "alarm_raised" else "info",
                    message="door open",
                    data={"device": "lc1", "alarm": "door_open"},
                )
            )
            seq += 1
        ts += 3 * DAY_MS + 12 * 3_600_000
    return events


def cabinet_batches(plan: Plan, index: int, received_ms: int) -> list[ReceivedBatch]:
    cabinet = cabinet_id(index)
    stream = f"s{index:04d}"
    points = point_names(plan.points)
    step_ms = (plan.probe_interval_s if cabinet == PROBE else plan.interval_s) * 1000
    batches: list[ReceivedBatch] = []
    readings: list[Reading] = []
    seq = 1

    def flush(events: list[Event]) -> None:
        nonlocal readings
        seqs = [r.seq for r in readings] + [e.seq for e in events]
        batch = DataBatch(
            v=PROTOCOL_VERSION,
            cabinet=cabinet,
            stream=stream,
            first=min(seqs),
            last=max(seqs),
            readings=readings,
            events=events,
        )
        batches.append(ReceivedBatch(batch, received_ms, f"cityedge/{cabinet}/data", b""))
        readings = []

    for ts in range(plan.start_ms, plan.end_ms, step_ms):
        for name in points:
            readings.append(Reading(seq=seq, point=name, ts=ts, value=value_of(name, ts, index)))
            seq += 1
        if len(readings) >= BATCH_READINGS:
            flush([])
    events = alarm_events(plan.start_ms, plan.end_ms, seq)
    flush(events)
    return batches


async def build(plan: Plan, db: Path) -> None:
    from central.store import open_store

    db.parent.mkdir(parents=True, exist_ok=True)
    received_ms = plan.end_ms
    points = point_names(plan.points)
    started = time.perf_counter()
    async with open_store(f"sqlite:///{db}", durable=False) as store:
        written = 0
        for index in range(plan.cabinets):
            cabinet = cabinet_id(index)
            status = Status(
                v=PROTOCOL_VERSION,
                cabinet=cabinet,
                online=True,
                ts=received_ms,
                version="bench",
                stream=f"s{index:04d}",
                inventory=inventory(points),
            )
            group: list[ReceivedBatch] = []
            for batch in cabinet_batches(plan, index, received_ms):
                group.append(batch)
                if sum(len(b.batch.readings) for b in group) >= 40_000:
                    await store.write(group)
                    written += sum(len(b.batch.readings) for b in group)
                    group = []
            await store.write(group, [ReceivedStatus(status, received_ms)])
            written += sum(len(b.batch.readings) for b in group)
            if index % 50 == 0:
                rate = written / (time.perf_counter() - started)
                print(f"  built {index + 1}/{plan.cabinets} cabinets, {written:,} readings ({rate:,.0f}/s)")
    (db.parent / "plan.json").write_text(json.dumps(asdict(plan)))


async def register(store: Any, plan: Plan, index: int) -> None:
    """The cabinet's registry entry, when this store has a registry."""
    put = getattr(store, "put_registry", None)
    if put is None:
        return
    from central.store.rows import RegistryEntry

    town = TOWNS[index % len(TOWNS)]
    await put(
        RegistryEntry(
            cabinet=cabinet_id(index),
            town=town,
            label=f"cabinet {index}",
            latitude=47.30 + (index % 40) * 0.002,
            longitude=4.98 + (index // 40) * 0.004,
            rated_power_w=320.0,
            baseline_kwh_per_day=4.5,
            broker_hash=None,
            created_ms=plan.end_ms,
            updated_ms=plan.end_ms,
            revoked_ms=None,
        )
    )


async def warm_kpi_days(store: Any, plan: Plan) -> None:
    """Fill the KPI day cache of the period, as the leader of ``central serve`` does at start (once
    per store: later runs find the days cached)."""
    try:
        from central.api.kpi_days import fill_days
    except ImportError:  # a build without the day cache
        return
    started = time.perf_counter()
    count = await fill_days(store, "UTC", plan.start_ms, plan.end_ms, now_ms=int(time.time() * 1000))
    print(
        f"KPI day cache: {count.computed} cabinet-days computed, {count.cached} found cached,"
        f" in {time.perf_counter() - started:.1f} s"
    )


def late_batch(plan: Plan, index: int, seq: int) -> ReceivedBatch:
    """One reading of the cabinet's energy counter in the middle of a day of the period, as a
    backlog brings it: the cabinet's figures of that day change."""
    cabinet = cabinet_id(index)
    day = seq % plan.days
    ts = plan.start_ms + day * DAY_MS + 12 * 3_600_000 + 1_800_000 + index
    reading = Reading(seq=seq, point="lc1/energy_wh", ts=ts, value=value_of("lc1/energy_wh", ts, index))
    batch = DataBatch(
        v=PROTOCOL_VERSION, cabinet=cabinet, stream="late", first=seq, last=seq, readings=[reading]
    )
    return ReceivedBatch(batch, int(time.time() * 1000), f"cityedge/{cabinet}/data", b"")


def serve(db: str, plan: Plan, port: int, token_out: Any, late: Any) -> None:
    import uvicorn

    from central.api import create_app
    from central.auth import Tokens
    from central.store import open_store
    from central.store.auth_rows import Role

    async def main() -> None:
        async with open_store(f"sqlite:///{db}") as store:
            for index in range(plan.cabinets):  # here, not at build: a store built before it had one
                await register(store, plan, index)
            await warm_kpi_days(store, plan)
            tokens = Tokens(store)
            token = await tokens.replace("bench", Role.ADMIN)
            token_out.send(token)

            async def backlogs() -> None:
                # Asked by the measuring process before a request: one cabinet's late reading.
                loop = asyncio.get_running_loop()
                seq = int(time.time() * 1000)  # above every earlier run's
                while True:
                    index = await loop.run_in_executor(None, late.recv)
                    seq += 1
                    await store.write([late_batch(plan, index, seq)])
                    late.send(seq)

            config = uvicorn.Config(create_app(store=store), port=port, log_level="warning", access_log=False)
            await asyncio.gather(uvicorn.Server(config).serve(), backlogs())

    asyncio.run(main())


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def measure(
    client: httpx.Client, path: str, count: int, before: Callable[[int], None] | None = None
) -> list[float]:
    samples: list[float] = []
    for i in range(count):
        if before is not None:
            before(i)
        t0 = time.perf_counter()
        answer = client.get(path)
        elapsed = (time.perf_counter() - t0) * 1000
        if answer.status_code != 200:
            raise SystemExit(f"GET {path}: {answer.status_code} {answer.text[:300]}")
        samples.append(elapsed)
    return samples


def wait_ready(client: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            client.get("/api/v1/health")
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "bench-data" / "api")
    parser.add_argument("--cabinets", type=int, default=1000)
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--interval", type=int, default=3600)
    parser.add_argument("--probe-interval", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--port", type=int, default=18931)
    parser.add_argument(
        "--only", default="", help="measure only the routes whose name has this text (and the floor)"
    )
    args = parser.parse_args()
    plan = Plan(args.cabinets, args.points, args.days, args.interval, args.probe_interval)
    db = args.data / "central.db"
    plan_file = args.data / "plan.json"
    kept = json.loads(plan_file.read_text()) if plan_file.exists() else {}
    if isinstance(kept.get("end_ms"), int):
        plan = replace(plan, end_ms=kept["end_ms"])
    if not db.exists() or kept != asdict(plan):
        for stale in args.data.glob("central.db*"):
            stale.unlink()
        print(f"building the store in {args.data} (once): {plan}")
        asyncio.run(build(plan, db))
    else:
        print(f"reusing the store in {args.data}: {plan}")

    receive, send = multiprocessing.Pipe(duplex=False)
    late_here, late_there = multiprocessing.Pipe()
    server = multiprocessing.Process(
        target=serve, args=(str(db), plan, args.port, send, late_there), daemon=True
    )
    server.start()
    try:
        token = receive.recv()
        base = f"http://127.0.0.1:{args.port}"
        end, start = plan.end_ms, plan.start_ms
        readings = f"/api/v1/cabinets/{PROBE}/points/lc1/power_w/readings"
        month = f"/api/v1/kpi?from={iso(start)}&to={iso(end)}"

        def page_period() -> str:
            # What the KPI page asks: the last 30 days to the last settled quarter.
            now = int(time.time() * 1000)
            settled = (now - SETTLE_MS) // QUARTER_MS * QUARTER_MS
            return f"/api/v1/kpi?from={settled - 30 * DAY_MS}&to={now}"

        def backlog(i: int) -> None:
            late_here.send((i * 7919) % plan.cabinets)  # a cabinet's late reading lands first
            late_here.recv()

        routes: dict[str, tuple[Callable[[], str], Callable[[int], None] | None]] = {
            "health (floor)": (lambda: "/api/v1/health", None),
            "cabinet list": (lambda: "/api/v1/cabinets", None),
            "latest values": (lambda: f"/api/v1/cabinets/{PROBE}/points", None),
            "24 h range, raw": (
                lambda: f"{readings}?from={iso(end - DAY_MS)}&to={iso(end)}&resolution=raw",
                None,
            ),
            "30 d range, auto (rollups)": (
                lambda: f"{readings}?from={iso(start)}&to={iso(end)}&resolution=auto",
                None,
            ),
            "KPI month": (lambda: month, None),
            "KPI month, a backlog before each": (lambda: month, backlog),
            "KPI page's 30 days to now": (page_period, None),
        }
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
            wait_ready(client)
            results: dict[str, tuple[float, float]] = {}
            first: dict[str, float] = {}
            for name, (path_of, before) in routes.items():
                if args.only and args.only not in name and not name.startswith("health"):
                    continue
                count = args.requests if not name.startswith("KPI") else max(10, args.requests // 4)
                t0 = time.perf_counter()
                probe = client.get(path_of())
                first[name] = (time.perf_counter() - t0) * 1000
                if probe.status_code == 404 and name.startswith("KPI"):
                    print(f"{name:34} not served by this build (404)")
                    continue
                measure(
                    client, path_of(), min(5, count), before
                )  # warm the caches as an operator's day would
                samples = measure(client, path_of(), count, before)
                results[name] = (statistics.median(samples), percentile(samples, 0.99))
        floor = results["health (floor)"][1]
        print(f"{'route':34} {'p50 ms':>9} {'p99 ms':>9} {'p99/floor':>10} {'first ms':>9}")
        worst = 0.0
        for name, (p50, p99) in results.items():
            print(f"{name:34} {p50:9.1f} {p99:9.1f} {p99 / floor:10.1f} {first[name]:9.1f}")
            if not name.startswith("health"):
                worst = max(worst, p99)
        verdict = "met" if worst < GOAL_P99_MS else "MISSED"
        print(f"worst p99 {worst:.1f} ms: goal < {GOAL_P99_MS:.0f} ms {verdict}")
    finally:
        server.terminate()
        server.join(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
