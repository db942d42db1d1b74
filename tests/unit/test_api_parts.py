"""Pure parts of the API's trust boundary: strict JSON, the error echo, token format, roles."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central.api.errors import MAX_ECHO_CHARS, echo
from central.api.json_route import parse_json
from central.auth import digest, key_id_of
from central.store.auth_rows import Role


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "[Infinity]",
        '{"a": -Infinity}',
        "1e999",
        "-1e400",
        "9223372036854775808",
        '"\\ud800"',
        '{"\\udc00": 1}',
    ],
)
def test_strict_json_refuses_what_cannot_be_stored_or_echoed(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        parse_json(text.encode())
    json.loads(text)  # ... all of which Python's own parser accepts


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"\\ud83d\\ude00"', "\N{GRINNING FACE}"),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
        ("1e308", 1e308),
        ('{"a": [1, 2.5, null, true, "x"]}', {"a": [1, 2.5, None, True, "x"]}),
    ],
)
def test_strict_json_reads_json(text: str, value: object) -> None:
    assert parse_json(text.encode()) == value


@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(), st.lists))
def test_the_echo_of_any_value_is_json_that_utf8_can_carry(value: object) -> None:
    json.dumps(echo(value), ensure_ascii=False, allow_nan=False).encode("utf-8")


def test_the_echo_keeps_what_it_can_and_says_what_it_changed() -> None:
    assert echo({"a": [math.nan, math.inf, 1.5, "\ud800x"]}) == {"a": ["nan", "inf", 1.5, "\\ud800x"]}
    long = echo("y" * 10 * MAX_ECHO_CHARS)
    assert isinstance(long, str) and len(long) == MAX_ECHO_CHARS + 1 and long.endswith("…")
    assert echo(ValueError("bad")) == "bad"
    assert echo(("loc", 3)) == ["loc", 3]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "ce1",
        "ce1_",
        "ce1_0123456789abcdef_",
        "ce2_0123456789abcdef_x",
        "ce1_0123456789ABCDEF_x",
        "x" * 200,
    ],
)
def test_a_token_not_of_our_format_has_no_key_id(token: str) -> None:
    assert key_id_of(token) is None


def test_a_token_of_our_format_names_its_key_and_digests_to_sha256() -> None:
    assert key_id_of("ce1_0123456789abcdef_secret_with_underscores") == "0123456789abcdef"
    assert digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_each_role_may_do_what_the_ones_before_it_may_and_an_installer_only_reads_beside() -> None:
    assert [r.value for r in Role] == ["viewer", "operator", "admin", "installer"]
    allowed = {(have.value, need.value) for have in Role for need in Role if have.allows(need)}
    assert allowed == {
        ("viewer", "viewer"),
        ("operator", "viewer"),
        ("operator", "operator"),
        ("admin", "viewer"),
        ("admin", "operator"),
        ("admin", "admin"),
        ("admin", "installer"),
        ("installer", "viewer"),
        ("installer", "installer"),
    }
    assert Role.INSTALLER.granted_by == (Role.ADMIN, Role.INSTALLER)
