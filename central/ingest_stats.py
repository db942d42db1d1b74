"""Counters of the ingest path, for /health and for logs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(slots=True)
class IngestStats:
    """Mutated only by the ingestor's tasks (one event loop: no locks needed)."""

    batches_received: int = 0
    batches_stored: int = 0
    duplicate_batches: int = 0
    readings_stored: int = 0
    events_stored: int = 0
    results_stored: int = 0
    duplicate_records: int = 0
    statuses: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    commits: int = 0
    store_errors: int = 0
    acks_sent: int = 0
    acks_failed: int = 0
    pending_batches: int = 0
    mqtt_connected: bool = False
    mqtt_protocol: str | None = None
    shared_subscription: bool = False
    connects: int = 0
    last_error: str | None = None
    last_error_ms: int | None = None

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def error(self, message: str, now_ms: int) -> None:
        self.last_error = message
        self.last_error_ms = now_ms

    def snapshot(self) -> IngestSnapshot:
        return IngestSnapshot(
            **{name: getattr(self, name) for name in _SCALAR_FIELDS},
            rejected=MappingProxyType(dict(self.rejected)),
        )


@dataclass(frozen=True, slots=True)
class IngestSnapshot:
    batches_received: int
    batches_stored: int
    duplicate_batches: int
    readings_stored: int
    events_stored: int
    results_stored: int
    duplicate_records: int
    statuses: int
    rejected: Mapping[str, int]
    commits: int
    store_errors: int
    acks_sent: int
    acks_failed: int
    pending_batches: int
    mqtt_connected: bool
    mqtt_protocol: str | None
    shared_subscription: bool
    connects: int
    last_error: str | None
    last_error_ms: int | None


_SCALAR_FIELDS = tuple(name for name in IngestStats.__slots__ if name != "rejected")
