"""The camera's errors, beside the shared tree in ``protocols.errors``.

DriverError
├── DeviceUnreachable, DeviceTimeout      (shared)
├── AuthenticationFailed                  the camera refused the username or password
└── BadAnswer                             the camera answered what is not the SOAP asked for
"""

from __future__ import annotations

from protocols.errors import DriverError


class AuthenticationFailed(DriverError):
    """The camera said NotAuthorized. ``retry_in_s``: when the driver will try again, not before."""

    reason = "auth_failed"

    def __init__(self, device: str, detail: str, retry_in_s: float) -> None:
        super().__init__(device, detail)
        self.retry_in_s = retry_in_s


class BadAnswer(DriverError):
    """Garbage XML, a wrong element or a SOAP fault: the readings it was for are bad, the camera is up.

    ``operation`` is the SOAP operation; ``reason`` says which kind (``malformed_answer``, ``fault``).
    """

    def __init__(self, device: str, operation: str, detail: str, reason: str = "malformed_answer") -> None:
        super().__init__(device, f"{operation}: {detail}")
        self.operation = operation
        self.reason = reason
