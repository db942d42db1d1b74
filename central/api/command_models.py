"""Request and response bodies of /commands and /groups.

Identifiers are checked with the fleet protocol's own rules, so that central never stores a command
that could not be put on the wire.

A posted command is documented as a union discriminated by its action: one schema per action
(``DimCommandIn``...), each with exactly the args that action takes, their types, ranges and
descriptions, made from the fleet protocol's own table (``protocols.fleet.commands``): an action
added there is documented here with no change. ``CommandIn`` validates every action alike, and its
args are checked by the protocol's rules when the command is submitted (``central.command_args``),
so that each wrong field is named the same way whatever the action.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from central.command_args import ARGS_NOT_SHOWN
from central.store.rows import CommandStatus
from central.times import to_ms
from protocols.fleet.commands import ACTIONS, Action, posted_args_schema
from protocols.fleet.limits import is_valid_name
from protocols.fleet.topics import is_valid_cabinet_id

MAX_GROUP_MEMBERS = 10_000


def _cabinet_id(value: str) -> str:
    if not is_valid_cabinet_id(value):
        raise ValueError(
            "a cabinet id is 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return value


def _name_of(what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not is_valid_name(value):
            raise ValueError(f"{what} is 1-64 letters, digits, '_', '-' or '.'")
        return value

    return check


def _time(name: str) -> Callable[[object], int | None]:
    def parse(value: object) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"{name} must be milliseconds since 1970-01-01 UTC or ISO 8601 text")
        return to_ms(name, value)

    return parse


CabinetId = Annotated[str, AfterValidator(_cabinet_id)]
DeviceName = Annotated[str, AfterValidator(_name_of("a device name"))]
GroupName = Annotated[str, AfterValidator(_name_of("a group name"))]
_ARGS_SCHEMA = {**posted_args_schema(), "default": {}}
_TIME_SCHEMA = WithJsonSchema(
    {"anyOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}, {"type": "null"}]}
)


class TargetIn(BaseModel):
    """Either one cabinet (optionally one of its devices), or a group."""

    model_config = ConfigDict(extra="forbid")
    cabinet: CabinetId | None = None
    device: DeviceName | None = None
    group: GroupName | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.cabinet is None) == (self.group is None):
            raise ValueError('give either "cabinet" (with an optional "device") or "group", not both')
        if self.group is not None and self.device is not None:
            raise ValueError('"device" goes with "cabinet"; a group names the devices of its members')
        return self


_NOT_AFTER = "ms since 1970 UTC or ISO 8601; default now + 5 min; at most 7 days ahead"


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: TargetIn
    action: Action
    args: Annotated[dict[str, Any], WithJsonSchema(_ARGS_SCHEMA)] = Field(
        default={},
        description="depends on the action (each action's schema says what it takes); checked as the"
        " cabinet checks them",
    )
    not_after: Annotated[int | None, BeforeValidator(_time("not_after")), _TIME_SCHEMA] = Field(
        default=None, description=_NOT_AFTER
    )
    # Who issued a command is the name of the token that sent it: a body that says otherwise is
    # refused (422), so that nobody acts under another's name, nor believes they can.
    issued_by: SkipJsonSchema[None] = None

    @field_validator("issued_by", mode="before")
    @classmethod
    def _not_from_the_body(cls, value: object) -> None:
        raise ValueError(
            "issued_by is the name of the API token that sends the command: leave it out of the body"
        )


def action_args_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each action's args, from the fleet protocol's table; an action it has no
    schema for is documented as an object without detail (a test says so)."""
    shapes = posted_args_schema()["anyOf"]
    by_title: Mapping[object, dict[str, Any]] = {shape.get("title"): shape for shape in shapes}
    schemas = {action: by_title.get(f"{action} args", {"type": "object"}) for action in ACTIONS}
    for action, schema in schemas.items():
        if "description" in schema:  # a docstring: one line, without its indents
            schemas[action] = {**schema, "description": " ".join(str(schema["description"]).split())}
    return schemas


def document_actions(openapi: dict[str, Any]) -> None:
    """Add to an OpenAPI document one schema per action (``DimCommandIn``...): ``CommandIn``'s fields
    with ``action`` fixed and exactly that action's args, and make ``CommandIn`` one of them,
    discriminated by ``action``."""
    schemas: dict[str, Any] = openapi["components"]["schemas"]
    base: dict[str, Any] = schemas[CommandIn.__name__]
    if "discriminator" in base:
        return  # documented already
    mapping: dict[str, str] = {}
    for action, args in action_args_schemas().items():
        name = "".join(word.capitalize() for word in action.split("_")) + "CommandIn"
        takes = bool(args.get("required"))
        action_args = args if takes else {**args, "default": {}}
        properties = {
            **base["properties"],
            "action": {"type": "string", "const": action},
            "args": action_args,
        }
        schemas[name] = {
            **{key: value for key, value in base.items() if key not in ("title", "description")},
            "title": f"{action} command",
            "properties": properties,
            "required": [*base["required"], *(["args"] if takes else [])],
        }
        if "description" in args:  # the protocol's words for what the action does
            schemas[name]["description"] = args["description"]
        mapping[action] = f"#/components/schemas/{name}"
    base["oneOf"] = [{"$ref": ref} for ref in mapping.values()]
    base["discriminator"] = {"propertyName": "action", "mapping": mapping}


_ARGS_OUT = (
    "as sent; stored args that cannot be shown (damaged, or a schedule stored before its depth was"
    f' bounded) read as {{"{ARGS_NOT_SHOWN}": why}}'
)


class TargetOut(BaseModel):
    cabinet: str | None = None
    device: str | None = None
    group: str | None = None


class CommandOut(BaseModel):
    kind: Literal["cabinet"] = "cabinet"
    id: str
    parent_id: str | None = Field(description="the group command this one was fanned out of")
    target: TargetOut
    action: str
    args: dict[str, Any] = Field(description=_ARGS_OUT)
    not_after_ms: int
    issued_by: str
    status: CommandStatus
    created_ms: int
    delivered_ms: int | None = Field(description="when the cabinet accepted it (cabinet's clock)")
    finished_ms: int | None = Field(description="when it reached its final status")
    reason: str | None = Field(description="why it failed, was rejected or expired")
    finished_by: Literal["cabinet", "central"] | None = Field(
        description="central marks a command expired when no answer came before not_after"
    )


class GroupCommandOut(BaseModel):
    kind: Literal["group"] = "group"
    id: str
    target: TargetOut
    action: str
    args: dict[str, Any] = Field(description=_ARGS_OUT)
    not_after_ms: int
    issued_by: str
    created_ms: int
    status: Literal["open", "done"] = Field(description="done once every child is in a final status")
    summary: dict[str, int] = Field(description="number of children in each status")
    children: list[CommandOut]


class CommandsPage(BaseModel):
    commands: list[CommandOut] = Field(description="newest first")


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cabinet: CabinetId
    device: DeviceName | None = None


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    members: Annotated[list[MemberIn], Field(min_length=1, max_length=MAX_GROUP_MEMBERS)]

    @field_validator("members")
    @classmethod
    def _no_repeats(cls, members: list[MemberIn]) -> list[MemberIn]:
        seen: dict[tuple[str, str | None], int] = {}
        for i, member in enumerate(members):
            key = (member.cabinet, member.device)
            if key in seen:
                raise ValueError(f"members[{i}] repeats members[{seen[key]}]; list each member once")
            seen[key] = i
        return members


class MemberOut(BaseModel):
    cabinet: str
    device: str | None


class GroupOut(BaseModel):
    name: str
    members: list[MemberOut]
    updated_ms: int


class GroupsPage(BaseModel):
    groups: list[GroupOut]
