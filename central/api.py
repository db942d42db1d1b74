"""The aggregator's HTTP API, under /api/v1. Every store read runs on the store's threads.

Fleet status, live values, events and quarantine are here; commands and groups in ``api_commands``;
lighting, alarms and energy in ``api_views``; the audit log in ``api_audit``. Request errors are
answered in ``api_errors``, tokens and roles checked in ``api_auth`` (every route under /api/v1
needs at least a viewer's token), bodies capped in ``api_limits`` and parsed in ``api_json``;
/docs is served from the package by ``api_docs``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, Protocol

import msgspec
from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Response, Security
from fastapi.exceptions import RequestValidationError

from central import api_docs, api_errors
from central import api_models as m
from central.api_audit import AuditLog, audit_router
from central.api_auth import AUTH_RESPONSES, Roles
from central.api_commands import commands_router
from central.api_errors import unknown_cabinet
from central.api_identify_first import IdentifyFirst
from central.api_json import StrictJsonRoute
from central.api_limits import MAX_BODY_BYTES, BodyLimit
from central.api_ranges import ranges_router
from central.api_views import views_router
from central.auth import Tokens
from central.commands import CommandSender, CommandService
from central.errors import StoreError
from central.ingest_stats import IngestSnapshot
from central.store import Store
from central.store.rows import CabinetRow
from central.times import now_ms, to_ms

API_PREFIX = "/api/v1"
HEALTH_TIMEOUT_S = 2.0
DEFAULT_WINDOW_MS = 24 * 3600 * 1000
MAX_LIMIT = 100_000


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": m.ErrorBody, "description": "unknown cabinet or point"}
}

_NO_PAYLOAD: dict[int | str, dict[str, Any]] = {
    404: {"model": m.ErrorBody, "description": "no quarantined message has this id"},
    200: {"content": {"application/octet-stream": {}}, "description": "the payload as received"},
}

_UNHEALTHY: dict[int | str, dict[str, Any]] = {
    503: {"model": m.Health, "description": "store unreachable or MQTT down"}
}


class IngestMonitor(Protocol):
    """What the API reads from the ingest side: ``Ingestor`` provides it."""

    @property
    def stats(self) -> IngestSnapshot: ...


def parse_time(name: str, raw: str) -> int:
    """Milliseconds since 1970 UTC from ``raw`` (digits, or ISO 8601), else a 422 naming the field."""
    try:
        return to_ms(name, raw)
    except ValueError as exc:
        _invalid(name, raw, str(exc))


def _invalid(name: str, raw: str, message: str) -> NoReturn:
    # Same body shape as FastAPI's own 422s, so clients parse one format.
    raise RequestValidationError(
        [{"type": "value_error", "loc": ("query", name), "msg": message, "input": raw}]
    )


def _summary(row: CabinetRow) -> m.CabinetSummary:
    return m.CabinetSummary(
        id=row.id,
        online=row.online,
        last_seen_ms=row.last_seen_ms,
        agent_version=row.version,
        backlog=row.backlog,
        stream=row.stream,
        boot_count=row.boot_count,
    )


def _new_app(*, store: Store, clock: Callable[[], int], max_body_bytes: int) -> FastAPI:
    app = FastAPI(
        title="cityedge central",
        summary="Fleet status, live values, events, commands, lighting, alarms and energy of a city's"
        " street cabinets.",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    api_errors.install(app)
    api_docs.install(app)
    # The last added runs first: the audit log sees every answer, the 401 of an unknown caller and
    # the cap's 413 included; the caller is known before a byte of its body is read.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(IdentifyFirst, tokens=Tokens(store, clock=clock), prefix=API_PREFIX)
    app.add_middleware(AuditLog, store=store, clock=clock, prefix=API_PREFIX)
    return app


def create_app(
    *,
    store: Store,
    ingest: IngestMonitor | None = None,
    commands: CommandSender | None = None,
    clock: Callable[[], int] = now_ms,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The API over ``store``, which also holds its tokens and audit log.

    ``ingest`` feeds /health (None: this process does not ingest). ``commands`` publishes the commands
    operators send (None: they are stored pending, and an ingest worker's dispatcher sends them).
    """
    app = _new_app(store=store, clock=clock, max_body_bytes=max_body_bytes)
    roles = Roles(Tokens(store, clock=clock))
    # Every route needs a viewer's token at least; writes and admin routes ask for more.
    router = APIRouter(
        prefix=API_PREFIX,
        route_class=StrictJsonRoute,
        dependencies=[Security(roles.viewer)],
        responses=AUTH_RESPONSES,
    )
    service = CommandService(store=store, sender=commands, clock=clock)
    router.include_router(commands_router(store=store, service=service, roles=roles))
    router.include_router(views_router(store=store))
    router.include_router(ranges_router(store=store, parse_time=parse_time, prefix=API_PREFIX))
    router.include_router(
        audit_router(store=store, parse_time=parse_time), dependencies=[Security(roles.admin)]
    )

    async def require_cabinet(cabinet: str) -> CabinetRow:
        row = await store.cabinet(cabinet)
        if row is None:
            raise unknown_cabinet(cabinet)
        return row

    @router.get("/cabinets", response_model=list[m.CabinetSummary])
    async def list_cabinets() -> list[m.CabinetSummary]:
        return [_summary(row) for row in await store.cabinets()]

    @router.get("/cabinets/{cabinet}", response_model=m.CabinetDetail, responses=_NOT_FOUND)
    async def get_cabinet(cabinet: str) -> m.CabinetDetail:
        row = await require_cabinet(cabinet)
        inventory = [m.Device.model_validate(msgspec.to_builtins(d)) for d in row.inventory]
        return m.CabinetDetail(
            **_summary(row).model_dump(),
            status_ts_ms=row.status_ts_ms,
            config_hash=row.config_hash,
            inventory=inventory,
        )

    @router.get("/cabinets/{cabinet}/points", response_model=m.CabinetPoints, responses=_NOT_FOUND)
    async def latest_values(cabinet: str) -> m.CabinetPoints:
        await require_cabinet(cabinet)
        values = await store.latest_values(cabinet)
        return m.CabinetPoints(
            cabinet=cabinet,
            points=[m.PointValueOut.of(v) for v in values],
        )

    @router.get("/events", response_model=m.EventsPage)
    async def events(
        cabinet: Annotated[str | None, Query(description="only this cabinet")] = None,
        since: Annotated[
            str | None, Query(description="only ts >= since: ms since 1970 UTC or ISO 8601")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    ) -> m.EventsPage:
        since_ms = parse_time("since", since) if since is not None else None
        rows = await store.events(cabinet=cabinet, since_ms=since_ms, limit=limit)
        return m.EventsPage(
            events=[
                m.EventOut(
                    cabinet=e.cabinet,
                    stream=e.stream,
                    seq=e.seq,
                    ts_ms=e.ts_ms,
                    source=e.source,
                    kind=e.kind,
                    severity=e.severity,
                    message=e.message,
                    data=dict(e.data),
                )
                for e in rows
            ]
        )

    @router.get("/quarantine", response_model=m.QuarantinePage, dependencies=[Security(roles.operator)])
    async def quarantine(
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> m.QuarantinePage:
        counts = await store.quarantine_counts()
        rows = await store.quarantine(limit=limit)
        return m.QuarantinePage(
            counts=dict(counts.by_reason),
            evicted=counts.evicted,
            items=[
                m.QuarantineItem(
                    id=r.id,
                    received_ms=r.received_ms,
                    topic=r.topic,
                    reason=r.reason,
                    detail=r.detail,
                    size=r.size,
                )
                for r in rows
            ],
        )

    @router.get(
        "/quarantine/{entry_id}/payload",
        response_class=Response,
        responses=_NO_PAYLOAD,
        dependencies=[Security(roles.admin)],
        summary="The payload of a quarantined message, as received (capped)",
    )
    async def quarantine_payload(entry_id: Annotated[int, Path(ge=1, lt=2**63)]) -> Response:
        payload = await store.quarantine_payload(entry_id)
        if payload is None:
            raise HTTPException(
                404, f"no quarantined message has id {entry_id}; GET {API_PREFIX}/quarantine lists them"
            )
        return Response(payload, media_type="application/octet-stream")

    @router.get(
        "/health",
        response_model=m.Health,
        responses=_UNHEALTHY,
    )
    async def health(response: Response) -> m.Health:
        store_health = await _store_health(store)
        ingest_health = None
        if ingest is not None:
            snapshot = ingest.stats
            ingest_health = m.IngestHealth(
                **{name: getattr(snapshot, name) for name in m.IngestHealth.model_fields}
            )
        healthy = store_health.reachable and (ingest_health is None or ingest_health.mqtt_connected)
        response.status_code = 200 if healthy else 503
        return m.Health(healthy=healthy, store=store_health, ingest=ingest_health)

    app.include_router(router)
    return app


async def _store_health(store: Store) -> m.StoreHealth:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            totals = await store.totals()
    except StoreError as exc:
        return m.StoreHealth(reachable=False, error=str(exc))
    except TimeoutError:
        return m.StoreHealth(reachable=False, error=f"the store did not answer within {HEALTH_TIMEOUT_S} s")
    return m.StoreHealth(
        reachable=True,
        cabinets=totals.cabinets,
        readings=totals.readings,
        events=totals.events,
        quarantined=totals.quarantined,
    )
