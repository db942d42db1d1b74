"""The aggregator's config file (``cityedge central serve --config FILE``), TOML:

    [store]
    url = "sqlite:////var/lib/cityedge/central.db"   # or postgresql://cityedge@db.example/cityedge
    retention_days = 90          # raw readings kept this long; rollups are kept for good
    purge_interval_s = 300       # how often old raw readings are deleted
    purge_batch = 5000           # readings per purge transaction (ingest goes on between them)

    [broker]
    url = "mqtt://central@127.0.0.1:1883"            # no password here
    password_file = "/etc/cityedge/broker-password"

    [http]
    listen = "127.0.0.1:8080"

    [web]                        # the operator page at /
    tile_url = "https://tiles.city.example/{z}/{x}/{y}.png"   # the city's own tile server; default none
    tile_attribution = "© city of Example"                  # shown on the map with its tiles

    [broker_accounts]            # central keeps the broker's accounts from its registry
    admin_password_file = "/etc/cityedge/broker-admin-password"   # cityedge-admin's: live changes
    dynsec_file = "/var/lib/mosquitto/cityedge-dynsec.json"        # what `broker-accounts render` writes
    sync_interval_s = 60         # how often the leader fixes drift between broker and registry
    hook_secret_file = "/etc/cityedge/broker-hook-secret"   # serves POST /broker/auth and /authz
    hook_rate_per_s = 1000       # hook requests per second and source address (burst: hook_burst)
    hook_burst = 10000

Every key is optional. A command-line option wins over the file (``--db`` and ``$CITYEDGE_DB`` over
``store.url``). A wrong file is one ``ConfigError`` naming the file, the key and what was expected.
config/central.example.toml is the documented example (a test loads it).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec

from central.errors import CentralError, StoreError
from central.store.url import parse_db_url
from central.web.settings import WebSettings, attribution_problem, tile_url_problem
from protocols.fleet.broker_url import parse_broker_url

DEFAULT_RETENTION_DAYS = 90
DEFAULT_PURGE_INTERVAL_S = 300.0
DEFAULT_PURGE_BATCH = 5000
MAX_CONFIG_BYTES = 1024 * 1024
DAY_MS = 86_400_000


class ConfigError(CentralError):
    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file, self.key, self.problem = file, key, problem
        super().__init__(f"{file}: {key}: {problem}" if key else f"{file}: {problem}")


class StoreSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str | None = None
    retention_days: Annotated[int, msgspec.Meta(ge=1, le=100 * 366)] = DEFAULT_RETENTION_DAYS
    purge_interval_s: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = DEFAULT_PURGE_INTERVAL_S
    purge_batch: Annotated[int, msgspec.Meta(ge=100, le=1_000_000)] = DEFAULT_PURGE_BATCH


class BrokerSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str | None = None
    password_file: str | None = None


class HttpSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    listen: str | None = None


class WebSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tile_url: str | None = None
    tile_attribution: str = ""


class BrokerAccountsSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Off unless a file is named: without admin_password_file nothing changes the broker's accounts."""

    admin_password_file: str | None = None
    dynsec_file: str | None = None
    sync_interval_s: Annotated[float, msgspec.Meta(ge=5, le=86_400)] = 60.0
    hook_secret_file: str | None = None
    hook_rate_per_s: Annotated[float, msgspec.Meta(ge=1, le=100_000)] = 1000.0
    hook_burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 10_000


class CentralConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    store: StoreSection = StoreSection()
    broker: BrokerSection = BrokerSection()
    http: HttpSection = HttpSection()
    web: WebSection = WebSection()
    broker_accounts: BrokerAccountsSection = BrokerAccountsSection()


@dataclass(frozen=True, slots=True)
class Retention:
    """How long raw readings are kept, and how the purge runs (``central.server``)."""

    days: int = DEFAULT_RETENTION_DAYS
    interval_s: float = DEFAULT_PURGE_INTERVAL_S
    batch: int = DEFAULT_PURGE_BATCH

    def horizon_ms(self, now_ms: int) -> int:
        """Readings stamped before this are deleted."""
        return now_ms - self.days * DAY_MS


def web_settings_of(config: CentralConfig) -> WebSettings:
    return WebSettings(tile_url=config.web.tile_url, tile_attribution=config.web.tile_attribution)


def retention_of(config: CentralConfig) -> Retention:
    s = config.store
    return Retention(s.retention_days, s.purge_interval_s, s.purge_batch)


_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<field>[^`]+)`$")
_EXPECTED = {"`str`": "a string", "`int`": "an integer", "`float`": "a number", "`object`": "a table"}


def _key_and_problem(message: str) -> tuple[str, str]:
    key = ""
    if (at := _AT.match(message)) is not None:
        message, key = at["message"], at["path"].lstrip(".")
    if (field := _FIELD.match(message)) is not None:
        key = f"{key}.{field['field']}" if key else field["field"]
        sections = "[store], [broker], [http], [web], [broker_accounts]"
        return key, f"unknown key (check its spelling and section: {sections})"
    for raw, words in _EXPECTED.items():
        message = message.replace(raw, words)
    return key, message[0].lower() + message[1:]


def load_central_config(path: Path) -> CentralConfig:
    """Read and check ``path``; ConfigError naming the file, the key and what was expected."""
    shown = str(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(shown, "", f"cannot read the file ({exc.strerror})") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(shown, "", f"larger than {MAX_CONFIG_BYTES} bytes: not a config file")
    try:
        document: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(shown, "", f"not valid TOML: {exc}") from exc
    try:
        config = msgspec.convert(document, CentralConfig)
    except msgspec.ValidationError as exc:
        key, problem = _key_and_problem(str(exc))
        raise ConfigError(shown, key, problem) from None
    _check(shown, config)
    return config


def _check(shown: str, config: CentralConfig) -> None:
    if config.store.url is not None:
        try:
            parse_db_url(config.store.url)
        except StoreError as exc:
            raise ConfigError(shown, "store.url", exc.detail) from None
    if config.broker.url is not None:
        try:
            address = parse_broker_url(config.broker.url)
        except ValueError as exc:
            raise ConfigError(shown, "broker.url", str(exc)) from None
        if address.password is not None:
            raise ConfigError(
                shown, "broker.url", "holds a password: put it in a file named by broker.password_file"
            )
    if config.web.tile_url is not None and (problem := tile_url_problem(config.web.tile_url)) is not None:
        raise ConfigError(shown, "web.tile_url", problem)
    if (problem := attribution_problem(config.web.tile_attribution)) is not None:
        raise ConfigError(shown, "web.tile_attribution", problem)
    if config.http.listen is not None and parse_listen(config.http.listen) is None:
        raise ConfigError(
            shown, "http.listen", f"expected HOST:PORT, e.g. 127.0.0.1:8080 (got {config.http.listen!r})"
        )


def parse_listen(value: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT``, or None when it is not one."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        return None
    return host.strip("[]"), int(port)
