"""The column path of SQLite's reading blocks gives the blocks the row path gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from central.store.sqlite.blocks import QUARTER_MS, bucket_slices, pack, pack_columns, take, unpack

_stamps = st.lists(st.integers(min_value=0, max_value=4 * QUARTER_MS), min_size=1, max_size=60)


def _by_dict(stamps: list[int]) -> list[tuple[int, list[int]]]:
    found: dict[int, list[int]] = {}
    for i, ts in enumerate(stamps):
        found.setdefault(ts - ts % QUARTER_MS, []).append(i)
    return list(found.items())


@given(_stamps, st.booleans())
def test_bucket_slices_group_as_a_dict_by_bucket_does(stamps: list[int], in_order: bool) -> None:
    if in_order:
        stamps.sort()
    indices = list(range(len(stamps)))
    got = [(bucket, list(take(indices, where))) for bucket, where in bucket_slices(stamps)]
    assert got == _by_dict(stamps)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=50),
            st.integers(min_value=0, max_value=2**40),
            st.one_of(
                st.none(),
                st.floats(allow_nan=False, allow_infinity=False),
                st.integers(-(2**40), 2**40),
                st.text(max_size=5),
            ),
            st.sampled_from([0, 1, 2]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_pack_columns_is_pack_and_unpacks_to_the_rows(
    items: list[tuple[int, int, int | float | str | None, int]],
) -> None:
    rows = [
        (100 + i, point, ts, value, quality, None if quality == 0 else "why")
        for i, (point, ts, value, quality) in enumerate(items)
    ]
    columns = tuple([r[k] for r in rows] for k in range(6))
    data = pack_columns(100, columns)  # type: ignore[arg-type]  # six columns, as the writer builds
    assert data == pack(100, rows)
    back = unpack(7, 100, data)
    assert [(r.seq, r.point, r.ts, r.value, r.quality, r.reason) for r in back] == rows
