"""What each action takes, checked at central so that an operator's mistake is a 422 naming the field.

    switch          {"on": bool, "until": ISO 8601 | ms (optional)}
    dim             {"level_pct": int 0..100, "until": ISO 8601 | ms (optional)}
    set_schedule    {"schedule": {...a JSON object, at most 16 levels deep...}}
    clear_override  {}

The agent executes commands and checks them again: it knows its devices, and it validates a schedule
fully (central only checks that it is a JSON object of bounded depth: a real schedule is 3 deep, and one
hundreds deep could be stored but not sent back as JSON). What goes on the wire is normalised: fleet
args are scalars, so the schedule travels as a JSON string, and ``until`` as milliseconds since 1970 UTC.

Reading stored args back (``operator_args``) never fails: args that cannot be shown (stored before the
depth bound, or damaged) read as ``{"not_shown": "why"}``, so that one row never breaks a listing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from central.errors import FieldError, InvalidRequest
from central.times import to_ms
from protocols.fleet.messages import Scalar

Action = Literal["switch", "dim", "set_schedule", "clear_override"]
ACTIONS: tuple[str, ...] = get_args(Action)

# Levels of objects and lists within one another, the schedule itself being 1 ({"dimming": [{}]} is 3).
MAX_SCHEDULE_DEPTH = 16
# The one key of the args shown for a stored command whose args cannot be (its value says why).
ARGS_NOT_SHOWN = "not_shown"

_json = msgspec.json.Encoder()
_decode_args = msgspec.json.Decoder(dict[str, Any])


def deeper_than(value: object, limit: int) -> bool:
    """Whether ``value`` has objects or lists nested more than ``limit`` levels: a loop, not recursion."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(limit):
        children: list[object] = []
        for container in level:
            children.extend(container.values() if isinstance(container, dict) else container)
        level = [child for child in children if isinstance(child, dict | list)]
        if not level:
            return False
    return bool(level)


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

    @field_validator("schedule")
    @classmethod
    def _not_too_deep(cls, schedule: dict[str, Any]) -> dict[str, Any]:
        if deeper_than(schedule, MAX_SCHEDULE_DEPTH):
            raise PydanticCustomError(
                "too_deep",
                "the schedule has objects and lists nested more than {max_depth} levels deep: a lighting"
                " schedule needs 3 (see the API docs for its shape)",
                {"max_depth": MAX_SCHEDULE_DEPTH},
            )
        return schedule


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
    """The stored wire args as an operator wrote them: the schedule back to a JSON object.

    Args that cannot be shown (not a JSON object, or nested deeper than a schedule may be) are
    ``{"not_shown": why}``: never an error, so that a listing always answers.
    """
    try:
        args = _decode_args.decode(args_json)
        schedule = args.get("schedule")
        if action == "set_schedule" and isinstance(schedule, str):
            args["schedule"] = _decode_args.decode(schedule)
    except (msgspec.DecodeError, RecursionError):
        return {ARGS_NOT_SHOWN: "the stored args are not a JSON object (or hold a schedule that is not)"}
    if deeper_than(args, MAX_SCHEDULE_DEPTH + 1):
        return {
            ARGS_NOT_SHOWN: f"the stored args are nested more than {MAX_SCHEDULE_DEPTH + 1} levels deep,"
            f" too deep to send back (stored before a schedule was limited to {MAX_SCHEDULE_DEPTH})"
        }
    return args
