"""MQTT ingest: receive batches, store them with group commit, acknowledge only what is committed.

Two parts share one event loop:

    mqtt    connect (MQTT 5, else 3.1.1), subscribe, decode and validate every message, queue it
    writer  take what is queued (up to a bound), write it in ONE transaction, then queue one Ack per
            committed batch on the cabinet's ack topic (written to the broker in one go, at once)

Batches wait in one queue per cabinet, and a group takes one batch of each waiting cabinet in turn
(round robin) until it is full: a cabinet draining a day's backlog fills the groups only with what
the others leave, and a cabinet with one batch waiting is in the next group whatever that backlog.
A group holds what the store writes in about ``group_target_s`` (measured), so that the next group,
where a newly arrived batch goes, is never far: a 50,000-record group would hold every other cabinet's
acks for most of a second while a backlog drains.

A bad message is counted under its reason and quarantined; it never stops the loop. Duplicates are
acknowledged again: the edge may have missed the first ack. An ack that cannot be sent is not retried:
the edge sends the batch again, it is stored as a duplicate, and acknowledged then.

The MQTT session is a ``central.mqtt_link.MqttLink``, which central's command dispatcher publishes
through too (one connection to the broker per worker); ``on_birth`` tells the dispatcher when a cabinet
comes online. An ingestor given a broker URL instead of a link makes a link of its own and runs it.

Several workers may ingest from one broker: data comes through an MQTT 5 shared subscription, so the
broker gives each batch to one of them. Status comes through a normal subscription (retained messages
are not delivered to shared subscriptions); every worker applies it, which is idempotent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Self

from central.errors import StoreError
from central.ingest_limits import OncePerInterval, TopicLimits, TopicRateLimiter
from central.ingest_stats import IngestSnapshot, IngestStats
from central.mqtt_link import DEFAULT_GROUP, MqttLink, Subscription
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
from protocols.fleet.topics import all_cabinets

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


# A group is never cut smaller than this: a commit costs a sync of the disk whatever it holds.
MIN_GROUP_RECORDS = 5_000
_STORE_FAULT = "the store failed on it (an ingest fault, quarantined)"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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
    """``async with Ingestor(store=..., link=...)`` ingests until the block exits.

    ``link`` is the MQTT session to receive on and to ack through, run by whoever made it; without
    one, the ingestor makes its own from ``broker_url`` (and the arguments after it) and runs it.
    """

    def __init__(
        self,
        *,
        store: Store,
        link: MqttLink | None = None,
        broker_url: str | None = None,
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
        ack_latency: Callable[[float], None] | None = None,
    ) -> None:
        if (link is None) == (broker_url is None):
            raise ValueError("give the Ingestor either an MqttLink or a broker URL, not both")
        self._owns_link = link is None
        if link is None:
            link = MqttLink(
                broker_url=str(broker_url),
                broker_username=broker_username,
                broker_password=broker_password,
                group=group,
                client_id=client_id,
                timeout=timeout,
                max_queued_messages=max_queued_messages,
                backoff=backoff,
            )
        self._link = link
        # Data is split among the workers of the group; every worker applies every status (retained
        # messages are not delivered to shared subscriptions), which is idempotent.
        data, status = Subscription(all_cabinets("data"), shared=True), Subscription(all_cabinets("status"))
        link.receive([data, status], gate=self._admit, handler=self._on_message)
        self._store = store
        self._group_records = _GroupSize(max_group_records, group_target_s)
        self._max_pending_records = max_pending_records
        self._on_birth = on_birth
        self._ack_latency = ack_latency  # seconds from a batch's receipt to its ack sent

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
            task_group.create_task(self._write_loop(), name="central-ingest-writer"),
        ]
        if self._owns_link:
            await self._link.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return
        try:
            if self._owns_link:
                await self._link.__aexit__(None, None, None)
        finally:
            for task in self._tasks:
                task.cancel()
            # Not the body's exception: TaskGroup would wrap it in an ExceptionGroup. It propagates
            # by itself once this returns; only our tasks' own failures are raised here.
            await task_group.__aexit__(None, None, None)

    @property
    def stats(self) -> IngestSnapshot:
        stats, link = self._stats, self._link.stats
        stats.pending_batches = self._queued_batches
        stats.mqtt_connected = link.connected
        stats.mqtt_protocol = link.protocol
        stats.shared_subscription = link.shared_subscription
        stats.connects = link.connects
        snapshot = stats.snapshot()
        if link.last_error_ms is not None and (snapshot.last_error_ms or 0) <= link.last_error_ms:
            # The session's errors (connects, publishes) and the ingest path's: the latest shows.
            snapshot = dataclasses.replace(
                snapshot, last_error=link.last_error, last_error_ms=link.last_error_ms
            )
        return snapshot

    @property
    def client_id(self) -> str:
        return self._link.client_id

    async def wait_subscribed(self) -> None:
        """Return once the current connection has its subscriptions (publishing before is lossy)."""
        await self._link.wait_subscribed()

    # -- receive ----------------------------------------------------------------------------

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
        if self._pending_records >= self._max_pending_records:
            self._link.pause_reading()  # the writer is behind: let the broker hold the rest
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
        acks: list[tuple[Ack, int]] = []  # and when its batch was received (ms)
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
            acks.append((_ack(received.batch), received.received_ms))
        self._send_acks(acks)
        self._pending_records -= sum(_records(b) for b in batches)
        if self._pending_records < self._max_pending_records:
            self._link.resume_reading()

    # -- acks -------------------------------------------------------------------------------

    def _send_acks(self, acks: list[tuple[Ack, int]]) -> None:
        """Hand each ack to the session, without waiting: they are written together once this turn
        of the event loop is done.

        QoS 0: an ack is idempotent and a lost one costs a resend (acked again as a duplicate). At
        QoS 1 each would wait for the broker's PUBACK, which comes back on the ingest stream, behind
        whatever a flooding cabinet has queued there: acks would crawl for everyone."""
        stats, link, observe = self._stats, self._link, self._ack_latency
        if not link.connected:
            stats.acks_failed += len(acks)  # the edge re-sends; we ack the duplicate
            return
        now = _now_ms()
        for ack, received_ms in acks:
            if link.publish_nowait(Topics(ack.cabinet).ack, encode(ack)):
                stats.acks_sent += 1
                if observe is not None:
                    observe(max(0, now - received_ms) / 1000)
            else:
                stats.acks_failed += 1
