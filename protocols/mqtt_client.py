"""aiomqtt's client, reading the socket in bursts, with an optional filter before a message is queued.

Why: paho reads one MQTT packet per event-loop wake-up, with three or four ``recv()`` system calls
per packet (the fixed header a byte at a time), and aiomqtt wraps every packet in a ``Message`` and
queues it before anyone can look at it. For a central receiving tens of thousands of messages a second
(a fleet, or one cabinet flooding junk), that overhead, not the work, is the ceiling. Here:

- the socket is read 64 KiB at a time and paho's small reads are served from that buffer;
- one wake-up decodes every packet the buffer holds (bounded by the buffer, so the loop stays fair);
- ``message_gate(topic, payload)`` sees each PUBLISH as soon as its bytes are read, before paho
  decodes it into a message (a refused one costs a slice, a topic decode and a call: a third of
  paho's own handling), and ``message_handler(topic, payload)`` takes an admitted message before any
  ``Message`` is made or queued, at once rather than one per event-loop turn (aiomqtt's iterator
  waits on a task per message);
- MQTT 5 properties of received packets are decoded by a ``Properties`` that shares paho's constant
  tables instead of building them again for every packet (two thirds of paho's cost per PUBLISH);
  it decodes exactly what paho's does (tests/unit/test_mqtt_client.py);
- a PUBLISH the handler takes is handed to it straight from the packet's bytes (topic, payload) and
  acknowledged, without paho's ``MQTTMessage``, its properties or its callback locks;
- what paho queues to send (PUBACKs, publishes) is written once the current event-loop turn is done,
  all of it in one go, instead of through a writer registered with the loop and a wake-up of its own
  for each burst (a cross-thread ``call_soon_threadsafe``, two ``epoll_ctl``, one more turn);
- ``publish_nowait`` queues a QoS 0 PUBLISH at once, without the task, event and timeout aiomqtt's
  ``publish`` makes for each (and its scan of every pending call): for many small idempotent
  messages such as acks.

This reaches into private parts of paho-mqtt 2.x and aiomqtt 2.x (pinned in pyproject.toml); the
hooks are checked when this module is imported, so an upgrade that moves them fails loudly, at once.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any, cast

import aiomqtt
import paho.mqtt._packet as paho_packet
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

READ_BYTES = 64 * 1024

MessageHandler = Callable[[str, bytes], bool]
"""(topic, payload) -> True when it took the message (it is not queued). Runs on the event loop."""

MessageGate = Callable[[str, bytes], bool]
"""(topic, payload) -> let it through. Runs on the event loop before paho builds anything of it."""

READS_PER_WAKE = 1000

_HOOKS = (
    (mqtt.Client, "_sock_recv"),
    (aiomqtt.Client, "_on_socket_open"),
    (aiomqtt.Client, "_on_message"),
    (aiomqtt.Client, "_misc_loop"),
    (aiomqtt.Client, "_on_socket_close"),
    (mqtt.Client, "_handle_publish"),
    (mqtt.Client, "_send_puback"),
    (mqtt.Client, "loop_write"),
    (aiomqtt.Client, "_on_socket_register_write"),
    (paho_packet, "decode_publish"),
)
for _owner, _name in _HOOKS:
    if not callable(getattr(_owner, _name, None)):
        raise ImportError(
            f"{_owner.__module__}.{_owner.__qualname__} has no {_name}: protocols.mqtt_client needs"
            " paho-mqtt 2.2 and aiomqtt 2.5 (see pyproject.toml)"
        )


_PAHO_TABLES = ("packetType", "types", "names", "properties")


# Received properties longer than this are skipped, not decoded: paho's decoding of user properties
# costs the square of their number (100,000 of them in one packet: 25 s of a stalled event loop), and
# nothing this project receives carries more than a few bytes of them.
MAX_DECODED_PROPERTIES_BYTES = 1024


class SharedTableProperties(Properties):
    """paho's ``Properties`` with its constant tables built once, not once per packet; a property
    block over ``MAX_DECODED_PROPERTIES_BYTES`` is stepped over undecoded."""

    _template = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho is untyped
    _types = _template.types
    _names = _template.names
    _properties = _template.properties

    def __init__(self, packetType: int) -> None:  # paho's name
        set_ = object.__setattr__
        set_(self, "packetType", packetType)
        set_(self, "types", self._types)
        set_(self, "names", self._names)
        set_(self, "properties", self._properties)

    def clear(self) -> None:
        for name in [n for n in self.__dict__ if n not in _PAHO_TABLES]:
            delattr(self, name)

    def unpack(self, buffer: bytes) -> tuple[SharedTableProperties, int]:
        length, length_bytes = VariableByteIntegers.decode(buffer)  # type: ignore[no-untyped-call]
        if length > MAX_DECODED_PROPERTIES_BYTES:
            self.clear()
            return self, int(length) + int(length_bytes)
        unpacked: tuple[SharedTableProperties, int] = super().unpack(buffer)  # type: ignore[no-untyped-call]
        return unpacked


if getattr(paho_packet, "Properties", None) is not Properties:
    raise ImportError("paho.mqtt._packet no longer decodes with paho.mqtt.properties.Properties")
# Only the decoder of received packets: what this process sends is built by paho as before.
paho_packet.Properties = SharedTableProperties  # type: ignore[attr-defined]


class _BufferedRecv:
    """Stands in for paho's ``_sock_recv``: one large read, then paho's small reads from memory."""

    def __init__(self, client: mqtt.Client) -> None:
        self._client = client
        self._buffer = b""
        self._offset = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer) - self._offset

    def reset(self) -> None:
        self._buffer, self._offset = b"", 0

    def __call__(self, bufsize: int) -> bytes:
        if self._offset >= len(self._buffer):
            data: bytes = mqtt.Client._sock_recv(self._client, READ_BYTES)
            if not data:
                return data  # the peer closed the connection
            self._buffer, self._offset = data, 0
        chunk = self._buffer[self._offset : self._offset + bufsize]
        self._offset += len(chunk)
        return chunk


class _GatedPublish:
    """Stands in for paho's ``_handle_publish``: the gate sees the raw PUBLISH first, and a refused
    one is acknowledged (QoS 1) and dropped without a message, its properties or a lock being made.
    An admitted one goes straight to ``take`` (topic, payload) when given; what ``take`` declines, or
    what cannot be read here (a topic alias, a malformed packet), goes on to paho."""

    def __init__(
        self,
        client: mqtt.Client,
        gate: MessageGate | None,
        take: Callable[[str, bytes], bool] | None,
        send: Callable[[bytes], None],
    ) -> None:
        self._client = client
        self._gate = gate
        self._take = take
        self._send = send  # queues a ready-made packet
        self.declined = False  # set while paho handles a PUBLISH that ``take`` declined

    def __call__(self) -> MQTTErrorCode:
        client = self._client
        packet = client._in_packet
        command: int = packet["command"]
        body: bytes | bytearray = packet["packet"]
        qos = (command & 0x06) >> 1
        parsed = _parse_publish(body, qos, client._protocol == mqtt.MQTTv5) if qos < 2 else None
        if parsed is None:
            return self._paho()
        topic, mid, payload = parsed
        if self._gate is not None and not self._gate(topic, payload):
            return self._puback(mid, qos)
        take = self._take
        if take is None or not topic:  # an empty topic is an alias: paho resolves it
            return self._paho()
        if not take(topic, payload):
            self.declined = True
            try:
                return self._paho()
            finally:
                self.declined = False
        return self._puback(mid, qos)

    def _paho(self) -> MQTTErrorCode:
        handled: MQTTErrorCode = mqtt.Client._handle_publish(self._client)
        return handled

    def _puback(self, mid: int, qos: int) -> MQTTErrorCode:
        if qos == 1:
            # paho's own PUBACK (MQTT 5 allows it without a reason code: success).
            self._send(_PUBACK.pack(mqtt.PUBACK, 2, mid))
        return MQTTErrorCode.MQTT_ERR_SUCCESS


_PUBACK = struct.Struct("!BBH")
_U16 = struct.Struct("!H")
# What one write of queued packets holds at most: the loop stays fair, the socket takes it whole.
BUNDLE_BYTES = 16 * 1024


def publish_packet(topic: str, payload: bytes, *, v5: bool) -> bytes:
    """A QoS 0 PUBLISH, as paho builds one (no properties, not retained)."""
    name = topic.encode()
    if not name or len(name) > 0xFFFF or "+" in topic or "#" in topic:
        raise ValueError(f"cannot publish to {topic!r}: not a topic name")
    remaining = 2 + len(name) + (1 if v5 else 0) + len(payload)
    if remaining > 268_435_455:
        raise ValueError(f"a payload of {len(payload)} bytes is over MQTT's limit")
    length = bytearray()
    while True:
        byte, remaining = remaining & 0x7F, remaining >> 7
        length.append(byte | 0x80 if remaining else byte)
        if not remaining:
            break
    return b"".join((b"\x30", length, _U16.pack(len(name)), name, b"\x00" if v5 else b"", payload))


def _parse_publish(body: bytes | bytearray, qos: int, v5: bool) -> tuple[str, int, bytes] | None:
    """(topic, message id (0 at QoS 0), payload) of a PUBLISH's body; None when paho should say
    what is wrong with it."""
    try:
        (length,) = struct.unpack_from("!H", body, 0)
        topic = body[2 : 2 + length].decode()
        pos = 2 + length
        mid = 0
        if qos:
            (mid,) = struct.unpack_from("!H", body, pos)
            pos += 2
        if v5:
            props, used = _variable_int(body, pos)
            pos += used + props
    except (struct.error, UnicodeDecodeError, IndexError):
        return None
    if pos > len(body):
        return None
    return topic, mid, bytes(body[pos:])


def _variable_int(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    """An MQTT variable byte integer at ``pos``: (value, bytes used)."""
    value, shift = 0, 0
    for used in range(1, 5):
        byte = data[pos + used - 1]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, used
        shift += 7
    raise IndexError("malformed variable byte integer")


class FastClient(aiomqtt.Client):
    """``aiomqtt.Client`` with burst reads; ``message_handler`` takes messages before they queue.

    ``pause_reading()`` stops reading the socket (the broker holds what follows, within its limits)
    until ``resume_reading()``: backpressure for a handler whose consumer is behind.
    """

    def __init__(
        self,
        *args: Any,
        message_handler: MessageHandler | None = None,
        message_gate: MessageGate | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._message_handler = message_handler
        self._recv = _BufferedRecv(self._client)
        self._client._sock_recv = self._recv  # type: ignore[method-assign]
        self._bundle: dict[str, Any] | None = None  # the queued packet that later ones join
        self._publish: _GatedPublish | None = None
        if message_gate is not None or message_handler is not None:
            self._publish = _GatedPublish(self._client, message_gate, message_handler, self._send_packet)
            self._client._handle_publish = self._publish  # type: ignore[method-assign]
        self._reading_fd: int | None = None
        self._paused = False
        self._flush_scheduled = False

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        handle = self._message_handler
        declined = self._publish is not None and self._publish.declined  # asked already
        if handle is not None and not declined and handle(message.topic, bytes(message.payload)):
            return
        super()._on_message(client, userdata, message)

    def publish_nowait(self, topic: str, payload: bytes, *, max_queued: int = 10_000) -> bool:
        """Queue a QoS 0 PUBLISH to be written at the end of this event-loop turn, with whatever else
        is queued by then (one write); False when there is no session, or ``max_queued`` packets
        wait to be written already (the broker is not reading: the message is dropped, as a QoS 0
        one may be anyway)."""
        client = self._client
        if client._sock is None or not client.is_connected() or len(client._out_packet) >= max_queued:
            return False
        self._send_packet(publish_packet(topic, payload, v5=client._protocol == mqtt.MQTTv5))
        return True

    def _send_packet(self, data: bytes) -> None:
        """Queue ready-made packets for paho to write: appended to the last one queued this way when
        paho has not begun writing it, so that a turn's PUBACKs and acks leave in one ``send()``."""
        client = self._client
        out = client._out_packet
        bundle = self._bundle
        if (
            bundle is not None
            and out
            and out[-1] is bundle
            and bundle["pos"] == 0
            and bundle["to_process"] + len(data) <= BUNDLE_BYTES
        ):
            bundle["packet"] += data
            bundle["to_process"] += len(data)
            return
        # Queued as a PUBACK for paho's bookkeeping: nothing to confirm to anyone once written (a
        # QoS 0 PUBLISH would have paho call on_publish with a message info of its own).
        client._packet_queue(mqtt.PUBACK, bytearray(data), 0, 1)
        self._bundle = cast(dict[str, Any], out[-1]) if out else None

    def _on_socket_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # paho has something to send. On the loop's thread, it is written once this turn's callbacks
        # are done (everything queued meanwhile in the same write); paho may call from the thread
        # that connects, where aiomqtt's thread-safe writer does it.
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if not on_loop:
            super()._on_socket_register_write(client, userdata, sock)
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush, sock)

    def _flush(self, sock: Any) -> None:
        self._flush_scheduled = False
        client = self._client
        if client._sock is not sock:
            return  # that session is gone; paho drops what it had queued
        try:
            client.loop_write()
        except Exception as exc:  # noqa: BLE001  # as aiomqtt does: a broken pipe ends the session
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)
            return
        if client.want_write():
            # The socket is full: wait until it is writable (paho unregisters once it is drained).
            super()._on_socket_register_write(client, None, sock)

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        fd = self._reading_fd
        if fd is not None:
            self._loop.add_reader(fd, self._read)
            self._loop.call_soon(self._read)  # what the buffer still holds

    def _read(self) -> None:
        # What the buffer holds is decoded now: the socket may be empty while the buffer is not,
        # and epoll would not wake us for it. Bounded, then rescheduled, to stay fair.
        client, recv = self._client, self._recv
        try:
            for _ in range(READS_PER_WAKE):
                if self._paused:
                    if self._reading_fd is not None:
                        self._loop.remove_reader(self._reading_fd)
                    return
                client.loop_read()
                sock_now = client._sock
                if sock_now is None:
                    return
                pending = getattr(sock_now, "pending", None)  # TLS: bytes decrypted, not read
                if recv.buffered == 0 and (pending is None or pending() == 0):
                    return
            self._loop.call_soon(self._read)
        except Exception as exc:  # noqa: BLE001  # as aiomqtt does: a broken pipe ends the session
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._recv.reset()
        fd = sock.fileno()

        def start() -> None:
            self._reading_fd = fd
            if not self._paused:
                self._loop.add_reader(fd, self._read)
            self._misc_task = self._loop.create_task(self._misc_loop())

        # paho calls this from the thread that connects: hand over to the loop.
        self._loop.call_soon_threadsafe(start)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._reading_fd = None
        super()._on_socket_close(client, userdata, sock)
