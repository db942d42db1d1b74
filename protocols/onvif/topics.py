"""The ONVIF event topics cameras raise for what we watch, and the point each one drives. Pure data.

A topic is written as its path without the ``tns1:`` prefix (cameras bind the topic namespace to
prefixes of their own). ``state_item`` is the Data SimpleItem carrying the boolean; ``source_item``,
when set, the Source SimpleItem telling which input it is (a camera's digital input token).
"""

from __future__ import annotations

from dataclasses import dataclass

TOPICS_NAMESPACE = "http://www.onvif.org/ver10/topics"


@dataclass(frozen=True, slots=True)
class EventTopic:
    kind: str  # the point it drives: tamper, motion, storage_failure, digital_input
    path: str
    state_item: str
    source_item: str | None = None


# The first topic of each kind is the one the simulator raises; the others are what real firmwares send.
EVENT_TOPICS: tuple[EventTopic, ...] = (
    EventTopic("tamper", "VideoSource/GlobalSceneChange/ImagingService", "State", "Source"),
    EventTopic("tamper", "VideoSource/GlobalSceneChange/AnalyticsService", "State", "Source"),
    EventTopic("tamper", "RuleEngine/TamperDetector/Tamper", "IsTamper", "VideoSourceConfigurationToken"),
    EventTopic("motion", "RuleEngine/CellMotionDetector/Motion", "IsMotion", "VideoSourceConfigurationToken"),
    EventTopic("motion", "VideoSource/MotionAlarm", "State", "Source"),
    EventTopic("storage_failure", "Device/HardwareFailure/StorageFailure", "Failed", "Token"),
    EventTopic("digital_input", "Device/Trigger/DigitalInput", "LogicalState", "InputToken"),
)

EVENT_KINDS = ("tamper", "motion", "storage_failure", "digital_input")


def topic_for(kind: str) -> EventTopic:
    """The topic the simulator raises for ``kind``."""
    for topic in EVENT_TOPICS:
        if topic.kind == kind:
            return topic
    raise ValueError(f"unknown event kind {kind!r}: expected one of {', '.join(EVENT_KINDS)}")


def match_topic(text: str) -> EventTopic | None:
    """The known topic a camera's topic expression names (any namespace prefix), or None."""
    path = text.strip().rstrip("/.")
    _, colon, rest = path.partition(":")
    path = rest if colon else path
    for topic in EVENT_TOPICS:
        if topic.path == path:
            return topic
    return None


def parse_bool(text: str) -> bool | None:
    """An xs:boolean as cameras write it (true/false/1/0, any case), or None."""
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    return None
