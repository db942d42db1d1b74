"""A stand-in for journald's socket: a real AF_UNIX datagram socket that parses the native protocol."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

Entry = dict[str, str]


def parse_entry(datagram: bytes) -> Entry:
    """One native-protocol datagram as journald reads it: ``KEY=value`` lines, or ``KEY``, a newline,
    a 64-bit little-endian length, that many bytes and a newline. Raises ValueError on anything else."""
    entry: Entry = {}
    rest = datagram
    while rest:
        line_end = rest.index(b"\n")
        line = rest[:line_end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            rest = rest[line_end + 1 :]
        else:
            key = line
            (size,) = struct.unpack("<Q", rest[line_end + 1 : line_end + 9])
            value = rest[line_end + 9 : line_end + 9 + size]
            if rest[line_end + 9 + size : line_end + 10 + size] != b"\n":
                raise ValueError(f"field {key!r}: its {size} bytes are not followed by a newline")
            rest = rest[line_end + 10 + size :]
        name = key.decode()
        if not name or not all(c.isupper() or c.isdigit() or c == "_" for c in name) or name[0] == "_":
            raise ValueError(f"not a valid journal field name: {name!r}")
        entry[name] = value.decode()
    return entry


class JournalSocket:
    """What journald listens on: keeps every entry the process sends, parsed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.entries: list[Entry] = []

    def drain(self) -> list[Entry]:
        while True:
            try:
                self.entries.append(parse_entry(self.sock.recv(1 << 20)))
            except BlockingIOError:
                return self.entries

    def where(self, **fields: str) -> list[Entry]:
        """The entries having every one of ``fields``."""
        return [e for e in self.drain() if all(e.get(k) == v for k, v in fields.items())]

    def close(self) -> None:
        self.sock.close()
