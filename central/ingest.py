"""MQTT ingest: receive batches, store them with group commit, acknowledge only what is committed.

Three tasks share one event loop:

    mqtt    connect (MQTT 5, else 3.1.1), subscribe, decode and validate every message, queue it
    writer  take what is queued (up to a bound) and write it in ONE transaction
    acker   publish one Ack per committed batch on the cabinet's ack topic

Batches wait in one queue per cabinet, and a group takes one batch of each waiting cabinet in turn
(round robin) until it is full: a cabinet draining a day's backlog fills the groups only with what
the others leave, and a cabinet with one batch waiting is in the next group whatever that backlog.
A group holds what the store writes in about ``group_target_s`` (measured), so that the next group,
where a newly arrived batch goes, is never far: a 50,000-record group would hold every other cabinet's
acks for most of a second while a backlog drains.

A bad message is counted under its reason and quarantined; it never stops the loop. Duplicates are
acknowledged again: the edge may have missed the first ack. An ack that cannot be sent is not retried:
the edge sends the batch again, it is stored as a duplicate, and acknowledged then.

The ingestor's connection also carries what central sends: ``publish`` (commands, from
``central.dispatch``), and ``on_birth`` tells the dispatcher when a cabinet comes online.

Several workers may ingest from one broker: data comes through an MQTT 5 shared subscription, so the
broker gives each batch to one of them. Status comes through a normal subscription (retained messages
are not delivered to shared subscriptions); every worker applies it, which is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from central.errors import ServerError, StoreError
from central.ingest_limits import OncePerInterval, TopicLimits, TopicRateLimiter
from central.ingest_stats import IngestSnapshot, IngestStats
from central.store import Store
from central.store.rows import BatchOutcome, QuarantineEntry, ReceivedBatch, ReceivedStatus
from protocols.backoff import Backoff
from protocols.fleet import (
    PROTOCOL_VERSION,
    Ack,
    DataBatch,
    FleetError,
    TopicError,
    Topics,
    ack_for,
    decode_data_batch,
    decode_status,
    encode,
    parse_topic,
)
from protocols.fleet.broker_url import SOCKET_OPTIONS, BrokerAddress, parse_broker_url
from protocols.fleet.topics import all_cabinets, shared
from protocols.mqtt_client import FastClient

logger = logging.getLogger(__name__)


class RateLimited(FleetError):
    reason = "rate_limited"

    def __init__(self, topic: str) -> None:
        super().__init__(f"{topic} is over its rate limit; this one of its refused messages is a sample")


class IngestFault(FleetError):
    """Something other than the message's validity failed on it (a bug, a value the store refused)."""

    reason = "ingest_fault"

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"ingest failed on this message: {type(exc).__name__}: {exc}")


DEFAULT_GROUP = "cityedge-central"
# A group is never cut smaller than this: a commit costs a sync of the disk whatever it holds.
MIN_GROUP_RECORDS = 5_000
_STORE_FAULT = "the store failed on it (an ingest fault, quarantined)"
STABLE_SESSION_S = 10.0
_UNSUPPORTED_PROTOCOL = (1, 0x84)  # MQTT 3.1.1 and MQTT 5 CONNACK codes for "unsupported protocol"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _granted(codes: Sequence[int | ReasonCode]) -> bool:
    return all((c.value if isinstance(c, ReasonCode) else c) < 0x80 for c in codes)


def _records(received: ReceivedBatch) -> int:
    return _records_of(received.batch)


def _ack(batch: DataBatch) -> Ack:
    """``ack_for``, without a walk of the seqs when the batch fills its range: its seqs are distinct
    and within first..last (``decode_data_batch`` checks both), so they are that whole range."""
    if _records_of(batch) == batch.last - batch.first + 1:
        held = [(batch.first, batch.last)]
        return Ack(
            v=PROTOCOL_VERSION,
            cabinet=batch.cabinet,
            stream=batch.stream,
            first=batch.first,
            last=batch.last,
            held=held,
        )
    return ack_for(batch)


def _records_of(batch: DataBatch) -> int:
    return len(batch.readings) + len(batch.events) + len(batch.results)


class _GroupSize:
    """How many records a group may hold: what the store writes in ``target_s``, at the rate it showed
    on recent groups of some size, within [MIN_GROUP_RECORDS, ``ceiling``]."""

    def __init__(self, ceiling: int, target_s: float) -> None:
        self.ceiling = ceiling
        self.target_s = target_s
        self.limit = ceiling
        self._rate: float | None = None  # records/s, exponentially weighted

    def wrote(self, records: int, seconds: float) -> None:
        if records < MIN_GROUP_RECORDS or seconds <= 0:
            return  # small groups are all fixed cost: they say nothing of the rate
        rate = records / seconds
        self._rate = rate if self._rate is None else self._rate + (rate - self._rate) / 4
        floor = min(MIN_GROUP_RECORDS, self.ceiling)
        self.limit = max(floor, min(self.ceiling, int(self._rate * self.target_s)))


class Ingestor:
    """``async with Ingestor(store=..., broker_url=...)`` ingests until the block exits."""

    def __init__(
        self,
        *,
        store: Store,
        broker_url: str,
        broker_username: str | None = None,
        broker_password: str | None = None,
        group: str = DEFAULT_GROUP,
        client_id: str | None = None,
        timeout: float = 10.0,
        max_group_records: int = 50_000,
        group_target_s: float = 0.1,
        max_pending_records: int = 500_000,
        max_queued_messages: int = 10_000,
        backoff: Backoff | None = None,
        on_birth: Callable[[str], None] | None = None,
        limits: TopicLimits | None = None,
    ) -> None:
        try:
            parsed = parse_broker_url(broker_url)
        except ValueError as exc:
            raise ServerError("broker URL", str(exc)) from exc
        # Credentials given apart from the URL (read from a file or the environment) win over it.
        self._address: BrokerAddress = dataclasses.replace(
            parsed,
            username=broker_username or parsed.username,
            password=broker_password or parsed.password,
        )
        self._store = store
        self._group = group
        self._client_id = client_id or f"cityedge-central-{uuid.uuid4().hex[:12]}"
        self._timeout = timeout
        self._max_group_records = max_group_records
        self._group_records = _GroupSize(max_group_records, group_target_s)
        self._max_pending_records = max_pending_records
        self._max_queued_messages = max_queued_messages
        self._backoff = backoff or Backoff(initial=0.2, maximum=30.0)
        self._protocol = aiomqtt.ProtocolVersion.V5
        self._on_birth = on_birth

        self._stats = IngestStats()
        self._limiter = TopicRateLimiter(limits)
        self._log_limit = OncePerInterval(interval_ms=60_000)
        # Per cabinet, in turn order: the next group starts with the first (see _take_group).
        self._queues: dict[str, deque[ReceivedBatch]] = {}
        self._queued_batches = 0
        self._statuses: list[ReceivedStatus] = []
        self._quarantine: list[QuarantineEntry] = []
        self._pending_records = 0
        self._work = asyncio.Event()  # something is queued for the writer
        self._acks: list[Ack] = []
        self._ack_work = asyncio.Event()
        self._client: FastClient | None = None
        self._subscribed = asyncio.Event()
        self._task_group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise RuntimeError("this Ingestor is already running")
        task_group = asyncio.TaskGroup()
        await task_group.__aenter__()
        self._task_group = task_group
        self._tasks = [
            task_group.create_task(self._mqtt_loop(), name="central-ingest-mqtt"),
            task_group.create_task(self._write_loop(), name="central-ingest-writer"),
            task_group.create_task(self._ack_loop(), name="central-ingest-acker"),
        ]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return
        for task in self._tasks:
            task.cancel()
        # Not the body's exception: TaskGroup would wrap it in an ExceptionGroup. It propagates
        # by itself once this returns; only our tasks' own failures are raised here.
        await task_group.__aexit__(None, None, None)

    @property
    def stats(self) -> IngestSnapshot:
        self._stats.pending_batches = self._queued_batches
        return self._stats.snapshot()

    @property
    def client_id(self) -> str:
        return self._client_id

    async def wait_subscribed(self) -> None:
        """Return once the current connection has its subscriptions (publishing before is lossy)."""
        await self._subscribed.wait()

    async def publish(self, topic: str, payload: bytes, *, expiry_s: int | None = None) -> bool:
        """Publish QoS 1 on the current connection; False when there is none or the broker failed.

        Callers send again later (a PUBACK is not delivery anyway). ``expiry_s`` becomes the MQTT 5
        message expiry interval when the broker speaks MQTT 5.
        """
        client = self._client
        if client is None:
            return False
        properties = None
        if expiry_s is not None and self._protocol == aiomqtt.ProtocolVersion.V5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho is untyped here
            properties.MessageExpiryInterval = max(1, expiry_s)
        try:
            async with asyncio.timeout(self._timeout):
                await client.publish(topic, payload, qos=1, properties=properties)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            self._stats.error(f"publish to {topic}: {exc or type(exc).__name__}", _now_ms())
            return False
        return True

    # -- MQTT: connect, subscribe, receive --------------------------------------------------

    async def _mqtt_loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
                message = f"MQTT {self._address}: {exc or type(exc).__name__}"
                self._stats.error(message, _now_ms())
                # A connection that held for a while starts the backoff over; one the broker drops
                # at once (ACL, overload) keeps backing off instead of hammering it.
                if time.monotonic() - started > STABLE_SESSION_S:
                    self._backoff.reset()
                delay = self._backoff.next_delay()
                logger.warning("%s; reconnecting in %.1f s", message, delay)
                await asyncio.sleep(delay)

    async def _session(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(self._timeout):
                client = await self._connect(stack)
                await self._subscribe(client)
            self._client = client
            self._stats.mqtt_connected = True
            self._stats.connects += 1
            self._subscribed.set()
            logger.info("ingesting from %s as %s", self._address, self._client_id)
            try:
                # Messages are handled as they are decoded (_on_message); this only waits for the
                # connection to end (and takes what a broker might deliver otherwise).
                async for message in client.messages:
                    payload = message.payload
                    self._on_message(message.topic.value, payload if isinstance(payload, bytes) else b"")
            finally:
                self._client = None
                self._subscribed.clear()
                self._stats.mqtt_connected = False

    async def _connect(self, stack: contextlib.AsyncExitStack) -> FastClient:
        try:
            return await stack.enter_async_context(self._new_client())
        except aiomqtt.MqttCodeError as exc:  # MqttConnectError is not exported
            code = exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc
            if self._protocol != aiomqtt.ProtocolVersion.V5 or code not in _UNSUPPORTED_PROTOCOL:
                raise
        # A broker without MQTT 5 (amqtt): no shared subscriptions, a single ingest worker.
        logger.warning("broker %s does not speak MQTT 5; using MQTT 3.1.1", self._address)
        self._protocol = aiomqtt.ProtocolVersion.V311
        return await stack.enter_async_context(self._new_client())

    def _new_client(self) -> FastClient:
        address = self._address
        client = FastClient(
            address.host,
            address.port,
            username=address.username,
            password=address.password,
            identifier=self._client_id,
            protocol=self._protocol,
            timeout=self._timeout,
            keepalive=30,
            # Bounded: past it the client drops messages, which the edge re-sends (never acked).
            max_queued_incoming_messages=self._max_queued_messages,
            max_inflight_messages=100,
            tls_context=ssl.create_default_context() if address.tls else None,
            socket_options=SOCKET_OPTIONS,
            message_gate=self._admit,
            message_handler=self._on_message,
        )
        client.pending_calls_threshold = 1_000  # acks are published concurrently by design
        return client

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        v5 = self._protocol == aiomqtt.ProtocolVersion.V5
        data = all_cabinets("data")
        is_shared = v5 and _granted(await client.subscribe(shared(self._group, data), qos=1))
        if not is_shared:
            await self._subscribe_one(client, data)
        await self._subscribe_one(client, all_cabinets("status"))
        self._stats.mqtt_protocol = "5" if v5 else "3.1.1"
        self._stats.shared_subscription = is_shared

    async def _subscribe_one(self, client: aiomqtt.Client, topic: str) -> None:
        codes = await client.subscribe(topic, qos=1)
        if not _granted(codes):
            raise aiomqtt.MqttError(f"the broker refused the subscription to {topic}: {codes}")

    def _admit(self, topic: str, payload: bytes) -> bool:
        """Every message, as soon as its bytes are read: a topic over its rate is refused at the cost
        of a lookup. A batch refused here is never acked, so its edge sends it again; only a sample
        of what was refused is kept, to show what the flood was."""
        verdict = self._limiter.check(topic, len(payload), time.monotonic())
        if verdict.allowed:
            return True
        if verdict.sample:
            self._reject(topic, payload, RateLimited(topic), _now_ms())  # counts it too
        else:
            self._stats.reject(RateLimited.reason)
        return False

    def _on_message(self, topic: str, payload: bytes) -> bool:
        """An admitted message, handled at once (nothing is queued in the client)."""
        self._handle(topic, payload)
        return True

    def _handle(self, topic: str, payload: bytes) -> None:
        now = _now_ms()
        try:
            self._accept(topic, payload, now)
        except FleetError as exc:
            self._reject(topic, payload, exc, now)
        except Exception as exc:  # one message's bug must not stop the others
            logger.exception("ingest failed on a message on %s; quarantined", topic)
            self._reject(topic, payload, IngestFault(exc), now)

    def _accept(self, topic: str, payload: bytes, now: int) -> None:
        cabinet, kind = parse_topic(topic)
        if kind == "data":
            batch = decode_data_batch(payload, topic_cabinet=cabinet)
            count = len(batch.readings) + len(batch.events) + len(batch.results)
            verdict = self._limiter.check_records(topic, count, time.monotonic())
            if not verdict.allowed:  # valid, but more than a cabinet may store a second
                if verdict.sample:
                    self._reject(topic, payload, RateLimited(topic), now)  # counts it too
                else:
                    self._stats.reject(RateLimited.reason)
                return
            self._queue_batch(ReceivedBatch(batch, now, topic, payload))
        elif kind == "status":
            # An empty retained payload is how a retained status is deleted: nothing to do.
            if payload:
                status = decode_status(payload, topic_cabinet=cabinet)
                self._stats.statuses += 1
                self._statuses.append(ReceivedStatus(status, now, topic, payload))
                self._work.set()
                if status.online and self._on_birth is not None:
                    self._on_birth(cabinet)
        else:
            raise TopicError(topic, f"central does not consume {kind!r} messages")

    def _queue_batch(self, received: ReceivedBatch) -> None:
        self._stats.batches_received += 1
        queue = self._queues.get(received.batch.cabinet)
        if queue is None:
            queue = self._queues[received.batch.cabinet] = deque()
        queue.append(received)
        self._queued_batches += 1
        self._pending_records += _records(received)
        if self._pending_records >= self._max_pending_records and self._client is not None:
            self._client.pause_reading()  # the writer is behind: let the broker hold the rest
        self._work.set()

    def _reject(self, topic: str, payload: bytes, exc: FleetError, now: int) -> None:
        self._stats.reject(exc.reason)
        if self._log_limit.first_in_interval((topic, exc.reason), now):
            # One line per topic and reason a minute: a flood must not flood the journal too.
            logger.warning("quarantined a message on %s (%s): %s", topic, exc.reason, exc)
        self._quarantine.append(QuarantineEntry(now, topic, exc.reason, str(exc), payload))
        self._work.set()

    # -- writer: group commit ---------------------------------------------------------------

    async def _write_loop(self) -> None:
        retry = Backoff(initial=0.05, maximum=5.0)
        while True:
            await self._work.wait()
            batches, statuses, quarantine = self._take_group()
            while True:
                try:
                    started = time.perf_counter()
                    outcomes = await self._write_group(batches, statuses, quarantine)
                    self._group_records.wrote(
                        sum(_records(b) for b in batches), time.perf_counter() - started
                    )
                    break
                except StoreError as exc:
                    # Keep the group and retry: nothing was acknowledged, nothing is dropped.
                    self._stats.store_errors += 1
                    self._stats.error(str(exc), _now_ms())
                    delay = retry.next_delay()
                    logger.error("%s; retrying in %.2f s", exc, delay)
                    await asyncio.sleep(delay)
            retry.reset()
            self._committed(batches, outcomes)

    async def _write_group(
        self,
        batches: list[ReceivedBatch],
        statuses: list[ReceivedStatus],
        quarantine: list[QuarantineEntry],
    ) -> list[BatchOutcome]:
        """One transaction for the group; when the store fails otherwise than by being unreachable
        (a value it cannot take, a bug), each message is written alone so only the culprit is
        quarantined. StoreError propagates: the database is down, and the whole group waits."""
        try:
            return await self._store.write(batches, statuses, quarantine)
        except StoreError:
            raise
        except Exception as exc:  # isolated below, message by message
            logger.exception("storing a group of %d messages failed; storing each alone", len(batches))
            self._stats.error(f"store: {type(exc).__name__}: {exc}", _now_ms())
        if quarantine:
            await self._write_alone([], [], quarantine, "the quarantine")
        for status in statuses:
            if await self._write_alone([], [status], [], status.topic) is None:
                self._quarantine_fault(status.topic, status.payload, status.received_ms)
        outcomes: list[BatchOutcome] = []
        for received in batches:
            written = await self._write_alone([received], [], [], received.topic)
            if written is None:
                self._quarantine_fault(received.topic, received.payload, received.received_ms)
                b = received.batch
                written = [BatchOutcome(b.cabinet, b.stream, b.first, b.last, 0, 0, 0, 0, _STORE_FAULT)]
            outcomes.extend(written)
        return outcomes

    async def _write_alone(
        self,
        batches: list[ReceivedBatch],
        statuses: list[ReceivedStatus],
        quarantine: list[QuarantineEntry],
        what: str,
    ) -> list[BatchOutcome] | None:
        try:
            return await self._store.write(batches, statuses, quarantine)
        except StoreError:
            raise
        except Exception:  # this one message is the culprit: reported, not fatal
            logger.exception("could not store the message on %s", what)
            return None

    def _quarantine_fault(self, topic: str, payload: bytes, received_ms: int) -> None:
        """Queue the culprit for the quarantine (written with the next group, not retried here)."""
        self._stats.reject(IngestFault.reason)
        detail = "the store failed on this message; see central's log at this time"
        self._quarantine.append(QuarantineEntry(received_ms, topic, IngestFault.reason, detail, payload))
        self._work.set()

    def _take_group(
        self,
    ) -> tuple[list[ReceivedBatch], list[ReceivedStatus], list[QuarantineEntry]]:
        batches: list[ReceivedBatch] = []
        records = 0
        queues = self._queues
        while queues:
            cabinet = next(iter(queues))  # the cabinet whose turn it is
            queue = queues[cabinet]
            size = _records(queue[0])
            if batches and records + size > self._group_records.limit:
                break  # it keeps its turn: first in the next group
            batches.append(queue.popleft())
            records += size
            del queues[cabinet]
            if queue:
                queues[cabinet] = queue  # to the back of the turn
        self._queued_batches -= len(batches)
        statuses, self._statuses = self._statuses, []
        quarantine, self._quarantine = self._quarantine, []
        if not queues:
            self._work.clear()
        return batches, statuses, quarantine

    def _committed(self, batches: list[ReceivedBatch], outcomes: list[BatchOutcome]) -> None:
        stats = self._stats
        stats.commits += 1
        for received, outcome in zip(batches, outcomes, strict=True):
            if outcome.unstorable is not None:
                if outcome.unstorable != _STORE_FAULT:  # counted as an ingest fault already
                    stats.reject("unstorable")
                logger.warning(
                    "quarantined batch %s..%s of %s: %s",
                    outcome.first,
                    outcome.last,
                    outcome.cabinet,
                    outcome.unstorable,
                )
                continue
            stats.batches_stored += 1
            stats.readings_stored += outcome.readings_new
            stats.events_stored += outcome.events_new
            stats.results_stored += outcome.results_new
            stats.duplicate_records += outcome.duplicates
            if outcome.duplicates and not outcome.new:
                stats.duplicate_batches += 1
            # Exactly the records of the batch, all committed now or held already; never its range.
            self._acks.append(_ack(received.batch))
        self._ack_work.set()
        self._pending_records -= sum(_records(b) for b in batches)
        if self._pending_records < self._max_pending_records and self._client is not None:
            self._client.resume_reading()

    # -- acker ------------------------------------------------------------------------------

    async def _ack_loop(self) -> None:
        while True:
            await self._ack_work.wait()
            self._ack_work.clear()
            acks, self._acks = self._acks, []
            client = self._client
            if client is None:
                self._stats.acks_failed += len(acks)  # the edge re-sends; we ack the duplicate
                continue
            await asyncio.gather(*(self._publish_ack(client, ack) for ack in acks))

    async def _publish_ack(self, client: aiomqtt.Client, ack: Ack) -> None:
        # QoS 0: an ack is idempotent and a lost one costs a resend (acked again as a duplicate).
        # At QoS 1 each would wait for the broker's PUBACK, which comes back on the ingest stream,
        # behind whatever a flooding cabinet has queued there: acks would crawl for everyone.
        try:
            async with asyncio.timeout(self._timeout):
                await client.publish(Topics(ack.cabinet).ack, encode(ack), qos=0)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            self._stats.acks_failed += 1
            self._stats.error(f"ack to {ack.cabinet}: {exc or type(exc).__name__}", _now_ms())
        else:
            self._stats.acks_sent += 1
