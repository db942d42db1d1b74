"""Broker addresses as URLs (``mqtt://[user[:password]@]host[:port]``, ``mqtts://`` for TLS) and the
secrets that go with them.

A password is never shown: not by ``str()`` or ``repr()`` of a BrokerAddress, not in the error about a
bad URL. It is best kept out of URLs altogether (a command line is visible to every local user) and
read from a file only its owner can read (``read_secret_file``) or from the environment
(``password_from_environment``: systemd credentials, an ``EnvironmentFile``).
"""

from __future__ import annotations

import os
import re
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
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
    # TLS (``mqtts://``): the CA certificate to trust instead of the system's, and a client
    # certificate with its key where the broker asks for one. None: the defaults.
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __str__(self) -> str:
        """The URL without the password, safe for logs."""
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


# What comes before the user in a URL: a scheme and "://", or (a typo) mqtt: with fewer slashes.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_MISTYPED_SCHEME = re.compile(r"mqtts?:/{0,2}", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with the password part, if any, replaced by ``***``: safe for logs and errors.

    Mistyped URLs included: what follows the user's first colon up to the last "@" is the password
    (``mqtt:/cab-1:***@host``, ``cab-1:***@host``). Without "://", text between a colon and an "@"
    that cannot be told from a password is one (``mqtt:/***@host``, ``http:***@host``).
    """
    # The last "@" anywhere: a password may hold an unescaped "/" or "@" that fools a URL parser.
    before, at, host = url.rpartition("@")
    if not at:
        return url
    lead = _SCHEME.match(before) or _MISTYPED_SCHEME.match(before)
    scheme, userinfo = (before[: lead.end()], before[lead.end() :]) if lead else ("", before)
    user, colon, _ = userinfo.partition(":")
    if colon:
        return f"{scheme}{user}:***@{host}"
    if lead and "://" not in scheme:
        return f"{scheme}***@{host}"  # mqtt:/word@host: a user, or a password after the scheme's colon
    return url


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse a broker URL or raise ValueError saying what a good one looks like (password redacted)."""
    return _parse(url, redact_url(url))


def _parse(url: str, shown: str) -> BrokerAddress:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(
            f"broker URL {shown!r} must start with mqtt:// or mqtts://, e.g. mqtt://127.0.0.1:1883"
        )
    if not parts.hostname:
        raise ValueError(f"broker URL {shown!r} has no host, e.g. mqtt://127.0.0.1:1883")
    try:
        port = parts.port
    except ValueError:
        # Not chained: urllib's message quotes the port text, which may be part of a password.
        raise ValueError(f"broker URL {shown!r} has an invalid port") from None
    if port == 0:
        raise ValueError(f"broker URL {shown!r} has port 0; use 1-65535 or leave it out")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


# The environment variables both the agent and central read a broker password from, in this order,
# and the systemd credential name (LoadCredential=broker-password:/etc/cityedge/...).
PASSWORD_ENV = "CITYEDGE_BROKER_PASSWORD"
PASSWORD_FILE_ENV = "CITYEDGE_BROKER_PASSWORD_FILE"
CREDENTIAL_NAME = "broker-password"


class SecretFileError(ValueError):
    """A secret file cannot be used: ``path`` and a ``problem`` that says the fix (never the secret)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def read_secret_file(path: Path) -> str:
    """The secret held in ``path`` (its first line, surrounding whitespace stripped).

    Refuses a file that other users may read or write: a password readable by all is no secret. The
    owner and its group may read it (0600, or 0640 root:cityedge).
    """
    try:
        # O_NONBLOCK: opening a FIFO for reading would wait for a writer forever (a config, or an
        # inventory, naming one); on a regular file it changes nothing.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as file:
            info = os.fstat(file.fileno())
            mode = info.st_mode
            if not stat.S_ISREG(mode):
                raise SecretFileError(path, "is not a regular file; give the file holding the password")
            if info.st_size == 0:  # also what /proc shows (/proc/self/environ: a whole environment)
                raise SecretFileError(
                    path, "is empty, or not a file on disk (/proc): write the password in it, on one line"
                )
            if mode & 0o007:
                raise SecretFileError(
                    path,
                    f"other users can access it (mode {stat.S_IMODE(mode):04o}): run `chmod o-rwx {path}`"
                    " (0600, or 0640 with the service's group)",
                )
            raw = file.read(4097)
    except OSError as exc:
        raise SecretFileError(path, f"cannot read it ({exc.strerror or exc})") from exc
    if len(raw) > 4096:
        raise SecretFileError(path, "is over 4 KiB: it should hold only the password, on one line")
    try:
        secret = raw.decode("utf-8").strip().partition("\n")[0].strip()
    except UnicodeDecodeError as exc:
        raise SecretFileError(path, "is not UTF-8 text: write the password as text, on one line") from exc
    if not secret:
        raise SecretFileError(path, "is empty: write the password in it, on one line")
    return secret


def password_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """A broker password from the environment, or None.

    ``CITYEDGE_BROKER_PASSWORD`` (an ``EnvironmentFile``), else the file named by
    ``CITYEDGE_BROKER_PASSWORD_FILE``, else the systemd credential ``broker-password``
    (``$CREDENTIALS_DIRECTORY/broker-password``, from ``LoadCredential=``) when it exists.
    Raises SecretFileError when a file is named but cannot be used.
    """
    env = os.environ if environ is None else environ
    password = env.get(PASSWORD_ENV)
    if password:
        return password
    named = env.get(PASSWORD_FILE_ENV)
    if named:
        return read_secret_file(Path(named))
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if credentials:
        candidate = Path(credentials) / CREDENTIAL_NAME
        if candidate.exists():
            return read_secret_file(candidate)
    return None
