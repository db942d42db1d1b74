"""Whether the cabinet's wall clock can be trusted: a window, the system's NTP status, and jumps.

A board without a real-time clock boots at 1970 (or at the time of its last shutdown, with
fake-hwclock, or at 2099 after a flat battery), and its clock is wrong until NTP sets it. Three
things decide, all injectable (``ClockTrust(status=, resync=, floor_ms=, ceiling_ms=, jump_ms=,
monotonic_ms=)``):

- the **window**: a clock before ``BUILD_FLOOR_MS`` (this release's date) or after ``CEILING_MS`` (15
  years later: a cabinet's contract runs 12) is wrong, whatever any daemon says;
- the **system's NTP status**: the kernel's (``adjtimex``: ``TIME_ERROR`` or ``STA_UNSYNC``, the very
  figure ``timedatectl`` shows as ``NTPSynchronized``), and systemd-timesyncd's marker file, touched
  at each synchronisation. Both are cheap and never block: a syscall and a ``stat``;
- **jumps**: between two checks the wall clock should move as the monotonic clock does (the boot
  clock, which counts a suspend too). One that moved more than ``JUMP_MS`` (an hour) apart from it was
  set by something: whatever trust there was is withdrawn until the system says synchronised again,
  after the jump (a marker touched before it does not count; "cannot tell" does not either).

Once the system said synchronised, the clock stays trusted in this process while it is in the window
and does not jump: the kernel flags a clock unsynchronised some hours after its NTP server was last
heard, but a clock NTP has set drifts by seconds a day, and a cabinet runs offline for days. Where no
source can tell (not Linux, a sandbox refusing ``adjtimex``), the window alone decides, until a jump.
The shipped unit lets the agent read the kernel's status (``packaging/systemd``).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from protocols.release import RELEASE_CEILING_MS, RELEASE_FLOOR_MS

log = logging.getLogger(__name__)

BUILD_FLOOR_MS = RELEASE_FLOOR_MS
CEILING_MS = RELEASE_CEILING_MS
TIMESYNCD_MARKER = Path("/run/systemd/timesync/synchronized")
# The system status is asked at most this often (real seconds): pollers and the lighting ask a lot.
RECHECK_S = 5.0
# The wall clock moving this much apart from the monotonic one between two checks is a jump. NTP
# slews by at most half a millisecond a second, and steps only a clock that was wrong.
JUMP_MS = 3_600_000
# A marker file's time and the wall clock may disagree by this much (file system, rounding).
_MARKER_SLACK_MS = 2_000

# True: synchronised; False: the system says it is not; None: nothing can tell.
SyncStatus = Callable[[], bool | None]
# The same, once the clock jumped: synchronised since ``since_ms`` (wall time, on the new clock).
ResyncStatus = Callable[[int], bool | None]
MonotonicMs = Callable[[], int]

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
    # The interpreter's own symbols, libc's among them: no ``ctypes.util.find_library``, which runs
    # ``ldconfig`` in a subprocess and imports shutil, tempfile and the compressors into the agent.
    return ctypes.CDLL(None, use_errno=True)


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


def timesyncd_status(marker: Path = TIMESYNCD_MARKER, *, since_ms: int | None = None) -> bool | None:
    """True once systemd-timesyncd has set the clock since boot; its absence proves nothing (chrony).

    With ``since_ms``: only a marker touched since then (timesyncd touches it at each
    synchronisation), and not after now: one touched before a jump, on the old clock, proves nothing.
    """
    try:
        if since_ms is None:
            return True if marker.exists() else None
        touched_ms = marker.stat().st_mtime_ns // 1_000_000
    except OSError:
        return None  # absent, or unreadable
    now_ms = time.time_ns() // 1_000_000
    fresh = since_ms - _MARKER_SLACK_MS <= touched_ms <= now_ms + _MARKER_SLACK_MS
    return True if fresh else None


def system_status() -> bool | None:
    if timesyncd_status():
        return True
    return kernel_status()


def system_resync(since_ms: int) -> bool | None:
    """The system's status after a jump: timesyncd's marker only if touched since ``since_ms``, then
    the kernel's (setting the clock flags it unsynchronised until NTP disciplines it again)."""
    if timesyncd_status(since_ms=since_ms):
        return True
    return kernel_status()


def boottime_ms() -> int:
    """A monotonic clock that also counts a suspend (``CLOCK_BOOTTIME``, where there is one)."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    if clock is None:
        return time.monotonic_ns() // 1_000_000
    return time.clock_gettime_ns(clock) // 1_000_000


class ClockTrust:
    """Decides whether a clock reading can be trusted (see the module's docstring).

    ``monotonic_ms`` must run at the rate of the wall clock given to ``synchronised`` (a simulated
    clock running faster than real time gives its own, or its trust sees jumps). ``resync`` is asked
    instead of ``status`` after a jump; by default the injected ``status`` itself.
    """

    def __init__(
        self,
        *,
        status: SyncStatus = system_status,
        resync: ResyncStatus | None = None,
        floor_ms: int = BUILD_FLOOR_MS,
        ceiling_ms: int = CEILING_MS,
        recheck_s: float = RECHECK_S,
        jump_ms: int = JUMP_MS,
        monotonic_ms: MonotonicMs = boottime_ms,
    ) -> None:
        self._status = status
        if resync is None:
            resync = system_resync if status is system_status else lambda _since_ms: status()
        self._resync = resync
        self.floor_ms = floor_ms
        self.ceiling_ms = ceiling_ms
        self._recheck_ms = recheck_s * 1000
        self._jump_ms = jump_ms
        self._monotonic_ms = monotonic_ms
        self._asked_at: int | None = None
        self._said: bool | None = None
        self._ever_synchronised = False
        # After a jump: wall time (on the new clock) since which the system must say synchronised.
        self._jumped_since: int | None = None
        self._last: tuple[int, int] | None = None  # (wall, monotonic) at the last check
        self._trusted = False  # the last check's answer

    def synchronised(self, now_ms: int) -> bool:
        mono = self._monotonic_ms()
        if self._trusted and self._last is not None:
            wall_moved, mono_moved = now_ms - self._last[0], mono - self._last[1]
            if abs(wall_moved - mono_moved) > self._jump_ms:
                log.warning(
                    "the wall clock jumped by %+d ms: not trusted until synchronised again",
                    wall_moved - mono_moved,
                )
                self._ever_synchronised = False
                self._jumped_since = now_ms - max(mono_moved, 0)
                self._asked_at = None  # ask the system now
        self._last = (now_ms, mono)
        self._trusted = self._decide(now_ms, mono)
        return self._trusted

    def _decide(self, now_ms: int, mono: int) -> bool:
        if not self.floor_ms <= now_ms <= self.ceiling_ms:
            return False
        said = self._system_says(mono)
        if said:
            self._ever_synchronised = True
            self._jumped_since = None
        if self._jumped_since is not None:
            return False  # after a jump, only the system saying synchronised again restores trust
        return said is None or self._ever_synchronised

    def _system_says(self, mono: int) -> bool | None:
        if self._asked_at is None or mono - self._asked_at >= self._recheck_ms:
            since = self._jumped_since
            self._asked_at = mono
            self._said = self._status() if since is None else self._resync(since)
        return self._said
