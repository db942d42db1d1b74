"""GET /metrics for Prometheus, and the timing of every HTTP request by route template.

/metrics needs a monitor's token (or an admin's): the API may face the control room's network, and
the metrics name cabinets and show their load; a monitor's token may read nothing else, so the
credential a monitoring server keeps in its config cannot command or reconfigure a cabinet.
Prometheus sends the token with ``authorization: {credentials_file: ...}`` in its scrape config.
It is outside /api/v1, where Prometheus looks by default, and outside the audit log, which it
would fill with a line per scrape.

``RequestTimer`` labels each request with its route's template (``/api/v1/cabinets/{cabinet}``),
never the raw path: a client walking random paths cannot grow the series. A request answered before
routing (a 401 to a body without a token) or matching no route is labelled ``unmatched``. FastAPI may
keep an included router's routes with their own templates (without the prefix they are included
under): ``install`` is told which routers the app includes under which prefix.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from fastapi import APIRouter, FastAPI, Request, Response, Security
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central.api.auth import AUTH_RESPONSES, require_monitor
from central.api.deps import StoreDep
from central.metrics import CONTENT_TYPE, CentralMetrics

METRICS_URL = "/metrics"
_STATE = "metrics"
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

router = APIRouter(tags=["ops"])


def install(
    app: FastAPI, metrics: CentralMetrics, *, included: Mapping[str, Iterable[APIRouter]] = {}
) -> None:
    """Serve /metrics and time every request. ``included`` names the routers ``app`` includes under
    each prefix. Call it after the other middleware is added: this one runs first, so that the time
    it measures includes theirs."""
    templates = {
        id(route): prefix + _template(route)  # by identity: routes compare by value, unhashable
        for prefix, routers in included.items()
        for router in routers
        for route in router.routes
    }
    setattr(app.state, _STATE, metrics)
    app.add_middleware(RequestTimer, metrics=metrics, templates=templates)
    app.include_router(router)


def _metrics_of(request: Request) -> CentralMetrics:
    found = getattr(request.app.state, _STATE, None)
    if not isinstance(found, CentralMetrics):
        raise RuntimeError("the metrics are not installed: build the app with create_app")
    return found


@router.get(
    METRICS_URL,
    dependencies=[Security(require_monitor)],
    responses={**AUTH_RESPONSES, 200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text"}},
    response_class=Response,
    summary="Metrics for Prometheus (a monitor's or an admin's token)",
)
async def metrics(request: Request, store: StoreDep) -> Response:
    return Response(await _metrics_of(request).exposition(store), media_type=CONTENT_TYPE)


class RequestTimer:
    """ASGI middleware: each HTTP request's duration into ``metrics.api_latency``, labelled with its
    method, its route's template (``templates`` gives those of routes included under a prefix) and
    its status class."""

    def __init__(self, app: ASGIApp, *, metrics: CentralMetrics, templates: Mapping[int, str]) -> None:
        self._app = app
        self._histogram = metrics.api_latency
        self._templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before its response

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, timed_send)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            labels = self._histogram.labels(method, self._route_of(scope), f"{status // 100}xx")
            labels.observe(time.perf_counter() - started)

    def _route_of(self, scope: Scope) -> str:
        route = scope.get("route")  # set in the scope by the router that matched it
        if isinstance(route, BaseRoute):
            return self._templates.get(id(route)) or _template(route)
        # A mount (the docs' assets) may not say its route; its root path is its fixed prefix.
        root, app_root = str(scope.get("root_path", "")), str(scope.get("app_root_path", ""))
        if root != app_root and root.startswith(app_root):
            return root[len(app_root) :] + "/{path}"
        return UNMATCHED


def _template(route: BaseRoute) -> str:
    template = getattr(route, "path_format", None)  # the path without converters: {point}, not {point:path}
    return template if isinstance(template, str) else UNMATCHED
