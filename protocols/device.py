"""What every configured device has, whatever its protocol, and what a driver's builder is given.

Each protocol package subclasses ``DeviceConfig`` with its own fields, tagged with its driver name
(``driver = "opcua"`` in the cabinet's TOML picks ``protocols.opcua.config.OpcuaDevice``); the agent's
``devices`` list is validated against the union of the registered models (``protocols.registry``).
These models are msgspec structs, not pydantic models: the agent loads them once at start on a
Raspberry Pi, and msgspec costs a fraction of pydantic's memory and start time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import msgspec

from protocols.driver import FieldDriver

DEVICE_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
DeviceName = Annotated[str, msgspec.Meta(pattern=DEVICE_NAME_PATTERN)]


class AlarmSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """When a device's alarms are raised and cleared: each once, with hysteresis.

    ``raise_after``/``clear_after`` count consecutive polls (or pushed values); they also decide
    ``device_lost``/``device_back``. The thresholds are the lighting alarms' (``edge_agent.alarms``);
    a point's own ``AlarmRule`` (declared by its profile) brings its own limits.
    """

    raise_after: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    clear_after: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    day_power_max_w: Annotated[float, msgspec.Meta(ge=0)] = 20.0  # above this in daytime: lit by day
    night_power_min_w: Annotated[float, msgspec.Meta(ge=0)] = 10.0  # below this while lit: dark at night
    power_max_w: Annotated[float, msgspec.Meta(gt=0)] | None = None
    current_max_a: Annotated[float, msgspec.Meta(gt=0)] | None = None
    hysteresis_pct: Annotated[float, msgspec.Meta(ge=0, le=50)] = 10.0


class DeviceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="driver"):
    """The fields every device has. Subclasses add their protocol's and set ``tag=<driver name>``."""

    name: DeviceName
    poll_interval_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 5.0
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 1.0
    alarms: AlarmSettings = AlarmSettings()

    @property
    def driver(self) -> str:
        """The driver name this model is registered under (its msgspec tag)."""
        tag = self.__struct_config__.tag
        return tag if isinstance(tag, str) else ""

    @property
    def profile_name(self) -> str | None:
        """The profile this device is read with, when its protocol has profiles."""
        profile = getattr(self, "profile", None)
        return profile if isinstance(profile, str) else None


@dataclass
class BuildContext:
    """What a builder may use besides the device's own config. Builders do no I/O on the device.

    ``config_dir``: files named in the config (certificates, password files) are relative to it.
    ``profile_dirs``: the profile search path, first match wins. ``shared``: objects the devices of
    one protocol share, keyed by that protocol (Modbus RTU devices on one serial port share its line).
    ``now_ms``: the cabinet's clock (a camera's drift is measured against it).
    """

    config_dir: Path
    profile_dirs: list[Path]
    now_ms: Callable[[], int]
    shared: dict[str, Any] = field(default_factory=dict)


Builder = Callable[[Any, BuildContext], FieldDriver]


class BuildError(ValueError):
    """A device's config that its builder refuses (two devices with one serial port set two ways).

    ``field`` is the device's key at fault; the agent reports ``devices[<index>].<field>: <problem>``.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def field_problem(field: str, problem: str) -> ValueError:
    """The error a model's ``__post_init__`` raises for one of its fields: msgspec keeps only its
    message, so the field leads it (``address: expected host:port``) and the agent reads it back."""
    return ValueError(f"{field}: {problem}")
