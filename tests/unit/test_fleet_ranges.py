"""Seq ranges, as acks carry them: each helper agrees with plain set arithmetic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocols.fleet import merge_ranges, ranges_within, seq_ranges, subtract_ranges

seq_sets = st.sets(st.integers(1, 200), max_size=60)


def expand(ranges: list[tuple[int, int]]) -> set[int]:
    return {seq for a, b in ranges for seq in range(a, b + 1)}


def is_canonical(ranges: list[tuple[int, int]]) -> bool:
    """Ascending, each a <= b, and neither overlapping nor touching (touching ranges are merged)."""
    return all(a <= b for a, b in ranges) and all(
        ranges[i][1] + 1 < ranges[i + 1][0] for i in range(len(ranges) - 1)
    )


@given(seqs=seq_sets)
def test_seq_ranges_cover_exactly_the_seqs(seqs: set[int]) -> None:
    ranges = seq_ranges(seqs)
    assert expand(ranges) == seqs
    assert is_canonical(ranges)


@given(a=seq_sets, b=seq_sets)
def test_merge_is_the_union(a: set[int], b: set[int]) -> None:
    merged = merge_ranges([*seq_ranges(a), *seq_ranges(b)])
    assert expand(merged) == a | b
    assert is_canonical(merged)


@given(a=seq_sets, b=seq_sets)
def test_subtract_is_the_difference(a: set[int], b: set[int]) -> None:
    left = subtract_ranges(seq_ranges(a), seq_ranges(b))
    assert expand(left) == a - b
    assert is_canonical(left)


@given(a=seq_sets, b=seq_sets)
def test_within_is_the_subset(a: set[int], b: set[int]) -> None:
    assert ranges_within(seq_ranges(a), seq_ranges(b)) == (a <= b)


def test_examples() -> None:
    assert seq_ranges([7, 1, 2, 3]) == [(1, 3), (7, 7)]
    assert subtract_ranges([(1, 10)], [(3, 4), (8, 12)]) == [(1, 2), (5, 7)]
    assert not ranges_within([(1, 5)], [(1, 4), (6, 9)])
