"""A cheaper stand-in for a fleet-sim cabinet (``--light``): the agent's wire behaviour, not its code.

Measured on this machine, the real agent code (``SimCabinet``) costs the fleet process about 0.2 ms
of CPU per cabinet and interval in its buffer (records packed into SQLite blocks and read back) and
as much in aiomqtt's publish path, so one process holds about 2,000 of them beside central on 2
cores. This one keeps what central sees and nothing else:

- the same MQTT session: client id = cabinet id, clean session, the same keepalive, the retained
  offline status as last will, the retained online birth (stream, boot count, backlog, inventory)
  after subscribing (QoS 1) to its ack and command topics;
- one DataBatch per interval of the same size (``points`` readings, seq numbered from 1 on one stream),
  published QoS 1, kept until central's ack names it (only the seqs the batch carried are settled),
  sent again once unacked for ``ack_timeout_s`` (checked at each interval) and after every reconnect;
- a command answered like the agent does: an ``accepted`` then an ``executed`` result (the dim level
  kept in memory), each a record with its own seq, in the next batch.

Not kept: SQLite, the send window's adaptation, the command ledger and the lighting runner. Readings
are pre-built per cabinet; only seq and timestamp change per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from dataclasses import dataclass

import aiomqtt
import paho.mqtt.client as mqtt

from cityedge.fleet_sim.cabinet import CONFIG_HASH, CONNECT_WAIT_S, DEVICE, DRIVER
from cityedge.fleet_sim.device import LEVEL, RELAY
from cityedge.fleet_sim.plan import LIGHTING_POINTS, FleetPlan
from cityedge.fleet_sim.stats import FleetCounters
from edge_agent.agent import AGENT_VERSION
from protocols.backoff import Backoff
from protocols.fleet import (
    PROTOCOL_VERSION,
    CommandResult,
    DataBatch,
    DeviceInfo,
    FleetError,
    Reading,
    Status,
    Topics,
    decode_ack,
    decode_command,
    encode,
)
from protocols.fleet.broker_url import SOCKET_OPTIONS, BrokerAddress

log = logging.getLogger(__name__)
PUBLISH_TIMEOUT_S = 10.0
# aiomqtt wakes every client each second for paho's keepalive housekeeping: thousands of wake-ups
# a second in one process. Every few seconds sends the same PINGREQs well inside the keepalive.
HOUSEKEEPING_S = 5.0


class _LightClient(aiomqtt.Client):
    async def _misc_loop(self) -> None:
        while self._client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:  # noqa: ASYNC110 (a period)
            await asyncio.sleep(HOUSEKEEPING_S)


@dataclass(slots=True)
class _Sent:
    last: int
    payload: bytes
    count: int
    taken_at: float  # monotonic time its readings were taken (the ack latency's start)
    sent_at: float


@dataclass(slots=True)
class _LightStats:
    connected: bool = False
    resends: int = 0


class LightCabinet:
    """Same interface to ``Fleet`` as ``SimCabinet``: ``run``, ``cut_link``, ``connected``,
    ``backlog``, ``resends``, ``link_up``, ``started``, ``stopped``."""

    def __init__(
        self, cabinet: str, *, plan: FleetPlan, broker: BrokerAddress, counters: FleetCounters
    ) -> None:
        self.cabinet = cabinet
        self.plan = plan
        self.broker = broker
        self.counters = counters
        self.topics = Topics(cabinet)
        self.stream = secrets.token_hex(8)
        self.boot_count = 1
        self.stats = _LightStats()
        measured = [f"{DEVICE}/m{i:03d}" for i in range(plan.points - LIGHTING_POINTS)]
        self.point_names = [f"{DEVICE}/{RELAY}", f"{DEVICE}/{LEVEL}", *measured]
        rng = random.Random(f"{plan.seed}:{cabinet}")
        self._values = [round(rng.uniform(10, 1000), 2) for _ in measured]
        self.level = 100
        self._next_seq = 1
        self._results: list[CommandResult] = []
        # first seq -> the batch, sent and awaiting central's ack (oldest first).
        self.unacked: dict[int, _Sent] = {}
        self._client: aiomqtt.Client | None = None
        self._up = asyncio.Event()
        self._up.set()
        self._down = asyncio.Event()
        self._born = asyncio.Event()
        self.started = False
        self.stopped = False

    @property
    def connected(self) -> bool:
        return self.stats.connected

    @property
    def link_up(self) -> bool:
        return self._up.is_set()

    @property
    def backlog(self) -> int:
        return sum(sent.count for sent in self.unacked.values())

    @property
    def resends(self) -> int:
        return self.stats.resends

    def _status(self, *, online: bool) -> bytes:
        return encode(
            Status(
                v=PROTOCOL_VERSION,
                cabinet=self.cabinet,
                online=online,
                ts=int(time.time() * 1000),
                version=AGENT_VERSION,
                config_hash=CONFIG_HASH,
                stream=self.stream,
                boot_count=self.boot_count,
                backlog=self.backlog,
                inventory=[
                    DeviceInfo(
                        name=DEVICE, driver=DRIVER, points=[n.split("/", 1)[1] for n in self.point_names]
                    )
                ],
            )
        )

    def cut_link(self, seconds: float) -> None:
        if not self._up.is_set():
            return
        self._up.clear()
        self._down.set()
        asyncio.get_running_loop().call_later(seconds, self._restore_link)

    def _restore_link(self) -> None:
        self._down.clear()
        self._up.set()

    async def run(
        self, start_delay_s: float = 0.0, phase_s: float = 0.0, gate: asyncio.Semaphore | None = None
    ) -> None:
        try:
            await asyncio.sleep(start_delay_s)
            self.started = True
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._take_readings(phase_s), name=f"readings-{self.cabinet}")
                if gate is not None:
                    await gate.acquire()
                    tasks.create_task(self._release_when_connected(gate), name=f"gate-{self.cabinet}")
                tasks.create_task(self._keep_link(), name=f"link-{self.cabinet}")
        finally:
            self.stopped = True

    async def _release_when_connected(self, gate: asyncio.Semaphore) -> None:
        try:
            async with asyncio.timeout(CONNECT_WAIT_S):
                await self._born.wait()
        except TimeoutError:
            pass
        finally:
            gate.release()

    async def _keep_link(self) -> None:
        backoff = Backoff(initial=0.5, maximum=30.0)
        while True:
            await self._up.wait()
            session = asyncio.create_task(self._session(), name=f"light-session-{self.cabinet}")
            down = asyncio.create_task(self._down.wait(), name=f"outage-{self.cabinet}")
            try:
                await asyncio.wait((session, down), return_when=asyncio.FIRST_COMPLETED)
            finally:
                down.cancel()
                if not session.done():
                    session.cancel()
                    await asyncio.wait((session,), timeout=5.0)
                self.stats.connected = False
                self._client = None
            if session.done() and not session.cancelled():
                error = session.exception()
                if error is not None and not isinstance(error, aiomqtt.MqttError | BaseExceptionGroup):
                    raise error
                if error is not None:
                    log.debug("%s: broker %s: %s", self.cabinet, self.broker, error)
                    await asyncio.sleep(backoff.next_delay())
                    continue
            backoff.reset()

    async def _session(self) -> None:
        broker = self.broker
        will = aiomqtt.Will(self.topics.status, self._status(online=False), qos=1, retain=True)
        client = _LightClient(
            broker.host,
            broker.port,
            username=broker.username,
            password=broker.password,
            identifier=self.cabinet,
            will=will,
            clean_session=True,
            keepalive=self.plan.keepalive_s,
            timeout=PUBLISH_TIMEOUT_S,
            tls_params=aiomqtt.TLSParameters() if broker.tls else None,
            socket_options=SOCKET_OPTIONS,
        )
        async with client:
            await client.subscribe(self.topics.ack, qos=1)
            await client.subscribe(self.topics.command, qos=1)
            await client.publish(self.topics.status, self._status(online=True), qos=1, retain=True)
            self.stats.connected = True
            self._client = client
            self._born.set()
            # After a reconnect everything unacked goes again, oldest first (central drops duplicates).
            for sent in list(self.unacked.values()):
                self._publish(sent, resend=True)
            try:
                async for message in client.messages:
                    self._receive(message)
            except asyncio.CancelledError:
                with contextlib.suppress(aiomqtt.MqttError):  # the last will stands in
                    await client.publish(
                        self.topics.status, self._status(online=False), qos=1, retain=True, timeout=2
                    )
                raise

    def _receive(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            return
        if message.topic.matches(self.topics.command):
            self._command(bytes(payload))
            return
        try:
            ack = decode_ack(bytes(payload), topic_cabinet=self.cabinet)
        except FleetError as exc:
            log.warning("%s: ignored a bad ack: %s", self.cabinet, exc)
            return
        sent = self.unacked.get(ack.first)
        if ack.stream != self.stream or sent is None or sent.last != ack.last:
            return  # stale: settled already
        # A light batch carries every seq first..last: settled only when the ack holds them all.
        if ack.held != [(ack.first, ack.last)]:
            log.warning(
                "%s: ack of %s..%s holds %s: kept for a resend", self.cabinet, ack.first, ack.last, ack.held
            )
            return
        del self.unacked[ack.first]
        self.counters.acked += sent.count
        self.counters.latencies_ms.append((time.monotonic() - sent.taken_at) * 1000)

    def _command(self, payload: bytes) -> None:
        try:
            command = decode_command(payload, topic_cabinet=self.cabinet)
        except FleetError as exc:
            log.warning("%s: ignored a bad command: %s", self.cabinet, exc)
            return
        now = int(time.time() * 1000)
        self._results.append(CommandResult(self._seq(), now, command.id, "accepted"))
        if command.action == "dim" and isinstance(level := command.args.get("level_pct"), int):
            self.level = level
            self._results.append(CommandResult(self._seq(), now, command.id, "executed"))
        else:
            self._results.append(
                CommandResult(self._seq(), now, command.id, "failed", f"light cabinet: no {command.action}")
            )
        self.counters.commands += 2

    def _seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _publish(self, sent: _Sent, *, resend: bool) -> None:
        client = self._client
        if client is None:
            return
        if resend:
            self.stats.resends += 1
        sent.sent_at = time.monotonic()
        # The same QoS 1 PUBLISH, handed to paho without awaiting its PUBACK (paho settles that
        # itself): no task per batch. A dead link shows as the keepalive's timeout, not here.
        info = client._client.publish(self.topics.data, sent.payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.debug("%s: publish not queued (paho rc %s): resent later", self.cabinet, info.rc)

    async def _take_readings(self, phase_s: float) -> None:
        interval = self.plan.interval_s
        timeout = self.plan.ack_timeout_s
        loop = asyncio.get_running_loop()
        due = loop.time() + phase_s
        names, values = self.point_names, self._values
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            now_ms = int(time.time() * 1000)
            taken = time.monotonic()
            first = self._next_seq
            readings = [
                Reading(first, names[0], now_ms, self.level > 0),
                Reading(first + 1, names[1], now_ms, self.level),
                *[
                    Reading(first + 2 + i, n, now_ms, v)
                    for i, (n, v) in enumerate(zip(names[2:], values, strict=True))
                ],
            ]
            results, self._results = self._results, []
            self._next_seq = first + len(readings)
            count = len(readings) + len(results)
            last = max(self._next_seq - 1, *(r.seq for r in results)) if results else self._next_seq - 1
            first = min(first, *(r.seq for r in results)) if results else first
            batch = DataBatch(
                v=PROTOCOL_VERSION,
                cabinet=self.cabinet,
                stream=self.stream,
                first=first,
                last=last,
                readings=readings,
                results=results,
                backlog=self.backlog,
            )
            self.counters.generated += len(readings)
            sent = _Sent(last, encode(batch), count, taken, taken)
            for old in list(self.unacked.values()):
                if taken - old.sent_at >= timeout:
                    self._publish(old, resend=True)
            self.unacked[first] = sent
            self._publish(sent, resend=False)
            due += interval
            if due < loop.time():
                due = loop.time() + interval
