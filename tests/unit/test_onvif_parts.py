"""Pure parts of the ONVIF package: the auth backoff, topics, answers, the simulator's SOAP."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
from types import SimpleNamespace as NS

import pytest

from protocols.onvif import sim_soap
from protocols.onvif.answers import EventChange, camera_time, device_information, event_change
from protocols.onvif.auth_gate import AuthGate
from protocols.onvif.events import duration
from protocols.onvif.topics import match_topic


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_auth_gate_allows_a_bounded_number_of_attempts_per_hour() -> None:
    """Asked every second for six hours, a refused password: 6 attempts the first hour, then 1 an hour."""
    clock = FakeClock()
    gate = AuthGate(minimum_s=60, maximum_s=3600, clock=clock)
    attempts: list[float] = []
    for second in range(6 * 3600):
        clock.now = float(second)
        if gate.enter():
            attempts.append(clock.now)
            gate.refusal()
    first_hour = [t for t in attempts if t < 3600]
    assert first_hour == [0, 60, 180, 420, 900, 1860]
    for hour in range(2, 6):
        assert len([t for t in attempts if hour * 3600 <= t < (hour + 1) * 3600]) <= 1
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[:6] == [60, 120, 240, 480, 960, 1920] and all(g == 3600 for g in gaps[6:])


def test_auth_gate_lets_one_probe_through_and_resets_when_accepted() -> None:
    clock = FakeClock()
    gate = AuthGate(minimum_s=10, maximum_s=100, clock=clock)
    assert gate.enter()
    assert gate.refusal() == 10
    assert not gate.enter() and gate.wait_s() == 10
    clock.now = 10
    assert gate.enter()  # the probe
    assert not gate.enter()  # everyone else waits for its answer
    gate.accepted()
    assert gate.enter() and gate.enter() and not gate.refused and gate.verified


def test_topics_match_whatever_prefix_the_camera_binds() -> None:
    assert match_topic("tns1:Device/Trigger/DigitalInput").kind == "digital_input"  # type: ignore[union-attr]
    assert match_topic("ns0:RuleEngine/CellMotionDetector/Motion/").kind == "motion"  # type: ignore[union-attr]
    assert match_topic("VideoSource/MotionAlarm").kind == "motion"  # type: ignore[union-attr]
    assert match_topic("tns1:Monitoring/ProcessorUsage") is None


def _notification(topic: str, data: list[NS], source: list[NS] | None = None) -> NS:
    message = NS(Data=NS(SimpleItem=data), Source=NS(SimpleItem=source or []))
    return NS(Topic=NS(_value_1=topic), Message=NS(_value_1=message))


def test_event_change_reads_state_and_source() -> None:
    change = event_change(
        _notification(
            "tns1:Device/Trigger/DigitalInput",
            [NS(Name="LogicalState", Value="1")],
            [NS(Name="InputToken", Value="IN_2")],
        )
    )
    assert change == EventChange("digital_input", "IN_2", True)
    assert event_change(_notification("tns1:Monitoring/ProcessorUsage", [])) is None
    with pytest.raises(ValueError, match="no boolean State"):
        event_change(_notification("tns1:VideoSource/MotionAlarm", [NS(Name="State", Value="maybe")]))
    with pytest.raises(ValueError, match="without a topic"):
        event_change(NS(Topic=None, Message=None))


def test_answers_refuse_what_the_schema_would_not_give() -> None:
    with pytest.raises(ValueError, match="no Model"):
        device_information(NS(Model=None, FirmwareVersion="1", SerialNumber="2"))
    info = device_information(NS(Model=" M\x00x ", FirmwareVersion="1" * 500, SerialNumber="S"))
    assert info.model == "Mx" and len(info.firmware) == 128
    good = NS(UTCDateTime=NS(Date=NS(Year=2026, Month=3, Day=29), Time=NS(Hour=1, Minute=59, Second=59)))
    assert camera_time(good) == dt.datetime(2026, 3, 29, 1, 59, 59, tzinfo=dt.UTC)
    for bad in (
        NS(UTCDateTime=NS(Date=NS(Year=2026, Month=2, Day=30), Time=NS(Hour=1, Minute=0, Second=0))),
        NS(UTCDateTime=NS(Date=NS(Year=2026, Month=13, Day=1), Time=NS(Hour=1, Minute=0, Second=0))),
        NS(UTCDateTime=NS(Date=NS(Year="2026", Month=1, Day=1), Time=NS(Hour=1, Minute=0, Second=0))),
        NS(UTCDateTime=None),
    ):
        with pytest.raises(ValueError, match="UTCDateTime"):
            camera_time(bad)


def test_durations_as_ws_notification_wants_them() -> None:
    assert duration(60) == "PT60S"
    assert duration(1.5) == "PT1.5S"
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert sim_soap.parse_duration_s("PT1M30S", now) == 90
    assert sim_soap.parse_duration_s("2026-01-01T00:00:10Z", now) == 10
    assert sim_soap.parse_duration_s("soon", now) is None


def _token(password: str, nonce: bytes = b"0123456789abcdef", created: str = "2026-01-01T00:00:00Z") -> str:
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()
    return (
        f'<env:Envelope xmlns:env="{sim_soap.ENV}" xmlns:wsse="{sim_soap.WSSE}" xmlns:wsu="{sim_soap.WSU}">'
        "<env:Header><wsse:Security><wsse:UsernameToken><wsse:Username>admin</wsse:Username>"
        f'<wsse:Password Type="...#PasswordDigest">{digest}</wsse:Password>'
        f"<wsse:Nonce>{base64.b64encode(nonce).decode()}</wsse:Nonce><wsu:Created>{created}</wsu:Created>"
        "</wsse:UsernameToken></wsse:Security></env:Header>"
        f'<env:Body><GetDeviceInformation xmlns="{sim_soap.DEVICE_NS}"/></env:Body></env:Envelope>'
    )


def test_simulator_checks_the_password_digest() -> None:
    request = sim_soap.parse_request(_token("s3cret").encode())
    assert request.operation == "GetDeviceInformation" and request.token is not None
    assert sim_soap.digest_matches(request.token, "s3cret")
    assert not sim_soap.digest_matches(request.token, "s3cret!")
    plain = sim_soap.UsernameToken("admin", "s3cret", digest=False, nonce="", created="")
    assert not sim_soap.digest_matches(plain, "s3cret")  # a text password is refused


@pytest.mark.parametrize(
    "body", [b"", b"<not xml", b"<a/>", f'<e:Envelope xmlns:e="{sim_soap.ENV}"/>'.encode()]
)
def test_simulator_refuses_what_is_not_a_soap_request(body: bytes) -> None:
    with pytest.raises(sim_soap.BadRequest):
        sim_soap.parse_request(body)
