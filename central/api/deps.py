"""What a route depends on, as FastAPI dependencies: the store, the services, the caller.

``create_app`` puts one ``ApiServices`` on the app's state; a route asks for the part it needs
(``store: StoreDep``, ``service: CommandsDep``) and for the caller's role (``Viewer``, ``Operator``,
``Admin``: see ``central.api.auth``). No route closes over its app's objects, so every router is a
module-level object, testable with another set of services.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, FastAPI, Request

from central.auth import Tokens
from central.commands import CommandService
from central.ingest_stats import IngestSnapshot
from central.store import Store


class IngestMonitor(Protocol):
    """What the API reads from the ingest side: ``Ingestor`` provides it."""

    @property
    def stats(self) -> IngestSnapshot: ...


@dataclass(frozen=True, slots=True)
class ApiServices:
    store: Store
    tokens: Tokens
    commands: CommandService
    ingest: IngestMonitor | None  # None: this process does not ingest
    clock: Callable[[], int]


_STATE = "services"


def install(app: FastAPI, services: ApiServices) -> None:
    setattr(app.state, _STATE, services)


def services_of(request: Request) -> ApiServices:
    found = getattr(request.app.state, _STATE, None)
    if not isinstance(found, ApiServices):  # an app not made by create_app
        raise RuntimeError("the API's services are not installed: build the app with create_app")
    return found


def _store(request: Request) -> Store:
    return services_of(request).store


def _commands(request: Request) -> CommandService:
    return services_of(request).commands


def _ingest(request: Request) -> IngestMonitor | None:
    return services_of(request).ingest


ServicesDep = Annotated[ApiServices, Depends(services_of)]
StoreDep = Annotated[Store, Depends(_store)]
CommandsDep = Annotated[CommandService, Depends(_commands)]
IngestDep = Annotated[IngestMonitor | None, Depends(_ingest)]
