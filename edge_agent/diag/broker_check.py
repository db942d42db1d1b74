"""Can this cabinet reach its broker: TCP, TLS (the certificate checked as the agent checks it), MQTT.

The broker binds a cabinet's account to one client id, the cabinet id (packaging/mosquitto: the
dynamic-security plugin refuses the account under any other id, before looking at the password), and a
second connection under that id takes the running agent's session over. So:

- the agent is stopped: diag logs in as the agent does (client id = cabinet id, the config's user
  and password) and says whether the broker accepts the credentials, then disconnects;
- the agent runs: diag does not log in. It checks that the broker answers MQTT (a CONNECT under a
  client id of its own and no credentials, which the broker refuses, as it should), and reads /proc
  for the running agent's own TCP connection to the broker: established means the broker took its
  credentials (it closes a refused connection at once);
- it cannot be told whether the agent runs (its process is hidden from this user): no login, and
  the crew is told to run diag with sudo.

Every step is bounded by ``timeout_s``; no password is ever shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from edge_agent.diag.model import Check, Fact, Status
from protocols.fleet.broker_url import BrokerAddress

TIMEOUT_S = 3.0
CONNACK_CODES = {
    0: "accepted",
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad username or password",
    5: "not authorized",
}
_TCP_ESTABLISHED = "01"


@dataclass(frozen=True, slots=True)
class AgentLink:
    """What is known of the running agent: None pids when it is stopped, () when hidden."""

    running: bool | None
    pids: tuple[int, ...]


async def check_broker(
    broker: BrokerAddress, cabinet: str, agent: AgentLink, *, timeout_s: float = TIMEOUT_S
) -> Check:
    facts: dict[str, Fact] = {"url": str(broker), "tls": broker.tls}
    try:
        async with asyncio.timeout(timeout_s):
            address = await resolve(broker.host, broker.port)
    except TimeoutError:
        return Check(
            "broker", Status.FAIL, f"{broker}: its name does not resolve within {timeout_s:g} s", facts
        )
    except OSError as exc:
        return Check("broker", Status.FAIL, f"{broker}: its name does not resolve ({exc})", facts)
    facts["address"] = address
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(
                address,
                broker.port,
                ssl=_tls_context() if broker.tls else None,
                server_hostname=broker.host if broker.tls else None,
            )
    except TimeoutError:
        return Check("broker", Status.FAIL, f"{broker}: no answer within {timeout_s:g} s", facts)
    except ssl.SSLCertVerificationError as exc:
        facts["tcp"] = True
        return Check(
            "broker",
            Status.FAIL,
            f"{broker}: TLS certificate refused ({exc.verify_message}): the broker's certificate must"
            " be valid for this host name and signed by a CA this cabinet trusts",
            facts,
        )
    except ssl.SSLError as exc:
        facts["tcp"] = True
        return Check("broker", Status.FAIL, f"{broker}: TLS handshake failed ({exc.reason or exc})", facts)
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        return Check("broker", Status.FAIL, f"{broker}: cannot connect ({why})", facts)
    facts["tcp"] = True
    if broker.tls:
        facts["tls_certificate"] = _certificate(writer)
    try:
        return await _mqtt(reader, writer, broker, cabinet, agent, facts, timeout_s)
    finally:
        writer.close()
        try:
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
        except (OSError, TimeoutError, ssl.SSLError):
            pass  # closing: nothing left to learn from it


async def _mqtt(  # noqa: PLR0917 (the connection and what is known so far)
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    broker: BrokerAddress,
    cabinet: str,
    agent: AgentLink,
    facts: dict[str, Fact],
    timeout_s: float,
) -> Check:
    login = agent.running is False
    client_id = cabinet if login else f"cityedge-diag-{secrets.token_hex(4)}"
    username, password = (broker.username or cabinet, broker.password) if login else (None, None)
    writer.write(connect_packet(client_id, username, password))
    try:
        async with asyncio.timeout(timeout_s):
            await writer.drain()
            header = await reader.readexactly(4)
    except TimeoutError:
        return Check("broker", Status.FAIL, f"{broker}: no MQTT answer within {timeout_s:g} s", facts)
    except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
        return Check(
            "broker", Status.FAIL, f"{broker}: closed the connection without a CONNACK ({exc})", facts
        )
    if header[0] != 0x20 or header[1] != 2:
        return Check("broker", Status.FAIL, f"{broker}: does not speak MQTT (it answered {header!r})", facts)
    code = header[3]
    facts["connack"] = CONNACK_CODES.get(code, f"code {code}")
    if code == 0:
        writer.write(b"\xe0\x00")  # DISCONNECT: a clean goodbye
    if login:
        facts["credentials"] = "accepted" if code == 0 else "refused"
        if code == 0:
            return Check("broker", Status.OK, f"{broker}: credentials accepted (client id {cabinet})", facts)
        return Check(
            "broker",
            Status.FAIL,
            f"{broker} refused the cabinet's login ({facts['connack']}): check broker.username, the"
            " password file, and that central registered this cabinet",
            facts,
        )
    return _while_agent_runs(broker, agent, facts)


def _while_agent_runs(broker: BrokerAddress, agent: AgentLink, facts: dict[str, Fact]) -> Check:
    answers = f"{broker} answers MQTT"
    if agent.running is None or not agent.pids:
        facts["credentials"] = "not checked"
        return Check(
            "broker",
            Status.WARN,
            f"{answers}; credentials not checked: the agent may be running (its process is hidden from"
            " this user) and a login under its client id would take its session over: run diag with sudo",
            facts,
        )
    linked = established_to(agent.pids, str(facts["address"]), broker.port)
    facts["agent_connected"] = bool(linked)
    if linked:
        facts["credentials"] = "in use by the running agent"
        return Check(
            "broker",
            Status.OK,
            f"{answers}; the running agent (pid {linked[0]}) is connected to it, so its credentials work",
            facts,
        )
    facts["credentials"] = "not checked"
    return Check(
        "broker",
        Status.FAIL,
        f"{answers}, but the running agent is not connected to it: its journal says why"
        " (`journalctl -u cityedge-agent -g broker`); stop the agent and run diag to test its login",
        facts,
    )


async def resolve(host: str, port: int) -> str:
    """The first address of ``host``, looked up on a daemon thread of its own: with the link down a
    lookup may hang for the resolver's whole timeout, and diag must be able to give up on it and exit
    (the event loop's executor would wait for it on the way out)."""
    loop = asyncio.get_running_loop()
    found: asyncio.Future[str] = loop.create_future()

    def settle(result: str | OSError) -> None:
        if found.done():
            return
        if isinstance(result, OSError):
            found.set_exception(result)
        else:
            found.set_result(result)

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            result: str | OSError = str(infos[0][4][0])
        except OSError as exc:
            result = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: diag gave up on this lookup
            loop.call_soon_threadsafe(settle, result)

    threading.Thread(target=lookup, name="diag-resolve", daemon=True).start()
    return await found


def connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    """An MQTT 3.1.1 CONNECT: clean session, keepalive 10 s, no will."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", 10) + _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return b"\x10" + _remaining_length(len(body)) + body


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _remaining_length(size: int) -> bytes:
    out = bytearray()
    while True:
        size, digit = divmod(size, 128)
        out.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(out)


def _tls_context() -> ssl.SSLContext:
    # What the agent's client uses (aiomqtt.TLSParameters(): the system's CAs, the host name checked).
    return ssl.create_default_context()


def _certificate(writer: asyncio.StreamWriter) -> str | None:
    peer = writer.get_extra_info("peercert")
    if not isinstance(peer, dict):
        return None
    subject = dict(item[0] for item in peer.get("subject", ()) if item)
    return f"{subject.get('commonName', '?')}, valid until {peer.get('notAfter', '?')}"


def established_to(
    pids: tuple[int, ...], address: str, port: int, *, proc: Path = Path("/proc")
) -> list[int]:
    """The pids among ``pids`` holding an established TCP connection to ``address``:``port`` (the
    broker's address as diag resolved it: a name with several addresses may be reached at another)."""
    addresses = {address}
    remote = set().union(*(_proc_addresses(address, port) for address in addresses))
    found = []
    for pid in pids:
        inodes = _socket_inodes(proc / str(pid) / "fd")
        if inodes & _connections(proc / str(pid) / "net", remote):
            found.append(pid)
    return found


def _socket_inodes(fd_dir: Path) -> set[str]:
    inodes = set()
    try:
        for fd in fd_dir.iterdir():
            try:
                target = fd.readlink().name
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except OSError:
        pass
    return inodes


def _connections(net: Path, remote: set[str]) -> set[str]:
    """Inodes of the established TCP sockets (v4 and v6) whose remote end is in ``remote``."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (net / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == _TCP_ESTABLISHED and parts[2] in remote:
                inodes.add(parts[9])
    return inodes


def _proc_addresses(address: str, port: int) -> set[str]:
    """``address``:``port`` as /proc/net/tcp{,6} write it: hex, each 32-bit word in host byte order
    (an IPv4 address also as IPv6-mapped, as a dual-stack socket shows it)."""
    if ":" in address:
        packed = socket.inet_pton(socket.AF_INET6, address.split("%", maxsplit=1)[0])
        return {"".join(f"{word:08X}" for word in struct.unpack("=4I", packed)) + f":{port:04X}"}
    (value,) = struct.unpack("=I", socket.inet_aton(address))
    mapped = "".join(f"{word:08X}" for word in struct.unpack("=3I", bytes(10) + b"\xff\xff"))
    return {f"{value:08X}:{port:04X}", f"{mapped}{value:08X}:{port:04X}"}
