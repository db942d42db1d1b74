"""The registry of provisioned cabinets, for ``cityedge provision`` and admins.

    PUT  /registry/{cabinet}                       installer|admin   where it stands (idempotent)
    GET  /registry/{cabinet}                       installer|admin   its entry
    POST /registry/{cabinet}/broker-credentials    installer|admin   a new broker password, once
    POST /registry/{cabinet}/revoke                admin             its access goes (the row stays)
    GET  /registry                                 admin             every entry

A broker password is made here (256 bits from ``secrets``), answered once with
``Cache-Control: no-store``, and kept only as Mosquitto hashes it (``cityedge.broker_accounts``).
The audit log records each write, never the password. A revoked cabinet stays revoked: writes to it
get 409 (a replacement cabinet gets a new id).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, Security

from central.api import registry_models as m
from central.api.audit import summarize
from central.api.auth import require_admin, require_installer
from central.api.deps import ServicesDep
from central.api.json_route import StrictJsonRoute
from central.api.models import ErrorBody
from central.api.params import API_PREFIX
from central.errors import UnknownTarget
from central.store import Store
from central.store.rows import RegistryEntry
from cityedge.broker_accounts import password_hash
from protocols.fleet.topics import CABINET_ID_PATTERN

PASSWORD_BYTES = 32

CabinetPath = Annotated[
    str,
    Path(
        pattern=CABINET_ID_PATTERN,
        description="1-64 letters, digits, '_', '-' or '.', starting with a letter or digit",
    ),
]

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "the cabinet is not registered"},
    409: {"model": ErrorBody, "description": "the cabinet is revoked, or already has credentials"},
}

router = APIRouter(route_class=StrictJsonRoute, tags=["registry"])

_LOCK_STATE = "registry_credentials_lock"


def _issuing(request: Request) -> asyncio.Lock:
    """This app's lock of credential issuing: read, then write, one request at a time per worker."""
    lock = getattr(request.app.state, _LOCK_STATE, None)
    if not isinstance(lock, asyncio.Lock):
        lock = asyncio.Lock()
        setattr(request.app.state, _LOCK_STATE, lock)
    return lock


def _unregistered(cabinet: str) -> UnknownTarget:
    return UnknownTarget(
        "cabinet",
        cabinet,
        "is not registered",
        f"PUT {API_PREFIX}/registry/{cabinet} registers it (cityedge provision does)",
    )


def _revoked(entry: RegistryEntry) -> HTTPException:
    return HTTPException(
        409,
        f"cabinet {entry.cabinet!r} was revoked at {entry.revoked_ms} ms and stays revoked:"
        " a replacement cabinet gets a new id",
    )


async def _registered(store: Store, cabinet: str) -> RegistryEntry:
    entry = await store.registry_entry(cabinet)
    if entry is None:
        raise _unregistered(cabinet)
    return entry


@router.put(
    "/registry/{cabinet}",
    response_model=m.RegistryPut,
    responses={**_ERRORS, 201: {"model": m.RegistryPut, "description": "created"}},
    summary="Register a cabinet, or update where it stands (the same body twice: unchanged)",
    dependencies=[Security(require_installer)],
)
async def put_entry(
    cabinet: CabinetPath,
    body: m.RegistryIn,
    request: Request,
    response: Response,
    services: ServicesDep,
) -> m.RegistryPut:
    store, now = services.store, services.clock()
    summarize(request, f"registry {cabinet}: town {body.town!r}")
    old = await store.registry_entry(cabinet)
    if old is not None and old.revoked_ms is not None:
        raise _revoked(old)
    entry = RegistryEntry(
        cabinet=cabinet,
        town=body.town,
        label=body.label,
        latitude=body.latitude,
        longitude=body.longitude,
        rated_power_w=body.rated_power_w,
        baseline_kwh_per_day=body.baseline_kwh_per_day,
        broker_hash=old.broker_hash if old is not None else None,
        created_ms=old.created_ms if old is not None else now,
        updated_ms=max(now, old.created_ms) if old is not None else now,
        revoked_ms=None,
    )
    changed = await store.put_registry(entry)
    outcome: m.Outcome = "created" if old is None else "updated" if changed else "unchanged"
    summarize(request, f"registry {cabinet}: {outcome} (town {body.town!r})")
    response.status_code = 201 if outcome == "created" else 200
    return m.RegistryPut(outcome=outcome, entry=m.RegistryOut.of(await _registered(store, cabinet)))


@router.get(
    "/registry/{cabinet}",
    response_model=m.RegistryOut,
    responses={404: _ERRORS[404]},
    summary="A registered cabinet's entry",
    dependencies=[Security(require_installer)],
)
async def get_entry(cabinet: CabinetPath, services: ServicesDep) -> m.RegistryOut:
    return m.RegistryOut.of(await _registered(services.store, cabinet))


@router.get(
    "/registry",
    response_model=m.RegistryPage,
    summary="Every registered cabinet",
    dependencies=[Security(require_admin)],
)
async def list_entries(
    services: ServicesDep,
    revoked: Annotated[bool, Query(description="list revoked cabinets too")] = False,
) -> m.RegistryPage:
    entries = await services.store.registry(include_revoked=revoked)
    return m.RegistryPage(entries=[m.RegistryOut.of(e) for e in entries])


@router.post(
    "/registry/{cabinet}/broker-credentials",
    response_model=m.CredentialsOut,
    status_code=201,
    responses=_ERRORS,
    summary="New broker credentials for a registered cabinet: the password is shown only here",
    dependencies=[Security(require_installer)],
)
async def issue_credentials(
    cabinet: CabinetPath,
    request: Request,
    response: Response,
    services: ServicesDep,
    body: m.CredentialsIn | None = None,
) -> m.CredentialsOut:
    replace = body is not None and body.replace
    summarize(request, f"broker credentials of {cabinet} (replace: {'yes' if replace else 'no'})")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    async with _issuing(request):
        entry = await _registered(services.store, cabinet)
        if entry.revoked_ms is not None:
            raise _revoked(entry)
        had = entry.broker_hash is not None
        if had and not replace:
            raise HTTPException(
                409,
                f'cabinet {cabinet!r} already has broker credentials; send {{"replace": true}} to issue'
                " new ones (its current password then stops working)",
            )
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        hashed = json.dumps(password_hash(password), sort_keys=True, separators=(",", ":"))
        now = max(services.clock(), entry.updated_ms)
        await services.store.put_registry(dataclasses.replace(entry, broker_hash=hashed, updated_ms=now))
    summarize(request, f"broker credentials of {cabinet}: {'replaced' if had else 'issued'}")
    return m.CredentialsOut(cabinet=cabinet, username=cabinet, password=password, replaced=had)


@router.post(
    "/registry/{cabinet}/revoke",
    response_model=m.RevokeOut,
    responses={404: _ERRORS[404]},
    summary="Revoke a cabinet: its broker account goes, its entry and history stay",
    dependencies=[Security(require_admin)],
)
async def revoke(cabinet: CabinetPath, request: Request, services: ServicesDep) -> m.RevokeOut:
    summarize(request, f"revoke {cabinet}")
    store = services.store
    await _registered(store, cabinet)
    done = await store.revoke_cabinet(cabinet, revoked_ms=services.clock())
    summarize(request, f"revoke {cabinet}: {'revoked' if done else 'already revoked'}")
    return m.RevokeOut(
        cabinet=cabinet,
        outcome="revoked" if done else "already revoked",
        entry=m.RegistryOut.of(await _registered(store, cabinet)),
    )
