"""Where central keeps what it is told: interfaces by use, typed rows, shared rules, backends.

interfaces   IngestStore, FleetReads, CommandStore, AlarmStore, EpisodeStore, AuthStore,
             RollupStore, RetentionStore, RegistryStore; Store is all of them
registry_rules  the bounds of a registry entry
episodes     how alarm events pair into episodes, and the rules of operators' notes
rollups      15-minute and daily bucket maths, shared by every backend
rows         the typed rows they speak in
rules        command status moves, alarm state, the quarantine cap: shared by every backend
url          ``sqlite:///…`` or ``postgresql://…`` -> the backend (``open_store``)
sqlite/      the embedded default;  postgres/  PostgreSQL, for fleets beyond one machine
"""

from central.store.interfaces import (
    AlarmStore,
    AuthStore,
    CommandStore,
    EpisodeStore,
    FleetReads,
    IngestStore,
    RegistryStore,
    RetentionStore,
    RollupStore,
    Store,
)
from central.store.url import DatabaseUrl, db_url_from, open_store, parse_db_url

__all__ = [
    "AlarmStore",
    "AuthStore",
    "CommandStore",
    "DatabaseUrl",
    "EpisodeStore",
    "FleetReads",
    "IngestStore",
    "RegistryStore",
    "RetentionStore",
    "RollupStore",
    "Store",
    "db_url_from",
    "open_store",
    "parse_db_url",
]
