"""The seq ranges the PostgreSQL writer keeps in ``held``, against a plain set of seqs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from central.store.postgres.held import HeldSeqs, runs, span_runs

seqs = st.lists(st.integers(min_value=-5, max_value=40), max_size=30)


@given(st.lists(seqs, max_size=6), st.lists(st.tuples(st.integers(-5, 40), st.integers(0, 6)), max_size=4))
def test_fresh_and_hold_match_a_set_of_seqs(batches: list[list[int]], loaded: list[tuple[int, int]]) -> None:
    model: set[int] = set()
    for lo, n in loaded:
        model.update(range(lo, lo + n + 1))
    held = HeldSeqs({7: runs(model)} if model else {})
    for batch in batches:
        chosen = held.fresh(7, batch)
        expected = []
        seen: set[int] = set()
        for i, seq in enumerate(batch):
            if seq not in model and seq not in seen:
                expected.append(i)
            seen.add(seq)
        assert (list(range(len(batch))) if chosen is None else chosen) == expected
        held.hold(7, span_runs(batch))
        model.update(batch)
        assert held.ranges(7) == runs(model)


def test_runs_of_seqs() -> None:
    assert runs([5, 3, 4, 9, 9, 1]) == [(1, 1), (3, 5), (9, 9)]
    assert span_runs([3, 4, 5]) == [(3, 5)]
    assert span_runs([3, 5, 4]) == [(3, 5)]
    assert span_runs([]) == []
