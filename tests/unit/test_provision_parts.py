"""The pure parts of ``cityedge provision``: the TOML writer, the devices column, the inventory, the
credentials rule and the dry run's text."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityedge.provision.devices import DeviceSpecError, parse_devices
from cityedge.provision.inventory import InventoryError, parse_inventory
from cityedge.provision.plan import FileChange, RegistryChange, credentials, describe
from cityedge.provision.toml_out import dumps

ROOT = Path(__file__).resolve().parents[2]

# -- TOML ------------------------------------------------------------------------------------------

keys = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
scalars = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
    | st.dates()
)


def documents() -> st.SearchStrategy[dict[str, Any]]:
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
        max_leaves=12,
    )
    return st.dictionaries(keys, values, max_size=5)


@given(documents())
def test_what_is_written_reads_back_the_same(document: dict[str, Any]) -> None:
    assert tomllib.loads(dumps(document)) == document


@pytest.mark.parametrize("name", ["example.toml", "junction.toml"])
def test_the_shipped_configs_read_back_the_same(name: str) -> None:
    document = tomllib.loads((ROOT / "config" / "cabinets" / name).read_text())
    assert tomllib.loads(dumps(document)) == document


def test_tables_follow_their_scalars_and_arrays_of_tables_come_last() -> None:
    text = dumps({"devices": [{"name": "lc1"}], "cabinet": {"id": "c"}, "x": 1, "when": dt.date(2026, 1, 2)})
    assert text == 'x = 1\nwhen = 2026-01-02\n\n[cabinet]\nid = "c"\n\n[[devices]]\nname = "lc1"\n'


# -- devices -----------------------------------------------------------------------------------------


def test_each_driver_s_word_becomes_its_device_table() -> None:
    cell = (
        "lc1=modbus-tcp://10.0.0.5:502/lighting-single-circuit?unit=3&poll_interval_s=2.5 "
        "cab1=modbus-rtu:///dev/ttyUSB0/lighting-cabinet-3phase?unit=7&parity=N "
        "tc1=opcua://192.168.10.30:4840/traffic-controller-generic "
        "cam1=onvif://192.168.10.40:80?username=cityedge&password_file=cam1.password"
    )
    assert parse_devices(cell) == [
        {
            "name": "lc1",
            "driver": "modbus-tcp",
            "address": "10.0.0.5:502",
            "profile": "lighting-single-circuit",
            "unit": 3,
            "poll_interval_s": 2.5,
        },
        {
            "name": "cab1",
            "driver": "modbus-rtu",
            "port": "/dev/ttyUSB0",
            "profile": "lighting-cabinet-3phase",
            "unit": 7,
            "parity": "N",
        },
        {
            "name": "tc1",
            "driver": "opcua",
            "endpoint": "opc.tcp://192.168.10.30:4840",
            "profile": "traffic-controller-generic",
        },
        {
            "name": "cam1",
            "driver": "onvif",
            "address": "192.168.10.40:80",
            "username": "cityedge",
            "password_file": "cam1.password",
        },
    ]
    assert parse_devices("  ") == []


@pytest.mark.parametrize(
    "word, problem",
    [
        ("lc1", "expected NAME=DRIVER://HOST:PORT/PROFILE"),
        ("lc1=bacnet://10.0.0.5:47808/x", "unknown driver 'bacnet': expected one of modbus-rtu, modbus-tcp"),
        ("lc1=modbus-tcp://10.0.0.5/p", "expected HOST:PORT"),
        ("lc1=modbus-tcp://10.0.0.5:502", "needs its profile"),
        ("lc1=modbus-tcp://10.0.0.5:502/a/b", "one name, without '/'"),
        ("cam1=onvif://10.0.0.5:80/profile", "takes no profile"),
        ("cab1=modbus-rtu://ttyUSB0/p", "the serial port, then the profile"),
        ("lc1=modbus-tcp://10.0.0.5:502/p?address=x", "?address= is not a key"),
        ("lc1=modbus-tcp://10.0.0.5:502/p?unit=1&unit=2", "given twice"),
        ("l c=modbus-tcp://10.0.0.5:502/p", "expected NAME=DRIVER"),
        ("lc/1=modbus-tcp://10.0.0.5:502/p", "must be 1-64 letters"),
    ],
)
def test_a_bad_device_word_says_what_is_expected(word: str, problem: str) -> None:
    with pytest.raises(DeviceSpecError, match=problem.replace("?", r"\?").replace("(", r"\(")):
        parse_devices(word)


def test_two_devices_of_one_name_are_refused() -> None:
    with pytest.raises(DeviceSpecError, match="two devices have this name"):
        parse_devices("lc1=modbus-tcp://a:502/p lc1=modbus-tcp://b:502/p")


# -- inventory ---------------------------------------------------------------------------------------

HEADER = "id,town,lat,lon,label,rated_power_w,devices\n"


def test_rows_become_cabinets_and_bad_rows_errors_with_their_line() -> None:
    text = (
        HEADER
        + "cab-1,Dijon,47.32,5.04,Rue A,1840,lc1=modbus-tcp://10.0.0.5:502/p\n"
        + "\n"  # a blank line is skipped, and counted
        + "cab-9,Dijon,,,a\tb,,\n"  # a control character in a label
        + 'cab-2,Dijon,,,,,"lc1=modbus-tcp://a:502/p\nlc2=modbus-tcp://b:502/p"\n'  # a cell over two lines
        + "cab-3,Talant,47.3,,,,\n"  # latitude without longitude
        + "cab-1,Dijon,47.32,5.04,,,\n"  # again
        + "cab-4,Dijon,abc,5.0,,,\n"
        + "cab-5,Dijon\n"
        + "bad id,Dijon,,,,,\n"
        + "cab-6,,,,,,\n"
        + "cab-7,Dijon,,,,-3,\n"
    )
    inventory = parse_inventory(text)
    assert [(c.cabinet, c.line) for c in inventory.cabinets] == [("cab-1", 2), ("cab-2", 5)]
    assert [d["name"] for d in inventory.cabinets[1].devices] == ["lc1", "lc2"]
    assert [str(e) for e in inventory.errors] == [
        "line 4: label must not hold control characters",
        "line 7: lat and longitude must be given together",
        "line 8: cabinet 'cab-1' is already on line 2",
        "line 9: lat 'abc' is not a number",
        "line 10: 2 cells, the header names 7",
        "line 11: id must be 1-64 of A-Z a-z 0-9 _ . - (a letter or digit first)",
        "line 12: town must be 1 to 100 characters",
        "line 13: rated_power_w must be a finite number from 0 to 1e+07",
    ]


def test_a_french_spreadsheet_with_semicolons_bom_and_decimal_commas() -> None:
    text = "\ufeffid;town;lat;lon\ncab-1;Chenôve;47,2915;5,0083\n"
    [cabinet] = parse_inventory(text).cabinets
    assert (cabinet.town, cabinet.latitude, cabinet.longitude) == ("Chenôve", 47.2915, 5.0083)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "is empty"),
        ("id,town,colour\n", "unknown column(s) ['colour']"),
        ("id,lat\n", "missing column(s) ['town']"),
        ("id,town,town\n", "column(s) ['town'] given twice"),
    ],
)
def test_a_bad_header_stops_the_inventory(text: str, problem: str) -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, source="cabinets.csv")
    assert problem in str(caught.value) and str(caught.value).startswith("cabinets.csv: ")


# -- plan --------------------------------------------------------------------------------------------


def test_a_password_is_asked_for_only_when_a_side_lacks_it() -> None:
    table = {
        (has_file, central_has, new): credentials(
            has_file=has_file, central_has=central_has, new_credentials=new
        )
        for has_file in (True, False)
        for central_has in (True, False)
        for new in (True, False)
    }
    assert table == {
        (True, True, True): "keep",
        (True, True, False): "keep",
        (True, False, True): "issue",
        (True, False, False): "issue",
        (False, False, True): "issue",
        (False, False, False): "issue",
        (False, True, True): "replace",
        (False, True, False): "missing",
    }


def test_the_dry_run_text_diffs_configs_and_never_shows_a_secret(tmp_path: Path) -> None:
    changes = [
        FileChange("agent.toml", b"a = 1\nb = 2\n", b"a = 1\nb = 3\n"),
        FileChange("client.key", None, b"-----BEGIN PRIVATE KEY-----\nSECRET\n"),
        FileChange("ca.pem", b"same", b"same"),
    ]
    registry = RegistryChange({"town": "Dijon", "label": "a"}, {"town": "Dijon", "label": "b"})
    text = describe(tmp_path / "cab-1", changes, registry, "keep")
    folder = tmp_path / "cab-1"
    assert f"--- {folder}/agent.toml\n+++ {folder}/agent.toml\n" in text and "-b = 2\n+b = 3\n" in text
    assert "SECRET" not in text and f"+++ {folder}/client.key\n(a secret: " in text
    assert "ca.pem" not in text
    assert "registry: would update cab-1\n  label: 'a' -> 'b'\n" in text
    assert "new password" not in text
    assert "would get a new password" in describe(folder, [], RegistryChange(None, {"town": "T"}), "issue")
