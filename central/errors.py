"""Exception tree of the central aggregator.

    CentralError
    ├── StoreError          the database cannot be opened, read or written (locked, disk full, corrupt)
    ├── ServerError         the aggregator cannot start: bad broker URL, HTTP address in use
    └── RequestError        an operator's request cannot be carried out (the API answers 4xx)
        ├── UnknownTarget   it names a cabinet, device, group or command that does not exist (404)
        ├── InvalidRequest  one or more of its fields are wrong (422); ``errors`` says which
        └── Conflict        it is right, but what it acts on cannot take it now (409)

Bad fleet messages are not exceptions here: ingest counts and quarantines them (``protocols.fleet``
raises ``FleetError`` while decoding; the ingestor catches it at that boundary).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict


class CentralError(Exception):
    pass


class StoreError(CentralError):
    def __init__(self, path: str, operation: str, detail: str) -> None:
        super().__init__(f"store {path}: {operation} failed: {detail}")
        self.path = path
        self.operation = operation
        self.detail = detail


class ServerError(CentralError):
    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class RequestError(CentralError):
    pass


class UnknownTarget(RequestError):
    """``kind`` is what was looked for (cabinet, device, group, command); ``hint`` how to find one."""

    def __init__(self, kind: str, name: str, problem: str, hint: str) -> None:
        super().__init__(f"{kind} {name!r} {problem}; {hint}")
        self.kind = kind
        self.name = name


class Conflict(RequestError):
    """``kind`` ``name`` cannot take the request as it stands (an alarm episode full of notes)."""

    def __init__(self, kind: str, name: str, problem: str) -> None:
        super().__init__(f"{kind} {name}: {problem}")
        self.kind = kind
        self.name = name


class FieldError(TypedDict):
    """One wrong field, in the shape of FastAPI's own 422 bodies so that clients parse one format."""

    type: str
    loc: tuple[str | int, ...]
    msg: str
    input: Any


class InvalidRequest(RequestError):
    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = list(errors)

    @classmethod
    def field(cls, loc: tuple[str | int, ...], message: str, value: Any) -> InvalidRequest:
        return cls([FieldError(type="value_error", loc=loc, msg=message, input=value)])
