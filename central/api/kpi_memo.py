"""The last KPI reports of this process, kept while nothing they were made from has changed.

The same report asked again (the KPI page opened by several operators) is answered from here, the
body as it was sent. A report is found by a digest of everything it is made from, read again for
every request with a few cheap queries:
- the period, its time zone and town;
- each cabinet's key (``central.api.kpi_parts.cabinet_keys``: its change counts over the period's
  UTC days, its counters' readings nearest the period's ends, its inventory and registry entry, its
  device_lost episodes);
- the alarm episodes read for the period (their acknowledgements and clears).
So a report given from here is the one that would be computed now.
"""

from __future__ import annotations

import gzip
import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import msgspec
from fastapi import FastAPI

from central.api.app_state import made_once
from central.api.kpi_fetch import Scope
from central.kpi.period import Period
from central.store.rows import EpisodeTimes

MEMO_STATE = "kpi_memo"
# Bodies kept per process: a month of 1,000 cabinets is 7.5 MB of JSON.
MAX_REPORTS = 4

_encoder = msgspec.msgpack.Encoder()


def digest(
    period: Period,
    tz: str,
    scope: Scope,
    *,
    cabinets: Mapping[str, bytes],
    episodes: Sequence[EpisodeTimes],
) -> str:
    """A digest of what the report of ``period`` would be made from now (``cabinets``: each
    cabinet's key, ``central.api.kpi_parts.cabinet_keys``)."""
    parts = (
        (period.start_ms, period.end_ms, tz, scope.town_asked),
        [(c.id, cabinets[c.id]) for c in scope.cabinets],
        episodes,  # named tuples: msgspec encodes each as its fields
    )
    return hashlib.blake2b(_encoder.encode(parts), digest_size=20).hexdigest()


# A month of a city is 7.5 MB of JSON, 110 KB compressed (17 ms at level 1; 76 KB and 55 ms at 6):
# compressed once when first asked so, not
# by the middleware at every answer (about 250 ms of it there).
GZIP_LEVEL = 1


class Body:
    """A report's body, and the same compressed (gzip) once a caller took it so."""

    __slots__ = ("_gzipped", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._gzipped: bytes | None = None

    def gzipped(self) -> bytes:
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.raw, GZIP_LEVEL, mtime=0)
        return self._gzipped


class ReportMemo:
    """Bodies of reports by (digest, format). Only the bytes are kept: the figures as objects would
    be hundreds of thousands of them for the garbage collector to walk at every collection."""

    def __init__(self, size: int = MAX_REPORTS) -> None:
        self._size = size
        self._kept: OrderedDict[tuple[str, str], Body] = OrderedDict()

    def get(self, key: str, body: str) -> Body | None:
        found = self._kept.get((key, body))
        if found is not None:
            self._kept.move_to_end((key, body))
        return found

    def put(self, key: str, body: str, data: Body) -> None:
        self._kept[(key, body)] = data
        self._kept.move_to_end((key, body))
        while len(self._kept) > self._size:
            self._kept.popitem(last=False)


def report_memo(app: FastAPI) -> ReportMemo:
    """The app's memo (made on first use)."""
    return made_once(app, MEMO_STATE, ReportMemo, ReportMemo)
