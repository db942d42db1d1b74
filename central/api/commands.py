"""/commands and /groups: operators send commands to cabinets, one by one or by group.

The handlers are thin: ``central.commands.CommandService`` checks, stores and hands over for sending;
its errors become 404 and 422 in ``central.api.errors`` (``UnknownTarget``, ``InvalidRequest``).

Reads need a viewer's token (the router's), writes an operator's, and a config (set_config) an admin's
(the command service says which actions need more: 403). Who issued a command is the name
of the token that sent it, never something the body says. A set_config's text names the cabinet's
devices (addresses, accounts, password files): only an admin reads it; anyone else, and the live
stream (encoded once for every listener), gets its hash.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Request, Response, Security

from central.api import command_models as m
from central.api.audit import summarize
from central.api.auth import Operator, Viewer, require_operator
from central.api.deps import CommandsDep, StoreDep
from central.api.json_route import StrictJsonRoute
from central.api.models import ErrorBody
from central.auth import Identity
from central.command_args import operator_args
from central.commands import GroupCommand, NotPermitted
from central.errors import UnknownTarget
from central.store.auth_rows import Role
from central.store.rows import CommandRow, CommandStatus, GroupMember, GroupRow

MAX_COMMANDS_LIMIT = 10_000

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown cabinet, device, group or command"},
}
_POST_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    403: {"model": ErrorBody, "description": "the token's role is too small for this route or action"},
}
GroupNamePath = Annotated[m.GroupName, Path(description="1-64 letters, digits, '_', '-' or '.'")]
CONFIG_WITHHELD = "withheld: only an admin's token reads a config's text (GET /api/v1/commands/{id})"


def _args_out(action: str, args: dict[str, Any], config_text: bool) -> dict[str, Any]:
    if action == "set_config" and "config" in args and not config_text:
        return {**args, "config": CONFIG_WITHHELD}
    return args


def _reads_config(identity: Identity) -> bool:
    return identity.role.allows(Role.ADMIN)


def command_out(row: CommandRow, *, config_text: bool = False) -> m.CommandOut:
    return m.CommandOut(
        id=row.id,
        parent_id=row.parent_id,
        target=m.TargetOut(cabinet=row.cabinet, device=row.device),
        action=row.action,
        args=_args_out(row.action, operator_args(row.action, row.args, row.args_unreadable), config_text),
        not_after_ms=row.not_after_ms,
        issued_by=row.issued_by,
        status=row.status,
        created_ms=row.created_ms,
        delivered_ms=row.delivered_ms,
        finished_ms=row.finished_ms,
        reason=row.reason,
        finished_by=row.finished_by,
    )


def group_command_out(command: GroupCommand, *, config_text: bool = False) -> m.GroupCommandOut:
    row = command.row
    return m.GroupCommandOut(
        id=row.id,
        target=m.TargetOut(group=row.group),
        action=row.action,
        args=_args_out(row.action, operator_args(row.action, row.args, row.args_unreadable), config_text),
        not_after_ms=row.not_after_ms,
        issued_by=row.issued_by,
        created_ms=row.created_ms,
        status="done" if command.done else "open",
        summary=command.summary,
        children=[command_out(child, config_text=config_text) for child in command.children],
    )


def _out(result: CommandRow | GroupCommand, identity: Identity) -> m.CommandOut | m.GroupCommandOut:
    text = _reads_config(identity)
    if isinstance(result, GroupCommand):
        return group_command_out(result, config_text=text)
    return command_out(result, config_text=text)


def group_out(row: GroupRow) -> m.GroupOut:
    return m.GroupOut(
        name=row.name,
        members=[m.MemberOut(cabinet=x.cabinet, device=x.device) for x in row.members],
        updated_ms=row.updated_ms,
    )


def _unknown_group(name: str) -> UnknownTarget:
    return UnknownTarget("group", name, "is unknown", "GET /api/v1/groups lists the groups")


def _target(body: m.CommandIn) -> str:
    t = body.target
    if t.group is not None:
        return f"group {t.group}"
    return f"cabinet {t.cabinet}" + (f" device {t.device}" if t.device is not None else "")


router = APIRouter(tags=["commands"], route_class=StrictJsonRoute)


def install(app: FastAPI) -> None:
    """Describe each action's args in ``app``'s OpenAPI document (``command_models.document_actions``)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()  # made once, then cached by FastAPI: documented once
        m.document_actions(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it


@router.post(
    "/commands",
    status_code=201,
    response_model=m.CommandOut | m.GroupCommandOut,
    responses=_POST_ERRORS,
    summary="Send a command to a cabinet, one of its devices, or a group",
)
async def post_command(
    body: m.CommandIn, request: Request, identity: Operator, service: CommandsDep
) -> m.CommandOut | m.GroupCommandOut:
    target = body.target
    summarize(request, f"{body.action} to {_target(body)}")
    try:
        result = await service.submit(
            cabinet=target.cabinet,
            device=target.device,
            group=target.group,
            action=body.action,
            args=body.args,
            not_after=body.not_after,
            issued_by=identity,
        )
    except NotPermitted as exc:
        raise HTTPException(
            403, str(exc), headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'}
        ) from exc
    out = _out(result, identity)
    summarize(request, f"command {out.id}: {body.action} to {_target(body)}")
    return out


@router.get("/commands/{command_id}", response_model=m.CommandOut | m.GroupCommandOut, responses=_ERRORS)
async def get_command(
    command_id: str, service: CommandsDep, identity: Viewer
) -> m.CommandOut | m.GroupCommandOut:
    return _out(await service.get(command_id), identity)


@router.get("/commands", response_model=m.CommandsPage)
async def list_commands(
    cabinet: Annotated[str | None, Query(description="only this cabinet")] = None,
    status: Annotated[CommandStatus | None, Query(description="only this status")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_COMMANDS_LIMIT)] = 100,
    *,
    store: StoreDep,
    identity: Viewer,
) -> m.CommandsPage:
    rows = await store.commands(cabinet=cabinet, status=status, limit=limit)
    text = _reads_config(identity)
    return m.CommandsPage(commands=[command_out(row, config_text=text) for row in rows])


@router.put(
    "/groups/{name}",
    response_model=m.GroupOut,
    responses={**_ERRORS, 201: {"model": m.GroupOut, "description": "created"}},
    summary="Create or replace a group",
    dependencies=[Security(require_operator)],
)
async def put_group(
    name: GroupNamePath, body: m.GroupIn, response: Response, request: Request, service: CommandsDep
) -> m.GroupOut:
    summarize(request, f"group {name}: {len(body.members)} members")
    members = [GroupMember(cabinet=x.cabinet, device=x.device) for x in body.members]
    row, created = await service.put_group(name, members)
    response.status_code = 201 if created else 200
    return group_out(row)


@router.get("/groups", response_model=m.GroupsPage)
async def list_groups(store: StoreDep) -> m.GroupsPage:
    return m.GroupsPage(groups=[group_out(row) for row in await store.groups()])


@router.get("/groups/{name}", response_model=m.GroupOut, responses=_ERRORS)
async def get_group(name: str, store: StoreDep) -> m.GroupOut:
    row = await store.group(name)
    if row is None:
        raise _unknown_group(name)
    return group_out(row)


@router.delete(
    "/groups/{name}", status_code=204, responses=_ERRORS, dependencies=[Security(require_operator)]
)
async def delete_group(name: str, request: Request, store: StoreDep) -> Response:
    summarize(request, f"group {name}")
    if not await store.delete_group(name):
        raise _unknown_group(name)
    return Response(status_code=204)
