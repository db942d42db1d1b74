"""diag's report shows what devices and the buffer say as text: never as rich markup (a stray closing
tag would end diag with a traceback) and never as terminal control sequences."""

from __future__ import annotations

import io
import json

from rich.console import Console

from edge_agent.diag.model import AlarmEvent, Check, DeviceResult, Report, Status
from edge_agent.diag.render import as_json, print_report
from edge_agent.probe import ProbedDevice, ProbedPoint
from protocols.quality import Quality

# What a camera's SOAP fault, a controller's string point or a buffered event may hold.
HOSTILE = "[/bold] fault [link=http://evil.example]x[/link] \x1b]0;owned\x07\x1b[2J\r\nFAIL forged"


def hostile_report() -> Report:
    point = ProbedPoint("plan", HOSTILE, None, Quality.BAD, HOSTILE, None)
    report = Report(cabinet="cab-1", config="/etc/cityedge/agent/agent.toml", started_ms=1_700_000_000_000)
    report.devices = [
        DeviceResult(ProbedDevice("cam1", (), HOSTILE), "onvif"),
        DeviceResult(ProbedDevice("tc1", (point,)), "opcua"),
    ]
    report.checks = [Check("broker", Status.FAIL, f"refused: {HOSTILE}")]
    report.active_alarms = [f"cam1: {HOSTILE}"]
    report.recent_events = [AlarmEvent(7, 1_700_000_000_000, "cam1", "device_lost", "alarm", HOSTILE)]
    return report


def test_hostile_text_is_shown_as_text_not_markup_nor_control_sequences() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=400)
    print_report(hostile_report(), console)
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "[/bold] fault [link=http://evil.example]x[/link]" in shown
    for sequence in ("\x1b]0;", "\x1b]8;", "\x1b[2J", "\r", "\x07"):
        assert sequence not in shown, repr(sequence)
    assert "\\x1b[2J" in shown
    assert not any(line.startswith("FAIL forged") for line in shown.splitlines())


def test_json_keeps_the_text_as_it_was() -> None:
    report = json.loads(as_json(hostile_report()))
    assert report["devices"][0]["error"] == HOSTILE
    assert report["recent_events"][0]["message"] == HOSTILE
