"""Whether the cabinet's wall clock can be trusted: a floor, and the system's NTP status.

A board without a real-time clock boots at 1970 (or at the time of its last shutdown, with
fake-hwclock, or at 2099 after a flat battery), and its clock is wrong until NTP sets it. Two things
decide, both injectable (``ClockTrust(status=..., floor_ms=...)``):

- the **floor**: a clock before ``BUILD_FLOOR_MS`` (this release's date) is wrong, whatever any daemon
  says;
- the **system's NTP status**: the kernel's (``adjtimex``: ``TIME_ERROR`` or ``STA_UNSYNC``, the very
  figure ``timedatectl`` shows as ``NTPSynchronized``), and systemd-timesyncd's marker file, present
  once it has set the clock since boot. Both are cheap and never block: a syscall and a ``stat``.

Once the system said synchronised, the clock stays trusted in this process while it is above the
floor: the kernel flags a clock unsynchronised some hours after its NTP server was last heard, but a
clock NTP has set drifts by seconds a day, and a cabinet runs offline for days. Where no source can
tell (not Linux, a sandbox refusing ``adjtimex``), the floor alone decides.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from protocols.release import RELEASE_FLOOR_MS

log = logging.getLogger(__name__)

BUILD_FLOOR_MS = RELEASE_FLOOR_MS
TIMESYNCD_MARKER = Path("/run/systemd/timesync/synchronized")
# The system status is asked at most this often (real seconds): pollers and the lighting ask a lot.
RECHECK_S = 5.0

# True: synchronised; False: the system says it is not; None: nothing can tell.
SyncStatus = Callable[[], bool | None]

_TIME_ERROR = 5  # adjtimex's return value for "clock not synchronised"
_STA_UNSYNC = 0x0040


class _Timex(ctypes.Structure):
    # The head of ``struct timex`` up to ``status``; the kernel writes the rest into the padding.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    ]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def kernel_status() -> bool | None:
    """The kernel's NTP state (``adjtimex`` with modes 0 reads it and changes nothing)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        timex = _Timex()
        state = int(_libc().adjtimex(ctypes.byref(timex)))
    except (OSError, AttributeError) as exc:
        log.debug("adjtimex unavailable: %s", exc)
        return None
    if state < 0:
        return None  # refused (seccomp, a sandbox): it cannot tell
    return state != _TIME_ERROR and not timex.status & _STA_UNSYNC


def timesyncd_status(marker: Path = TIMESYNCD_MARKER) -> bool | None:
    """True once systemd-timesyncd has set the clock since boot; its absence proves nothing (chrony)."""
    try:
        return True if marker.exists() else None
    except OSError:
        return None


def system_status() -> bool | None:
    if timesyncd_status():
        return True
    return kernel_status()


class ClockTrust:
    """Decides whether a clock reading can be trusted (see the module's docstring)."""

    def __init__(
        self,
        *,
        status: SyncStatus = system_status,
        floor_ms: int = BUILD_FLOOR_MS,
        recheck_s: float = RECHECK_S,
    ) -> None:
        self._status = status
        self.floor_ms = floor_ms
        self._recheck_s = recheck_s
        self._asked_at: float | None = None
        self._said: bool | None = None
        self._ever_synchronised = False

    def synchronised(self, now_ms: int) -> bool:
        if now_ms < self.floor_ms:
            return False
        said = self._system_says()
        if said:
            self._ever_synchronised = True
        return said is None or self._ever_synchronised

    def _system_says(self) -> bool | None:
        now = time.monotonic()
        if self._asked_at is None or now - self._asked_at >= self._recheck_s:
            self._asked_at, self._said = now, self._status()
        return self._said
