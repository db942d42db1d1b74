"""The PostgreSQL writer's rollups without a Sample per reading equal the shared maths'."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import given
from hypothesis import strategies as st

from central.store.postgres.batch_facts import add_good_floats, add_samples
from central.store.postgres.rollups import Plain, plain_rollups
from central.store.rollups import Sample
from central.store.rows import Rollup
from protocols.fleet import Reading
from protocols.quality import Quality

POINTS = {"a/x": 1, "b/y": 2, "m/energy_wh": 3}
T0 = 1_714_557_600_000  # a quarter's start
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e6, 1e6))


@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(POINTS)), values, st.integers(0, 3), st.booleans()), max_size=40
    ),
    st.integers(0, 900_000 - 100),
)
def test_good_floats_roll_up_as_the_samples_do(rows: list[tuple[str, float, int, bool]], start: int) -> None:
    readings = []
    ts = T0 + start
    for i, (point, value, step, good) in enumerate(rows):
        ts += step
        quality = Quality.GOOD if good or i % 7 else Quality.BAD
        readings.append(Reading(seq=100 + i, point=point, ts=ts, value=value, quality=quality))
    plain: Plain = {}
    left = add_good_floats(plain, 5, readings, POINTS)
    assert left is not None or plain == {}  # it takes all of a batch's points, or none
    samples: dict[int, tuple[bool, list[Sample]]] = {}
    add_samples(samples, 5, readings if left is None else left, POINTS)
    fast = plain_rollups(samples, plain)
    every: dict[int, tuple[bool, list[Sample]]] = {}
    add_samples(every, 5, readings, POINTS)
    expected = plain_rollups(every)
    assert {k: _comparable(r) for k, r in fast.items()} == {k: _comparable(r) for k, r in expected.items()}


def _comparable(rollup: Rollup) -> tuple[object, ...]:
    """The rollup's fields, a NaN as a word (NaN equals nothing, not even itself)."""
    return tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in dataclasses.astuple(rollup))
