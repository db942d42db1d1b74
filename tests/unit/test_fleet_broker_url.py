"""Broker URLs: mqtt:// and mqtts://, default ports, credentials kept out of logs."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.fleet.broker_url import BrokerAddress, parse_broker_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1", BrokerAddress("127.0.0.1", 1883)),
        ("mqtt://broker.example:1884", BrokerAddress("broker.example", 1884)),
        ("mqtts://broker.example", BrokerAddress("broker.example", 8883, tls=True)),
        ("mqtts://broker.example:443", BrokerAddress("broker.example", 443, tls=True)),
        ("mqtt://[::1]:1883", BrokerAddress("::1", 1883)),
        ("mqtt://cab-1@h", BrokerAddress("h", 1883, username="cab-1")),
        ("mqtt://cab-1:s3cret@h:1", BrokerAddress("h", 1, username="cab-1", password="s3cret")),
        ("mqtt://a%40b:p%3Aw%2F@h", BrokerAddress("h", 1883, username="a@b", password="p:w/")),
        ("mqtt://:pw@h", BrokerAddress("h", 1883, password="pw")),
    ],
)
def test_parse_broker_url(url: str, expected: BrokerAddress) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h:1883", "must start with mqtt:// or mqtts://"),
        ("127.0.0.1:1883", "must start with mqtt:// or mqtts://"),
        ("", "must start with mqtt:// or mqtts://"),
        ("mqtt://", "has no host"),
        ("mqtt://:1883", "has no host"),
        ("mqtt://h:port", "has an invalid port"),
        ("mqtt://h:65536", "has an invalid port"),
        ("mqtt://h:-1", "has an invalid port"),
        ("mqtt://h:0", "has port 0"),
    ],
)
def test_bad_broker_url_names_the_url_and_the_problem(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        parse_broker_url(url)
    assert repr(url) in str(caught.value)
    assert "mqtt://" in str(caught.value)  # a good example, or the scheme to use


def test_password_stays_out_of_str_and_repr() -> None:
    address = parse_broker_url("mqtts://cab-1:s3cret@broker.example:8883")
    assert address.password == "s3cret"
    assert str(address) == "mqtts://cab-1@broker.example:8883"
    assert "s3cret" not in repr(address)
    assert "s3cret" not in f"{address!r} {address}"


hosts = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True)
ipv6_hosts = st.ip_addresses(v=6).map(str)
usernames = st.none() | st.text(string.ascii_letters + string.digits + "_.-", min_size=1)


@given(
    host=hosts | ipv6_hosts,
    port=st.integers(1, 65535),
    tls=st.booleans(),
    username=usernames,
)
def test_str_parses_back_to_the_same_address_without_password(
    host: str, port: int, tls: bool, username: str | None
) -> None:
    address = BrokerAddress(host, port, tls=tls, username=username, password="pw")
    assert parse_broker_url(str(address)) == BrokerAddress(host, port, tls=tls, username=username)
