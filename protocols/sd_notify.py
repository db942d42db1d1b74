"""systemd's notify protocol: one datagram per state ("READY=1", "WATCHDOG=1", "STOPPING=1") to the
socket named by $NOTIFY_SOCKET, the whole of sd_notify(3) that a ``Type=notify`` service needs.

Without $NOTIFY_SOCKET (not under systemd, or a unit that is not ``Type=notify``) every call does
nothing. ``watchdog_interval_s`` is half of $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, or
None when no watchdog is armed (or it is armed for another process: $WATCHDOG_PID).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # "@name" is an abstract socket: a leading NUL on the wire.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval_s = _watchdog_interval(env)
        self._socket: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, state: str) -> bool:
        """Send ``state``; False when there is no socket or sending failed (logged once)."""
        if not self._address:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(state.encode(), self._address)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", os.environ.get("NOTIFY_SOCKET"), exc)
                self._failed = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000
