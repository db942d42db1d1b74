"""The PostgreSQL writer's rollups without a Sample per reading equal the shared maths'."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import example, given
from hypothesis import strategies as st

from central.store import rollups as ru
from central.store.postgres.batch_facts import add_good_floats, add_samples
from central.store.postgres.rollups import Plain, add_plain_values, plain_rollups, rollup_of
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
    st.integers(0, 40),
    st.sampled_from([(5, 5), (5, 6), (6, 5)]),
)
@example([("a/x", 1e300, 0, True), ("a/x", 1e300, 1, True)], 0, 1, (5, 5))  # a sum past MAX_SUM
def test_good_floats_roll_up_as_the_samples_do(
    rows: list[tuple[str, float, int, bool]], start: int, cut: int, streams: tuple[int, int]
) -> None:
    # Two batches of a group (cut apart at ``cut``), maybe of two streams: one point's rollups of
    # both are combined as the shared maths roll up all their readings at once.
    readings = []
    ts = T0 + start
    for i, (point, value, step, good) in enumerate(rows):
        ts += step
        quality = Quality.GOOD if good or i % 7 else Quality.BAD
        readings.append(Reading(seq=100 + i, point=point, ts=ts, value=value, quality=quality))
    batches = list(zip(streams, (readings[:cut], readings[cut:]), strict=True))
    plain: Plain = {}
    samples: dict[int, tuple[bool, list[Sample]]] = {}
    expected: dict[tuple[int, int, int], Rollup] = {}
    for stream, batch in batches:
        taken: Plain = {}
        left = add_good_floats(taken, stream, batch, POINTS)
        assert left is not None or taken == {}  # it takes all of a batch's points, or none
        for key, row in taken.items():
            add_plain_values(plain, key, row)
        add_samples(samples, stream, batch if left is None else left, POINTS)
        alone: dict[int, tuple[bool, list[Sample]]] = {}
        add_samples(alone, stream, batch, POINTS)
        for key, row in plain_rollups(alone).items():  # the shared maths, batch by batch
            rollup = rollup_of(row)
            expected[key] = rollup if key not in expected else ru.combine(expected[key], rollup)
    fast = plain_rollups(samples, plain)
    assert {k: _comparable(rollup_of(r)) for k, r in fast.items()} == {
        k: _comparable(r) for k, r in expected.items()
    }


def _comparable(rollup: Rollup) -> tuple[object, ...]:
    """The rollup's fields, a NaN as a word (NaN equals nothing, not even itself)."""
    return tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in dataclasses.astuple(rollup))
