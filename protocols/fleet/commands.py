"""Command actions and what each takes: one definition, checked by central when an operator posts a
command (a 422 naming the field) and by the agent when it receives one (rejected with the same words).

    switch          {"on": bool, "until": time (optional)}           on is 100 %; a level is dim's
    dim             {"level_pct": int 0..100, "until": time (optional)}
    set_schedule    {"schedule": a lighting schedule (protocols.fleet.schedule)}
    clear_override  {}
    set_config      {"config": TOML text, "sha256": its SHA-256 (hex), "confirm_within_s": int (optional)}

A time is milliseconds since 1970 UTC, or ISO 8601 text (without an offset: UTC). The two forms of the
args differ only in how the schedule travels: an operator posts it as a JSON object (``parse_posted``);
on the wire, where a command's args are scalars, it is one JSON text (``parse_wire``), and ``to_wire``
writes that text from the validated schedule, so a cabinet runs exactly what central checked.

``set_config`` carries a whole agent config. What both sides can judge without the agent's own loader is
checked here: the text is TOML, its SHA-256 is the one given (a config damaged on the way is never
applied), and it holds no secret in plain text (the text is stored at central and shown to the admins
who read commands: passwords stay in their files on the cabinet, which ``password_file`` names). The
agent then checks it with its own loader (``edge_agent.remote_config``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tomllib
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

import msgspec

from protocols.fleet.errors import FleetError
from protocols.fleet.json_schema import inline_schema
from protocols.fleet.limits import MAX_COMMAND_BYTES, MAX_SCHEDULE_DEPTH
from protocols.fleet.messages import Scalar
from protocols.fleet.problems import Problem, brief, problem_of
from protocols.fleet.schedule import (
    LightingSchedule,
    ScheduleError,
    parse_schedule,
    schedule_json,
    schedule_json_schema,
)

Action = Literal["switch", "dim", "set_schedule", "clear_override", "set_config"]
ACTIONS: tuple[str, ...] = get_args(Action)

# How a schedule nested past MAX_SCHEDULE_DEPTH is refused, before it is read as a schedule.
SCHEDULE_TOO_DEEP = f"the schedule has objects and lists nested more than {MAX_SCHEDULE_DEPTH} levels deep"
_MAX_MS = 2**53
_DIGITS = re.compile(r"[0-9]{1,16}")
_TIME_EXPECTED = "expected milliseconds since 1970-01-01 UTC or ISO 8601 text"
# How long a cabinet tries a new config before it returns to its previous one on its own.
DEFAULT_CONFIRM_WITHIN_S = 120
MIN_CONFIRM_WITHIN_S = 2
MAX_CONFIRM_WITHIN_S = 3600
# Tables and arrays within one another: an agent config needs 4 (devices[0].alarms.rules...).
MAX_CONFIG_DEPTH = 16
# tomllib takes quadratic time over the parts of one dotted key (16 KiB of a.a.a...=1: seconds), and
# a config nests MAX_CONFIG_DEPTH levels at most: a line with more dots than this is refused unparsed.
MAX_DOTS_PER_LINE = 256
# A user and password written into a URL (scheme://user:password@host).
_URL_PASSWORD = re.compile(r"://[^/@\s]*:[^/@\s]*@")


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


class SetConfigArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A whole agent config (TOML, UTF-8), bounded by the command's size (MAX_COMMAND_BYTES, checked
    on the whole command by the sender), with the SHA-256 of its bytes."""

    config: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_COMMAND_BYTES)]
    sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
    confirm_within_s: Annotated[int, msgspec.Meta(ge=MIN_CONFIRM_WITHIN_S, le=MAX_CONFIRM_WITHIN_S)] = (
        DEFAULT_CONFIRM_WITHIN_S
    )


ActionArgs = SwitchArgs | DimArgs | SetScheduleArgs | ClearOverrideArgs | SetConfigArgs
_MODELS: dict[str, type[SwitchArgs | DimArgs | ClearOverrideArgs | SetConfigArgs]] = {
    "switch": SwitchArgs,
    "dim": DimArgs,
    "clear_override": ClearOverrideArgs,
    "set_config": SetConfigArgs,
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
        parsed = msgspec.convert(args, model, dec_hook=_decode_custom)
    except msgspec.ValidationError as exc:
        raise CommandArgsError(action, [_args_problem(exc, args, model)]) from exc
    if isinstance(parsed, SetConfigArgs):
        problem = config_problem(parsed)
        if problem is not None:
            raise CommandArgsError(action, [problem])
    return parsed


def config_problem(args: SetConfigArgs) -> Problem | None:
    """What is wrong with a config sent to a cabinet that the fleet contract can tell, or None."""
    try:
        data = args.config.encode()
    except UnicodeEncodeError:
        return "config", "not UTF-8 text (it holds a lone surrogate)"
    digest = hashlib.sha256(data).hexdigest()
    if digest != args.sha256:
        return "sha256", f"is not the SHA-256 of config (that is {digest}): the text was changed on the way"
    for number, line in enumerate(args.config.split("\n"), start=1):
        if line.count(".") > MAX_DOTS_PER_LINE and not line.lstrip().startswith("#"):
            return "config", (
                f"line {number} has more than {MAX_DOTS_PER_LINE} dots: no key of an agent config has"
                " that many parts"
            )
    try:
        document = tomllib.loads(args.config)
    except tomllib.TOMLDecodeError as exc:
        return "config", f"not valid TOML: {exc}"
    except RecursionError:
        document = None
    if document is None or deeper_than(document, MAX_CONFIG_DEPTH):
        return "config", f"has tables and arrays nested more than {MAX_CONFIG_DEPTH} levels deep"
    secret = _plain_secret(document, "")
    if secret is not None:
        return "config", (
            f"{secret} holds a secret in plain text, and a command is stored and shown at central: put it"
            " in a file on the cabinet and name that file (password_file)"
        )
    return None


def config_cabinet(args: SetConfigArgs) -> str | None:
    """The cabinet id a config sent to a cabinet names (``[cabinet] id``), if it names one."""
    try:
        cabinet = tomllib.loads(args.config).get("cabinet")
    except (tomllib.TOMLDecodeError, RecursionError):
        return None
    found = cabinet.get("id") if isinstance(cabinet, dict) else None
    return found if isinstance(found, str) else None


def _plain_secret(node: object, where: str) -> str | None:
    """The key of the first password written in the document (a key named like one, or a URL's)."""
    if isinstance(node, dict):
        for key, value in node.items():
            inner = f"{where}.{key}" if where else str(key)
            if "password" in str(key).lower() and not str(key).lower().endswith("_file"):
                return inner
            found = _plain_secret(value, inner)
            if found is not None:
                return found
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found = _plain_secret(item, f"{where}[{index}]")
            if found is not None:
                return found
    elif isinstance(node, str) and _URL_PASSWORD.search(node):
        return f"{where} (a password in a URL)"
    return None


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
