"""Opening a serial port: checking line settings, and saying why a port cannot be opened and the fix.

pyserial (through pymodbus) only says that opening failed; these look at the device file to tell a
missing adapter from a permission problem (the ``dialout`` group) from a port held by another program.
"""

from __future__ import annotations

import grp
import os
import stat


def check_settings(baudrate: int, parity: str, stopbits: int, bytesize: int) -> None:
    """Raise ValueError for settings no serial port takes."""
    if baudrate <= 0:
        raise ValueError(f"baudrate must be positive, got {baudrate!r}")
    if parity not in ("N", "E", "O"):
        raise ValueError(f"parity must be 'N', 'E' or 'O', got {parity!r}")
    if stopbits not in (1, 2):
        raise ValueError(f"stopbits must be 1 or 2, got {stopbits!r}")
    if bytesize not in (7, 8):
        raise ValueError(f"bytesize must be 7 or 8, got {bytesize!r}")


def explain_open_failure(port: str) -> str:
    """Why ``port`` cannot be opened, and what to do about it."""
    try:
        info = os.stat(port)
    except FileNotFoundError:
        return open_failure_advice(port, exists=False)
    except OSError as exc:
        return f"cannot open serial port {port}: {exc.strerror or exc}"
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return open_failure_advice(
        port,
        exists=True,
        is_device=stat.S_ISCHR(info.st_mode),
        accessible=os.access(port, os.R_OK | os.W_OK),
        group=group,
    )


def open_failure_advice(
    port: str, *, exists: bool, is_device: bool = True, accessible: bool = True, group: str = "dialout"
) -> str:
    """The message for a port that cannot be opened, from what is known about it."""
    prefix = f"cannot open serial port {port}"
    if not exists:
        return (
            f"{prefix}: no such device; check the cable or USB adapter and the configured port "
            "(ls -l /dev/serial/by-id/ lists the adapters present)"
        )
    if not is_device:
        return f"{prefix}: not a serial device; configure a device such as /dev/ttyUSB0 or /dev/ttyAMA0"
    if not accessible:
        return (
            f"{prefix}: permission denied; add the user running cityedge to the '{group}' group "
            f"(sudo usermod -aG {group} <user>) and log in again"
        )
    return (
        f"{prefix}: probably in use by another program (cityedge opens ports exclusively; "
        f"fuser {port} shows who holds it)"
    )
