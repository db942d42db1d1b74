"""The report for a crew (rich tables) and for scripts (JSON). rich is imported here only: the agent
itself never loads it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from edge_agent.diag.model import DeviceResult, Report, Status
from edge_agent.journal import escaped
from edge_agent.probe import ProbedPoint

STYLES = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red", Status.SKIP: "dim"}
PLAIN_WIDTH = 160  # when the output is not a terminal (a file, a pipe): wide enough for one line a row


def as_json(report: Report) -> str:
    return json.dumps(as_dict(report), indent=2, sort_keys=False)


def as_dict(report: Report) -> dict[str, Any]:
    return {
        "cabinet": report.cabinet,
        "config": report.config,
        "at": _iso(report.started_ms),
        "took_s": report.took_s,
        "ok": report.ok,
        "failures": report.failures,
        "devices": [_device(d) for d in report.devices],
        "checks": {
            c.name: {"status": c.status.value, "summary": c.summary, **c.facts} for c in report.checks
        },
        "active_alarms": report.active_alarms,
        "recent_events": [
            {
                "seq": e.seq,
                "at": _iso(e.ts),
                "source": e.source,
                "kind": e.kind,
                "severity": e.severity,
                "message": e.message,
            }
            for e in report.recent_events
        ],
    }


def _device(result: DeviceResult) -> dict[str, Any]:
    probed = result.probed
    return {
        "name": probed.device,
        "driver": result.driver,
        "status": result.status.value,
        "reachable": probed.error is None if result.skipped is None else None,
        "error": probed.error if result.skipped is None else None,
        "skipped": result.skipped,
        "points": [_point(point) for point in probed.points],
    }


def _point(point: ProbedPoint) -> dict[str, Any]:
    return {
        "point": point.quantity,
        "value": point.value,
        "unit": point.unit,
        "quality": point.quality.name.lower(),
        "reason": point.reason,
    }


def print_report(report: Report, console: Console | None = None) -> None:
    console = console or Console(width=None if Console().is_terminal else PLAIN_WIDTH)
    verdict = Text("all good", "green") if report.ok else Text(f"{len(report.failures)} failing", "bold red")
    console.print(
        Text.assemble(
            _text(f"cabinet {report.cabinet} ({report.config}) at {_iso(report.started_ms)}: "), verdict
        )
    )
    console.print(_devices_table(report))
    console.print(_checks_table(report))
    if report.active_alarms:
        console.print(_text("active alarms: " + "; ".join(report.active_alarms), "yellow"))
    else:
        console.print("active alarms: none")
    if report.recent_events:
        console.print(_events_table(report))
    for failure in report.failures:
        console.print(_text(f"FAIL {failure}", "bold red"))
    console.print(f"diag took {report.took_s:.2f} s")


def _devices_table(report: Report) -> Table:
    table = Table(title="devices", title_justify="left")
    for column in ("device", "driver", "point", "value", "unit", "quality", "note"):
        table.add_column(column)
    for result in report.devices:
        probed = result.probed
        if result.skipped is not None:
            table.add_row(
                *_texts(probed.device, result.driver, "-", "-", "", "skip", result.skipped), style="dim"
            )
            continue
        if probed.error is not None:
            table.add_row(
                *_texts(probed.device, result.driver, "-", "-", "", "bad", f"NO ANSWER: {probed.error}"),
                style="bold red",
            )
            continue
        for point in probed.points:
            note = "" if point.good else f"BAD: {point.reason or 'no reason given'}"
            table.add_row(
                *_texts(
                    probed.device,
                    result.driver,
                    point.quantity,
                    _value(point.value),
                    point.unit or "",
                    point.quality.name.lower(),
                    note,
                ),
                style=None if point.good else "red",
            )
    return table


def _checks_table(report: Report) -> Table:
    table = Table(title="checks", title_justify="left")
    for column in ("check", "status", "what was found"):
        table.add_column(column)
    for check in report.checks:
        table.add_row(_text(check.name), Text(check.status.value, STYLES[check.status]), _text(check.summary))
    return table


def _events_table(report: Report) -> Table:
    table = Table(title="recent alarms and losses still in the buffer (newest first)", title_justify="left")
    for column in ("at", "source", "kind", "severity", "message"):
        table.add_column(column)
    for event in report.recent_events:
        table.add_row(*_texts(_iso(event.ts), event.source, event.kind, event.severity, event.message))
    return table


def _text(text: str, style: str = "") -> Text:
    """What a device, a broker or the buffer said, as text: no markup, no control characters."""
    return Text(escaped(text), style)


def _texts(*cells: str) -> list[Text]:
    return [_text(cell) for cell in cells]


def _value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
