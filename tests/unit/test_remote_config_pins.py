"""What a remote config may change of the installed one (edge_agent.remote_config.pins). Pure."""

from __future__ import annotations

from typing import Any

from edge_agent.remote_config.pins import pinned_change

CAMERA = {"name": "cam1", "driver": "onvif", "address": "http://10.0.0.40", "password_file": "cam1.pw"}
LIGHTS = {"name": "lc1", "driver": "modbus-tcp", "host": "10.0.0.5", "port": 502}


def config(**changes: Any) -> dict[str, Any]:
    return {
        "cabinet": {"id": "cab-1"},
        "broker": {"url": "mqtt://b:1883"},
        "devices": [CAMERA, LIGHTS],
    } | changes


def test_devices_without_secrets_are_free_and_one_with_a_secret_stays_as_installed() -> None:
    installed = config()
    moved_lights = config(devices=[CAMERA, LIGHTS | {"host": "10.0.0.6"}, {"name": "lc2", "driver": "x"}])
    assert pinned_change(installed, moved_lights) is None
    assert pinned_change(installed, config()) is None
    moved_camera = config(devices=[CAMERA | {"address": "http://198.51.100.7"}, LIGHTS])
    assert "device 'cam1' names a secret file" in str(pinned_change(installed, moved_camera))
    added = config(devices=[CAMERA, LIGHTS, {"name": "ua", "driver": "opcua", "private_key": "k.pem"}])
    assert "device 'ua'" in str(pinned_change(installed, added))
    nested = config(devices=[CAMERA, LIGHTS, {"name": "ua", "security": {"certificate": "c.pem"}}])
    assert "device 'ua'" in str(pinned_change(installed, nested))
