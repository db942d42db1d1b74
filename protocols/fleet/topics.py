"""Topic names. Everything a cabinet says or hears lives under ``cityedge/<cabinet>/``, so a broker ACL
of one pattern (``cityedge/%u/#``) confines each cabinet's credentials to its own prefix.

    cityedge/<cabinet>/status   edge → central, retained birth; the last will marks it offline
    cityedge/<cabinet>/data     edge → central, batches of buffered records (QoS 1)
    cityedge/<cabinet>/ack      central → edge, what central has committed
    cityedge/<cabinet>/cmd      central → edge, commands
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from protocols.fleet.errors import TopicError

ROOT = "cityedge"
CABINET_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_CABINET_ID = re.compile(CABINET_ID_PATTERN)

Kind = Literal["status", "data", "ack", "cmd"]
KINDS: tuple[Kind, ...] = ("status", "data", "ack", "cmd")


def is_valid_cabinet_id(cabinet: str) -> bool:
    # fullmatch, not match: with re, "$" also matches before a trailing newline.
    return bool(_CABINET_ID.fullmatch(cabinet))


@dataclass(frozen=True, slots=True)
class Topics:
    """The four topics of one cabinet."""

    cabinet: str

    def __post_init__(self) -> None:
        if not is_valid_cabinet_id(self.cabinet):
            raise ValueError(
                f"cabinet id {self.cabinet!r} is not valid: use 1-64 letters, digits, '_', '-', '.',"
                " starting with a letter or digit"
            )

    @property
    def status(self) -> str:
        return f"{ROOT}/{self.cabinet}/status"

    @property
    def data(self) -> str:
        return f"{ROOT}/{self.cabinet}/data"

    @property
    def ack(self) -> str:
        return f"{ROOT}/{self.cabinet}/ack"

    @property
    def command(self) -> str:
        return f"{ROOT}/{self.cabinet}/cmd"


def all_cabinets(kind: Kind) -> str:
    """Subscription filter for one kind of message from every cabinet."""
    return f"{ROOT}/+/{kind}"


def shared(group: str, topic_filter: str) -> str:
    """MQTT 5 shared subscription: the broker spreads messages over the group's subscribers."""
    return f"$share/{group}/{topic_filter}"


def parse_topic(topic: str) -> tuple[str, Kind]:
    """Split ``cityedge/<cabinet>/<kind>`` into (cabinet, kind), or raise TopicError."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != ROOT:
        raise TopicError(topic, f"expected {ROOT}/<cabinet>/<kind>")
    cabinet, kind = parts[1], parts[2]
    if not is_valid_cabinet_id(cabinet):
        raise TopicError(topic, f"invalid cabinet id {cabinet!r}")
    for known in KINDS:
        if kind == known:
            return cabinet, known
    raise TopicError(topic, f"unknown kind {kind!r}, expected one of {', '.join(KINDS)}")
