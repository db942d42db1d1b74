"""Central's one MQTT session: ingest receives on it; acks and commands go out on it.

    link = MqttLink(broker_url="mqtt://central:secret@broker:1883")
    link.receive([Subscription(data, shared=True), Subscription(status)], gate=..., handler=...)
    async with link:                      # connects, and reconnects with backoff until the block exits
        await link.wait_subscribed()
        await link.publish(topic, payload, expiry_s=60)   # QoS 1; False when it could not be sent

It connects with MQTT 5, or with MQTT 3.1.1 when the broker refuses MQTT 5 (amqtt). A subscription
marked ``shared`` is made as ``$share/<group>/<topic>`` when the broker grants it, so that the workers
of one group split its messages; otherwise as a plain one (a single ingest worker). The receiver's
``gate`` and ``handler`` see every message as it is read (``protocols.mqtt_client``): nothing queues.

A session that held for ``STABLE_SESSION_S`` starts the backoff over; one the broker drops at once
(ACL, overload) keeps backing off instead of hammering it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from central.background import Background
from central.errors import ServerError
from protocols.backoff import Backoff
from protocols.fleet.broker_url import SOCKET_OPTIONS, BrokerAddress, parse_broker_url
from protocols.fleet.topics import shared
from protocols.mqtt_client import FastClient, MessageGate, MessageHandler

logger = logging.getLogger(__name__)

DEFAULT_GROUP = "cityedge-central"
STABLE_SESSION_S = 10.0
_UNSUPPORTED_PROTOCOL = (1, 0x84)  # MQTT 3.1.1 and MQTT 5 CONNACK codes for "unsupported protocol"


@dataclass(frozen=True, slots=True)
class Subscription:
    topic: str
    shared: bool = False  # through the group's MQTT 5 shared subscription when the broker grants one


@dataclass(slots=True)
class LinkStats:
    """Mutated only by the link (one event loop: no locks needed)."""

    connected: bool = False
    protocol: str | None = None
    shared_subscription: bool = False
    connects: int = 0
    publish_failed: int = 0
    last_error: str | None = None
    last_error_ms: int | None = None

    def error(self, message: str) -> None:
        self.last_error = message
        self.last_error_ms = time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class _Receiver:
    subscriptions: tuple[Subscription, ...]
    gate: MessageGate | None
    handler: MessageHandler


def _granted(codes: Sequence[int | ReasonCode]) -> bool:
    return all((c.value if isinstance(c, ReasonCode) else c) < 0x80 for c in codes)


class MqttLink(Background):
    """``async with MqttLink(broker_url=...)`` holds a session to the broker until the block exits."""

    task_name = "central-mqtt-link"
    what = "the MQTT link"

    def __init__(
        self,
        *,
        broker_url: str,
        broker_username: str | None = None,
        broker_password: str | None = None,
        group: str = DEFAULT_GROUP,
        client_id: str | None = None,
        timeout: float = 10.0,
        max_queued_messages: int = 10_000,
        backoff: Backoff | None = None,
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
        self._group = group
        self._client_id = client_id or f"cityedge-central-{uuid.uuid4().hex[:12]}"
        self._timeout = timeout
        self._max_queued_messages = max_queued_messages
        self._backoff = backoff or Backoff(initial=0.2, maximum=30.0)
        self._protocol = aiomqtt.ProtocolVersion.V5
        self._receiver: _Receiver | None = None
        self._client: FastClient | None = None
        self._subscribed = asyncio.Event()
        super().__init__()
        self.stats = LinkStats()

    def receive(
        self,
        subscriptions: Sequence[Subscription],
        *,
        handler: MessageHandler,
        gate: MessageGate | None = None,
    ) -> None:
        """Subscribe to ``subscriptions`` on every session and hand each message to ``handler``
        (after ``gate``, if given). One receiver per link, set before the link starts."""
        if self._receiver is not None or self._task is not None:
            raise RuntimeError("this MqttLink has its receiver already, or is running")
        self._receiver = _Receiver(tuple(subscriptions), gate, handler)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def wait_subscribed(self) -> None:
        """Return once the current session has its subscriptions (publishing before is lossy)."""
        await self._subscribed.wait()

    def pause_reading(self) -> None:
        """Stop reading the socket (the receiver is behind): the broker holds the rest meanwhile."""
        if self._client is not None:
            self._client.pause_reading()

    def resume_reading(self) -> None:
        if self._client is not None:
            self._client.resume_reading()

    async def publish(
        self, topic: str, payload: bytes, *, qos: Literal[0, 1] = 1, expiry_s: int | None = None
    ) -> bool:
        """Publish on the current session; False when there is none or the broker failed.

        Callers send again later (a PUBACK is not delivery anyway). ``expiry_s`` becomes the MQTT 5
        message expiry interval when the broker speaks MQTT 5.
        """
        client = self._client
        if client is None:
            self.stats.publish_failed += 1
            return False
        properties = None
        if expiry_s is not None and self._protocol == aiomqtt.ProtocolVersion.V5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho is untyped here
            properties.MessageExpiryInterval = max(1, expiry_s)
        try:
            async with asyncio.timeout(self._timeout):
                await client.publish(topic, payload, qos=qos, properties=properties)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            self.stats.publish_failed += 1
            self.stats.error(f"publish to {topic}: {exc or type(exc).__name__}")
            return False
        return True

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        """Queue a QoS 0 publish on the current session, written once this event-loop turn is done;
        False when there is none, or the broker is not taking what was queued before.

        For many small idempotent messages (acks): no task, timeout or wait for each; one that is
        lost when the session drops before it is written is one a QoS 0 publish may lose anyway."""
        client = self._client
        if client is None:
            self.stats.publish_failed += 1
            return False
        if not client.publish_nowait(topic, payload):
            self.stats.publish_failed += 1
            self.stats.error(f"publish to {topic}: the broker is not reading what was sent before")
            return False
        return True

    # -- the session: connect, subscribe, receive, reconnect ---------------------------------

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
                message = f"MQTT {self._address}: {exc or type(exc).__name__}"
                self.stats.error(message)
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
            self.stats.connected = True
            self.stats.connects += 1
            self._subscribed.set()
            logger.info("connected to %s as %s", self._address, self._client_id)
            receiver = self._receiver
            try:
                # Messages are handled as they are decoded (the receiver's handler); this only waits
                # for the session to end (and takes what a broker might deliver otherwise).
                async for message in client.messages:
                    if receiver is not None:
                        payload = message.payload
                        receiver.handler(message.topic.value, payload if isinstance(payload, bytes) else b"")
            finally:
                self._client = None
                self._subscribed.clear()
                self.stats.connected = False

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
        receiver = self._receiver
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
            message_gate=receiver.gate if receiver is not None else None,
            message_handler=receiver.handler if receiver is not None else None,
        )
        client.pending_calls_threshold = 1_000  # acks are published concurrently by design
        return client

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        v5 = self._protocol == aiomqtt.ProtocolVersion.V5
        subscriptions = self._receiver.subscriptions if self._receiver is not None else ()
        wanted = [s for s in subscriptions if s.shared]
        granted = 0
        for subscription in subscriptions:
            topic = subscription.topic
            if subscription.shared and v5:
                codes = await client.subscribe(shared(self._group, topic), qos=1)
                if _granted(codes):
                    granted += 1
                    continue
            await self._subscribe_one(client, topic)
        self.stats.protocol = "5" if v5 else "3.1.1"
        self.stats.shared_subscription = bool(wanted) and granted == len(wanted)

    async def _subscribe_one(self, client: aiomqtt.Client, topic: str) -> None:
        codes = await client.subscribe(topic, qos=1)
        if not _granted(codes):
            raise aiomqtt.MqttError(f"the broker refused the subscription to {topic}: {codes}")
