"""The agent's story in its log: one line per thing that happened, with structured fields.

What happened (an alarm raised or cleared, data evicted, a device lost or back, the broker connection
won or lost, a command's result) is logged once, at its level, with fields naming what it is about::

    log.warning("device %s lost: %s", name, detail, extra=story("device_lost", device=name))

Under systemd (stderr is the journal's stream, ``$JOURNAL_STREAM``, or the service runs under systemd
and journald's socket is there) each record goes to journald through its native protocol, so the
fields are journal fields: ``journalctl -u cityedge-agent EVENT=device_lost DEVICE=lc2``,
``PRIORITY=4``, ``CABINET=``. Anywhere else it is one plain line on stderr, the fields after the
message (``device=lc2 event=device_lost``).

The native protocol (systemd's ``sd_journal_send``) is a datagram of ``KEY=value`` lines, a value
holding a newline sent as ``KEY``, a newline, its length (64-bit little-endian) and the bytes. python-
systemd would need a C build on the cabinet; this is the part of it the agent needs. A record that
cannot be sent (journald gone, its queue full: the socket never blocks the event loop) is written to
stderr instead, which systemd also puts in the journal.

The cabinet of a record comes from ``CABINET`` (a context variable the agent sets when it runs, which
its tasks inherit), so a process running many agents (the demo) still tells them apart. No secret is
ever a field: callers pass names, ids and numbers.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import socket
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
# The attribute of a LogRecord holding its story fields (``extra=story(...)``).
STORY_ATTRIBUTE = "story"
# The cabinet the current task works for: set by ``Agent.run``, inherited by every task it starts.
CABINET: contextvars.ContextVar[str | None] = contextvars.ContextVar("cityedge_cabinet", default=None)

# A datagram well under the default socket buffer (journald raises its own to 8 MiB): messages are
# cut, never sent through a memfd as sd_journal_send does for huge ones.
MAX_MESSAGE_BYTES = 16 * 1024
MAX_VALUE_BYTES = 2 * 1024
MAX_FIELDS = 32
_FIELD_NAME = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")
# syslog(3) priorities of the logging levels (journalctl -p warning shows PRIORITY <= 4).
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
# Fields the handler writes itself: a story field of one of these names is left out.
_RESERVED = frozenset(
    {"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "LOGGER", "CODE_FILE", "CODE_LINE", "CODE_FUNC"}
)
# The level an event of each fleet severity is logged at (an alarm is the cabinet's trouble, not the
# agent's: a warning; a critical one an error).
SEVERITY_LEVELS: Mapping[str, int] = {
    "info": logging.INFO,
    "warning": logging.WARNING,
    "alarm": logging.WARNING,
    "critical": logging.ERROR,
}
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What a plain line never carries raw: control characters (a newline would start a forged line in the
# journal's stream, an escape sequence drives the terminal) and Unicode's line separators.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

Value = str | int | float | bool | None


def story(event: str, **fields: Value) -> dict[str, dict[str, str]]:
    """``extra=`` of a story line: its ``event`` kind and fields (None values left out)."""
    values = {"event": event, **fields}
    return {STORY_ATTRIBUTE: {key: _text(value) for key, value in values.items() if value is not None}}


def story_fields(record: logging.LogRecord) -> dict[str, str]:
    """A record's story fields, with its cabinet when one is known."""
    fields: dict[str, str] = {}
    cabinet = CABINET.get()
    if cabinet is not None:
        fields["cabinet"] = cabinet
    given = getattr(record, STORY_ATTRIBUTE, None)
    if isinstance(given, Mapping):
        fields.update((str(key), str(value)) for key, value in list(given.items())[:MAX_FIELDS])
    return fields


def priority(level: int) -> int:
    """The syslog priority of a logging level (DEBUG and below: 7)."""
    return next((value for threshold, value in _PRIORITIES if level >= threshold), 7)


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class MessageFormatter(logging.Formatter):
    """The message comes from devices and brokers too: its control characters escaped, so it is one
    line that never drives a terminal (a traceback, added after it, keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(_with_message(record, escaped(record.message)))


class PlainFormatter(MessageFormatter):
    """``time LEVEL logger: message`` and then the story fields, ``key=value``, on the same line."""

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = story_fields(record)
        if not fields:
            return line
        return line + "  " + " ".join(f"{key}={_quoted(value)}" for key, value in sorted(fields.items()))


def _quoted(value: str) -> str:
    if value and not any(c.isspace() or c in '"=' for c in value):
        return escaped(value)
    return '"' + escaped(value.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def escaped(text: str) -> str:
    """``text`` with its control characters written as Python escapes (``\\n``, ``\\x1b``)."""
    return _UNSAFE.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


def _with_message(record: logging.LogRecord, message: str) -> logging.LogRecord:
    """A copy of ``record`` with ``message`` (the record itself is shared by every handler)."""
    copy = logging.makeLogRecord(record.__dict__)
    copy.message = message
    return copy


class JournalHandler(logging.Handler):
    """Sends each record to journald's socket in its native protocol; stderr when it cannot."""

    def __init__(
        self, *, identifier: str, socket_path: Path = JOURNAL_SOCKET, fallback: TextIO | None = None
    ) -> None:
        super().__init__()
        self.identifier = identifier
        self.socket_path = socket_path
        self._fallback = fallback
        self._plain = PlainFormatter()
        # MESSAGE is the message alone (and a traceback): time, level and logger are fields of their own.
        self.setFormatter(MessageFormatter("%(message)s"))
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.setblocking(False)  # a slow journald must never stall the agent's event loop
        self.fallbacks = 0  # records written to stderr because the journal did not take them

    def emit(self, record: logging.LogRecord) -> None:
        try:
            datagram = self.datagram(record)
        except Exception:  # noqa: BLE001 (a record that cannot be formatted: logging's own report)
            self.handleError(record)
            return
        try:
            self._socket.sendto(datagram, str(self.socket_path))
        except OSError:
            self.fallbacks += 1
            stream = self._fallback or sys.stderr
            try:
                stream.write(self._plain.format(record) + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass  # stderr closed as well: there is nowhere left to say it

    def datagram(self, record: logging.LogRecord) -> bytes:
        message = _cut(self.format(record), MAX_MESSAGE_BYTES)
        fields: list[tuple[str, bytes]] = [
            ("MESSAGE", message),
            ("PRIORITY", str(priority(record.levelno)).encode()),
            ("SYSLOG_IDENTIFIER", self.identifier.encode()),
            ("LOGGER", record.name.encode()),
            ("CODE_FILE", record.pathname.encode("utf-8", "replace")),
            ("CODE_LINE", str(record.lineno).encode()),
            ("CODE_FUNC", record.funcName.encode("utf-8", "replace")),
        ]
        for key, value in story_fields(record).items():
            name = key.upper()
            if _FIELD_NAME.fullmatch(name) and name not in _RESERVED:
                fields.append((name, _cut(value, MAX_VALUE_BYTES)))
        return b"".join(_field(name, value) for name, value in fields)

    def close(self) -> None:
        self._socket.close()
        super().close()


def _cut(text: str, limit: int) -> bytes:
    """At most ``limit`` bytes of UTF-8, never half a character (journalctl hides what is not UTF-8)."""
    return text.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore").encode()


def _field(name: str, value: bytes) -> bytes:
    key = name.encode()
    if b"\n" in value:
        return key + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
    return key + b"=" + value + b"\n"


def journal_socket(
    environ: Mapping[str, str] | None = None,
    stderr: TextIO | None = None,
    *,
    socket_path: Path = JOURNAL_SOCKET,
) -> Path | None:
    """journald's socket when this process logs to the journal, else None.

    Under journald: stderr is the stream named by ``$JOURNAL_STREAM`` (``device:inode``, set by
    systemd for a service whose output goes to the journal), or the process is a systemd service
    (``$INVOCATION_ID``) and the socket exists.
    """
    env = os.environ if environ is None else environ
    if not socket_path.exists():
        return None
    if _stderr_is_journal(env.get("JOURNAL_STREAM", ""), stderr or sys.stderr):
        return socket_path
    return socket_path if env.get("INVOCATION_ID") else None


def _stderr_is_journal(stream: str, stderr: TextIO) -> bool:
    device, _, inode = stream.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stderr.fileno())
    except (OSError, ValueError):
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


def log_handler(identifier: str) -> logging.Handler:
    """The agent's handler: the journal's native protocol under systemd, plain stderr lines otherwise."""
    path = journal_socket()
    if path is not None:
        return JournalHandler(identifier=identifier, socket_path=path)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PlainFormatter())
    return handler
