"""``cityedge central migrate`` on SQLite: a new file is created at this version, a current one is
left alone, one it cannot upgrade is refused naming its version (the upgrade itself:
tests/unit/test_sqlite_store.py; on PostgreSQL: tests/integration/test_postgres_store.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from central.store.sqlite.schema import AUTH_SCHEMA, SCHEMA_VERSION

pytestmark = pytest.mark.integration


def cityedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cityedge", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_new_file_is_created_at_this_version_then_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "new.db"
    done = cityedge("central", "migrate", "--db", f"sqlite:///{db}")
    assert done.returncode == 0, done.stderr
    assert f"migrated from version 0 to {SCHEMA_VERSION}" in done.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    again = cityedge("central", "migrate", "--db", str(db))
    assert again.returncode == 0 and f"already at version {SCHEMA_VERSION}" in again.stderr


def test_a_file_it_cannot_upgrade_is_refused_naming_its_version(tmp_path: Path) -> None:
    db = tmp_path / "odd.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE something (x)")
        conn.execute("PRAGMA user_version = 1")
    refused = cityedge("central", "migrate", "--db", f"sqlite:///{db}")
    assert refused.returncode == 2
    assert "schema version 1" in refused.stderr and str(db) in refused.stderr


def test_the_config_files_store_url_is_used(tmp_path: Path) -> None:
    db = tmp_path / "from-config.db"
    config = tmp_path / "central.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{db}"\n')
    done = cityedge("central", "migrate", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert db.exists() and f"migrated from version 0 to {SCHEMA_VERSION}" in done.stderr


def test_a_version_4_file_gets_the_registry_and_alarm_episodes(tmp_path: Path) -> None:
    db = tmp_path / "v4.db"
    assert cityedge("central", "migrate", "--db", str(db)).returncode == 0
    with sqlite3.connect(db) as conn:  # what version 4 had: none of version 5's tables
        conn.executescript(
            "DROP TABLE alarm_notes; DROP TABLE alarm_episodes; DROP TABLE alarm_marks; DROP TABLE registry;"
            " DROP TABLE kpi_changes; DROP TABLE kpi_days; PRAGMA user_version = 4;"
        )
    done = cityedge("central", "migrate", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert f"migrated from version 4 to {SCHEMA_VERSION}" in done.stderr
    with sqlite3.connect(db) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        assert {"registry", "alarm_episodes", "alarm_notes", "kpi_changes", "kpi_days"} <= tables


def test_a_version_4_files_tokens_are_kept_and_may_have_the_installer_role(tmp_path: Path) -> None:
    db = tmp_path / "v4.db"
    assert cityedge("central", "migrate", "--db", str(db)).returncode == 0
    v4_tokens = AUTH_SCHEMA.replace(", 'installer'", "")
    with sqlite3.connect(db) as conn:  # version 4's tokens knew three roles
        conn.executescript(f"DROP TABLE api_tokens; DROP TABLE audit; {v4_tokens}")
        conn.execute("INSERT INTO api_tokens VALUES ('0123456789abcdef', 'ops', 'admin', 'd', 1, NULL)")
        conn.executescript(
            "DROP TABLE alarm_notes; DROP TABLE alarm_episodes; DROP TABLE registry; PRAGMA user_version = 4;"
        )
    done = cityedge("central", "migrate", "--db", str(db))
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT key_id, name, role FROM api_tokens").fetchall() == [
            ("0123456789abcdef", "ops", "admin")
        ]
        conn.execute("INSERT INTO api_tokens VALUES ('fedcba9876543210', 'tech', 'installer', 'd', 2, NULL)")
        with pytest.raises(sqlite3.IntegrityError):  # the one live token per name still holds
            conn.execute("INSERT INTO api_tokens VALUES ('00000000000000aa', 'ops', 'viewer', 'd', 3, NULL)")
