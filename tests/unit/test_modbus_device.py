"""The Modbus drivers' device configs and builders, and what a profile tells the agent of a point:
its role and the alarm its value raises. No device is touched (builders do no I/O)."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from edge_agent.device_configs import parse_device
from protocols.device import BuildContext, BuildError
from protocols.driver import AlarmRule
from protocols.errors import ProfileError
from protocols.modbus.base import point_spec
from protocols.modbus.client import ModbusTcpDriver
from protocols.modbus.device import ModbusRtuDevice, ModbusTcpDevice, build_rtu, build_tcp
from protocols.modbus.profile import parse_profile
from protocols.modbus.rtu_driver import ModbusRtuDriver
from protocols.profiles import default_profile_dirs

HEADER = '[profile]\nname = "t"\ndescription = "test"\n'


def context() -> BuildContext:
    return BuildContext(config_dir=Path("."), profile_dirs=default_profile_dirs(), now_ms=time.time_ns)


def rtu(name: str, **fields: object) -> ModbusRtuDevice:
    table = {"name": name, "port": "/dev/ttyS0", "profile": "lighting-single-circuit", **fields}
    return msgspec.convert(table, ModbusRtuDevice)


def test_a_tcp_device_is_built_with_its_profile_s_roles() -> None:
    device = msgspec.convert(
        {"name": "lc1", "address": "10.0.0.5:502", "profile": "lighting-single-circuit", "unit": 3},
        ModbusTcpDevice,
    )
    assert (device.driver, device.host, device.tcp_port, device.profile_name) == (
        "modbus-tcp",
        "10.0.0.5",
        502,
        "lighting-single-circuit",
    )
    driver = build_tcp(device, context())
    assert isinstance(driver, ModbusTcpDriver) and driver.unit == 3
    roles = {point.name: point.role for point in driver.points if point.role}
    assert roles == {
        "relay": "relay",
        "dim_level_pct": "dim_level",
        "power_w": "power",
        "current_a": "current",
        "lamp_failure": "lamp_failure",
        "door_open": "door",
    }


@pytest.mark.parametrize(
    ("table", "where", "words"),
    [
        ({"driver": "modbus-tcp", "address": "plc", "profile": "p"}, "address", "host:port"),
        ({"driver": "modbus-tcp", "address": "plc:70000", "profile": "p"}, "address", "host:port"),
        ({"driver": "modbus-tcp", "profile": "p"}, "address", "missing"),
        ({"driver": "modbus-rtu", "profile": "p"}, "port", "missing"),
        ({"driver": "modbus-rtu", "port": "/dev/ttyS0", "profile": "p", "unit": 0}, "unit", ">= 1"),
        ({"driver": "modbus-rtu", "port": "/dev/ttyS0", "profile": "p", "parity": "X"}, "parity", "X"),
        (
            {"driver": "modbus-rtu", "port": "/dev/ttyS0", "profile": "p", "baudrate": 50},
            "baudrate",
            "(got 50)",
        ),
        ({"driver": "modbus-tcp", "address": "a:1", "profile": "p", "addres": 1}, "addres", "unknown key"),
    ],
)
def test_each_bad_field_is_named(table: dict[str, object], where: str, words: str) -> None:
    problem = parse_device({"name": "lc1", **table}, lambda key: False)
    assert isinstance(problem, tuple)
    assert problem[0] == where and words in problem[1], problem


def test_rtu_devices_on_one_port_share_its_line() -> None:
    shared = context()
    first, second = build_rtu(rtu("lc1", unit=1), shared), build_rtu(rtu("lc2", unit=2), shared)
    assert isinstance(first, ModbusRtuDriver) and isinstance(second, ModbusRtuDriver)
    assert first.line is second.line
    other = build_rtu(rtu("lc3", port="/dev/ttyS1", baudrate=9600), shared)
    assert isinstance(other, ModbusRtuDriver) and other.line is not first.line


def test_one_port_set_two_ways_is_refused_naming_both_devices() -> None:
    shared = context()
    build_rtu(rtu("lc1"), shared)
    with pytest.raises(BuildError) as caught:
        build_rtu(rtu("lc2", parity="N"), shared)
    assert caught.value.field == "port"
    assert "'lc1' and 'lc2' share /dev/ttyS0" in caught.value.problem and "parity" in caught.value.problem


def test_an_unknown_profile_is_a_profile_error() -> None:
    device = msgspec.convert({"name": "lc1", "address": "h:502", "profile": "no-such"}, ModbusTcpDevice)
    with pytest.raises(ProfileError, match="unknown profile"):
        build_tcp(device, context())


def point(extra: str, table: str = 'table = "input"\naddress = 0\ntype = "uint16"') -> str:
    return f'{HEADER}[[points]]\nname = "p"\n{table}\n{extra}\n'


def test_a_point_s_alarm_reaches_its_spec() -> None:
    text = point('role = "mode"\n[points.alarm]\nname = "flashing"\nseverity = "warning"\nwhen_in = [2, 3]')
    found = parse_profile(text, "t.toml")
    spec = point_spec(found.points[0], found.role_of(found.points[0]))
    assert spec.role == "mode"
    assert spec.alarm == AlarmRule("flashing", severity="warning", when_in=(2, 3))


@pytest.mark.parametrize(
    ("extra", "table", "where", "words"),
    [
        ('[points.alarm]\nname = "a"\nabove = 1.0\nbelow = 0.0', None, "points[0] (p).alarm", "exactly one"),
        ('[points.alarm]\nname = "a"', None, "points[0] (p).alarm", "exactly one"),
        ('[points.alarm]\nname = "a"\nwhen_true = true', None, "points[0] (p).alarm.when_true", "bool point"),
        (
            '[points.alarm]\nname = "a"\nabove = 1.0',
            'table = "discrete"\naddress = 0',
            "points[0] (p).alarm",
            "bool",
        ),
        (
            '[points.alarm]\nname = "a"\nwhen_true = true\nlevel = 3',
            None,
            "points[0] (p).alarm.level",
            "unknown",
        ),
        ('role = "Relay"', None, "points[0] (p).role", "Relay"),
    ],
)
def test_a_wrong_alarm_or_role_is_refused(extra: str, table: str | None, where: str, words: str) -> None:
    text = point(extra) if table is None else point(extra, table)
    with pytest.raises(ProfileError) as caught:
        parse_profile(text, "t.toml")
    assert caught.value.where == where and words in caught.value.problem, caught.value
