"""Response bodies of the HTTP API, as pydantic models so that /openapi.json documents them.

Timestamps are integers in milliseconds since 1970-01-01 UTC (fields ending in ``_ms``), the unit
of the fleet protocol; query parameters accept them or ISO 8601.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from central.store.rows import PointValue
from protocols.quality import Quality

Scalar = float | int | bool | str | None


class ErrorBody(BaseModel):
    detail: str = Field(description="what went wrong and what to do about it")


class Device(BaseModel):
    name: str
    driver: str
    profile: str | None = None
    points: list[str] = []


class CabinetSummary(BaseModel):
    id: str
    online: bool = Field(description="from the cabinet's retained status: birth or last will")
    last_seen_ms: int | None = Field(description="when central last received from it")
    agent_version: str
    backlog: int = Field(description="records waiting in the cabinet's buffer, as last reported")
    stream: str | None
    boot_count: int
    town: str | None = Field(description="from the registry (cityedge provision); null: not registered")
    label: str = Field(description="where it stands, in words, from the registry")
    latitude: float | None
    longitude: float | None
    registered: bool = Field(
        description="provisioned in the registry; a registered cabinet that never sent anything is"
        " listed too (online false, last_seen_ms null)"
    )
    revoked: bool = Field(description="its broker access was revoked")


class CabinetDetail(CabinetSummary):
    status_ts_ms: int | None = Field(description="timestamp of the latest status message")
    config_hash: str
    inventory: list[Device]


class PointValueOut(BaseModel):
    point: str
    ts_ms: int
    value: Scalar
    quality: str = Field(description="good, uncertain or bad")
    reason: str | None = Field(description="why the quality is not good")

    @classmethod
    def of(cls, value: PointValue, *, point: str | None = None) -> PointValueOut:
        """The API's view of a stored latest value (``point``: shown under another name)."""
        return cls(
            point=value.point if point is None else point,
            ts_ms=value.ts_ms,
            value=value.value,
            quality=quality_name(value.quality),
            reason=value.reason,
        )


_QUALITY = {int(q): q.name.lower() for q in Quality}


def quality_name(value: int) -> str:
    """good, uncertain or bad (a number the store holds but Quality does not know: as it is)."""
    return _QUALITY.get(value, str(value))


class CabinetPoints(BaseModel):
    cabinet: str
    points: list[PointValueOut]


class ReadingOut(BaseModel):
    ts_ms: int
    value: Scalar
    quality: str
    reason: str | None


class BucketOut(BaseModel):
    """What one 15-minute or daily (UTC) bucket of a point's readings adds up to."""

    start_ms: int = Field(description="the bucket's start (UTC); it lasts ``resolution``")
    count: int = Field(description="readings in the bucket, whatever their quality")
    good: int = Field(description="good numeric readings: the ones min, max and mean are over")
    min: float | None
    max: float | None
    mean: float | None
    last: ReadingOut = Field(description="the bucket's newest reading by time, whatever its quality")
    energy_wh: float | None = Field(
        description="energy counters (points named ...energy_wh) only: Wh consumed in the bucket, with"
        " its share of an interval that crosses its edges (resets and glitches as the energy endpoint"
        " counts them)"
    )


class ReadingsPage(BaseModel):
    cabinet: str
    point: str
    start_ms: int
    end_ms: int
    limit: int
    resolution: str = Field(
        description="raw: ``readings`` holds the readings; 15m or 1d: ``buckets`` holds rollups"
    )
    truncated: bool = Field(
        description="true when ``limit`` readings (or buckets) were returned: ask again from the last"
        " ts (or bucket start)"
    )
    readings: list[ReadingOut] = Field(description="raw readings, oldest first (resolution raw)")
    buckets: list[BucketOut] = Field(
        default_factory=list, description="rollups, oldest first (resolution 15m or 1d)"
    )


class EventOut(BaseModel):
    cabinet: str
    stream: str
    seq: int
    ts_ms: int
    source: str
    kind: str
    severity: str
    message: str
    data: dict[str, Scalar]


class EventsPage(BaseModel):
    events: list[EventOut] = Field(description="newest first")


class QuarantineItem(BaseModel):
    id: int
    received_ms: int
    topic: str
    reason: str
    detail: str
    size: int = Field(description="payload size in bytes as received (the stored copy is capped)")


class QuarantinePage(BaseModel):
    counts: dict[str, int] = Field(description="rows kept per reason")
    evicted: int = Field(description="old rows deleted to keep the quarantine bounded")
    items: list[QuarantineItem] = Field(description="newest first, without payloads")


class StoreHealth(BaseModel):
    reachable: bool
    error: str | None = None
    cabinets: int | None = None
    readings: int | None = None
    events: int | None = None
    quarantined: int | None = None


class IngestHealth(BaseModel):
    mqtt_connected: bool
    mqtt_protocol: str | None
    shared_subscription: bool
    connects: int
    batches_received: int
    batches_stored: int
    duplicate_batches: int
    readings_stored: int
    events_stored: int
    results_stored: int
    duplicate_records: int
    statuses: int
    rejected: dict[str, int]
    commits: int
    store_errors: int
    acks_sent: int
    acks_failed: int
    pending_batches: int
    last_error: str | None
    last_error_ms: int | None


class Health(BaseModel):
    healthy: bool = Field(description="the store answers and, when this process ingests, MQTT is up")
    store: StoreHealth
    ingest: IngestHealth | None = Field(description="null when this process does not ingest")
