"""Store-and-forward to central over MQTT (DESIGN.md, "Fleet protocol").

Batches are published (QoS 1) and kept; only central's application-level ack, sent after it has
committed a batch, lets the buffer delete it. A broker's PUBACK proves nothing: brokers drop queued
messages when a subscriber is slow or when they restart without persistence. At most ``window``
batches are in flight (fewer, and smaller, while central's acks come back slowly: ``send_window``);
one not acknowledged within ``ack_timeout_s`` is sent again, and after every reconnect sending starts
over from the oldest record still in the buffer (central drops duplicates).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from edge_agent.buffer import Batch, Buffer
from edge_agent.config import SyncSection
from edge_agent.journal import story
from edge_agent.send_window import SendWindow
from protocols.backoff import Backoff
from protocols.fleet import (
    Ack,
    FleetError,
    Status,
    Topics,
    decode_ack,
    encode,
    encode_data_batch,
    merge_ranges,
    ranges_within,
    seq_ranges,
    subtract_ranges,
)
from protocols.fleet.broker_url import SOCKET_OPTIONS, BrokerAddress

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0
# A session that lasted this long was healthy: the next reconnect starts again from the shortest delay.
HEALTHY_SESSION_S = 30.0


@dataclass(slots=True)
class SyncStats:
    connected: bool = False
    connects: int = 0
    batches_sent: int = 0
    records_sent: int = 0
    resends: int = 0
    acks: int = 0
    bad_acks: int = 0  # malformed, or naming records not sent in that batch: logged and ignored
    stale_acks: int = 0  # for a batch no longer awaiting one (acked already, or before a restart)
    last_ack_ms: int | None = None
    last_error: str | None = None


@dataclass(slots=True)
class _InFlight:
    last: int
    deadline: float
    sent_at: float | None  # None once resent: which send an ack answers is then unknown


# Sent batches remembered for their ack, across reconnects (a late ack still deletes what it names).
SENT_MEMORY = 256


class Sync:
    def __init__(
        self,
        *,
        cabinet: str,
        broker: BrokerAddress,
        keepalive_s: int,
        buffer: Buffer,
        settings: SyncSection,
        birth: Callable[[], Status],
        death: Callable[[], Status],
        clock_ms: Callable[[], int],
        on_command: Callable[[bytes], None],
        on_birth: Callable[[], None] = lambda: None,
    ) -> None:
        self.topics = Topics(cabinet)
        self.cabinet = cabinet
        self.broker = broker
        self.keepalive_s = keepalive_s
        self.buffer = buffer
        self.settings = settings
        self.birth = birth
        self.death = death
        self.clock_ms = clock_ms
        self.on_command = on_command
        self.on_birth = on_birth  # told after each birth is published (the broker took it)
        self.stats = SyncStats()
        self.flow = SendWindow(
            max_window=settings.window, max_batch=settings.batch_max_records, target_s=settings.ack_target_s
        )
        # (first, last) of each batch sent and not yet acknowledged -> the seqs it carried, as ranges.
        self._sent: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self._unreachable: str | None = None  # why connecting fails, once logged while it lasts
        self._wake = asyncio.Event()
        buffer.add_commit_listener(self._wake.set)

    async def run(self) -> None:
        """Connect, sync, and reconnect with jittered backoff, forever."""
        backoff = Backoff(initial=self.settings.reconnect_min_s, maximum=self.settings.reconnect_max_s)
        while True:
            started = time.monotonic()
            # Each session in a task of its own: aiomqtt and the session's TaskGroup leave their
            # own cancellations counted on the task they run in, so this one's count says only
            # whether someone asked the sync to stop.
            session = asyncio.create_task(self._session(), name=f"sync-session-{self.cabinet}")
            try:
                await session
            except* aiomqtt.MqttError as group:
                self.stats.last_error = str(_first_leaf(group))
                self._log_connection_lost(self.stats.connected, self.stats.last_error)
            finally:
                self.stats.connected = False
            # A stop that met a broken connection: the session ended with the MQTT error, and the
            # stop must not be swallowed by the line above.
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            if time.monotonic() - started > HEALTHY_SESSION_S:
                backoff.reset()
            # Jittered: a thousand cabinets must not reconnect in step after a broker restart.
            await asyncio.sleep(backoff.next_delay())

    def _log_connection_lost(self, was_connected: bool, reason: str) -> None:
        """A lost connection once; a failing connect once while its reason stays the same (it is tried
        again every few seconds for as long as the link is down)."""
        broker = str(self.broker)
        if was_connected:
            log.warning(
                "disconnected from %s: %s",
                broker,
                reason,
                extra=story("broker_disconnected", broker=broker, reason=reason),
            )
        elif reason != self._unreachable:
            log.warning(
                "cannot connect to %s: %s (retrying)",
                broker,
                reason,
                extra=story("broker_unreachable", broker=broker, reason=reason),
            )
        else:
            log.debug("cannot connect to %s: %s (retrying)", broker, reason)
        self._unreachable = None if was_connected else reason

    def _client(self) -> aiomqtt.Client:
        broker = self.broker
        will = aiomqtt.Will(self.topics.status, encode(self.death()), qos=1, retain=True)
        return aiomqtt.Client(
            broker.host,
            broker.port,
            username=broker.username,
            password=broker.password,
            identifier=self.cabinet,  # the broker binds a cabinet's account to this client id
            will=will,
            clean_session=True,
            keepalive=self.keepalive_s,
            timeout=PUBLISH_TIMEOUT_S,
            tls_params=tls_parameters(broker),
            socket_options=SOCKET_OPTIONS,
        )

    async def _session(self) -> None:
        async with self._client() as client:
            self.stats.connected = True
            self.stats.connects += 1
            self._unreachable = None
            log.info("connected to %s", self.broker, extra=story("broker_connected", broker=str(self.broker)))
            await client.subscribe(self.topics.ack, qos=1)
            await client.subscribe(self.topics.command, qos=1)
            # Deletions acknowledged in the last session reach disk before we resend from the start.
            await self.buffer.flush()
            await client.publish(self.topics.status, encode(self.birth()), qos=1, retain=True)
            self.on_birth()
            inflight: dict[int, _InFlight] = {}
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._receive(client, inflight), name="sync-receive")
                    tasks.create_task(self._send(client, inflight), name="sync-send")
            except asyncio.CancelledError:
                # A clean stop says goodbye; the last will covers every other way out.
                await self._publish_death(client)
                raise

    async def _publish_death(self, client: aiomqtt.Client) -> None:
        try:
            await client.publish(self.topics.status, encode(self.death()), qos=1, retain=True, timeout=2)
        except aiomqtt.MqttError as exc:
            log.info("offline status not sent (%s); the last will stands in", exc)

    async def _receive(self, client: aiomqtt.Client, inflight: dict[int, _InFlight]) -> None:
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                continue
            if message.topic.matches(self.topics.command):
                self.on_command(bytes(payload))
                continue
            if not message.topic.matches(self.topics.ack):
                # Only seen with brokers that deliver beyond the subscription (amqtt's retained status).
                log.debug("ignored a message on %s: not subscribed to it", message.topic)
                continue
            try:
                ack = decode_ack(bytes(payload), topic_cabinet=self.cabinet)
            except FleetError as exc:
                self.stats.bad_acks += 1
                log.warning("ignored a bad ack on %s: %s", message.topic, exc)
                continue
            if self._settle(ack, inflight):
                self._wake.set()

    def _settle(self, ack: Ack, inflight: dict[int, _InFlight]) -> bool:
        """Delete what ``ack`` names, if this agent sent exactly that; True when it did."""
        if ack.stream != self.buffer.stream:
            self.stats.stale_acks += 1  # an earlier stream of this cabinet (replaced buffer)
            return False
        key = (ack.first, ack.last)
        sent = self._sent.get(key)
        if sent is None:
            self.stats.stale_acks += 1
            log.debug("ack of %s..%s: no such batch awaits an ack (already settled)", *key)
            return False
        if not ranges_within(ack.held, sent):
            # Not what central would say: it acks the records a batch carried. Deleting more would
            # lose records silently, so nothing of it is trusted.
            self.stats.bad_acks += 1
            log.warning(
                "ignored an ack of batch %s..%s naming records that batch did not carry: %s",
                ack.first,
                ack.last,
                _describe_ranges(ack.held),
            )
            return False
        for first, last in ack.held:
            self.buffer.mark_acked(first, last)
        left = subtract_ranges(sent, ack.held)
        if left:
            self._sent[key] = left  # the rest goes again when the batch is due for a resend
        else:
            del self._sent[key]
            entry = inflight.get(ack.first)
            if entry is not None and entry.last == ack.last:
                del inflight[ack.first]
                if entry.sent_at is not None:
                    now = time.monotonic()
                    self.flow.on_ack(now - entry.sent_at, now)
        self.stats.acks += 1
        self.stats.last_ack_ms = self.clock_ms()
        return True

    async def _send(self, client: aiomqtt.Client, inflight: dict[int, _InFlight]) -> None:
        # Publishing does not wait for the broker's PUBACK before the next batch is read: a batch is
        # read while the last one is on the wire (waiting made a drain wait twice per batch). The
        # client writes them in the order they were handed over; a failed one ends the session.
        async with asyncio.TaskGroup() as publishing:
            await self._send_loop(client, inflight, publishing)

    async def _send_loop(
        self, client: aiomqtt.Client, inflight: dict[int, _InFlight], publishing: asyncio.TaskGroup
    ) -> None:
        cursor = 0  # after a (re)connect, start over from the oldest record still buffered
        timeout = self.settings.ack_timeout_s
        while True:
            self._wake.clear()
            now = time.monotonic()
            for first, entry in sorted(inflight.items()):
                if entry.deadline > now:
                    continue
                batch = await self.buffer.read_range(first, entry.last)
                if batch is None:  # acknowledged or evicted meanwhile (the ack may have settled it)
                    inflight.pop(first, None)
                    continue
                if entry.sent_at is not None:
                    self.flow.on_timeout(time.monotonic())
                entry.deadline = time.monotonic() + timeout
                entry.sent_at = None
                self.stats.resends += 1
                self._remember(batch)
                publishing.create_task(self._publish(client, batch))
            if len(inflight) < self.flow.batches:
                batch = await self.buffer.read_batch(cursor, self.flow.batch)
                if batch is not None:
                    # In flight before it is published, so that even the fastest ack finds it.
                    sent = time.monotonic()
                    inflight[batch.first] = _InFlight(batch.last, sent + timeout, sent)
                    cursor = batch.last
                    self._remember(batch)
                    publishing.create_task(self._publish(client, batch))
                    continue
            wait = min((e.deadline for e in inflight.values()), default=now + timeout) - now
            try:
                async with asyncio.timeout(max(wait, 0.01)):
                    await self._wake.wait()
            except TimeoutError:
                pass  # a batch is due for resending

    def _remember(self, batch: Batch) -> None:
        key = (batch.first, batch.last)
        # A resend of a batch carries what is left of it; an ack of an earlier send may name more.
        earlier = self._sent.pop(key, [])  # re-inserted: the newest last
        self._sent[key] = merge_ranges([*earlier, *seq_ranges(batch.seqs)])
        while len(self._sent) > SENT_MEMORY:
            # The oldest unanswered batch: its records stay buffered and are sent again.
            del self._sent[next(iter(self._sent))]

    async def _publish(self, client: aiomqtt.Client, batch: Batch) -> None:
        payload = encode_data_batch(
            cabinet=self.cabinet,
            stream=self.buffer.stream,
            first=batch.first,
            last=batch.last,
            readings=batch.readings,
            events=batch.events,
            results=batch.results,
            backlog=self.buffer.backlog,
        )
        await client.publish(self.topics.data, payload, qos=1)
        self.stats.batches_sent += 1
        self.stats.records_sent += batch.count


def _describe_ranges(ranges: list[tuple[int, int]], limit: int = 5) -> str:
    shown = ", ".join(f"{a}..{b}" for a, b in ranges[:limit])
    return shown + (f" and {len(ranges) - limit} more" if len(ranges) > limit else "")


def _first_leaf(error: BaseException) -> BaseException:
    """The first error itself, out of the groups nested around it (the session's, the publishing's)."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def tls_parameters(broker: BrokerAddress) -> aiomqtt.TLSParameters | None:
    """The TLS of a ``mqtts://`` broker: the system's CAs unless ``ca_file``; a client certificate
    when ``cert_file`` and ``key_file`` are given. None for plain ``mqtt://``."""
    if not broker.tls:
        return None

    def path(file: Path | None) -> str | None:
        return None if file is None else str(file)

    return aiomqtt.TLSParameters(
        ca_certs=path(broker.ca_file), certfile=path(broker.cert_file), keyfile=path(broker.key_file)
    )
