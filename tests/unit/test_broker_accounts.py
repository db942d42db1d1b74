"""Broker accounts without a broker: hashes, the template's rules, the sync's diff, the hook's limiter,
the [broker_accounts] config section."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from central.broker_accounts import AccountsError, AccountsTemplate, DesiredCabinet, PasswordHash, plan_sync
from central.broker_accounts.hook import RateLimiter
from central.broker_accounts.rules import allowed, topic_matches
from central.broker_accounts.service import desired_cabinets
from central.broker_accounts.settings import accounts_settings
from central.broker_accounts.template import credential_tag_text
from central.config import ConfigError, load_central_config
from central.store.rows import RegistryEntry

TEMPLATE = AccountsTemplate()
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "central.example.toml"


def test_a_hash_verifies_its_password_only_and_survives_json() -> None:
    credential = PasswordHash.of("s3cret")
    again = PasswordHash.from_json(credential.to_json())
    assert again == credential and again.verify("s3cret") and not again.verify("s3cret ")
    assert "s3cret" not in credential.to_json() and credential.password not in repr(credential)
    # The registry API's own spelling (keys sorted) is the same hash.
    assert PasswordHash.from_json(json.dumps(credential.fields(), sort_keys=True)) == credential


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"password": "x", "salt": "y"}',
        '{"password": "AAAA", "salt": "AAAA", "iterations": 1000}',
        '{"password": "' + "A" * 88 + '", "salt": "' + "A" * 16 + '", "iterations": 10000000}',
        '{"password": "' + "A" * 88 + '", "salt": "' + "A" * 16 + '", "iterations": true}',
    ],
)
def test_a_bad_stored_hash_is_refused_by_name(text: str) -> None:
    with pytest.raises(AccountsError, match="broker hash"):
        PasswordHash.from_json(text)


def test_the_rendered_file_carries_each_cabinets_credential_tag() -> None:
    credential = PasswordHash.of("pw")
    document = TEMPLATE.render({"central": PasswordHash.of("c")}, {"cab-1": credential})
    (cabinet,) = [c for c in document["clients"] if c["username"] == "cab-1"]
    assert cabinet["textdescription"] == credential_tag_text(credential)
    assert (cabinet["clientid"], cabinet["salt"]) == ("cab-1", credential.salt)
    assert {c["username"] for c in document["clients"]} == {"central", "cab-1"}  # no admin hash given
    with pytest.raises(AccountsError, match="cab/1"):
        TEMPLATE.render({}, {"cab/1": credential})


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("cityedge/+/data", "cityedge/cab-1/data", True),
        ("cityedge/+/data", "cityedge/cab-1/data/x", False),
        ("cityedge/#", "cityedge/a/b", True),
        ("#", "$SYS/broker", False),
        ("$CONTROL/dynamic-security/#", "$CONTROL/dynamic-security/v1", True),
    ],
)
def test_topic_matching(pattern: str, topic: str, matches: bool) -> None:
    assert topic_matches(pattern, topic) is matches


def test_the_rules_are_the_templates() -> None:
    assert allowed(TEMPLATE, "cab-1", "cityedge/cab-1/data", "publish")
    assert not allowed(TEMPLATE, "cab-1", "cityedge/cab-2/data", "publish")
    assert not allowed(TEMPLATE, "cab-1", "cityedge/+/data", "publish")
    assert allowed(TEMPLATE, "cab-1", "cityedge/cab-1/ack", "subscribe")
    assert not allowed(TEMPLATE, "cab-1", "cityedge/cab-1/+", "subscribe")
    assert allowed(TEMPLATE, "central", "$share/cityedge-central/cityedge/+/data", "subscribe")
    assert not allowed(TEMPLATE, "central", "cityedge/#", "subscribe")
    assert allowed(TEMPLATE, "cityedge-admin", "$CONTROL/dynamic-security/v1", "subscribe")
    assert not allowed(TEMPLATE, "cab-1", "", "publish")


def _broker_state(
    desired: dict[str, DesiredCabinet],
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """What a broker holding exactly ``desired`` (and the fixed accounts) lists."""
    document = TEMPLATE.render({}, {c: d.credential for c, d in desired.items()})
    fixed = [{"username": c["username"], "roles": c["roles"], "groups": []} for c in TEMPLATE.fixed_clients]
    clients = fixed + [
        {k: c[k] for k in ("username", "clientid", "textdescription", "roles")} | {"groups": []}
        for c in document["clients"]
    ]
    return clients, document["roles"]


def test_a_broker_holding_the_registry_needs_nothing() -> None:
    desired = {f"cab-{n}": DesiredCabinet(PasswordHash.of("pw", iterations=1), 0) for n in range(3)}
    clients, roles = _broker_state(desired)
    plan = plan_sync(
        TEMPLATE, clients=clients, roles=roles, default_access=TEMPLATE.default_acl_access(),
        desired=desired, now_ms=10**6,
    )  # fmt: skip
    assert plan.commands == [] and plan.summary() == "in sync"


def test_the_sync_deletes_revoked_and_stale_and_repairs_the_rest() -> None:
    old = {
        c: DesiredCabinet(PasswordHash.of("pw", iterations=1), 0)
        for c in ("cab-1", "cab-2", "cab-3", "cab-4")
    }
    clients, roles = _broker_state(old)
    clients[-1]["clientid"] = "someone-else"  # cab-4 taken over by hand
    clients.append({"username": "monitor", "roles": [], "groups": []})
    desired = {
        "cab-1": old["cab-1"],
        "cab-2": DesiredCabinet(PasswordHash.of("new", iterations=1), 10**6 - 1),  # just re-issued
        "cab-3": DesiredCabinet(PasswordHash.of("new", iterations=1), 0),  # re-issued long ago
        "cab-4": old["cab-4"],
        "cab-5": DesiredCabinet(PasswordHash.of("pw", iterations=1), 0),  # never reached the broker
    }
    del desired["cab-1"]  # revoked
    plan = plan_sync(
        TEMPLATE, clients=clients, roles=roles, default_access={"subscribe": True}, desired=desired,
        now_ms=10**6,
    )  # fmt: skip
    assert (plan.revoked, plan.stale, plan.deferred) == (["cab-1"], ["cab-3"], ["cab-2"])
    assert (plan.repaired, plan.missing, plan.unmanaged) == (["cab-4"], ["cab-5"], ["monitor"])
    kinds = [(c["command"], c.get("username") or c.get("rolename")) for c in plan.commands]
    assert kinds[0] == ("setDefaultACLAccess", None)
    assert ("createRole", "cityedge-cabinet-cab-5") in kinds
    assert kinds[-1] == ("deleteRole", "cityedge-cabinet-cab-1")
    assert ("modifyClient", "cab-4") in kinds and ("deleteClient", "cab-3") in kinds


def test_the_limiter_admits_a_burst_then_the_rate_per_source() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.admit("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.admit("b")  # another source has its own bucket
    now[0] += 0.5
    assert limiter.admit("a") and not limiter.admit("a")


def test_the_config_section(tmp_path: Path) -> None:
    example = load_central_config(EXAMPLE).broker_accounts
    assert example.admin_password_file == "/etc/cityedge/broker-admin-password"
    assert example.hook_secret_file is None
    (tmp_path / "bad.toml").write_text("[broker_accounts]\nsync_interval_s = 1\n")
    with pytest.raises(ConfigError, match=r"broker_accounts\.sync_interval_s"):
        load_central_config(tmp_path / "bad.toml")
    short = tmp_path / "secret"
    short.write_text("short\n")
    short.chmod(0o600)
    (tmp_path / "c.toml").write_text(f'[broker_accounts]\nhook_secret_file = "{short}"\n')
    with pytest.raises(ConfigError, match="shorter than 16"):
        accounts_settings(load_central_config(tmp_path / "c.toml").broker_accounts, "c.toml")
    short.chmod(0o644)
    with pytest.raises(ConfigError, match="hook_secret_file") as raised:
        accounts_settings(load_central_config(tmp_path / "c.toml").broker_accounts, "c.toml")
    assert "short" not in str(raised.value).replace(str(short), "")


def test_a_cabinet_named_like_central_never_becomes_an_account() -> None:
    def entry(cabinet: str, revoked: int | None = None) -> RegistryEntry:
        credential = PasswordHash.of("pw", iterations=1).to_json()
        return RegistryEntry(cabinet, "Dijon", "", None, None, None, None, credential, 1, 1, revoked)

    entries = [entry("central"), entry("cityedge-admin"), entry("cab-1"), entry("cab-2", revoked=5)]
    entries.append(dataclasses.replace(entry("cab-3"), broker_hash="garbage"))
    assert list(desired_cabinets(entries)) == ["cab-1"]
