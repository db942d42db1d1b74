"""What the camera's answers say, read defensively: zeep hands back objects whose fields may be
missing, None or of the wrong type when a firmware strays from the schema. Each reader returns the
value or raises ``ValueError`` naming what was wrong; nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from protocols.onvif.topics import match_topic, parse_bool

MAX_TEXT = 128


def text_field(answer: Any, name: str) -> str:
    value = getattr(answer, name, None)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"no {name} in the answer")
    cleaned = "".join(ch for ch in value.strip() if ch.isprintable())
    return cleaned[:MAX_TEXT]


@dataclass(frozen=True, slots=True)
class DeviceInformation:
    model: str
    firmware: str
    serial: str


def device_information(answer: Any) -> DeviceInformation:
    return DeviceInformation(
        model=text_field(answer, "Model"),
        firmware=text_field(answer, "FirmwareVersion"),
        serial=text_field(answer, "SerialNumber"),
    )


def _int(node: Any, name: str, low: int, high: int) -> int:
    value = getattr(node, name, None)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"UTCDateTime {name} is {value!r}, expected {low}..{high}")
    return value


def camera_time(answer: Any) -> dt.datetime:
    """The camera's UTC time from a GetSystemDateAndTime answer (seconds resolution)."""
    utc = getattr(answer, "UTCDateTime", None)
    date, time_of_day = getattr(utc, "Date", None), getattr(utc, "Time", None)
    if date is None or time_of_day is None:
        raise ValueError("no UTCDateTime in the answer")
    try:
        return dt.datetime(
            _int(date, "Year", 1970, 9999),
            _int(date, "Month", 1, 12),
            _int(date, "Day", 1, 31),
            _int(time_of_day, "Hour", 0, 23),
            _int(time_of_day, "Minute", 0, 59),
            _int(time_of_day, "Second", 0, 60 - 1),
            tzinfo=dt.UTC,
        )
    except ValueError as exc:
        raise ValueError(f"UTCDateTime is not a date: {exc}") from None


@dataclass(frozen=True, slots=True)
class EventChange:
    kind: str  # tamper, motion, storage_failure, digital_input
    source: str | None  # the Source item's value (a digital input's token)
    active: bool


def _items(node: Any) -> dict[str, str]:
    items = getattr(node, "SimpleItem", None) or []
    found: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        name, value = getattr(item, "Name", None), getattr(item, "Value", None)
        if isinstance(name, str) and isinstance(value, str):
            found[name] = value
    return found


def event_change(notification: Any) -> EventChange | None:
    """The change one NotificationMessage reports, None for a topic we do not watch; ValueError when
    a watched topic comes without a readable state."""
    topic_text = getattr(getattr(notification, "Topic", None), "_value_1", None)
    if not isinstance(topic_text, str):
        raise ValueError("a notification without a topic")
    topic = match_topic(topic_text)
    if topic is None:
        return None
    message = getattr(getattr(notification, "Message", None), "_value_1", None)
    data = _items(getattr(message, "Data", None))
    state = parse_bool(data.get(topic.state_item, ""))
    if state is None:
        raise ValueError(f"{topic.path}: no boolean {topic.state_item} in its Data")
    source = _items(getattr(message, "Source", None)).get(topic.source_item) if topic.source_item else None
    return EventChange(topic.kind, source, state)
