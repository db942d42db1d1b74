"""The central aggregator: MQTT ingest, storage (SQLite by default), commands, the HTTP API.

Store / SqliteStore     where batches, statuses, commands, groups and alarms are kept (central.store)
MqttLink                the one MQTT session ingest and commands share (central.mqtt_link)
Ingestor                MQTT in, group commit, acknowledgements out (central.ingest)
CommandService          an operator's command checked, fanned out, stored (central.commands)
CommandDispatcher       commands published, resent until answered, expired (central.dispatch)
point_energy            energy per local day from cumulative counters, pure (central.energy)
create_app              the HTTP API under /api/v1 (central.api)
CentralServer / serve   all of it in one event loop (central.server)
"""

from central.api import create_app
from central.commands import CommandService
from central.dispatch import CommandDispatcher
from central.energy import point_energy
from central.errors import (
    CentralError,
    InvalidRequest,
    RequestError,
    ServerError,
    StoreError,
    UnknownTarget,
)
from central.ingest import Ingestor
from central.ingest_stats import IngestSnapshot
from central.mqtt_link import MqttLink
from central.server import CentralServer, serve
from central.store import Store
from central.store.sqlite import SqliteStore

__all__ = [
    "CentralError",
    "CentralServer",
    "CommandDispatcher",
    "CommandService",
    "IngestSnapshot",
    "Ingestor",
    "InvalidRequest",
    "MqttLink",
    "RequestError",
    "ServerError",
    "SqliteStore",
    "Store",
    "StoreError",
    "UnknownTarget",
    "create_app",
    "point_energy",
    "serve",
]
