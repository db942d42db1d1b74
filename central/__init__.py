"""The central aggregator: MQTT ingest, storage (SQLite by default), the HTTP API.

Store / SqliteStore     where batches, statuses and the quarantine are kept (central.store)
Ingestor                MQTT in, group commit, acknowledgements out (central.ingest)
create_app              the HTTP API under /api/v1 (central.api)
CentralServer / serve   all of it in one event loop (central.server)
"""

from central.api import create_app
from central.errors import CentralError, ServerError, StoreError
from central.ingest import Ingestor
from central.ingest_stats import IngestSnapshot
from central.server import CentralServer, serve
from central.sqlite_store import SqliteStore
from central.store import Store

__all__ = [
    "CentralError",
    "CentralServer",
    "IngestSnapshot",
    "Ingestor",
    "ServerError",
    "SqliteStore",
    "Store",
    "StoreError",
    "create_app",
    "serve",
]
