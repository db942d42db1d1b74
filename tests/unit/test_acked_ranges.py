"""The buffer's acknowledged ranges against a plain set of seqs."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.acked_ranges import AckedRanges

ranges = st.lists(st.tuples(st.integers(1, 300), st.integers(0, 40)), max_size=40)


@given(ranges, st.integers(1, 340))
def test_matches_a_set_of_seqs(added: list[tuple[int, int]], below: int) -> None:
    acked = AckedRanges()
    model: set[int] = set()
    for first, length in added:
        last = first + length
        new = acked.add(first, last)
        assert new == len(set(range(first, last + 1)) - model)
        model |= set(range(first, last + 1))
        pairs = acked.ranges()
        assert pairs == sorted(pairs)
        assert all(b + 1 < c for (_, b), (c, _) in itertools.pairwise(pairs)), "merged"
    assert {seq for seq in range(0, 360) if seq in acked} == model
    for first in range(1, 60, 7):
        assert acked.covers(first, first + 5) == (set(range(first, first + 6)) <= model)
        assert acked.overlaps(first, first + 5) == bool(set(range(first, first + 6)) & model)
    acked.drop_below(below)
    kept = {s for a, b in acked.ranges() for s in range(a, b + 1)}
    assert kept <= model
    assert {s for s in model if s >= below} <= kept  # only whole ranges under ``below`` go
