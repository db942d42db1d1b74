"""The camera's config model: addresses, credentials, bounds, and that it stays light to load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from protocols.device import BuildContext, BuildError
from protocols.onvif.config import OnvifDevice, parse_address
from protocols.registry import config_model


def device(**fields: Any) -> OnvifDevice:
    config: dict[str, Any] = {"driver": "onvif", "name": "cam1", "address": "192.168.10.21"}
    config.update(fields)
    return msgspec.convert(config, OnvifDevice)


def test_the_registry_gives_the_camera_model() -> None:
    assert config_model("onvif") is OnvifDevice
    assert device().driver == "onvif"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("192.168.10.21", "http://192.168.10.21:80/onvif/device_service"),
        ("cam-3.local:8080", "http://cam-3.local:8080/onvif/device_service"),
        ("https://10.0.0.9", "https://10.0.0.9:443/onvif/device_service"),
        ("http://[fe80::1]:8000/onvif/device_service", "http://[fe80::1]:8000/onvif/device_service"),
    ],
)
def test_good_addresses(address: str, expected: str) -> None:
    assert str(parse_address(address)) == expected


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("ftp://cam", "scheme must be http or https"),
        ("cam:http", "expected host:port"),
        ("cam:70000", "expected host:port"),
        ("cam:0", "port 0"),
        ("http://cam/snapshot.jpg", "the only path allowed is /onvif/device_service"),
        ("cam?x=1", "the only path allowed"),
        ("http://bad_host!:80", "bad host"),
    ],
)
def test_bad_addresses_say_what_a_good_one_is(address: str, problem: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=problem):
        device(address=address)


def test_a_password_in_the_address_is_refused_and_never_echoed() -> None:
    with pytest.raises(msgspec.ValidationError) as raised:
        device(address="http://admin:hunter2@cam:80")
    assert "hunter2" not in str(raised.value)
    assert "no credentials" in str(raised.value)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"username": "admin"}, "username needs a password"),
        ({"password": "x"}, "a password needs a username"),
        ({"username": "admin", "password": "x", "password_file": "p"}, "not both"),
        ({"auth_retry_min_s": 120.0, "auth_retry_max_s": 60.0}, "auth_retry_min_s .* above"),
        ({"auth_retry_min_s": 0.001}, r"auth_retry_min_s \(0.001\) is below 10 s.*10 or more"),
        ({"auth_retry_max_s": 0.001, "auth_retry_min_s": 10}, r"auth_retry_max_s \(0.001\) is below 60 s"),
        ({"auth_retry_min_s": 9.99}, "auth_retry_min_s .* below 10 s"),
        ({"digital_inputs": ["1", "1"]}, "each token once"),
        ({"digital_inputs": ["in put"]}, "digital_inputs"),
        ({"drift_max_s": 0}, "drift_max_s"),
        ({"pull_message_limit": 5000}, "pull_message_limit"),
        ({"subscription_lifetime_s": 0.5}, "subscription_lifetime_s"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_settings_name_the_key(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=problem):
        device(**fields)


def test_the_password_is_never_printed() -> None:
    camera = device(username="admin", password="hunter2")
    assert "hunter2" not in repr(camera) and "hunter2" not in str(camera)
    assert camera.password == "hunter2"


def test_password_file_is_read_relative_to_the_config_and_must_be_private(tmp_path: Path) -> None:
    from protocols.onvif.driver import build

    secret = tmp_path / "cam1.password"
    secret.write_text("s3cret\n")
    context = BuildContext(config_dir=tmp_path, profile_dirs=[], now_ms=lambda: 0)
    os.chmod(secret, 0o644)
    with pytest.raises(BuildError, match=r"^password_file: .*cam1.password.*chmod o-rwx") as raised:
        build(device(username="admin", password_file="cam1.password"), context)
    assert "s3cret" not in str(raised.value)
    os.chmod(secret, 0o600)
    driver = build(device(username="admin", password_file="cam1.password"), context)
    assert [p.name for p in driver.points][:5] == [
        "reachable",
        "model",
        "firmware",
        "serial",
        "clock_drift_s",
    ]


def test_points_declare_the_camera_alarms() -> None:
    from protocols.onvif.driver import camera_points

    points = {p.name: p for p in camera_points(device(drift_max_s=7.5, digital_inputs=["IN_1", "IN_2"]))}
    assert points["clock_drift_s"].alarm is not None and points["clock_drift_s"].alarm.above == 7.5
    assert points["clock_drift_s"].alarm.name == "camera_clock_drift"
    assert points["tamper"].alarm is not None and points["tamper"].alarm.name == "camera_tampered"
    assert points["storage_failure"].alarm is not None
    assert points["storage_failure"].alarm.name == "camera_storage_failure"
    assert points["motion"].alarm is None
    assert points["digital_input_2"].type == "bool" and "IN_2" in (
        points["digital_input_2"].description or ""
    )


def test_validating_a_camera_config_imports_no_onvif_or_zeep() -> None:
    code = (
        "import sys, msgspec\n"
        "from protocols.registry import config_model\n"
        "model = config_model('onvif')\n"
        "msgspec.convert({'driver': 'onvif', 'name': 'c', 'address': 'cam:80'}, model)\n"
        "heavy = [m for m in ('onvif', 'zeep', 'lxml', 'aiohttp') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=60)
