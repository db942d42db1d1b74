"""A wrong cabinet config gives one clear line naming the file and the key, exit code 2, no traceback."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.opcua_certs import make_certificate

pytestmark = pytest.mark.integration

GOOD = """
[cabinet]
id = "cab-1"

[broker]
url = "mqtt://127.0.0.1:1883"

[[devices]]
name = "lc1"
driver = "modbus-tcp"
address = "127.0.0.1:5020"
profile = "lighting-single-circuit"
poll_interval_s = 5
"""


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cityedge", *args], capture_output=True, text=True, timeout=60, check=False
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_good_config_passes_check(tmp_path: Path) -> None:
    result = run_cli("agent", "check", "--config", str(write(tmp_path, GOOD)))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (GOOD.replace('id = "cab-1"', ""), "cabinet.id", "missing"),
        (
            GOOD.replace("poll_interval_s = 5", 'poll_interval_s = "often"'),
            "devices[0].poll_interval_s",
            "number",
        ),
        (GOOD.replace("lighting-single-circuit", "no-such-model"), "devices[0].profile", "no-such-model"),
        (GOOD.replace('"127.0.0.1:5020"', '"plc-without-port"'), "devices[0].address", "host:port"),
        (GOOD.replace('"mqtt://127.0.0.1:1883"', '"http://x"'), "broker.url", "mqtt://"),
        (GOOD + "\ncolour = 'red'\n", "colour", "unknown key"),
        (GOOD.replace('driver = "modbus-tcp"', 'driver = "bacnet"'), "devices[0].driver", "modbus-tcp"),
        (GOOD + "\n[[devices]]\nname = 'lc1'\n", "devices[1]", "missing"),
    ],
    ids=[
        "missing-key",
        "wrong-type",
        "unknown-profile",
        "bad-address",
        "bad-url",
        "unknown-key",
        "bad-driver",
        "missing-in-second-device",
    ],
)
@pytest.mark.parametrize("command", ["check", "run"])
def test_config_error_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, key: str, words: str, command: str
) -> None:
    path = write(tmp_path, text)
    result = run_cli("agent", command, "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert str(path) in lines[0]
    assert key in lines[0]
    assert words in lines[0]


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    missing = run_cli("agent", "check", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "nope.toml" in missing.stderr and "cannot read" in missing.stderr
    broken = run_cli("agent", "check", "--config", str(write(tmp_path, "[cabinet\nid=")))
    assert broken.returncode == 2 and "not valid TOML" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_shipped_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "cabinets" / "example.toml"
    result = run_cli("agent", "check", "--config", str(example))
    assert result.returncode == 0, result.stderr


def test_serial_device_without_port_and_mismatched_line_settings(tmp_path: Path) -> None:
    rtu = GOOD.replace('driver = "modbus-tcp"\naddress = "127.0.0.1:5020"', 'driver = "modbus-rtu"')
    result = run_cli("agent", "check", "--config", str(write(tmp_path, rtu)))
    assert result.returncode == 2 and "devices[0]" in result.stderr and "port" in result.stderr
    two = (
        GOOD.replace(
            'driver = "modbus-tcp"\naddress = "127.0.0.1:5020"', 'driver = "modbus-rtu"\nport = "/dev/ttyS0"'
        )
        + '\n[[devices]]\nname = "lc2"\ndriver = "modbus-rtu"\nport = "/dev/ttyS0"\nbaudrate = 9600\n'
        + 'profile = "lighting-single-circuit"\n'
    )
    result = run_cli("agent", "check", "--config", str(write(tmp_path, two)))
    assert result.returncode == 2 and "/dev/ttyS0" in result.stderr and "baudrate" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_schedule_names_the_field(tmp_path: Path) -> None:
    text = GOOD + '\n[lighting.schedule]\nlatitude = 47.3\nlongitude = 5.0\ntimezone = "Europe/Pariss"\n'
    result = run_cli("agent", "check", "--config", str(write(tmp_path, text)))
    assert result.returncode == 2
    assert "lighting.schedule.timezone" in result.stderr and "Europe/Pariss" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["central", "serve", "--broker", "mqtt://127.0.0.1:1"],
        ["demo", "--cabinets", "1", "--broker", "mqtt://127.0.0.1:1"],
    ],
    ids=["central-serve", "demo"],
)
def test_an_http_port_in_use_is_one_line_naming_the_address_and_the_fix(
    tmp_path: Path, command: list[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        where = ["--db", str(tmp_path / "c.db")] if command[0] == "central" else ["--data-dir", str(tmp_path)]
        result = run_cli(*command, *where, "--http", address)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and f"HTTP address {address}" in line, line
    assert "in use" in line and "choose another host or port" in line, line
    assert not (tmp_path / "c.db").exists() and not (tmp_path / "central.db").exists()


def test_a_database_central_cannot_open_is_one_line_naming_it(tmp_path: Path) -> None:
    result = run_cli(
        "central", "serve", "--db", str(tmp_path), "--http", "127.0.0.1:0", "--broker", "mqtt://127.0.0.1:1"
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: store {tmp_path}: open failed"), line


def test_shipped_junction_config_is_valid_once_its_secrets_are_in_place(tmp_path: Path) -> None:
    """The junction example, as a technician installs it: the certificate made, the passwords in
    their 0600 files. Without a password file, check names the device and the file."""
    shipped = Path(__file__).resolve().parents[2] / "config" / "cabinets" / "junction.toml"
    config = tmp_path / "junction.toml"
    config.write_text(shipped.read_text())
    missing = run_cli("agent", "check", "--config", str(config))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "devices[1].password_file" in missing.stderr and "tc1.password" in missing.stderr, missing.stderr
    asyncio.run(make_certificate(tmp_path, "opcua-client", "urn:dijon-0113:cityedge", server=False))
    for name in ("tc1.password", "cam1.password"):
        (tmp_path / name).write_text("a-long-password\n")
        (tmp_path / name).chmod(0o600)
    result = run_cli("agent", "check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "a-long-password" not in result.stdout + result.stderr
