"""The central config file: the shipped example loads, a wrong file names its key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.config import (
    DAY_MS,
    CentralConfig,
    ConfigError,
    Retention,
    load_central_config,
    retention_of,
)
from central.store import db_url_from

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "central.example.toml"


def test_the_shipped_example_is_valid_and_says_what_it_means() -> None:
    config = load_central_config(EXAMPLE)
    assert config.store.url == "sqlite:////var/lib/cityedge/central.db"
    assert retention_of(config) == Retention(days=90, interval_s=300, batch=5000)
    assert (config.broker.url, config.http.listen) == ("mqtt://central@127.0.0.1:1883", "127.0.0.1:8080")


def test_an_empty_file_means_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("")
    assert load_central_config(tmp_path / "c.toml") == CentralConfig()
    assert Retention().horizon_ms(100 * DAY_MS) == 10 * DAY_MS


def test_the_command_line_and_the_environment_win_over_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CITYEDGE_DB", raising=False)
    assert db_url_from(None, "sqlite:///file.db") == "sqlite:///file.db"
    assert db_url_from("sqlite:///option.db", "sqlite:///file.db") == "sqlite:///option.db"
    monkeypatch.setenv("CITYEDGE_DB", "sqlite:///env.db")
    assert db_url_from(None, "sqlite:///file.db") == "sqlite:///env.db"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[store]\nretention_days = "long"\n', "store.retention_days", "expected an integer, got a string"),
        ("[store]\nretention_days = 0\n", "store.retention_days", "expected an integer >= 1"),
        ("[store]\nretension_days = 9\n", "store.retension_days", "unknown key"),
        ("[stor]\n", "stor", "unknown key"),
        ('[store]\nurl = "mysql://db"\n', "store.url", "unknown scheme 'mysql'"),
        ('[store]\nurl = "postgresql://u:secret@db/x"\n', "store.url", "password in the database URL"),
        ('[broker]\nurl = "http://host"\n', "broker.url", "must start with mqtt://"),
        ('[broker]\nurl = "mqtt://u:pw@host:1883"\n', "broker.url", "password_file"),
        ('[http]\nlisten = "8080"\n', "http.listen", "expected HOST:PORT"),
        ("[store]\npurge_batch = 10\n", "store.purge_batch", ">= 100"),
    ],
)
def test_a_wrong_value_names_the_file_the_key_and_what_is_expected(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = tmp_path / "central.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_central_config(path)
    assert (raised.value.file, raised.value.key) == (str(path), key)
    assert problem in raised.value.problem
    assert "secret" not in str(raised.value) and ":pw@" not in str(raised.value)


def test_a_file_that_is_not_toml_or_not_there(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[store\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_central_config(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_central_config(tmp_path / "missing.toml")
