"""This release: its version, and dates both sides know, below which a clock reading cannot be right.

- ``VERSION``: the release's version (pyproject.toml says the same; a test checks), which a cabinet's
  birth and ``cityedge --version`` report.

- ``RELEASE_FLOOR_MS``: this release's date, raised at each release. The agent does not trust its
  own clock below it (``edge_agent.clock_sync``).
- ``RELEASE_CEILING_MS``: 15 years after the floor (a cabinet's contract runs 12). The agent does not
  trust its own clock above it, whatever the system says: a board at 2099 (a flat battery) is wrong.
- ``PROTOCOL_EPOCH_MS``: before it no cabinet spoke this protocol. Central flags a record stamped
  earlier (``central.record_time``): a 1970 stamp is a board that booted without a real-time clock,
  never a backlog. Fixed, not raised: records made by an older release stay believable.
"""

from __future__ import annotations

from datetime import UTC, datetime

VERSION = "0.1.0"
_RELEASE = datetime(2026, 11, 1, tzinfo=UTC)  # raised at each release; the ceiling follows
RELEASE_FLOOR_MS = int(_RELEASE.timestamp() * 1000)
RELEASE_CEILING_MS = int(_RELEASE.replace(year=_RELEASE.year + 15).timestamp() * 1000)
PROTOCOL_EPOCH_MS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
