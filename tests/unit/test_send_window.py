"""The sender's adaptive window: grows on fast acks, halves on slow ones and on timeouts, within bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.send_window import SendWindow


def fresh(max_window: int = 16, max_batch: int = 5000) -> SendWindow:
    return SendWindow(max_window=max_window, max_batch=max_batch, target_s=1.0)


def test_it_starts_at_the_configured_ceilings() -> None:
    flow = fresh()
    assert (flow.batches, flow.batch) == (16, 5000)


def test_a_slow_ack_halves_window_and_batch_once_per_round_trip() -> None:
    flow = fresh()
    flow.on_ack(3.0, now=100.0)
    assert (flow.batches, flow.batch) == (8, 2500)
    # The other batches of the same window come back just as late: that is the same news.
    flow.on_ack(3.0, now=100.5)
    assert (flow.batches, flow.batch) == (8, 2500)
    flow.on_ack(3.0, now=103.5)  # a round trip later, still slow: halve again
    assert (flow.batches, flow.batch) == (4, 1250)


def test_fast_acks_grow_it_back_to_the_ceilings_and_no_further() -> None:
    flow = fresh()
    for step in range(4):
        flow.on_ack(5.0, now=10.0 * step)
    assert flow.batches == 1
    sizes = [flow.batches]
    for i in range(1000):
        flow.on_ack(0.05, now=100.0 + i)
        sizes.append(flow.batches)
    assert sizes == sorted(sizes)  # only ever grows on fast acks
    assert sizes[1] <= 2  # additively: about one batch per window of acks, not a jump
    assert (flow.batches, flow.batch) == (16, 5000)


def test_a_timeout_halves_it() -> None:
    flow = fresh()
    flow.on_timeout(now=1.0)
    assert (flow.batches, flow.batch) == (8, 2500)


def test_it_never_goes_under_one_batch_of_the_floor() -> None:
    flow = fresh()
    for step in range(50):
        flow.on_timeout(now=100.0 * step)
    assert flow.batches == 1
    assert flow.batch == 50


def test_a_ceiling_under_the_floor_is_the_floor() -> None:
    flow = fresh(max_window=1, max_batch=10)
    flow.on_timeout(now=1.0)
    assert (flow.batches, flow.batch) == (1, 10)


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="positive"):
        SendWindow(max_window=0, max_batch=10, target_s=1.0)


@given(
    st.lists(
        st.tuples(st.sampled_from(["ack", "timeout"]), st.floats(min_value=0, max_value=60)), max_size=300
    ),
    st.integers(min_value=1, max_value=64),
    st.integers(min_value=1, max_value=5000),
)
def test_any_sequence_stays_within_bounds(events: list[tuple[str, float]], window: int, batch: int) -> None:
    flow = fresh(window, batch)
    for i, (kind, latency) in enumerate(events):
        if kind == "ack":
            flow.on_ack(latency, now=float(i))
        else:
            flow.on_timeout(now=float(i))
        assert 1 <= flow.batches <= window
        assert min(50, batch) <= flow.batch <= batch
