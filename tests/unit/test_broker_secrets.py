"""Broker secrets: read from files only their owner can read or from the environment, never echoed by
an error, a repr or a log line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cityedge.broker_accounts import AccountsError, main, read_credentials, render_accounts
from edge_agent.config import load_config
from edge_agent.errors import ConfigError
from protocols.fleet.broker_url import (
    SecretFileError,
    parse_broker_url,
    password_from_environment,
    read_secret_file,
    redact_url,
)

SECRET = "TOPSECRET-pw"

CONFIG = """
[cabinet]
id = "cab-1"

[broker]
url = "mqtt://127.0.0.1:1883"
username = "cab-1"
{broker}

[[devices]]
name = "lc1"
driver = "modbus-tcp"
address = "127.0.0.1:5020"
profile = "lighting-single-circuit"
"""

SECOND_DEVICE = """
[[devices]]
name = "{name}"
driver = "modbus-tcp"
address = "127.0.0.1:5021"
profile = "lighting-single-circuit"
"""


def _secret_file(path: Path, mode: int, text: str = SECRET + "\n") -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640])
def test_secret_file_readable_by_its_owner_and_group(tmp_path: Path, mode: int) -> None:
    assert read_secret_file(_secret_file(tmp_path / "pw", mode)) == SECRET


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602, 0o666])
def test_secret_file_others_can_access_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    path = _secret_file(tmp_path / "pw", mode)
    with pytest.raises(SecretFileError, match="chmod o-rwx") as caught:
        read_secret_file(path)
    assert str(path) in str(caught.value) and SECRET not in str(caught.value)


def test_secret_file_missing_empty_or_a_folder(tmp_path: Path) -> None:
    for path, words in [
        (tmp_path / "nope", "cannot read"),
        (_secret_file(tmp_path / "empty", 0o600, "\n"), "empty"),
        (tmp_path, "cannot read it"),
    ]:
        with pytest.raises(SecretFileError, match=words):
            read_secret_file(path)


def test_password_from_the_environment_in_order(tmp_path: Path) -> None:
    named = _secret_file(tmp_path / "named", 0o600, "from-named-file")
    credentials = tmp_path / "creds"
    credentials.mkdir()
    _secret_file(credentials / "broker-password", 0o400, "from-credential")
    everything = {
        "CITYEDGE_BROKER_PASSWORD": "from-env",
        "CITYEDGE_BROKER_PASSWORD_FILE": str(named),
        "CREDENTIALS_DIRECTORY": str(credentials),
    }
    assert password_from_environment(everything) == "from-env"
    del everything["CITYEDGE_BROKER_PASSWORD"]
    assert password_from_environment(everything) == "from-named-file"
    del everything["CITYEDGE_BROKER_PASSWORD_FILE"]
    assert password_from_environment(everything) == "from-credential"
    assert password_from_environment({"CREDENTIALS_DIRECTORY": str(tmp_path / "none")}) is None
    assert password_from_environment({}) is None


@pytest.mark.parametrize(
    "url",
    [
        f"mqtt://cab-1:{SECRET}@h:port",
        f"mqtt://cab-1:{SECRET}/x@h:1883",
        f"mqtt://cab-1:{SECRET}@@h:70000",
        f"http://cab-1:{SECRET}@h",
        f"mqtt://cab-1:{SECRET}@",
    ],
)
def test_bad_broker_url_error_never_shows_its_password(url: str) -> None:
    with pytest.raises(ValueError, match="broker URL") as caught:
        parse_broker_url(url)
    assert SECRET not in str(caught.value) and "cab-1:***@" in str(caught.value)
    assert caught.value.__cause__ is None
    assert SECRET not in redact_url(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"mqtt:/cab-1:{SECRET}@h", "mqtt:/cab-1:***@h"),  # one slash
        (f"mqtt:cab-1:{SECRET}@h", "mqtt:cab-1:***@h"),  # no slash
        (f"MQTT:cab-1:{SECRET}@h", "MQTT:cab-1:***@h"),
        (f"mqtt:/{SECRET}@h", "mqtt:/***@h"),  # after a colon, before an @: it may be a password
        (f"cab-1:{SECRET}@h:1883", "cab-1:***@h:1883"),  # no scheme at all
        (f"mqtt//cab-1:{SECRET}@h", "mqtt//cab-1:***@h"),  # no colon after the scheme
        (f"http:cab-1:{SECRET}@h", "http:***@h"),
        (f"cab-1:{SECRET}@mqtt://h", "cab-1:***@mqtt://h"),  # "://" after the password
        (f"cab-1:{SECRET}@mqtt://h@x", "cab-1:***@x"),
        (f"mqtt:///cab-1:{SECRET}@h", "mqtt:///cab-1:***@h"),
    ],
)
def test_a_mistyped_broker_url_never_shows_its_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    with pytest.raises(ValueError, match="broker URL") as caught:
        parse_broker_url(url)
    assert SECRET not in str(caught.value) and repr(shown) in str(caught.value)
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    "url", ["mqtt://cab-1@h", "mqtt://h:1883", "mqtt:/h:1883", "mqtt:h", "h:1883", "mqtt://", ""]
)
def test_a_url_without_a_password_is_shown_as_it_is(url: str) -> None:
    assert redact_url(url) == url


def test_a_password_is_all_that_follows_the_users_first_colon() -> None:
    assert redact_url(f"mqtt://cab-1:{SECRET}:more@h") == "mqtt://cab-1:***@h"
    assert redact_url(f"mqtt:cab-1:{SECRET}:more@h") == "mqtt:cab-1:***@h"


def _config(tmp_path: Path, broker: str, extra: str = "", mode: int = 0o640) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG.format(broker=broker) + extra)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("broker", "extra", "key"),
    [
        (f'password = "{SECRET}"', SECOND_DEVICE.format(name="lc1"), "devices[1].name"),
        (f'password = "{SECRET}"', SECOND_DEVICE.format(name="lc 2"), "devices[1].name"),
        (f'password = "{SECRET}"\nkeepalive_s = 1', "", "broker.keepalive_s"),
        (f'password = "{SECRET}"\npassword_file = "pw"', "", "broker"),
        (f'password = ["{SECRET}"]', "", "broker.password"),
        ('url = "mqtt://cab-1:' + SECRET + '@h:x"', "", "broker.url"),
        (f'password = "{SECRET}"', '\n[sync]\nwindow = "lots"\n', "sync.window"),
    ],
    ids=[
        "duplicate-device",
        "bad-device-name",
        "bad-keepalive",
        "two-passwords",
        "password-type",
        "url",
        "other-key",
    ],
)
def test_config_error_never_shows_the_password(tmp_path: Path, broker: str, extra: str, key: str) -> None:
    text = CONFIG.replace('url = "mqtt://127.0.0.1:1883"\n', "") if broker.startswith("url") else CONFIG
    path = tmp_path / "agent.toml"
    path.write_text(text.format(broker=broker) + extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert SECRET not in str(caught.value)
    assert caught.value.key == key
    assert caught.value.__cause__ is None  # the validator's own message may repeat an input


def test_broker_given_as_a_string_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(f'broker = "mqtt://cab-1:{SECRET}@h"\n[cabinet]\nid = "cab-1"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == "broker" and SECRET not in str(caught.value)


def test_password_file_next_to_the_config(tmp_path: Path) -> None:
    _secret_file(tmp_path / "broker-password", 0o600)
    loaded = load_config(_config(tmp_path, 'password_file = "broker-password"'))
    assert loaded.config.broker.address().password == SECRET
    assert SECRET not in repr(loaded.config) and SECRET not in str(loaded.config.broker.address())


def test_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    _secret_file(tmp_path / "broker-password", 0o644)
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, 'password_file = "broker-password"'))
    assert caught.value.key == "broker.password_file" and "chmod o-rwx" in caught.value.problem


def test_password_from_the_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    _secret_file(credentials / "broker-password", 0o400)
    monkeypatch.delenv("CITYEDGE_BROKER_PASSWORD", raising=False)
    monkeypatch.delenv("CITYEDGE_BROKER_PASSWORD_FILE", raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert load_config(_config(tmp_path, "")).config.broker.address().password == SECRET
    # A password of the config's own wins.
    loaded = load_config(_config(tmp_path, 'password = "inline"'))
    assert loaded.config.broker.address().password == "inline"


def test_inline_password_in_a_config_all_can_read_is_loudly_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        load_config(_config(tmp_path, f'password = "{SECRET}"', mode=0o644))
    assert "chmod o-rwx" in caplog.text and SECRET not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_config(_config(tmp_path, f'password = "{SECRET}"', mode=0o640))
    assert caplog.text == ""


def test_accounts_refuse_a_user_that_is_no_cabinet_and_a_readable_credentials_file(tmp_path: Path) -> None:
    template = {"roles": [], "clients": [{"username": "central", "roles": []}]}
    with pytest.raises(AccountsError, match="cab/1"):
        render_accounts(template, {"cab/1": "pw"})
    path = _secret_file(tmp_path / "credentials", 0o640, f"central:{SECRET}\n")
    with pytest.raises(SecretFileError, match="chmod 0600"):
        read_credentials(path)
    path.chmod(0o600)
    assert read_credentials(path) == {"central": SECRET}


def test_accounts_program_writes_the_plugin_file_for_the_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    credentials = _secret_file(tmp_path / "credentials", 0o600, f"central:{SECRET}\n# a comment\ncab-1:x\n")
    out = tmp_path / "mosquitto" / "dynsec.json"
    assert main(["--credentials", str(credentials), "--out", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    document = json.loads(out.read_text())
    clients = {client["username"]: client for client in document["clients"]}
    assert set(clients) == {"central", "cab-1"}
    assert clients["cab-1"]["clientid"] == "cab-1" and "clientid" not in clients["central"]
    assert SECRET not in out.read_text()
    roles = {role["rolename"]: role for role in document["roles"]}
    assert {acl["topic"] for acl in roles["cityedge-cabinet-cab-1"]["acls"]} == {
        f"cityedge/cab-1/{kind}" for kind in ("status", "data", "ack", "cmd")
    }
    credentials.chmod(0o644)
    assert main(["--credentials", str(credentials), "--out", str(out)]) == 2
    assert "chmod 0600" in capsys.readouterr().err


def test_a_kernel_pseudo_file_is_no_password_file(tmp_path: Path) -> None:
    # A config sent by central may name any path: /proc/self/environ passes as a 0400 regular file of
    # the agent's own, and its whole environment would go to the broker the config names as the
    # password (and root's, through `sudo cityedge diag`).
    pseudo = "/proc/self/environ"
    with pytest.raises(SecretFileError, match="not a file on disk"):
        read_secret_file(Path(pseudo))
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[cabinet]\nid = "cab-1"\n[broker]\nurl = "mqtt://127.0.0.1:1"\npassword_file = "{pseudo}"\n'
    )
    with pytest.raises(ConfigError, match=r"broker\.password_file"):
        load_config(config)
