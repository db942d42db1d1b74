"""The embedded backend: one SQLite file in WAL mode (``SqliteStore``)."""

from central.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
