"""Broker addresses as URLs: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://`` for TLS."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

# Socket options of every fleet MQTT connection: acks and commands are small, latency-bound messages
# that Nagle's algorithm would hold back ~40 ms waiting for the peer's delayed ACK.
SOCKET_OPTIONS = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in logs, repr included

    def __str__(self) -> str:
        """The URL without the password, safe for logs."""
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse a broker URL or raise ValueError saying what a good one looks like."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(
            f"broker URL {url!r} must start with mqtt:// or mqtts://, e.g. mqtt://127.0.0.1:1883"
        )
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host, e.g. mqtt://127.0.0.1:1883")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"broker URL {url!r} has an invalid port") from exc
    if port == 0:
        raise ValueError(f"broker URL {url!r} has port 0; use 1-65535 or leave it out")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
