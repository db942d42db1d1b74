"""A point's readings over a range, raw or from rollups (``GET …/points/{point}/readings``).

``resolution=raw`` (the default, as before rollups existed) answers with raw readings;
``resolution=auto`` answers a range up to ``AUTO_RAW_MAX_MS`` with raw readings, up
to ``AUTO_15M_MAX_MS`` with 15-minute rollups, and longer ones with daily rollups: long periods are
never read reading by reading, and stay answerable after the raw readings are deleted (retention).
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query

from central.api import models as m
from central.api.deps import StoreDep
from central.api.errors import unknown_cabinet
from central.api.json_route import StrictJsonRoute
from central.api.params import API_PREFIX, DEFAULT_WINDOW_MS, MAX_LIMIT, parse_time
from central.errors import InvalidRequest
from central.store import Store
from central.store.rollups import WIDTH_MS, is_counter, spread_energy
from central.store.rows import Resolution, Rollup

ResolutionParam = Literal["auto", "raw", "15m", "1d"]
AUTO_RAW_MAX_MS = 2 * 86_400_000
AUTO_15M_MAX_MS = 62 * 86_400_000
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": m.ErrorBody, "description": "unknown cabinet or point"}
}


def chosen(resolution: ResolutionParam, start_ms: int, end_ms: int) -> Literal["raw", "15m", "1d"]:
    if resolution != "auto":
        return resolution
    span = end_ms - start_ms
    if span <= AUTO_RAW_MAX_MS:
        return "raw"
    return "15m" if span <= AUTO_15M_MAX_MS else "1d"


def _finite(x: float | None) -> float | None:
    # A sum of hostile values can overflow to infinity: JSON has no such number.
    return x if x is None or math.isfinite(x) else None


def bucket_out(r: Rollup, energy_wh: float | None) -> m.BucketOut:
    return m.BucketOut(
        start_ms=r.bucket_ms,
        count=r.count,
        good=r.good,
        min=r.min,
        max=r.max,
        mean=_finite(r.mean),
        last=m.ReadingOut(
            ts_ms=r.last_ts_ms,
            value=r.last_value,
            quality=m.quality_name(r.last_quality),
            reason=None,
        ),
        energy_wh=None if energy_wh is None else _finite(round(energy_wh, 6)),
    )


async def buckets(
    store: Store,
    cabinet: str,
    point: str,
    *,
    resolution: Resolution,
    start_ms: int,
    end_ms: int,
    limit: int,
) -> list[m.BucketOut]:
    """The buckets wholly inside [start_ms, end_ms): one cut by either end is left out, since its
    figures hold readings outside the range (ask for raw readings for the edges)."""
    width = WIDTH_MS[resolution]
    first = -(-start_ms // width) * width  # the first bucket starting at or after start_ms
    end_ms = end_ms // width * width  # the end of the last bucket that ends by end_ms
    if end_ms <= first:
        return []
    rows = await store.rollups(
        cabinet, point, resolution=resolution, start_ms=first, end_ms=end_ms, limit=limit
    )
    if not is_counter(point):
        return [bucket_out(r, None) for r in rows]
    before, after = await store.rollup_neighbours(
        cabinet,
        point,
        resolution=resolution,
        start_ms=first,
        end_ms=rows[-1].bucket_ms + width if len(rows) >= limit else end_ms,
    )
    energy = spread_energy(rows, resolution, before=before, after=after)
    return [bucket_out(r, wh) for r, wh in zip(rows, energy, strict=True)]


router = APIRouter(route_class=StrictJsonRoute)


@router.get(
    "/cabinets/{cabinet}/points/{point:path}/readings",
    response_model=m.ReadingsPage,
    responses=_NOT_FOUND,
)
async def readings(
    cabinet: str,
    point: str,
    *,
    start: Annotated[
        str | None, Query(description="ms since 1970 UTC or ISO 8601; default end - 24 h")
    ] = None,
    end: Annotated[
        str | None, Query(description="exclusive; ms since 1970 UTC or ISO 8601; default now")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
    resolution: Annotated[
        ResolutionParam,
        Query(
            description="raw readings, or rollups of 15 minutes or one UTC day (count, min, max,"
            " mean, last; energy for counters), only the buckets wholly inside [start, end)."
            " auto: raw up to 2 days, 15m up to 62 days, else 1d. Raw readings are kept for the"
            " retention period (90 days by default), rollups for good."
        ),
    ] = "raw",
    store: StoreDep,
) -> m.ReadingsPage:
    """A point's readings over [start, end): raw, or 15-minute or daily rollups for long ranges."""
    end_ms = parse_time("end", end) if end is not None else time.time_ns() // 1_000_000 + 1
    start_ms = parse_time("start", start) if start is not None else end_ms - DEFAULT_WINDOW_MS
    if start_ms >= end_ms:
        raise InvalidRequest.field(("query", "start"), "start must be before end", start or str(start_ms))
    if await store.cabinet(cabinet) is None:
        raise unknown_cabinet(cabinet)
    if not await store.has_point(cabinet, point):
        raise HTTPException(
            404,
            f"cabinet {cabinet!r} has no point {point!r}; GET {API_PREFIX}/cabinets/{cabinet}"
            "/points lists its points",
        )
    used = chosen(resolution, start_ms, end_ms)
    if used != "raw":
        found = await buckets(
            store, cabinet, point, resolution=used, start_ms=start_ms, end_ms=end_ms, limit=limit
        )
        return m.ReadingsPage(
            cabinet=cabinet,
            point=point,
            start_ms=start_ms,
            end_ms=end_ms,
            limit=limit,
            resolution=used,
            truncated=len(found) >= limit,
            readings=[],
            buckets=found,
        )
    rows = await store.readings(cabinet, point, start_ms=max(start_ms, 0), end_ms=end_ms, limit=limit)
    return m.ReadingsPage(
        cabinet=cabinet,
        point=point,
        start_ms=start_ms,
        end_ms=end_ms,
        limit=limit,
        resolution="raw",
        truncated=len(rows) >= limit,
        readings=[
            m.ReadingOut(ts_ms=r.ts_ms, value=r.value, quality=m.quality_name(r.quality), reason=r.reason)
            for r in rows
        ],
    )
