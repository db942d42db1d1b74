"""asyncua's and the socket's errors, translated into the drivers' tree with the fix in the message."""

from __future__ import annotations

import msgspec
import pytest
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from protocols.errors import DeviceException, DeviceTimeout, DeviceUnreachable, DriverError
from protocols.opcua.config import OpcuaDevice
from protocols.opcua.errors import AccessDenied, SecurityRejected, translate

DEVICE = {
    "driver": "opcua",
    "name": "tc7",
    "endpoint": "opc.tcp://10.0.0.7:4840",
    "profile": "p",
    "timeout_s": 2.0,
}


def status_error(code: int) -> UaStatusCodeError:
    # asyncua's constructor is untyped; it returns the subclass of that code (BadNotWritable...).
    return UaStatusCodeError(code)  # type: ignore[no-untyped-call]


def device(**fields: object) -> OpcuaDevice:
    return msgspec.convert({**DEVICE, **fields}, OpcuaDevice)


@pytest.mark.parametrize(
    ("exc", "kind", "says"),
    [
        (
            ConnectionRefusedError(111, "Connection refused"),
            DeviceUnreachable,
            "connection refused while reading",
        ),
        (OSError(113, "No route to host"), DeviceUnreachable, "No route to host while reading"),
        (TimeoutError(), DeviceTimeout, "no answer within 2.0 s while reading"),
        (status_error(StatusCodes.BadNotWritable), DeviceException, "BadNotWritable while reading"),
        (status_error(StatusCodes.BadCertificateUntrusted), SecurityRejected, "controller trusts it"),
        (UaError("No matching endpoints: 1, http://x#None"), SecurityRejected, "offers no endpoint"),
        (UaError("unexpected message"), DeviceUnreachable, "the session broke while reading: UaError"),
        (EOFError(), DeviceUnreachable, "the session broke while reading: EOFError"),
    ],
)
def test_each_error_becomes_one_driver_error_naming_the_device(
    exc: BaseException, kind: type[DriverError], says: str
) -> None:
    error = translate(device(), exc, "reading")

    assert type(error) is kind
    assert error.device == "tc7"
    assert str(error).startswith("tc7: ")
    assert says in str(error)


def test_device_exception_keeps_the_status_code() -> None:
    error = translate(device(), status_error(StatusCodes.BadNotWritable), "writing")

    assert isinstance(error, DeviceException)
    assert error.code == StatusCodes.BadNotWritable


def test_access_denied_names_the_user_and_the_password_file() -> None:
    secured = device(username="ops", password_file="secrets/tc7.password")

    error = translate(secured, status_error(StatusCodes.BadUserAccessDenied), "connecting")

    assert isinstance(error, AccessDenied)
    assert str(error) == (
        "tc7: the controller refused user 'ops' (BadUserAccessDenied): check the username and the password"
        " in secrets/tc7.password"
    )


def test_anonymous_refused_says_to_set_credentials() -> None:
    error = translate(device(), status_error(StatusCodes.BadIdentityTokenRejected), "connecting")

    assert isinstance(error, AccessDenied)
    assert "set username and password_file" in str(error)
