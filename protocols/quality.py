"""Quality of a reading, shared by field drivers and the fleet protocol."""

from __future__ import annotations

from enum import IntEnum


class Quality(IntEnum):
    """How far a reading can be trusted. Anything but GOOD travels with a reason."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


# The reason of a reading taken while the cabinet's clock is not synchronised: its timestamp, not its
# value, is what cannot be trusted.
CLOCK_UNSYNCHRONISED = "clock_unsynchronised"
