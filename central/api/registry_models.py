"""Request and response bodies of /registry: the cabinets a city provisioned.

The bounds are the store's (``central.store.registry_rules``), checked here first so that a caller
gets a 422 naming the field. No body ever carries a broker password's hash; the password itself is
in one answer only, the one that makes it.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from central.store import registry_rules as rr
from central.store.rows import RegistryEntry

Outcome = Literal["created", "updated", "unchanged"]


def _printable(value: str) -> str:
    if any(ord(ch) < 32 for ch in value):
        raise ValueError("must not hold control characters (tabs, newlines, ...)")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Text = Annotated[str, AfterValidator(_printable)]


class RegistryIn(BaseModel):
    """Where a cabinet stands and what its lamps draw; PUT twice with the same body: "unchanged"."""

    model_config = ConfigDict(extra="forbid")
    town: Annotated[Text, AfterValidator(_not_blank)] = Field(min_length=1, max_length=rr.TOWN_MAX_CHARS)
    label: Text = Field(default="", max_length=rr.LABEL_MAX_CHARS)
    latitude: float | None = Field(default=None, ge=-90.0, le=90.0, allow_inf_nan=False)
    longitude: float | None = Field(default=None, ge=-180.0, le=180.0, allow_inf_nan=False)
    rated_power_w: float | None = Field(
        default=None,
        ge=0.0,
        le=rr.POWER_MAX_W,
        allow_inf_nan=False,
        description="its lamps at full power, in W: the energy baseline without dimming",
    )
    baseline_kwh_per_day: float | None = Field(
        default=None, ge=0.0, le=rr.KWH_PER_DAY_MAX, allow_inf_nan=False
    )

    @model_validator(mode="after")
    def _coordinates_in_pairs(self) -> Self:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("give latitude and longitude together, or neither")
        return self


class RegistryOut(BaseModel):
    cabinet: str
    town: str
    label: str
    latitude: float | None
    longitude: float | None
    rated_power_w: float | None
    baseline_kwh_per_day: float | None
    broker_account: bool = Field(description="central holds broker credentials for it (never shown)")
    created_ms: int
    updated_ms: int
    revoked_ms: int | None
    revoked: bool

    @classmethod
    def of(cls, entry: RegistryEntry) -> RegistryOut:
        return cls(
            cabinet=entry.cabinet,
            town=entry.town,
            label=entry.label,
            latitude=entry.latitude,
            longitude=entry.longitude,
            rated_power_w=entry.rated_power_w,
            baseline_kwh_per_day=entry.baseline_kwh_per_day,
            broker_account=entry.broker_hash is not None,
            created_ms=entry.created_ms,
            updated_ms=entry.updated_ms,
            revoked_ms=entry.revoked_ms,
            revoked=entry.revoked_ms is not None,
        )


class RegistryPut(BaseModel):
    outcome: Outcome = Field(description="created (201), updated or unchanged (200)")
    entry: RegistryOut


class RegistryPage(BaseModel):
    entries: list[RegistryOut] = Field(description="by cabinet id")


class CredentialsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    replace: bool = Field(
        default=False,
        description="issue new ones although central holds some: the cabinet's current password stops"
        " working. Without it, a cabinet that has credentials gets 409.",
    )


class CredentialsOut(BaseModel):
    cabinet: str
    username: str = Field(description="the broker username, which is also the MQTT client id")
    password: str = Field(description="shown only in this answer: central keeps its hash")
    replaced: bool = Field(description="older credentials existed and no longer work")


class RevokeOut(BaseModel):
    cabinet: str
    outcome: Literal["revoked", "already revoked"]
    entry: RegistryOut
