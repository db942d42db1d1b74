"""Command actions and what each takes: one definition, checked by central when an operator posts a
command (a 422 naming the field) and by the agent when it receives one (rejected with the same words).

    switch          {"on": bool, "until": time (optional)}           on is 100 %; a level is dim's
    dim             {"level_pct": int 0..100, "until": time (optional)}
    set_schedule    {"schedule": a lighting schedule (protocols.fleet.schedule)}
    clear_override  {}

A time is milliseconds since 1970 UTC, or ISO 8601 text (without an offset: UTC). The two forms of the
args differ only in how the schedule travels: an operator posts it as a JSON object (``parse_posted``);
on the wire, where a command's args are scalars, it is one JSON text (``parse_wire``), and ``to_wire``
writes that text from the validated schedule, so a cabinet runs exactly what central checked.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

import msgspec

from protocols.fleet.errors import FleetError
from protocols.fleet.json_schema import inline_schema
from protocols.fleet.limits import MAX_SCHEDULE_DEPTH
from protocols.fleet.messages import Scalar
from protocols.fleet.problems import Problem, brief, problem_of
from protocols.fleet.schedule import (
    LightingSchedule,
    ScheduleError,
    parse_schedule,
    schedule_json,
    schedule_json_schema,
)

Action = Literal["switch", "dim", "set_schedule", "clear_override"]
ACTIONS: tuple[str, ...] = get_args(Action)

# How a schedule nested past MAX_SCHEDULE_DEPTH is refused, before it is read as a schedule.
SCHEDULE_TOO_DEEP = f"the schedule has objects and lists nested more than {MAX_SCHEDULE_DEPTH} levels deep"
_MAX_MS = 2**53
_DIGITS = re.compile(r"[0-9]{1,16}")
_TIME_EXPECTED = "expected milliseconds since 1970-01-01 UTC or ISO 8601 text"


class CommandArgsError(FleetError):
    """``problems`` holds ``(field, problem)`` pairs, fields within the args (``schedule.dimming[0]``)."""

    reason = "invalid_args"

    def __init__(self, action: str, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.action = action
        self.problems = tuple(problems)
        super().__init__(f"invalid args for {action}: " + "; ".join(f"{f}: {m}" for f, m in self.problems))


class UntilMs(int):
    """The end of an override, as milliseconds since 1970 UTC."""

    @classmethod
    def parse(cls, value: object) -> UntilMs:
        if isinstance(value, int) and not isinstance(value, bool):
            ms = value
        elif isinstance(value, str):
            ms = _text_ms(value)
        else:
            raise ValueError(f"{_TIME_EXPECTED}, got {brief(value)}")
        if not 0 <= ms <= _MAX_MS:
            raise ValueError(
                f"expected a time after 1970 and before 2**53 ms (milliseconds, not microseconds?), got {ms}"
            )
        return cls(ms)


def _text_ms(text: str) -> int:
    if _DIGITS.fullmatch(text.strip()):
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{_TIME_EXPECTED}, got {brief(text)}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


class SwitchArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Switch the lights on (100 %) or off over the schedule, until the time given or until cleared."""

    on: Annotated[bool, msgspec.Meta(description="true: on at 100 %; false: off")]
    until: UntilMs | None = None


class DimArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Set the lights' level over the schedule, until the time given or until cleared."""

    level_pct: Annotated[int, msgspec.Meta(ge=0, le=100, description="the level, 0 (off) to 100 %")]
    until: UntilMs | None = None


class SetScheduleArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    schedule: LightingSchedule


class ClearOverrideArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


ActionArgs = SwitchArgs | DimArgs | SetScheduleArgs | ClearOverrideArgs
_MODELS: dict[str, type[SwitchArgs | DimArgs | ClearOverrideArgs]] = {
    "switch": SwitchArgs,
    "dim": DimArgs,
    "clear_override": ClearOverrideArgs,
}

_ACTION_OF: dict[type[msgspec.Struct], str] = {model: action for action, model in _MODELS.items()}


def parse_posted(action: str, args: Mapping[str, object]) -> ActionArgs:
    """The args of ``action`` as an operator posts them (the schedule a JSON object)."""
    return _parse(action, args, schedule_as_text=False)


def parse_wire(action: str, args: Mapping[str, Scalar]) -> ActionArgs:
    """The args of ``action`` as a command carries them (the schedule one JSON text)."""
    return _parse(action, args, schedule_as_text=True)


def to_wire(args: ActionArgs) -> dict[str, Scalar]:
    """The scalar args a command carries (its size is judged with the whole command, by the sender)."""
    if isinstance(args, SetScheduleArgs):
        return {"schedule": schedule_json(args.schedule).decode()}
    wire: dict[str, Scalar] = {}
    for name in args.__struct_fields__:
        value = getattr(args, name)
        if value is not None:
            wire[name] = int(value) if isinstance(value, UntilMs) else value
    return wire


def posted_args_schema() -> dict[str, Any]:
    """The JSON Schema of a posted command's args: one of the actions' (the action says which)."""
    shapes = [inline_schema(model, schema_hook=_schema_of) for model in _MODELS.values()]
    schedule = {
        "type": "object",
        "properties": {"schedule": schedule_json_schema()},
        "required": ["schedule"],
        "additionalProperties": False,
    }
    titled = [{**shape, "title": f"{action} args"} for action, shape in zip(_MODELS, shapes, strict=True)]
    return {"anyOf": [*titled, {**schedule, "title": "set_schedule args"}]}


def _schema_of(kind: type) -> dict[str, Any]:
    if kind is UntilMs:
        return {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": _MAX_MS},
                {"type": "string", "format": "date-time"},
            ],
            "description": "milliseconds since 1970 UTC, or ISO 8601 (without an offset: UTC)",
        }
    raise NotImplementedError(f"no schema for {kind!r}")


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


def _parse(action: str, args: Mapping[str, object], *, schedule_as_text: bool) -> ActionArgs:
    if action == "set_schedule":
        return _parse_set_schedule(args, schedule_as_text=schedule_as_text)
    model = _MODELS.get(action)
    if model is None:
        raise CommandArgsError(
            action, [("action", f"unknown action {action!r}: expected {' or '.join(ACTIONS)}")]
        )
    try:
        return msgspec.convert(args, model, dec_hook=_decode_custom)
    except msgspec.ValidationError as exc:
        raise CommandArgsError(action, [_args_problem(exc, args, model)]) from exc


def _parse_set_schedule(args: Mapping[str, object], *, schedule_as_text: bool) -> SetScheduleArgs:
    problems: list[Problem] = [(str(key), "unknown key") for key in args if key != "schedule"]
    if "schedule" not in args:
        problems.append(("schedule", "required"))
        raise CommandArgsError("set_schedule", problems)
    raw = args["schedule"]
    document: str | dict[str, object] | None = None
    if (schedule_as_text and isinstance(raw, str)) or (not schedule_as_text and isinstance(raw, dict)):
        document = raw
    if document is None:
        shape = "the schedule as one JSON text" if schedule_as_text else "a JSON object (the schedule)"
        problems.append(("schedule", f"expected {shape}, got {type(raw).__name__}"))
    elif deeper_than(document, MAX_SCHEDULE_DEPTH):
        problems.append(("schedule", f"{SCHEDULE_TOO_DEEP}: a lighting schedule needs 3"))
    if problems or document is None:
        raise CommandArgsError("set_schedule", problems)
    try:
        schedule = parse_schedule(document)
    except ScheduleError as exc:
        raise CommandArgsError(
            "set_schedule", [(_within("schedule", field), problem) for field, problem in exc.problems]
        ) from exc
    return SetScheduleArgs(schedule=schedule)


def _within(parent: str, field: str) -> str:
    if field == "schedule":  # the whole document, e.g. not JSON
        return parent
    return f"{parent}.{field}" if not field.startswith("[") else parent + field


def _args_problem(
    exc: msgspec.ValidationError, args: Mapping[str, object], model: type[msgspec.Struct]
) -> Problem:
    field, problem = problem_of(exc, "", dict(args), model)
    if problem == "unknown key":  # e.g. a level given to switch: say what it takes, and who takes that
        takes = ", ".join(model.__struct_fields__) or "no args"
        problem = f"unknown key: {_ACTION_OF[model]} takes {takes}"
        owners = [action for action, other in _MODELS.items() if field in other.__struct_fields__]
        if owners:
            problem += f" ({field} is for {' or '.join(owners)})"
    return field or "args", problem


def _decode_custom(kind: type, value: Any) -> object:
    if kind is UntilMs:
        return UntilMs.parse(value)
    raise NotImplementedError(f"no decoder for {kind!r}")
