"""Every size and text limit both sides of the fleet hold to, in one place.

Central refuses what a cabinet would refuse (an operator learns it from a 422 at once, not from a
rejected command days later), and the agent clips what it writes to what central accepts.
"""

from __future__ import annotations

import re

# Whole messages, in bytes, checked before any parsing.
MAX_DATA_BYTES = 512 * 1024
MAX_STATUS_BYTES = 64 * 1024
# An ack lists the seq ranges central holds: at worst one range per two records of a batch.
MAX_ACK_BYTES = 64 * 1024
MAX_COMMAND_BYTES = 16 * 1024
MAX_RECORD_BYTES = 8 * 1024

# Lists: a batch's records (the edge sends at most 5,000), an ack's ranges, a map's entries, a
# status's devices and a device's points.
MAX_BATCH_RECORDS = 20_000
MAX_ACK_RANGES = 4096
MAX_MAP_ENTRIES = 64
MAX_INVENTORY_DEVICES = 256
MAX_DEVICE_POINTS = 1024

# Texts, in characters. A name (cabinet, device, quantity, event kind, command id) is 1-64 of
# [A-Za-z0-9_.-]; a point is "<device>/<quantity>", a source at most as long.
MAX_NAME_CHARS = 64
NAME_PATTERN = rf"[A-Za-z0-9_.-]{{1,{MAX_NAME_CHARS}}}"
MAX_POINT_CHARS = 2 * MAX_NAME_CHARS + 1
MAX_SOURCE_CHARS = MAX_POINT_CHARS
# A reading's or a command result's reason, a version, who issued a command.
MAX_SHORT_TEXT_CHARS = 256
# An event's message.
MAX_MESSAGE_CHARS = 2048

# The lighting schedule. Its JSON travels as one text in a set_schedule command: a schedule is also
# bounded by MAX_COMMAND_BYTES, which the sender checks on the whole command.
MAX_DIMMING_PERIODS = 24
MAX_EXCEPTIONS = 1000
MAX_NOTE_CHARS = 200
MAX_ISSUED_BY_CHARS = 100
MAX_ZONE_CHARS = 64
# Objects and lists within one another, the schedule itself being 1 ({"dimming": [{}]} is 3): a
# schedule needs 3, and one hundreds deep could be stored but not sent back as JSON.
MAX_SCHEDULE_DEPTH = 16


def is_valid_name(text: str) -> bool:
    """Whether ``text`` is a fleet name (a device, a quantity, an event kind, a command id...)."""
    return re.fullmatch(NAME_PATTERN, text) is not None


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked as cut, so that a long detail never refuses its record."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
