"""Fleet status: cabinets, latest values, events, the quarantine, and this worker's health."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, HTTPException, Path, Query, Response, Security

from central.api import models as m
from central.api.auth import require_admin, require_operator
from central.api.deps import IngestDep, StoreDep
from central.api.errors import unknown_cabinet
from central.api.json_route import StrictJsonRoute
from central.api.params import API_PREFIX, MAX_LIMIT, parse_time
from central.errors import StoreError
from central.store import Store
from central.store.rows import CabinetRow, RegistryEntry

HEALTH_TIMEOUT_S = 2.0


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


def _never_seen(entry: RegistryEntry) -> CabinetRow:
    """What central knows of a registered cabinet that has sent nothing yet."""
    return CabinetRow(entry.cabinet, False, None, None, "", "", None, 0, 0, ())


def _summary(row: CabinetRow, entry: RegistryEntry | None) -> m.CabinetSummary:
    return m.CabinetSummary(
        id=row.id,
        online=row.online,
        last_seen_ms=row.last_seen_ms,
        agent_version=row.version,
        backlog=row.backlog,
        stream=row.stream,
        boot_count=row.boot_count,
        town=entry.town if entry else None,
        label=entry.label if entry else "",
        latitude=entry.latitude if entry else None,
        longitude=entry.longitude if entry else None,
        registered=entry is not None,
        revoked=entry is not None and entry.revoked_ms is not None,
    )


router = APIRouter(route_class=StrictJsonRoute)


async def require_cabinet(store: Store, cabinet: str) -> CabinetRow:
    row = await store.cabinet(cabinet)
    if row is None:
        raise unknown_cabinet(cabinet)
    return row


@router.get("/cabinets", response_model=list[m.CabinetSummary])
async def list_cabinets(store: StoreDep) -> list[m.CabinetSummary]:
    # One read of the registry for the whole list, not one per cabinet.
    rows, entries = await asyncio.gather(store.cabinets(), store.registry(include_revoked=True))
    registry = {e.cabinet: e for e in entries}
    known = {row.id: row for row in rows}
    for entry in entries:
        known.setdefault(entry.cabinet, _never_seen(entry))
    return [_summary(known[cab], registry.get(cab)) for cab in sorted(known)]


@router.get("/cabinets/{cabinet}", response_model=m.CabinetDetail, responses=_NOT_FOUND)
async def get_cabinet(cabinet: str, store: StoreDep) -> m.CabinetDetail:
    row, entry = await asyncio.gather(store.cabinet(cabinet), store.registry_entry(cabinet))
    if row is None:
        if entry is None:
            raise unknown_cabinet(cabinet)
        row = _never_seen(entry)
    inventory = [m.Device.model_validate(msgspec.to_builtins(d)) for d in row.inventory]
    return m.CabinetDetail(
        **_summary(row, entry).model_dump(),
        status_ts_ms=row.status_ts_ms,
        config_hash=row.config_hash,
        inventory=inventory,
    )


@router.get("/cabinets/{cabinet}/points", response_model=m.CabinetPoints, responses=_NOT_FOUND)
async def latest_values(cabinet: str, store: StoreDep) -> m.CabinetPoints:
    await require_cabinet(store, cabinet)
    values = await store.latest_values(cabinet)
    return m.CabinetPoints(
        cabinet=cabinet,
        points=[m.PointValueOut.of(v) for v in values],
    )


@router.get("/events", response_model=m.EventsPage)
async def events(
    cabinet: Annotated[str | None, Query(description="only this cabinet")] = None,
    since: Annotated[str | None, Query(description="only ts >= since: ms since 1970 UTC or ISO 8601")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    *,
    store: StoreDep,
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


@router.get("/quarantine", response_model=m.QuarantinePage, dependencies=[Security(require_operator)])
async def quarantine(
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    *,
    store: StoreDep,
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
    dependencies=[Security(require_admin)],
    summary="The payload of a quarantined message, as received (capped)",
)
async def quarantine_payload(entry_id: Annotated[int, Path(ge=1, lt=2**63)], store: StoreDep) -> Response:
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
async def health(response: Response, store: StoreDep, ingest: IngestDep) -> m.Health:
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
