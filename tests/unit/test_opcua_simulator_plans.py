"""The simulated controller's signal plans: phases over the cycle."""

from __future__ import annotations

import pytest

from protocols.opcua.simulator import DEFAULT_PLANS, SignalPlan, TrafficControllerSimulator


def test_phase_at_each_second_of_the_cycle() -> None:
    plan = SignalPlan(1, (40, 5, 40, 5))

    assert plan.cycle_time_s == 90
    assert [plan.phase_at(s) for s in (0, 39, 40, 44, 45, 84, 85, 89)] == [1, 1, 2, 2, 3, 3, 4, 4]


def test_default_plans_differ_in_cycle_time() -> None:
    assert [p.cycle_time_s for p in DEFAULT_PLANS] == [90, 60, 120]


async def test_unknown_node_and_mode_are_refused_before_serving() -> None:
    sim = TrafficControllerSimulator()
    with pytest.raises(
        ValueError, match=r"no node 'Controller\.Colour' in the model: expected one of Controller\.Mode"
    ):
        await sim.set_raw("Controller.Colour", None)
    with pytest.raises(ValueError, match="unknown mode 'amber'"):
        await sim.set_mode("amber")
