"""Which backend a database URL names, and the store it opens.

    sqlite:///central.db            a file relative to the working directory
    sqlite:////var/lib/cityedge/central.db
    central.db                      a bare path is a SQLite file too
    postgresql://user@host:5432/db  PostgreSQL (also postgres://); the password comes from a file
                                    or the environment (PGPASSWORD, ~/.pgpass), never the URL

The URL comes from ``--db``, else ``$CITYEDGE_DB``, else the config file, else ``central.db``.
A PostgreSQL URL is never printed with its password (``redacted``).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from central.errors import StoreError
from central.store.interfaces import Store

DB_ENV = "CITYEDGE_DB"
DEFAULT_DB = "central.db"
_PG_SCHEMES = ("postgresql", "postgres")
# libpq parameters that carry a secret, refused in the URL's query as in its user part.
_SECRET_PARAMS = frozenset({"password", "passfile", "sslpassword"})
_CONNINFO_SECRET = re.compile(r"\b(password|passfile|sslpassword)\s*=\s*(?:'[^']*'|\S+)", re.IGNORECASE)
_CONNINFO = re.compile(r"(?:^|\s)(?:host|hostaddr|dbname|user|password|port|service)\s*=", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    backend: Literal["sqlite", "postgresql"]
    path: Path | None  # SQLite
    dsn: str | None  # PostgreSQL, as libpq takes it

    @property
    def redacted(self) -> str:
        """What a log line or an error may show."""
        if self.path is not None:
            return f"sqlite:///{self.path}"
        return redact(self.dsn or "")


def redact(url: str) -> str:
    """``url`` with any password (in its user part or its query) replaced by ***."""
    if "://" not in url:  # libpq's key=value form
        return _CONNINFO_SECRET.sub(lambda m: f"{m.group(1)}=***", url)
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            host = parts.hostname or ""
            netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    except ValueError:  # a port that is not a number
        return redact_unparsable(url)
    query = urllib.parse.urlencode(
        [
            (key, "***" if key.lower() in _SECRET_PARAMS else value)
            for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def parse_db_url(text: str) -> DatabaseUrl:
    """The backend and address of ``text``; StoreError naming the setting and the fix when wrong."""
    setting = "database URL (--db, $CITYEDGE_DB)"
    scheme, sep, rest = text.partition("://")
    if not sep:
        if not text.strip():
            raise StoreError(setting, "parse", "it is empty: give sqlite:///FILE or postgresql://HOST/DB")
        if _CONNINFO.search(text):
            # libpq's "host=... dbname=..." form: never taken for a file name (and never echoed).
            raise StoreError(
                setting,
                "parse",
                "this looks like a libpq key=value string: give a URL, postgresql://[USER@]HOST[:PORT]/DB,"
                " with the password in ~/.pgpass or PGPASSWORD",
            )
        return DatabaseUrl("sqlite", Path(text), None)
    scheme = scheme.lower()
    if scheme == "sqlite":
        # sqlite:///relative and sqlite:////absolute, as SQLAlchemy spells them.
        if not rest.startswith("/") or len(rest) < 2:
            raise StoreError(
                setting, "parse", "a SQLite URL is sqlite:///FILE (three slashes, then the path)"
            )
        return DatabaseUrl("sqlite", Path(rest[1:]), None)
    if scheme in _PG_SCHEMES:
        try:
            parts = urllib.parse.urlsplit(text)
            _ = parts.port  # raises on a port that is not a number
        except ValueError as exc:
            raise StoreError(redact_unparsable(text), "parse", f"not a PostgreSQL URL: {exc}") from None
        query_keys = {key.lower() for key, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)}
        if parts.password is not None or query_keys & _SECRET_PARAMS:
            raise StoreError(
                redact(text),
                "parse",
                "a password in the database URL is refused (every user can read a command line):"
                " put it in ~/.pgpass or PGPASSFILE, or PGPASSWORD in the service's environment",
            )
        return DatabaseUrl("postgresql", None, text)
    raise StoreError(
        setting, "parse", f"unknown scheme {scheme!r}: use sqlite:///FILE or postgresql://HOST/DB"
    )


def redact_unparsable(text: str) -> str:
    """A URL too broken to parse: show its scheme and host part only, never what may be a password."""
    scheme, _, rest = text.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def db_url_from(option: str | None, config_value: str | None = None) -> str:
    """The URL to use: the option, else the environment, else the config file, else the default."""
    for candidate in (option, os.environ.get(DB_ENV), config_value):
        if candidate:
            return candidate
    return DEFAULT_DB


def open_store(url: str | DatabaseUrl, *, durable: bool = True) -> Store:
    """The store ``url`` names, not yet opened (``async with`` it)."""
    parsed = parse_db_url(url) if isinstance(url, str) else url
    if parsed.backend == "sqlite":
        from central.store.sqlite import SqliteStore

        assert parsed.path is not None
        return SqliteStore(parsed.path, durable=durable)
    # Imported here: psycopg is loaded only by a process that uses PostgreSQL.
    from central.store.postgres import PostgresStore

    assert parsed.dsn is not None
    return PostgresStore(parsed.dsn, durable=durable)
