"""Exception tree shared by every field driver.

    DriverError                 a device could not be read or written
    ├── DeviceUnreachable       no connection (refused, reset, no route, port gone)
    ├── DeviceTimeout           connected, but no answer within the unit's timeout
    ├── DeviceException         the device answered with a protocol exception (e.g. Modbus code 2)
    └── WriteRejected           a write was refused or did not read back as written

Drivers translate their vendor library's errors into these at their boundary (``raise ... from exc``)
so the agent core never sees a pymodbus, asyncua or zeep exception.
"""

from __future__ import annotations


class DriverError(Exception):
    """A device could not be read or written. ``reason`` is a short machine-friendly word."""

    reason = "error"

    def __init__(self, device: str, detail: str) -> None:
        super().__init__(f"{device}: {detail}")
        self.device = device
        self.detail = detail


class DeviceUnreachable(DriverError):
    reason = "unreachable"


class DeviceTimeout(DriverError):
    reason = "timeout"


class DeviceException(DriverError):
    reason = "exception"

    def __init__(self, device: str, detail: str, code: int) -> None:
        super().__init__(device, detail)
        self.code = code


class WriteRejected(DriverError):
    reason = "write_rejected"


class ProfileError(ValueError):
    """A device profile file is wrong. Names the file, the point and the field, and the fix."""

    def __init__(self, path: str, where: str, problem: str) -> None:
        super().__init__(f"{path}: {where}: {problem}")
        self.path = path
        self.where = where
        self.problem = problem
