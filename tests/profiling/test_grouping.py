"""The profiler's grouping helpers give exactly what the sorting numpy calls they replace give.

``first_seen``, ``unique_counts`` and ``group_order`` count in tables instead of sorting the
rows; the references below are the sorting code they replaced (``np.unique`` and a stable
``np.argsort``), compared on hypothesis-generated code arrays, including the edges (one code,
empty arrays, ``-1`` codes, bounds past the table path and past 16-bit keys).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwire.profiling._columns import first_seen, group_order, unique_counts


def _first_seen_by_sorting(codes: np.ndarray, names: list[Any]) -> tuple[np.ndarray, list[Any]]:
    if not len(codes):
        return np.zeros(0, dtype=np.int64), []
    distinct, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)], [names[int(c)] for c in distinct[order].tolist()]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12).flatmap(lambda k: st.tuples(st.just(k), st.lists(st.integers(0, k - 1)))))
def test_first_seen_equals_the_sorting_reference(case: tuple[int, list[int]]) -> None:
    k, codes = case
    names = [f"n{i}" for i in range(k)]
    array = np.array(codes, dtype=np.int32)
    ids, order = first_seen(array, names)
    expected_ids, expected_order = _first_seen_by_sorting(array, names)
    assert order == expected_order
    np.testing.assert_array_equal(ids, expected_ids)
    assert ids.dtype == np.int64


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 3000)), st.integers(0, 5000))
def test_unique_counts_equals_np_unique(values: list[int], extra: int) -> None:
    array = np.array(values, dtype=np.int64)
    bound = (max(values) + 1 if values else 0) + extra  # table path or np.unique past it
    distinct, inverse, counts = unique_counts(array, bound)
    e_distinct, e_inverse, e_counts = np.unique(array, return_inverse=True, return_counts=True)
    np.testing.assert_array_equal(distinct, e_distinct)
    np.testing.assert_array_equal(inverse, e_inverse.reshape(-1))
    np.testing.assert_array_equal(counts, e_counts)
    assert inverse.shape == array.shape


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([3, 60, 70_000, 1 << 40]).flatmap(
        lambda bound: st.tuples(st.just(bound), st.lists(st.integers(-1, min(bound, 1 << 40) - 1)))
    )
)
def test_group_order_is_the_stable_argsort(case: tuple[int, list[int]]) -> None:
    bound, codes = case
    array = np.array(codes, dtype=np.int64)
    np.testing.assert_array_equal(group_order(array, bound), np.argsort(array, kind="stable"))
