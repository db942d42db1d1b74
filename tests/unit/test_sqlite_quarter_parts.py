"""``quarter_parts.cut``: what it sums up in C is what ``rollups.summarise`` says of the same readings."""

from __future__ import annotations

import math
from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.store import rollups as ru
from central.store.sqlite.blocks import QUARTER_MS, bucket_slices
from central.store.sqlite.quarter_parts import cut, plain_row
from protocols.fleet.messages import Scalar
from protocols.quality import Quality

T0 = 1_714_557_600_000
STREAM = 7
COUNTERS = {3}

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)


@st.composite
def usual_batches(draw: st.DrawFn) -> tuple[list[int], list[int], list[int], list[Scalar], list[int]]:
    n = draw(st.integers(1, 60))
    seqs = list(accumulate(draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)), initial=100))[1:]
    steps = draw(st.lists(st.sampled_from([0, 1, 1_000, QUARTER_MS // 3]), min_size=n, max_size=n))
    stamps = list(accumulate(steps, initial=T0 + draw(st.integers(0, QUARTER_MS))))[1:]
    pks = draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))
    values: list[Scalar] = list(draw(st.lists(numbers, min_size=n, max_size=n)))
    return seqs, pks, stamps, values, [Quality.GOOD] * n


def _samples_by_quarter(
    columns: tuple[list[int], list[int], list[int], list[Scalar], list[int]],
) -> dict[tuple[int, int], list[ru.Sample]]:
    seqs, pks, stamps, values, qualities = columns
    out: dict[tuple[int, int], list[ru.Sample]] = {}
    for seq, pk, ts, value, quality in zip(seqs, pks, stamps, values, qualities, strict=True):
        out.setdefault((ts - ts % QUARTER_MS, pk), []).append(ru.Sample(ts, STREAM, seq, value, quality))
    return out


@settings(max_examples=300, deadline=None)
@given(usual_batches())
def test_a_usual_batch_sums_up_as_summarise_does(
    columns: tuple[list[int], list[int], list[int], list[Scalar], list[int]],
) -> None:
    plain, left = cut(bucket_slices(columns[2]), STREAM, columns, COUNTERS, ascending=True)
    expected = _samples_by_quarter(columns)
    got = {(row[11], row[12]): row for row in plain}
    assert len(got) == len(plain)  # one row per quarter and point
    assert set(got).isdisjoint(left)
    assert set(got) | set(left) == set(expected)
    for (bucket, pk), samples in expected.items():
        if pk in COUNTERS:
            assert left[(bucket, pk)] == (True, samples)
        else:
            assert got[(bucket, pk)] == plain_row(bucket, pk, ru.summarise(bucket, samples, counter=False))


@given(usual_batches(), st.sampled_from(["bad", "bool", "text", "none", "descending"]))
def test_any_other_batch_goes_as_samples(
    columns: tuple[list[int], list[int], list[int], list[Scalar], list[int]], unusual: str
) -> None:
    _, _, stamps, values, qualities = columns
    ascending = True
    if unusual == "bad":
        qualities[-1] = Quality.BAD
    elif unusual == "bool":
        values[0] = True
    elif unusual == "text":
        values[0] = "on"
    elif unusual == "none":
        values[0] = None
    else:
        ascending = False
    plain, left = cut(bucket_slices(stamps), STREAM, columns, COUNTERS, ascending=ascending)
    assert plain == []
    assert left == {key: (key[1] in COUNTERS, s) for key, s in _samples_by_quarter(columns).items()}


def test_huge_values_saturate_the_sum() -> None:
    columns = ([1, 2], [1, 1], [T0, T0 + 1], [1.7e308, 1.7e308], [Quality.GOOD, Quality.GOOD])
    plain, _ = cut(bucket_slices(columns[2]), STREAM, columns, set(), ascending=True)
    assert plain[0][4] == ru.MAX_SUM


@pytest.mark.parametrize("pks", [[1, 2], [1, 1]], ids=["each point once", "a point twice"])
def test_a_nan_takes_the_samples_way(pks: list[int]) -> None:
    columns = ([1, 2], pks, [T0, T0 + 1], [math.nan, 1.0], [Quality.GOOD, Quality.GOOD])
    plain, left = cut(bucket_slices(columns[2]), STREAM, columns, set(), ascending=True)
    assert (T0 - T0 % QUARTER_MS, 1) in left
    assert all(row[12] != 1 for row in plain)
