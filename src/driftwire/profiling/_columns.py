"""The profiler's fold from the compiled decoder's columns (no Python object per value).

Each function gives exactly what the list-based code in :mod:`driftwire.profiling.profiler`
gives for the same events: the same first-seen orders (of models, versions, segments, feature
names, categories), so that profiles, partials and alerts are byte-identical whichever decoder
ran. The tests hold both paths to that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from driftwire.decode import _native
from driftwire.decode.columns import ABSENT, BOOL, NULL, NUMBER, STRING, EventColumns
from driftwire.profiling.catalog import segment_key
from driftwire.sketch.kinds import FeatureKind, FeatureKinds


def first_seen(codes: np.ndarray, names: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Codes renumbered in first-seen order of ``codes``, and their names (as ``_factorize``).

    ``codes`` index ``names`` (the decoder's per-batch tables), so the first row of each code
    is found in one pass over a table of ``len(names)`` slots, without sorting the rows.
    """
    n = len(codes)
    if not n:
        return np.zeros(0, dtype=np.int64), []
    if codes[0] == codes[-1] and (codes == codes[0]).all():
        return np.zeros(n, dtype=np.int64), [names[int(codes[0])]]
    first = np.full(len(names), n, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(n, dtype=np.int64))
    present = np.flatnonzero(first < n)
    order = present[np.argsort(first[present])]  # first rows are distinct: any sort will do
    rank = np.zeros(len(names), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return rank[codes], [names[c] for c in order.tolist()]


def unique_counts(values: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True, return_counts=True)`` of integers in
    ``[0, bound)``: counted in a table of ``bound`` slots when that is small, not sorted.

    >>> [a.tolist() for a in unique_counts(np.array([5, 2, 5, 0]), 6)]
    [[0, 2, 5], [2, 1, 2, 0], [1, 1, 2]]
    """
    if bound > 4 * len(values) + 1024:
        distinct, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        return distinct, inverse.reshape(-1), counts
    tally = np.bincount(values, minlength=bound)
    distinct = np.flatnonzero(tally)
    lookup = np.zeros(bound, dtype=np.int64)
    lookup[distinct] = np.arange(len(distinct), dtype=np.int64)
    return distinct, lookup[values], tally[distinct]


def group_order(code: np.ndarray, bound: int) -> np.ndarray:
    """``np.argsort(code, kind="stable")`` of integers in ``[-1, bound)``: a radix sort of
    16-bit keys when they fit (the same permutation: a stable sort has one answer)."""
    if bound < (1 << 16) - 1:
        return np.argsort((code + 1).astype(np.uint16), kind="stable")
    return np.argsort(code, kind="stable")


def per_model(columns: EventColumns, mask: np.ndarray) -> dict[str, int]:
    """Events under ``mask`` per model, models in first-seen order (as a ``Counter``)."""
    if not mask.any():
        return {}
    ids, names = first_seen(columns.model_codes[mask], columns.model_names)
    return dict(zip(names, np.bincount(ids).tolist(), strict=True))


def segment_ids(
    codes: np.ndarray, items: list[tuple[tuple[str, str], ...]], cache: dict[Any, str]
) -> tuple[np.ndarray, list[str]]:
    """Per row, the index of its canonical segment key, and the distinct keys, in the order the
    profiler's ``_segment_ids`` (through ``_combine_columns``) gives them."""
    n = len(codes)
    ids, distinct = first_seen(codes, items)  # the exact item tuples, first seen first
    if all(not segment for segment in distinct):
        return np.zeros(n, dtype=np.int64), [""]
    keys = [k for k, _ in distinct[0]]
    combos: list[tuple[tuple[str, str], ...]] | None = None
    if keys and all(
        len(segment) == len(keys) and {k for k, _ in segment} == set(keys) for segment in distinct
    ):
        # _combine_columns' fast path: each key's values factorized (first seen first), the
        # codes combined in key order, distinct combinations in sorted order
        values = [dict(segment) for segment in distinct]
        radix = 1
        code = np.zeros(len(distinct), dtype=np.int64)
        factors = []
        for key in keys:
            seen: dict[str, int] = {}
            column = [seen.setdefault(v[key], len(seen)) for v in values]
            factors.append(list(seen))
            radix *= len(seen)
        if radix < 1 << 62:
            for key, table in zip(keys, factors, strict=True):
                index = {v: i for i, v in enumerate(table)}
                column = [index[v[key]] for v in values]
                code = code * len(table) + np.array(column, dtype=np.int64)
            # every distinct segment has rows: the rows' distinct codes are those of `distinct`
            unique, inverse = np.unique(code, return_inverse=True)
            combos = []
            for value in unique.tolist():
                picked = []
                for table in reversed(factors):
                    value, rest = divmod(value, len(table))
                    picked.append(table[rest])
                combos.append(tuple(zip(keys, reversed(picked), strict=True)))
            ids = inverse.reshape(-1)[ids]
    if combos is None:
        combos = distinct
    index_of: dict[str, int] = {}
    mapping = np.empty(len(combos), dtype=np.int64)
    for j, combo in enumerate(combos):
        key = cache.get(combo)
        if key is None:
            key = cache[combo] = segment_key(dict(combo))
        mapping[j] = index_of.setdefault(key, len(index_of))
    return mapping[ids], list(index_of)


def group_tallies(
    codes: np.ndarray, names: Sequence[str], starts: np.ndarray
) -> list[dict[str, int]]:
    """Per group (rows ``starts[g]:starts[g+1]``), the count of each code >= 0 by name, names
    in first-seen order within the group (as a ``Counter`` over the group's values). Counted
    by the extension, which made the codes."""
    tallies = _native.tally_groups(codes, starts, list(names))
    if tallies is None:
        raise RuntimeError("column batches come from the compiled decoder, which is missing")
    return tallies


def feature_order(kind: np.ndarray, rank: np.ndarray) -> list[int]:
    """Features present in these rows (columns), ordered as ``feature_columns`` orders names:
    first seen first, and by position within the first event holding several."""
    present = kind != ABSENT
    has = np.flatnonzero(present.any(axis=1))
    if not len(has):
        return []
    first = present[has].argmax(axis=1)
    at = rank[has, first]
    ordered: list[int] = has[np.lexsort((at, first))].tolist()
    return ordered


def decided_kind(kinds: FeatureKinds, name: str, kind_row: np.ndarray) -> FeatureKind | None:
    """``kinds.resolve`` of a column, from its first decidable value (a number, string or bool)."""
    known = kinds.get(name)
    if known is not None:
        return known
    decidable = np.flatnonzero(kind_row >= NUMBER)
    sample: list[Any] = []
    if len(decidable):
        sample = [0.0] if kind_row[decidable[0]] == NUMBER else ["x"]
    return kinds.resolve(name, sample)


def categorical_parts(
    kind_row: np.ndarray, code_row: np.ndarray, names: Sequence[str], starts: np.ndarray
) -> list[tuple[dict[str, int], int, int]]:
    """``tally_categories`` of each group: (counts, missing, wrong-typed); counted by the
    extension in one pass when it can (:func:`categorical_parts_numpy` otherwise)."""
    parts = _native.tally_categories(kind_row, code_row, starts, list(names))
    return (
        parts if parts is not None else categorical_parts_numpy(kind_row, code_row, names, starts)
    )


def categorical_parts_numpy(
    kind_row: np.ndarray, code_row: np.ndarray, names: Sequence[str], starts: np.ndarray
) -> list[tuple[dict[str, int], int, int]]:
    """:func:`categorical_parts` in numpy passes (and the extension's ``tally_groups``)."""
    missing: list[int] = np.add.reduceat((kind_row <= NULL).astype(np.int64), starts).tolist()
    wrong: list[int] = np.add.reduceat((kind_row == NUMBER).astype(np.int64), starts).tolist()
    is_category = (kind_row == STRING) | (kind_row == BOOL)
    tallies = group_tallies(np.where(is_category, code_row, -1), names, starts)
    return list(zip(tallies, missing, wrong, strict=True))


def numeric_parts(
    kind_row: np.ndarray, value_row: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """``to_numeric`` of a column: float64 values (NaN: missing or wrong), the wrong mask."""
    wrong = (kind_row == STRING) | (kind_row == BOOL)
    return value_row, (wrong if wrong.any() else None)


def label_parts(
    columns: EventColumns, positions: np.ndarray, starts: np.ndarray
) -> list[tuple[dict[str, int], int]]:
    """Per group, prediction-label counts (first seen first) and the rows without a label."""
    codes = columns.label_codes[positions]
    tallies = group_tallies(codes, columns.label_names, starts)
    missing: list[int] = np.add.reduceat((codes < 0).astype(np.int64), starts).tolist()
    return list(zip(tallies, missing, strict=True))
