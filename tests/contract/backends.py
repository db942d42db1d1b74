"""The backends the contract suite runs against, each a real database made for the test.

A ``Backend`` opens stores on one database of its own: opening it twice gives two stores on the same
data (a restart, or two workers). Every test of tests/contract runs once per backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from central.store import Store
from central.store.sqlite import SqliteStore


class Backend(Protocol):
    name: str

    def store(self) -> Store:
        """A new, unopened store on this test's database (``async with`` it)."""
        ...


class SqliteBackend:
    name = "sqlite"

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "central.db"

    def store(self) -> Store:
        return SqliteStore(self.path)
