"""What each action takes, checked at central so that an operator's mistake is a 422 naming the field.

    switch          {"on": bool, "until": ISO 8601 | ms (optional)}
    dim             {"level_pct": int 0..100, "until": ISO 8601 | ms (optional)}
    set_schedule    {"schedule": {...a JSON object...}}
    clear_override  {}

The agent executes commands and checks them again: it knows its devices, and it validates a schedule
fully (central only checks that it is a JSON object). What goes on the wire is normalised: fleet args
are scalars, so the schedule travels as a JSON string, and ``until`` as milliseconds since 1970 UTC.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from central.errors import FieldError, InvalidRequest
from central.times import to_ms
from protocols.fleet.messages import Scalar

Action = Literal["switch", "dim", "set_schedule", "clear_override"]
ACTIONS: tuple[str, ...] = get_args(Action)

_json = msgspec.json.Encoder()
_decode_args = msgspec.json.Decoder(dict[str, Any])


def _until(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("until must be milliseconds since 1970-01-01 UTC or ISO 8601 text")
    return to_ms("until", value)


Until = Annotated[int | None, BeforeValidator(_until)]


class _Args(BaseModel):
    # strict: "on": "yes" or "level_pct": 50.5 is a mistake to report, not a value to coerce.
    model_config = ConfigDict(extra="forbid", strict=True)


class SwitchArgs(_Args):
    on: bool
    until: Until = None


class DimArgs(_Args):
    level_pct: Annotated[int, Field(ge=0, le=100)]
    until: Until = None


class SetScheduleArgs(_Args):
    schedule: dict[str, Any]


class ClearOverrideArgs(_Args):
    pass


_MODELS: dict[str, type[_Args]] = {
    "switch": SwitchArgs,
    "dim": DimArgs,
    "set_schedule": SetScheduleArgs,
    "clear_override": ClearOverrideArgs,
}


def wire_args(action: str, args: dict[str, Any], *, now_ms: int) -> dict[str, Scalar]:
    """The args to send for ``action``, or InvalidRequest naming each wrong field under body.args."""
    try:
        parsed = _MODELS[action].model_validate(args)
    except ValidationError as exc:
        raise InvalidRequest(
            [
                FieldError(type=e["type"], loc=("body", "args", *e["loc"]), msg=e["msg"], input=e["input"])
                for e in exc.errors(include_url=False)
            ]
        ) from exc
    wire: dict[str, Scalar] = {}
    for name, value in parsed.model_dump(exclude_none=True).items():
        wire[name] = _json.encode(value).decode() if name == "schedule" else value
    until = wire.get("until")
    if isinstance(until, int) and until <= now_ms:
        raise InvalidRequest.field(
            ("body", "args", "until"),
            "until is in the past: give a later time, or leave it out for an override without end",
            args.get("until"),
        )
    return wire


def operator_args(action: str, args_json: str) -> dict[str, Any]:
    """The stored wire args as an operator wrote them: the schedule back to a JSON object."""
    args = _decode_args.decode(args_json)
    schedule = args.get("schedule")
    if action == "set_schedule" and isinstance(schedule, str):
        args["schedule"] = _decode_args.decode(schedule)
    return args
