"""A stand-in for systemd's notify socket: a real AF_UNIX datagram socket that keeps what it receives."""

from __future__ import annotations

import socket
from pathlib import Path


class NotifySocket:
    """What systemd listens on: collects every datagram the service sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.states: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.states.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.states

    def count(self, state: str) -> int:
        return sum(1 for s in self.drain() if state in s.split("\n"))

    def close(self) -> None:
        self.sock.close()
