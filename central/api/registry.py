"""The registry of provisioned cabinets, for ``cityedge provision`` and admins.

    PUT  /registry/{cabinet}                       installer|admin   where it stands (idempotent)
    GET  /registry/{cabinet}                       installer|admin   its entry
    POST /registry/{cabinet}/broker-credentials    installer|admin   a new broker password, once
                                                   (replacing a cabinet's: admin)
    POST /registry/{cabinet}/revoke                admin             its access goes (the row stays)
    GET  /registry                                 admin             every entry

A broker password is made here (256 bits from ``secrets``), answered once with
``Cache-Control: no-store``, and kept only as Mosquitto hashes it (``cityedge.broker_accounts``).
The audit log records each write, never the password. A revoked cabinet stays revoked: writes to it
get 409 (a replacement cabinet gets a new id).
"""

from __future__ import annotations

import json
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, Security

from central.api import registry_models as m
from central.api.audit import summarize
from central.api.auth import identity_of, require_admin, require_installer
from central.api.deps import ServicesDep
from central.api.json_route import StrictJsonRoute
from central.api.models import ErrorBody
from central.api.params import API_PREFIX
from central.broker_accounts.service import BROKER_HEADER, apply_issued, apply_revoked
from central.broker_accounts.template import password_hash
from central.errors import InvalidRequest, UnknownTarget
from central.store import Store
from central.store.auth_rows import Role
from central.store.registry_rules import RESERVED_IDS
from central.store.rows import RegistryEntry
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
    if cabinet.lower() in RESERVED_IDS:
        raise InvalidRequest.field(
            ("path", "cabinet"), "is the name of one of the broker's own accounts: choose another", cabinet
        )
    old = await store.registry_entry(cabinet)
    if old is not None and old.revoked_ms is not None:
        raise _revoked(old)
    contract = [
        name
        for name, before, after in (
            ("rated_power_w", old.rated_power_w if old else None, body.rated_power_w),
            ("baseline_kwh_per_day", old.baseline_kwh_per_day if old else None, body.baseline_kwh_per_day),
        )
        if old is not None and before != after
    ]
    caller = identity_of(request)
    if contract and (caller is None or not caller.role.allows(Role.ADMIN)):
        # The KPI report's baselines: what a cabinet saves is computed from them.
        raise HTTPException(
            403,
            f"cabinet {cabinet!r}: changing {' and '.join(contract)} of a registered cabinet needs an"
            " admin's token (the contract's energy figures are computed from them)",
        )
    entry = RegistryEntry(
        cabinet=cabinet,
        town=body.town,
        label=body.label,
        latitude=body.latitude,
        longitude=body.longitude,
        rated_power_w=body.rated_power_w,
        baseline_kwh_per_day=body.baseline_kwh_per_day,
        broker_hash=None,  # the store keeps the one it has
        created_ms=old.created_ms if old is not None else now,
        updated_ms=max(now, old.created_ms) if old is not None else now,
        revoked_ms=None,  # nor is a revocation ever undone by a write
    )
    changed = await store.put_registry(entry)
    outcome: m.Outcome = "created" if old is None else "updated" if changed else "unchanged"
    changed_note = f"; {', '.join(contract)} changed" if contract else ""
    summarize(request, f"registry {cabinet}: {outcome} (town {body.town!r}){changed_note}")
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
    entry = await _registered(services.store, cabinet)
    if entry.revoked_ms is not None:
        raise _revoked(entry)
    had = entry.broker_hash is not None
    caller = identity_of(request)
    if had and replace and (caller is None or not caller.role.allows(Role.ADMIN)):
        # An installer's token may give a new cabinet its first credentials, never take over one
        # that has some: a lost technician's token would otherwise log in as any cabinet.
        raise HTTPException(
            403,
            f"cabinet {cabinet!r} has broker credentials already: replacing them needs an admin's"
            " token (the cabinet's current password then stops working)",
        )
    if had and not replace:
        raise HTTPException(
            409,
            f'cabinet {cabinet!r} already has broker credentials; send {{"replace": true}} to issue'
            " new ones (its current password then stops working)",
        )
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    hashed = json.dumps(password_hash(password), sort_keys=True, separators=(",", ":"))
    # Only if nobody changed them since they were read: of two requests at once, one gets 409.
    if not await services.store.set_broker_hash(
        cabinet, hashed, expected=entry.broker_hash, updated_ms=services.clock()
    ):
        raise HTTPException(
            409,
            f"cabinet {cabinet!r} was revoked, or given credentials by another request, meanwhile:"
            f" GET {API_PREFIX}/registry/{cabinet} says which",
        )
    response.headers[BROKER_HEADER] = await apply_issued(request, cabinet, password, hashed)
    summarize(request, f"broker credentials of {cabinet}: {'replaced' if had else 'issued'}")
    return m.CredentialsOut(cabinet=cabinet, username=cabinet, password=password, replaced=had)


@router.post(
    "/registry/{cabinet}/revoke",
    response_model=m.RevokeOut,
    responses={404: _ERRORS[404]},
    summary="Revoke a cabinet: its broker account goes, its entry and history stay",
    dependencies=[Security(require_admin)],
)
async def revoke(
    cabinet: CabinetPath, request: Request, response: Response, services: ServicesDep
) -> m.RevokeOut:
    summarize(request, f"revoke {cabinet}")
    store = services.store
    await _registered(store, cabinet)
    done = await store.revoke_cabinet(cabinet, revoked_ms=services.clock())
    response.headers[BROKER_HEADER] = await apply_revoked(request, cabinet)
    summarize(request, f"revoke {cabinet}: {'revoked' if done else 'already revoked'}")
    return m.RevokeOut(
        cabinet=cabinet,
        outcome="revoked" if done else "already revoked",
        entry=m.RegistryOut.of(await _registered(store, cabinet)),
    )
