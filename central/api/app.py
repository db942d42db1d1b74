"""The aggregator's HTTP API: ``create_app`` puts the routers of each area under /api/v1.

    fleet      cabinets, latest values, events, quarantine, health      (central.api.fleet)
    commands   commands and groups                                      (central.api.commands)
    views      lighting, equipment, energy                              (central.api.views)
    alarms     alarms' current state, the board of their episodes       (central.api.alarms)
    ranges     a point's readings and rollups over a period             (central.api.ranges)
    audit      the audit log, admins only                               (central.api.audit)
    kpi        the performance contract's KPI report                    (central.api.kpi)
    registry   provisioned cabinets and their broker credentials        (central.api.registry)

Open data (``central.api.opendata``) is served outside the prefix, to anyone, read-only.
Every route under the prefix needs a viewer's token at least (``central.api.auth``); writes ask for
an operator's. The routers take what they use through FastAPI dependencies (``central.api.deps``):
the services of one app live on its state. Domain errors (``central.errors``) become HTTP answers in
``central.api.errors``; bodies are capped (``central.api.limits``) and parsed strictly
(``central.api.json_route``); /docs is served from the package (``central.api.docs``).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Security

from central.api import (
    alarms,
    audit,
    deps,
    docs,
    errors,
    fleet,
    kpi,
    opendata,
    ranges,
    registry,
    views,
)
from central.api import commands as commands_api
from central.api.audit import AuditLog
from central.api.auth import AUTH_RESPONSES, require_viewer
from central.api.deps import ApiServices, IngestMonitor
from central.api.identify_first import IdentifyFirst
from central.api.json_route import StrictJsonRoute
from central.api.limits import MAX_BODY_BYTES, BodyLimit
from central.api.params import API_PREFIX
from central.auth import Tokens
from central.commands import CommandSender, CommandService
from central.store import Store
from central.times import now_ms


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
    app = FastAPI(
        title="cityedge central",
        summary="Fleet status, live values, events, commands, lighting, alarms and energy of a city's"
        " street cabinets.",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    tokens = Tokens(store, clock=clock)
    deps.install(
        app,
        ApiServices(
            store=store,
            tokens=tokens,
            commands=CommandService(store=store, sender=commands, clock=clock),
            ingest=ingest,
            clock=clock,
        ),
    )
    errors.install(app)
    docs.install(app)
    # The last added runs first: the audit log sees every answer, the 401 of an unknown caller and
    # the cap's 413 included; the caller is known before a byte of its body is read.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(IdentifyFirst, tokens=tokens, prefix=API_PREFIX)
    app.add_middleware(AuditLog, store=store, clock=clock, prefix=API_PREFIX)
    api = APIRouter(
        prefix=API_PREFIX,
        route_class=StrictJsonRoute,
        dependencies=[Security(require_viewer)],
        responses=AUTH_RESPONSES,
    )
    for area in (fleet, commands_api, views, alarms, ranges, audit, kpi, registry):
        api.include_router(area.router)
    app.include_router(api)
    # Open data: outside the prefix, no token, GET only, cached.
    opendata.install(app)
    app.include_router(opendata.router)
    return app
