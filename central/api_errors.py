"""How the API answers central's request errors: 404 for an unknown thing, 422 for a wrong field.

The 422 body has the shape of FastAPI's own (``{"detail": [{"loc": [...], "msg": ..., ...}]}``), so a
client parses one format whichever layer found the mistake.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from central.errors import InvalidRequest, UnknownTarget


def unknown_cabinet(cabinet: str) -> UnknownTarget:
    return UnknownTarget(
        "cabinet",
        cabinet,
        "is unknown: it has sent neither a status nor data",
        "GET /api/v1/cabinets lists the known cabinets",
    )


async def _unknown(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(exc)})


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors if isinstance(exc, InvalidRequest) else []
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})


def install(app: FastAPI) -> None:
    app.add_exception_handler(UnknownTarget, _unknown)
    app.add_exception_handler(InvalidRequest, _invalid)
