"""Why a fleet message was refused. Every decoder raises only these.

    FleetError (ValueError)
    ├── MessageTooLarge     over the size limit of its kind; nothing was parsed
    ├── MalformedMessage    not msgpack, or msgpack of the wrong shape or out-of-range values
    ├── UnsupportedVersion  a well-formed envelope of a protocol version this side does not speak
    ├── WrongCabinet        the payload names another cabinet than the topic it came on
    └── TopicError          a topic outside the fleet's namespace

``reason`` is a stable short word, used as a counter label and in the quarantine.
"""

from __future__ import annotations


class FleetError(ValueError):
    reason = "invalid"


class MessageTooLarge(FleetError):
    reason = "too_large"

    def __init__(self, kind: str, size: int, limit: int) -> None:
        super().__init__(f"{kind} message of {size} bytes exceeds the {limit}-byte limit")
        self.kind = kind
        self.size = size
        self.limit = limit


class MalformedMessage(FleetError):
    reason = "malformed"

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"malformed {kind} message: {detail}")
        self.kind = kind
        self.detail = detail


class UnsupportedVersion(FleetError):
    reason = "unsupported_version"

    def __init__(self, kind: str, version: object, supported: int) -> None:
        super().__init__(f"{kind} message has protocol version {version!r}; this side speaks {supported}")
        self.kind = kind
        self.version = version
        self.supported = supported


class WrongCabinet(FleetError):
    reason = "wrong_cabinet"

    def __init__(self, topic_cabinet: str, payload_cabinet: str) -> None:
        super().__init__(
            f"payload names cabinet {payload_cabinet!r} but came on the topic of {topic_cabinet!r}"
        )
        self.topic_cabinet = topic_cabinet
        self.payload_cabinet = payload_cabinet


class TopicError(FleetError):
    reason = "bad_topic"

    def __init__(self, topic: str, detail: str) -> None:
        super().__init__(f"topic {topic!r}: {detail}")
        self.topic = topic
        self.detail = detail
