"""The OPC UA device config: consistent security and credentials, one clear error otherwise."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import pytest

from protocols.opcua.config import OpcuaDevice

BASE = {
    "driver": "opcua",
    "name": "tc1",
    "endpoint": "opc.tcp://10.0.0.5:4840/ua",
    "profile": "traffic-controller-generic",
}


def load(**fields: object) -> OpcuaDevice:
    return msgspec.convert({**BASE, **fields}, OpcuaDevice)


def refused(**fields: object) -> str:
    with pytest.raises(msgspec.ValidationError) as raised:
        load(**fields)
    return str(raised.value)


def test_defaults_are_anonymous_and_unsecured() -> None:
    device = load()

    assert (device.security_policy, device.security_mode, device.username) == ("None", "None", None)
    assert device.driver == "opcua"
    assert device.profile_name == "traffic-controller-generic"
    assert device.endpoint_port == 4840
    assert (device.auth_retry_min_s, device.auth_retry_max_s) == (60.0, 3600.0)


def test_secured_with_certificates_and_a_user() -> None:
    device = load(
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
        certificate="tc1.der",
        private_key="tc1.pem",
        username="ops",
        password_file="tc1.password",
    )
    assert device.security_mode == "SignAndEncrypt"
    assert "password" not in repr(device).replace("password_file", "")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"security_mode": "Sign"}, "device 'tc1': security_mode: 'Sign' with security_policy 'None'"),
        (
            {"security_policy": "Basic256Sha256", "security_mode": "Sign"},
            "device 'tc1': certificate: security_mode 'Sign' needs the client's certificate and private_key",
        ),
        (
            {"certificate": "c.der", "private_key": "k.pem"},
            "certificates given but the channel is not secured",
        ),
        ({"username": "ops"}, "password_file: username and password_file go together"),
        ({"password_file": "p"}, "password_file: username and password_file go together"),
        ({"endpoint": "http://10.0.0.5:4840"}, "endpoint: expected opc.tcp://host:4840[/path]"),
        ({"endpoint": "opc.tcp://ops:secret@10.0.0.5:4840"}, "no user or password in it"),
        ({"endpoint": "opc.tcp://10.0.0.5:99999"}, "expected a port between 1 and 65535, got 99999"),
        (
            {"reconnect_initial_s": 10, "reconnect_max_s": 5},
            "reconnect_initial_s: expected at most reconnect_max_s",
        ),
        ({"security_policy": "Basic128Rsa15"}, "Invalid enum value 'Basic128Rsa15' - at `$.security_policy`"),
        ({"publishing_interval_ms": 50}, "Expected `int` >= 100 - at `$.publishing_interval_ms`"),
        ({"auth_retry_min_s": 1}, "Expected `float` >= 10.0 - at `$.auth_retry_min_s`"),
        ({"auth_retry_max_s": 30}, "Expected `float` >= 60.0 - at `$.auth_retry_max_s`"),
        (
            {"auth_retry_min_s": 600, "auth_retry_max_s": 300},
            "auth_retry_min_s: expected at most auth_retry_max_s (300.0), got 600.0",
        ),
        ({"pasword_file": "p"}, "unknown field `pasword_file`"),
    ],
)
def test_inconsistent_configs_get_one_clear_error(fields: dict[str, object], expected: str) -> None:
    message = refused(**fields)

    assert expected in message


def test_an_endpoint_with_a_password_never_echoes_it() -> None:
    message = refused(endpoint="opc.tcp://ops:secret@10.0.0.5:4840")

    assert "secret" not in message
    assert "got 'opc.tcp://***@10.0.0.5:4840'" in message


def test_the_config_model_imports_no_asyncua() -> None:
    code = "import protocols.opcua.config, protocols.opcua.profile, sys; print('asyncua' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
