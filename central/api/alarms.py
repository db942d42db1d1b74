"""Alarms: the current state of each alarm (/alarms) and the board of its episodes (/alarm-episodes).

Every episode of an alarm, from the event raising it to the one clearing it, is its own record
(``central.store.episodes``); operators acknowledge, assign and comment it in the name of their
token, never one a body gives. Reads need a viewer's token (the router's), notes an operator's.
The handlers are thin: ``central.alarm_episodes.EpisodeService`` does the work, and its errors
become 404, 409 and 422 in ``central.api.errors``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request

from central.alarm_episodes import MAX_PAGE, EpisodeFilters, EpisodeService
from central.api import alarm_models as m
from central.api import view_models as vm
from central.api.audit import summarize
from central.api.auth import Operator
from central.api.deps import StoreDep, services_of
from central.api.json_route import StrictJsonRoute
from central.api.models import ErrorBody
from central.api.params import parse_time
from central.equipment_view import EquipmentClass
from central.store.rows import AlarmRow
from protocols.fleet.messages import Severity

MAX_ALARMS = 100_000

_ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "no such episode"}}
_NOTE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    409: {"model": ErrorBody, "description": "the episode holds as many notes as it may"},
}
EpisodeId = Annotated[int, Path(ge=1, lt=2**63, description="the episode's id")]


def alarm_out(row: AlarmRow) -> vm.AlarmOut:
    return vm.AlarmOut(
        cabinet=row.cabinet,
        device=row.device,
        alarm=row.alarm,
        active=row.active,
        severity=row.severity,
        message=row.message,
        raised_ms=row.raised_ms,
        cleared_ms=row.cleared_ms,
        updated_ms=row.updated_ms,
    )


def _service(request: Request) -> EpisodeService:
    services = services_of(request)
    return EpisodeService(services.store, clock=services.clock)


EpisodesDep = Annotated[EpisodeService, Depends(_service)]

router = APIRouter(tags=["alarms"], route_class=StrictJsonRoute)


@router.get("/alarms", response_model=vm.AlarmsPage)
async def alarms(
    cabinet: Annotated[str | None, Query(description="only this cabinet")] = None,
    active: Annotated[bool | None, Query(description="true: active only; false: cleared only")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ALARMS)] = 1000,
    *,
    store: StoreDep,
) -> vm.AlarmsPage:
    """The current state of each (cabinet, device, alarm): its newest event's."""
    rows = await store.alarms(cabinet=cabinet, active=active, limit=limit)
    return vm.AlarmsPage(alarms=[alarm_out(row) for row in rows])


def _values(raw: list[str] | None) -> tuple[str, ...] | None:
    return None if raw is None else tuple(raw)


@router.get("/alarm-episodes", response_model=m.EpisodesPage, summary="The alarm board: episodes")
async def list_episodes(
    *,
    service: EpisodesDep,
    cabinet: Annotated[list[str] | None, Query(description="only these cabinets (repeat it)")] = None,
    town: Annotated[list[str] | None, Query(description="only cabinets of these towns (registry)")] = None,
    device_class: Annotated[list[EquipmentClass] | None, Query(description="only these classes")] = None,
    severity: Annotated[list[Severity] | None, Query(description="of the raising event")] = None,
    state: Annotated[list[m.StateFilter] | None, Query(description="open: raised or acknowledged")] = None,
    since: Annotated[str | None, Query(description="raised at or after: ms (UTC) or ISO 8601")] = None,
    until: Annotated[str | None, Query(description="raised before: ms (UTC) or ISO 8601")] = None,
    after: Annotated[int | None, Query(ge=1, lt=2**63, description="next_after of the page before")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> m.EpisodesPage:
    """Episodes newest first (by id), filtered; page on with ``after``."""
    page = await service.list(
        EpisodeFilters(
            cabinets=_values(cabinet),
            towns=_values(town),
            device_classes=None if device_class is None else tuple(device_class),
            severities=_values(list(severity) if severity is not None else None),
            states=None if state is None else tuple(state),
            raised_since_ms=parse_time("since", since) if since is not None else None,
            raised_until_ms=parse_time("until", until) if until is not None else None,
            after_id=after,
            limit=limit,
        )
    )
    return m.EpisodesPage(episodes=[m.EpisodeOut.of(e) for e in page.episodes], next_after=page.next_after)


@router.get("/alarm-episodes/{episode_id}", response_model=m.EpisodeDetail, responses=_ERRORS)
async def get_episode(episode_id: EpisodeId, service: EpisodesDep) -> m.EpisodeDetail:
    """One episode with its notes."""
    return m.EpisodeDetail.of(await service.get(episode_id))


@router.post(
    "/alarm-episodes/{episode_id}/acknowledge",
    response_model=m.EpisodeDetail,
    responses=_NOTE_ERRORS,
    summary="Acknowledge an episode (again: changes nothing)",
)
async def acknowledge(
    episode_id: EpisodeId,
    request: Request,
    identity: Operator,
    service: EpisodesDep,
    body: Annotated[m.AcknowledgeIn | None, Body()] = None,
) -> m.EpisodeDetail:
    """The body is optional: no body, or ``{}``, acknowledges without a comment."""
    summarize(request, f"alarm episode {episode_id}: acknowledge")
    comment = None if body is None else body.comment
    return m.EpisodeDetail.of(await service.acknowledge(episode_id, identity, comment))


@router.post(
    "/alarm-episodes/{episode_id}/assign",
    response_model=m.EpisodeDetail,
    responses=_NOTE_ERRORS,
    summary="Assign an episode to a crew or a person",
)
async def assign(
    episode_id: EpisodeId, body: m.AssignIn, request: Request, identity: Operator, service: EpisodesDep
) -> m.EpisodeDetail:
    summarize(request, f"alarm episode {episode_id}: assign to {body.to}")
    return m.EpisodeDetail.of(await service.assign(episode_id, identity, body.to))


@router.post(
    "/alarm-episodes/{episode_id}/comments",
    status_code=201,
    response_model=m.EpisodeDetail,
    responses=_NOTE_ERRORS,
    summary="Comment an episode",
)
async def comment(
    episode_id: EpisodeId, body: m.CommentIn, request: Request, identity: Operator, service: EpisodesDep
) -> m.EpisodeDetail:
    summarize(request, f"alarm episode {episode_id}: comment")
    return m.EpisodeDetail.of(await service.comment(episode_id, identity, body.text))
