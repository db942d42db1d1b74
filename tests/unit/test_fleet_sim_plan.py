"""The fleet-sim plan and its cabinets' broker accounts: checked, named, never a password shown."""

from __future__ import annotations

import pytest

from cityedge.fleet_sim import FleetPlan, OutagePlan
from cityedge.fleet_sim.fleet import MissingCredentials, cabinet_addresses
from cityedge.fleet_sim.stats import percentile
from protocols.fleet.broker_url import parse_broker_url


def test_cabinet_ids_are_numbered_from_first_with_the_digits_asked() -> None:
    assert FleetPlan(cabinets=3).cabinet_ids == ["sim-00001", "sim-00002", "sim-00003"]
    demo = FleetPlan(cabinets=2, prefix="demo", first=999, digits=3)
    assert demo.cabinet_ids == ["demo-999", "demo-1000"]
    assert FleetPlan(cabinets=1000).start_spread_s == pytest.approx(5.0)
    assert FleetPlan(cabinets=10, points=40, interval_s=10).readings_per_s == 40


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"cabinets": 0}, "cabinets 0"),
        ({"cabinets": 1, "points": 1}, "points 1"),
        ({"cabinets": 1, "interval_s": 0.0}, "interval 0.0"),
        ({"cabinets": 1, "prefix": "bad/prefix"}, "prefix 'bad/prefix'"),
        ({"cabinets": 1, "stagger_s": -1.0}, "stagger -1.0"),
    ],
)
def test_a_plan_that_cannot_run_says_which_setting(fields: dict[str, object], names: str) -> None:
    with pytest.raises(ValueError, match=names):
        FleetPlan(**fields)  # type: ignore[arg-type]


def test_an_outage_plan_is_a_share_and_positive_durations() -> None:
    with pytest.raises(ValueError, match="share"):
        OutagePlan(fraction=1.5, duration_s=1, every_s=1)
    with pytest.raises(ValueError, match="positive"):
        OutagePlan(fraction=0.1, duration_s=0, every_s=1)


def test_each_cabinet_logs_in_as_itself_with_its_own_password() -> None:
    plan = FleetPlan(cabinets=2, prefix="c")
    broker = parse_broker_url("mqtt://127.0.0.1:1883")
    # Passwords no repr could hold by chance ("one" is in "None").
    one, two = "pw-7f3a-first", "pw-91c2-second"
    addresses = cabinet_addresses(plan, broker, {"c-00001": one, "c-00002": two, "other": "x"})
    assert {c: (a.username, a.password) for c, a in addresses.items()} == {
        "c-00001": ("c-00001", one),
        "c-00002": ("c-00002", two),
    }
    assert one not in repr(addresses) and two not in str(addresses["c-00002"])
    # Without a credentials file every cabinet takes the address as given.
    assert set(cabinet_addresses(plan, broker, None).values()) == {broker}


def test_missing_credentials_name_the_cabinets_not_the_passwords() -> None:
    plan = FleetPlan(cabinets=5, prefix="c")
    with pytest.raises(MissingCredentials, match=r"c-00002, c-00003, c-00004 and 1 more$") as caught:
        cabinet_addresses(plan, parse_broker_url("mqtt://h:1883"), {"c-00001": "secret"})
    assert "secret" not in str(caught.value)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile([7.0], 0.99)) == (50, 99, 7)
