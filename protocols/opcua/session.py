"""One OPC UA session with a controller: the asyncua client, the profile's nodes, and its subscription.

A session is used until it is lost (a failed call, the keepalive probe, a subscription's status
change), then thrown away whole: the driver opens a new one, with a new subscription. asyncua's own
auto-reconnect stays off, so that exactly one place decides when and how often to reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UASocketProtocol
from asyncua.common.connection import TransportLimits
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.crypto import security_policies
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError

from protocols.driver import PointValue
from protocols.errors import DeviceException
from protocols.opcua.codec import bad, decode
from protocols.opcua.config import OpcuaDevice
from protocols.opcua.credentials import ClientIdentity
from protocols.opcua.errors import MAX_RESPONSE_MIB, TRANSLATED, status_name
from protocols.opcua.profile import OpcuaProfile, Point
from protocols.quality import Quality

_log = logging.getLogger(__name__)

_POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128Sha256RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256Sha256RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}
# A session the agent stops using is dropped by the controller after this, not after asyncua's hour
# (controllers hold few sessions).
SESSION_TIMEOUT_MS = 60_000
# The largest response the cabinet takes from a controller (a full read of a profile is a few KiB):
# a bigger one is refused as it arrives, before it is held whole in memory.
MAX_MESSAGE_BYTES = MAX_RESPONSE_MIB * 1024 * 1024
CHUNK_BYTES = 65535
MAX_CHUNKS = MAX_MESSAGE_BYTES // CHUNK_BYTES + 1


class _OurLimits(TransportLimits):
    """Limits a controller cannot raise: asyncua takes the server's Acknowledge as the new limits, and
    a server announcing 0 (no limit) would switch the cap off. Each limit stays the smaller of ours and
    the server's, a 0 from the server counting as no limit of its own."""

    def update_client_limits(self, msg: ua.Acknowledge) -> None:
        def smaller(ours: int, theirs: int) -> int:
            return ours if theirs <= 0 else min(ours, theirs)

        self.max_chunk_count = smaller(MAX_CHUNKS, msg.MaxChunkCount)
        self.max_recv_buffer = smaller(CHUNK_BYTES, msg.ReceiveBufferSize)
        self.max_send_buffer = smaller(CHUNK_BYTES, msg.SendBufferSize)
        self.max_message_size = smaller(MAX_MESSAGE_BYTES, msg.MaxMessageSize)


class _BoundedProtocol(UASocketProtocol):
    """asyncua's client socket protocol with receive limits: asyncua's own client keeps none (it asks
    the server for limits in its Hello, but takes any size the server sends). A chunk bigger than
    CHUNK_BYTES is refused while it is still partial, a message bigger than MAX_MESSAGE_BYTES once its
    chunks pass that size."""

    def __init__(self, timeout: float, security_policy: security_policies.SecurityPolicy) -> None:
        limits = _OurLimits(CHUNK_BYTES, CHUNK_BYTES, MAX_CHUNKS, MAX_MESSAGE_BYTES)
        super().__init__(timeout, security_policy=security_policy, limits=limits)

    def data_received(self, data: bytes) -> None:
        # The partial chunk asyncua keeps until the rest arrives: more than a chunk's worth is a server
        # announcing a chunk past the limit (asyncua would wait for all of it before checking).
        if len(self.receive_buffer or b"") > CHUNK_BYTES:
            self.receive_buffer = None
            _log.warning("the controller sent a chunk larger than %d bytes: connection dropped", CHUNK_BYTES)
            self._fail_all_pending(UaStatusCodeError(StatusCodes.BadResponseTooLarge))  # type: ignore[no-untyped-call]
            self.disconnect_socket()
            return
        super().data_received(data)


class _NoCredentialsInLogs(logging.Filter):
    """asyncua logs every request it sends at debug level, ActivateSession too: with its password."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(arg, ua.ActivateSessionRequest) for arg in args)


def _hide_credentials_from_asyncua_logs() -> None:
    protocol_logger = logging.getLogger("asyncua.client.ua_client.UASocketProtocol")
    if not any(isinstance(f, _NoCredentialsInLogs) for f in protocol_logger.filters):
        protocol_logger.addFilter(_NoCredentialsInLogs())


class Session:
    """A connected client; ``lost`` is set once anything says the session is gone."""

    def __init__(self, client: Client, nodes: dict[str, Node], points: dict[ua.NodeId, list[Point]]) -> None:
        self.client = client
        self.nodes = nodes  # profile node ("s=Controller.Mode") -> the server's node
        self.points = points  # server node id -> the points read from it
        self.lost = asyncio.Event()
        self.subscription: Subscription | None = None

    def decode(self, nodeid: ua.NodeId, value: ua.DataValue) -> list[PointValue]:
        """The values of the points read from ``nodeid``, given its data value."""
        points = self.points.get(nodeid, [])
        status = value.StatusCode
        if status is not None and status.is_bad():
            return [bad(point, f"status_{status_name(status.value)}") for point in points]
        raw = value.Value.Value if value.Value is not None else None
        decoded = [decode(point, raw) for point in points]
        if status is not None and status.is_uncertain():
            # The controller itself doubts the value (a sensor's last usable value, say): kept, flagged.
            reason = f"status_{status_name(status.value)}"
            return [
                replace(v, quality=Quality.UNCERTAIN, reason=reason) if v.quality == Quality.GOOD else v
                for v in decoded
            ]
        return decoded

    async def subscribe(self, interval_ms: int, deliver: Callable[[list[PointValue]], None]) -> None:
        """Monitor every ``subscribe = true`` point; each publish's changes reach ``deliver`` as one list."""
        handler = _ChangeHandler(self, deliver)
        subscription = await self.client.create_subscription(interval_ms, handler)
        watched = {
            self.nodes[point.node].nodeid
            for points in self.points.values()
            for point in points
            if point.subscribe
        }
        if watched:
            nodes = [self.client.get_node(nodeid) for nodeid in watched]
            await subscription.subscribe_data_change(nodes)
        self.subscription = subscription

    async def close(self, timeout_s: float) -> None:
        """Close the session (its tasks first, then a CloseSession the server may never answer, then the
        socket), within ``timeout_s``. Closing a lost session fails by nature: that is logged, not raised."""
        self.lost.set()
        try:
            async with asyncio.timeout(timeout_s):
                await self.client.close_session()
        except TRANSLATED as exc:
            _log.debug("closing a lost session: %s", type(exc).__name__)
        self.client.disconnect_socket()


class _ChangeHandler:
    """asyncua calls these from its publish task; changes of one publish are delivered together."""

    def __init__(self, session: Session, deliver: Callable[[list[PointValue]], None]) -> None:
        self._session = session
        self._deliver = deliver
        self._pending: list[PointValue] = []

    def datachange_notification(self, node: Node, val: object, data: DataChangeNotif) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.extend(self._session.decode(node.nodeid, data.monitored_item.Value))

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        if not status.Status.is_good():
            _log.info("subscription status %s: the session is gone", status_name(status.Status.value))
            self._session.lost.set()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            self._deliver(pending)


async def open_session(
    device: OpcuaDevice, profile: OpcuaProfile, *, password: str | None, identity: ClientIdentity | None
) -> Session:
    """Connect, authenticate, and find the profile's nodes. The caller bounds it in time."""
    _hide_credentials_from_asyncua_logs()
    client = Client(device.endpoint, timeout=device.timeout_s, watchdog_intervall=device.keepalive_s)
    client.name = client.description = "cityedge edge agent"
    client.session_timeout = SESSION_TIMEOUT_MS
    client.max_messagesize = MAX_MESSAGE_BYTES  # told to the server in the Hello
    client.max_chunkcount = MAX_CHUNKS
    _bound_received_messages(client)
    if device.username is not None and password is not None:
        client.set_user(device.username)
        client.set_password(password)
    if identity is not None and device.security_mode != "None":
        if identity.application_uri is not None:
            client.application_uri = identity.application_uri
        await client.set_security(
            _POLICIES[device.security_policy],
            identity.certificate_der,
            identity.private_key_der,
            server_certificate=identity.server_certificate_der,
            mode=_MODES[device.security_mode],
        )
    lost = asyncio.Event()

    async def on_lost(exc: Exception) -> None:
        _log.info("%s: keepalive failed (%s): the session is gone", device.name, type(exc).__name__)
        lost.set()

    client.connection_lost_callback = on_lost
    try:
        await client.connect()
    except BaseException:
        _abandon(client)
        raise
    try:
        session = await _bind(client, device, profile)
    except BaseException:
        await Session(client, {}, {}).close(device.timeout_s)
        raise
    session.lost = lost
    return session


def _bound_received_messages(client: Client) -> None:
    """Have the client's socket protocol enforce the receive limits (asyncua builds it at connect)."""
    uaclient = client.uaclient

    def make_protocol() -> UASocketProtocol:
        protocol = _BoundedProtocol(uaclient._timeout, uaclient.security_policy)
        protocol.pre_request_hook = uaclient._pre_request_hook
        protocol.on_connection_lost = uaclient._on_transport_lost
        protocol.is_session_closing = uaclient._is_session_closing
        uaclient.protocol = protocol
        return protocol

    uaclient._make_protocol = make_protocol  # type: ignore[method-assign]


def _abandon(client: Client) -> None:
    """Drop a client whose connect failed or was cancelled (by the caller's timeout) half-way, without
    awaiting anything: asyncua closes the socket of a failed connect but not of a cancelled one, nor
    the channel-renewal task a half-made session has started."""
    for task in (client._renew_channel_task, client._supervisor_task, client._stale_watchdog_task):
        if task is not None:
            task.cancel()
    if client.uaclient.has_transport:
        client.disconnect_socket()


async def _bind(client: Client, device: OpcuaDevice, profile: OpcuaProfile) -> Session:
    namespaces: list[str] = await client.get_namespace_array()
    if profile.namespace not in namespaces:
        raise DeviceException(
            device.name,
            f"the server offers no namespace {profile.namespace!r} (it has {len(namespaces)}): is profile "
            f"{profile.name!r} the right one for this controller?",
            StatusCodes.BadNodeIdUnknown,
        )
    index = namespaces.index(profile.namespace)
    nodes: dict[str, Node] = {}
    points: dict[ua.NodeId, list[Point]] = {}
    for point in profile.points:
        if point.node not in nodes:
            nodes[point.node] = client.get_node(f"ns={index};{point.node}")
        points.setdefault(nodes[point.node].nodeid, []).append(point)
    return Session(client, nodes, points)
