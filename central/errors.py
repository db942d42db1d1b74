"""Exception tree of the central aggregator.

    CentralError
    ├── StoreError      the database cannot be opened, read or written (locked, disk full, corrupt)
    └── ServerError     the aggregator cannot start: bad broker URL, HTTP address in use

Bad fleet messages are not exceptions here: ingest counts and quarantines them (``protocols.fleet``
raises ``FleetError`` while decoding; the ingestor catches it at that boundary).
"""

from __future__ import annotations


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
