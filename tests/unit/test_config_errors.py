"""A wrong cabinet config is one ConfigError naming the key, what was expected and (when no secret)
what was given; a device's fields are checked by its own driver's model."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import MAX_DEVICES, load_config
from edge_agent.errors import ConfigError

CABINET = '[cabinet]\nid = "cab-1"\n'
DEVICE = (
    '[[devices]]\nname = "lc1"\ndriver = "modbus-rtu"\nport = "/dev/ttyS0"\n'
    'profile = "lighting-single-circuit"\n'
)


def error(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (CABINET + "[sync]\nwindow = 0\n", "sync.window", "expected an integer >= 1 (got 0)"),
        (CABINET + "[buffer]\npath = 3\n", "buffer.path", "expected a file path, as a string (got 3)"),
        (
            CABINET + '[lighting]\nclock_failsafe = "dark"\n',
            "lighting.clock_failsafe",
            "expected one of off, on, schedule (got 'dark')",
        ),
        (CABINET + DEVICE + 'parity = "Q"\n', "devices[0].parity", "expected one of E, N, O (got 'Q')"),
        (
            CABINET + DEVICE + '[devices.alarms]\nraise_after = "x"\n',
            "devices[0].alarms.raise_after",
            "expected an integer (got 'x')",
        ),
        (
            CABINET + DEVICE + "[devices.alarms]\nrise_after = 2\n",
            "devices[0].alarms.rise_after",
            "unknown key (check its spelling and section)",
        ),
        (
            CABINET + '[lighting]\ndevices = ["lc9"]\n',
            "lighting.devices[0]",
            "names 'lc9', which is not a configured device",
        ),
        ("[cabinet]\n", "cabinet.id", "missing, this key is required"),
    ],
)
def test_each_mistake_names_its_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    caught = error(tmp_path, text)
    assert (caught.key, caught.problem) == (key, problem)


def test_a_device_s_password_is_never_echoed(tmp_path: Path) -> None:
    text = CABINET + '[[devices]]\nname = "t1"\ndriver = "modbus-tcp"\naddress = "h:1"\n'
    caught = error(tmp_path, text + 'profile = "lighting-single-circuit"\npassword = "hunter2"\n')
    assert caught.key == "devices[0].password" and "hunter2" not in str(caught)


def test_the_number_of_devices_is_bounded(tmp_path: Path) -> None:
    many = "".join(f'[[devices]]\nname = "d{i}"\n' for i in range(MAX_DEVICES + 1))
    caught = error(tmp_path, CABINET + many)
    assert caught.key == "devices" and str(MAX_DEVICES) in caught.problem
