"""What a flooding cabinet costs the others: the good fleet's ingest rate alone, then beside a flood.

    .venv/bin/python bench/flood.py [--seconds 10] [--cabinets 200] [--batch 40] [--interval 1]
                                    [--window 8] [--flooders 1] [--flooder-nice 19]

One run, one aggregator:
1. starts its own Mosquitto and a CentralServer (ingest + API) on a temporary SQLite file;
2. a good fleet in its own process: ``--cabinets`` cabinets, each sending a batch of ``--batch``
   readings every ``--interval`` seconds with at most ``--window`` unacknowledged, as agents do
   (``--interval 0``: as fast as central acknowledges, the harshest reading);
3. phase "alone": the good fleet for ``--seconds``; phase "flood": the same, while ``--flooders``
   processes each publish junk on one stolen cabinet's data topic as fast as they can (QoS 0, no
   waiting), 300-byte payloads that look like nothing;
4. prints the good fleet's acknowledged readings/s in each phase, their ratio, the flood's rate and
   what central refused of it. Floor: the flood costs the good fleet at most 20 % (ratio >= 0.80).

All processes share this machine's cores. The flooders run at nice 19 by default: in the field their
CPU is the attacker's own, so here they take what central, the broker and the fleet leave (and still
publish thousands of messages a second, more than a cabinet's cellular link carries).
``--flooder-nice 0`` lets them compete for the cores too: then the figure also measures this
machine's CPU, shared with the attacker, not only what central spends on the flood.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

FLOOR_RATIO = 0.80
TS0_MS = 1_714_557_600_000
POINTS = [f"lc{i % 4}/q{i}" for i in range(20)]


@dataclass(frozen=True)
class Plan:
    seconds: float
    cabinets: int
    batch: int
    window: int
    interval: float
    flooders: int
    flooder_nice: int


# -- the good fleet ------------------------------------------------------------------------------


def fleet_main(host: str, port: int, plan: Plan, conn: Connection) -> None:
    from aiomqtt import MqttError

    try:
        acked = asyncio.run(_fleet(host, port, plan, conn))
    except (MqttError, OSError, RuntimeError, TimeoutError, ValueError) as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    else:
        conn.send(("done", acked))


async def _fleet(
    host: str, port: int, plan: Plan, conn: Connection
) -> tuple[list[tuple[float, int]], list[tuple[float, float]]]:
    """Run until told to stop; return (monotonic time, readings) of every ack received, and
    (time sent, seconds to its ack) of every batch."""
    import aiomqtt

    from protocols.fleet import Reading, decode_ack, encode, encode_data_batch
    from protocols.fleet.topics import Topics, all_cabinets, parse_topic

    acked: list[tuple[float, int]] = []
    latencies: list[tuple[float, float]] = []
    pending: set[asyncio.Task[None]] = set()
    waiting: dict[tuple[str, int], asyncio.Event] = {}
    stop = asyncio.Event()

    async with aiomqtt.Client(host, port, max_inflight_messages=1000, timeout=60) as client:
        client.pending_calls_threshold = 100_000
        await client.subscribe(all_cabinets("ack"), qos=1)

        async def on_acks() -> None:
            async for message in client.messages:
                cabinet, _ = parse_topic(message.topic.value)
                ack = decode_ack(message.payload, topic_cabinet=cabinet)
                event = waiting.pop((cabinet, ack.first), None)
                if event is not None:
                    acked.append((time.monotonic(), ack.last - ack.first + 1))
                    event.set()

        async def cabinet(index: int) -> None:
            """One batch per interval (as an agent commits one a second), at most ``window`` unacked."""
            name = f"good-{index:03d}"
            topics = Topics(name)
            window = asyncio.Semaphore(plan.window)
            loop = asyncio.get_running_loop()
            next_send = loop.time() + plan.interval * index / plan.cabinets  # spread over the interval
            k = 0
            while not stop.is_set():
                if plan.interval:
                    await asyncio.sleep(max(0.0, next_send - loop.time()))
                    next_send += plan.interval
                await window.acquire()
                first = k * plan.batch + 1
                k += 1
                readings = [
                    encode(Reading(first + i, POINTS[i % len(POINTS)], TS0_MS + first + i, float(i)))
                    for i in range(plan.batch)
                ]
                payload = encode_data_batch(
                    cabinet=name,
                    stream=f"{index + 1:08x}",
                    first=first,
                    last=first + plan.batch - 1,
                    readings=readings,
                )
                event = waiting[(name, first)] = asyncio.Event()
                sent_at = time.monotonic()
                await client.publish(topics.data, payload, qos=1)
                pending.add(asyncio.create_task(settle(name, first, event, sent_at, window)))

        async def settle(
            name: str, first: int, event: asyncio.Event, sent_at: float, window: asyncio.Semaphore
        ) -> None:
            try:
                async with asyncio.timeout(30):
                    await event.wait()
                latencies.append((sent_at, time.monotonic() - sent_at))
            except TimeoutError:
                waiting.pop((name, first), None)  # given up on, not counted
            finally:
                window.release()

        listener = asyncio.create_task(on_acks())
        conn.send(("ready", None))
        lanes = [asyncio.create_task(cabinet(c)) for c in range(plan.cabinets)]
        await asyncio.to_thread(conn.recv)  # "stop"
        stop.set()
        for lane in lanes:
            lane.cancel()
        await asyncio.gather(*lanes, *pending, return_exceptions=True)
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    return acked, latencies


# -- a flooder -------------------------------------------------------------------------------------


def flooder_main(host: str, port: int, index: int, nice: int, conn: Connection) -> None:
    """Publish junk as fast as the client goes until told to stop; report how many were sent."""
    import paho.mqtt.client as mqtt

    os.nice(nice)  # see the module's docstring
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"flooder-{index}")
    client.max_queued_messages_set(10_000)
    client.connect(host, port)
    client.loop_start()
    topic = f"cityedge/stolen-{index}/data"
    junk = os.urandom(300)
    conn.send(("ready", None))
    sent = 0
    started = time.monotonic()
    while not conn.poll():
        for _ in range(200):
            info = client.publish(topic, junk, qos=0)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                sent += 1
    seconds = time.monotonic() - started
    client.loop_stop()
    client.disconnect()
    conn.send(("done", (sent, seconds)))


# -- the run ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    alone: float
    flood: float
    alone_latency: tuple[float, float]
    flood_latency: tuple[float, float]
    flood_sent_per_s: float
    refused: int
    rejected: dict[str, int]

    @property
    def ratio(self) -> float:
        return self.flood / self.alone if self.alone else 0.0


def _rate(acked: list[tuple[float, int]], start: float, end: float) -> float:
    return sum(n for t, n in acked if start <= t < end) / (end - start)


def _latency(latencies: list[tuple[float, float]], start: float, end: float) -> tuple[float, float]:
    """p50 and p99 in ms of the batches sent within the phase."""
    within = sorted(d for t, d in latencies if start <= t < end)
    if not within:
        return (float("nan"), float("nan"))
    return within[len(within) // 2] * 1000, within[min(len(within) - 1, len(within) * 99 // 100)] * 1000


async def _recv(conn: Connection, expect: str, timeout: float) -> object:
    kind, value = await asyncio.wait_for(asyncio.to_thread(conn.recv), timeout)
    if kind != expect:
        raise RuntimeError(f"a helper process failed: {value}")
    return value


async def run(plan: Plan, workdir: Path) -> Result:
    from central.server import CentralServer
    from cityedge.broker import MosquittoBroker

    ctx = multiprocessing.get_context("spawn")
    warmup = 2.0
    async with (
        MosquittoBroker() as broker,
        CentralServer(db=workdir / "central.db", broker_url=broker.url, http_port=0) as server,
    ):
        async with asyncio.timeout(10):
            await server.ingestor.wait_subscribed()
        fleet_conn, child = ctx.Pipe()
        fleet = ctx.Process(target=fleet_main, args=(broker.host, broker.port, plan, child))
        fleet.start()
        flooders: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        try:
            await _recv(fleet_conn, "ready", 60)
            await asyncio.sleep(warmup)  # a bench's phases are timed by the clock, not waited on
            alone_start = time.monotonic()
            await asyncio.sleep(plan.seconds)
            alone_end = time.monotonic()
            for i in range(plan.flooders):
                parent, child = ctx.Pipe()
                process = ctx.Process(
                    target=flooder_main, args=(broker.host, broker.port, i, plan.flooder_nice, child)
                )
                process.start()
                flooders.append((process, parent))
            for _, parent in flooders:
                await _recv(parent, "ready", 60)
            await asyncio.sleep(1.0)  # the flood reaches full speed
            flood_start = time.monotonic()
            await asyncio.sleep(plan.seconds)
            flood_end = time.monotonic()
            sent = 0.0
            for _, parent in flooders:
                parent.send("stop")
                count, seconds = await _recv(parent, "done", 60)  # type: ignore[misc]
                sent += count / seconds
            fleet_conn.send("stop")
            acked, latencies = await _recv(fleet_conn, "done", 90)  # type: ignore[misc]
        finally:
            for process, _ in [*flooders, (fleet, fleet_conn)]:
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()
        stats = server.ingestor.stats
        return Result(
            alone=_rate(acked, alone_start, alone_end),
            flood=_rate(acked, flood_start, flood_end),
            alone_latency=_latency(latencies, alone_start, alone_end),
            flood_latency=_latency(latencies, flood_start, flood_end),
            flood_sent_per_s=sent,
            refused=stats.rejected.get("rate_limited", 0),
            rejected=dict(stats.rejected),
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--cabinets", type=int, default=200, help="good cabinets")
    parser.add_argument("--batch", type=int, default=40, help="readings per batch")
    parser.add_argument("--window", type=int, default=8, help="batches in flight per good cabinet")
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="seconds between a good cabinet's batches (an agent commits once a second); 0: as fast"
        " as central acknowledges",
    )
    parser.add_argument("--flooders", type=int, default=1, help="flooding connections, one cabinet each")
    parser.add_argument(
        "--flooder-nice",
        type=int,
        default=19,
        help="the flooders' nice value: 19 gives them what central leaves (their CPU is the attacker's"
        " own in the field); 0 lets them compete with central for this machine's cores",
    )
    args = parser.parse_args()
    plan = Plan(
        args.seconds, args.cabinets, args.batch, args.window, args.interval, args.flooders, args.flooder_nice
    )
    pace = f"one every {plan.interval:g} s" if plan.interval else "as fast as acknowledged"
    print(
        f"plan: {plan.cabinets} good cabinets, batches of {plan.batch} readings {pace}, at most"
        f" {plan.window} in flight each; {plan.flooders} flooder(s) at nice {plan.flooder_nice};"
        f" {plan.seconds:.0f} s per phase;"
        f" {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="cityedge-flood-") as tmp:
        try:
            result = asyncio.run(run(plan, Path(tmp)))
        except (RuntimeError, TimeoutError, OSError) as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
    a50, a99 = result.alone_latency
    f50, f99 = result.flood_latency
    print(
        f"good fleet alone:        {result.alone:>10,.0f} readings/s acknowledged;"
        f" ack p50 {a50:.0f} ms, p99 {a99:.0f} ms"
    )
    print(
        f"good fleet beside flood: {result.flood:>10,.0f} readings/s acknowledged;"
        f" ack p50 {f50:.0f} ms, p99 {f99:.0f} ms"
    )
    print(f"ratio flood / alone:     {result.ratio:>10.2f}")
    print(
        f"flood: {result.flood_sent_per_s:,.0f} junk messages/s published; central refused"
        f" {result.refused:,} before decoding (rate limit), rejected {result.rejected}"
    )
    verdict = "met" if result.ratio >= FLOOR_RATIO else "MISSED"
    print(f"floor: ratio >= {FLOOR_RATIO:.2f}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
