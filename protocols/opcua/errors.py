"""asyncua's and the socket's errors, translated into the drivers' exception tree at the boundary.

    DriverError (protocols.errors)
    ├── DeviceUnreachable       refused, reset, no route, the session lost
    ├── DeviceTimeout           no answer within the device's timeout_s
    ├── DeviceException         the server answered with a bad status code (``code``)
    ├── AccessDenied            the controller refused the user, its password, or an anonymous session
    └── SecurityRejected        the secure channel could not be opened (certificates, policy)

Each message names what to fix in the cabinet's config; none holds a password.
"""

from __future__ import annotations

from asyncua.ua.status_codes import StatusCodes, get_name_and_doc
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from protocols.errors import DeviceException, DeviceTimeout, DeviceUnreachable, DriverError
from protocols.opcua.config import OpcuaDevice

_ACCESS = {
    StatusCodes.BadUserAccessDenied,
    StatusCodes.BadIdentityTokenInvalid,
    StatusCodes.BadIdentityTokenRejected,
}
_SECURITY = {
    StatusCodes.BadSecurityChecksFailed,
    StatusCodes.BadSecurityPolicyRejected,
    StatusCodes.BadSecurityModeRejected,
    StatusCodes.BadCertificateInvalid,
    StatusCodes.BadCertificateUntrusted,
    StatusCodes.BadCertificateTimeInvalid,
    StatusCodes.BadCertificateRevoked,
    StatusCodes.BadCertificateUriInvalid,
    StatusCodes.BadCertificateHostNameInvalid,
}

# asyncua's client raises these for a message past its receive limits (protocols.opcua.session).
_TOO_LARGE = {StatusCodes.BadRequestTooLarge, StatusCodes.BadResponseTooLarge}
MAX_RESPONSE_MIB = 4

# Status codes that mean the session itself is gone (not one request refused): a new one is needed.
SESSION_GONE = frozenset(
    {
        StatusCodes.BadSessionIdInvalid,
        StatusCodes.BadSessionClosed,
        StatusCodes.BadSessionNotActivated,
        StatusCodes.BadSecureChannelIdInvalid,
        StatusCodes.BadSecureChannelClosed,
        StatusCodes.BadConnectionClosed,
        StatusCodes.BadServerHalted,
        StatusCodes.BadShutdown,
        StatusCodes.BadCommunicationError,
        StatusCodes.BadTimeout,
        # A response past the receive limit: the client drops the connection with it.
        StatusCodes.BadRequestTooLarge,
        StatusCodes.BadResponseTooLarge,
    }
)


class AccessDenied(DriverError):
    reason = "access_denied"


class SecurityRejected(DriverError):
    reason = "security_rejected"


# What may come out of asyncua or the socket below it; everything else is a bug and is not hidden.
TRANSLATED = (OSError, TimeoutError, UaError, EOFError)


def status_name(code: int) -> str:
    return get_name_and_doc(code)[0]


def translate(device: OpcuaDevice, exc: BaseException, doing: str) -> DriverError:
    """The DriverError for ``exc``, raised while ``doing`` (e.g. "connecting to opc.tcp://...")."""
    name = device.name
    if isinstance(exc, DriverError):
        return exc
    if isinstance(exc, TimeoutError):
        return DeviceTimeout(name, f"no answer within {device.timeout_s} s while {doing}")
    if isinstance(exc, UaStatusCodeError):
        code = exc.code
        if code in _ACCESS:
            return AccessDenied(name, _access_detail(device, status_name(code)))
        if code in _SECURITY:
            return SecurityRejected(
                name,
                f"the controller refused the secure channel ({status_name(code)}) while {doing}: check "
                "security_policy, security_mode, certificate and that the controller trusts it",
            )
        if code in _TOO_LARGE:
            return DeviceException(
                name,
                f"the controller sent a response past the {MAX_RESPONSE_MIB} MiB limit while {doing} "
                f"({status_name(code)}): is a node of the profile an array or string that large?",
                code,
            )
        return DeviceException(name, f"{status_name(code)} while {doing}", code)
    if isinstance(exc, UaError) and str(exc).startswith("No matching endpoints"):
        # asyncua's own words (2.1) when the server offers no endpoint of this policy and mode.
        return SecurityRejected(
            name,
            f"the controller offers no endpoint with security_policy {device.security_policy!r} and "
            f"security_mode {device.security_mode!r}: set security_policy, security_mode (and certificate) "
            "as the controller requires",
        )
    if isinstance(exc, UaError | EOFError):
        return DeviceUnreachable(
            name, f"the session broke while {doing}: {type(exc).__name__} {str(exc)[:200]}"
        )
    if isinstance(exc, ConnectionRefusedError):
        return DeviceUnreachable(
            name, f"connection refused while {doing}: is the controller on and is the port right?"
        )
    if isinstance(exc, OSError):
        return DeviceUnreachable(name, f"{exc.strerror or type(exc).__name__} while {doing}")
    return DeviceUnreachable(name, f"{type(exc).__name__} while {doing}")


def _access_detail(device: OpcuaDevice, status: str) -> str:
    if device.username is None:
        return f"the controller refuses anonymous sessions ({status}): set username and password_file"
    return (
        f"the controller refused user {device.username!r} ({status}): check the username and the password "
        f"in {device.password_file}"
    )
