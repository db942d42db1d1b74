"""Which backend a database URL names, and the errors a wrong one gets (never echoing a password)."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.errors import StoreError
from central.store import db_url_from, parse_db_url
from central.store.sqlite import SqliteStore
from central.store.url import DB_ENV, open_store, redact


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("central.db", Path("central.db")),
        ("/var/lib/cityedge/central.db", Path("/var/lib/cityedge/central.db")),
        ("sqlite:///central.db", Path("central.db")),
        ("sqlite:////var/lib/cityedge/central.db", Path("/var/lib/cityedge/central.db")),
        ("SQLITE:///data/c.db", Path("data/c.db")),
    ],
)
def test_sqlite_urls_and_bare_paths(url: str, path: Path) -> None:
    parsed = parse_db_url(url)
    assert (parsed.backend, parsed.path, parsed.dsn) == ("sqlite", path, None)
    assert isinstance(open_store(url), SqliteStore)


@pytest.mark.parametrize("url", ["postgresql://cityedge@db.example:5432/cityedge", "postgres://db/central"])
def test_postgresql_urls(url: str) -> None:
    parsed = parse_db_url(url)
    assert (parsed.backend, parsed.path, parsed.dsn) == ("postgresql", None, url)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "empty"),
        ("sqlite://central.db", "three slashes"),
        ("mysql://db/central", "unknown scheme 'mysql'"),
        ("postgresql://db:port/central", "not a PostgreSQL URL"),
    ],
)
def test_wrong_urls_name_the_fix(url: str, says: str) -> None:
    with pytest.raises(StoreError, match=says):
        parse_db_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ops:s3cret-pw@db:5432/central",
        "postgresql://ops:s3cret-pw@db:notaport/central",
        "postgresql://ops@db/central?password=s3cret-pw",
        "postgresql://ops@db/central?sslmode=require&PassWord=s3cret-pw",
        "host=db dbname=central password=s3cret-pw",
    ],
)
def test_a_password_in_the_url_is_refused_and_never_shown(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        parse_db_url(url)
    assert "s3cret-pw" not in str(caught.value)
    assert "s3cret-pw" not in redact(url)


def test_the_option_wins_over_the_environment_which_wins_over_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DB_ENV, raising=False)
    assert db_url_from(None) == "central.db"
    assert db_url_from(None, "sqlite:///from-file.db") == "sqlite:///from-file.db"
    monkeypatch.setenv(DB_ENV, "sqlite:///from-env.db")
    assert db_url_from(None, "sqlite:///from-file.db") == "sqlite:///from-env.db"
    assert db_url_from("sqlite:///from-option.db", "sqlite:///from-file.db") == "sqlite:///from-option.db"
