"""Feature kinds: declared or inferred once, and the typing of raw feature values.

A feature is *numeric* or *categorical*. Its kind is taken from a declaration (a baseline or
the config) when there is one; otherwise it is inferred from the first non-null value seen
(in arrival order), and then never changes:

* ``bool`` (also ``numpy.bool_``) → categorical, counted as ``"true"`` / ``"false"``. Python's
  ``bool`` is a subclass of ``int``, so it is tested first.
* ``int`` or ``float`` (also numpy integers and floats) → numeric.
* ``str`` → categorical.
* anything else (lists, dicts, …) decides nothing; it is a wrong-typed value.

Once the kind is set, a value of the other kind is *wrong-typed*: counted (a data-quality
signal), kept out of the sketches, never an error. For a numeric feature that is a bool, a
string (even ``"1.5"``) or anything else; for a categorical feature a number or anything
else. ``None`` is a missing value for either kind.

>>> kinds = FeatureKinds({"plan": "categorical"})
>>> [str(k) for k in (kinds.resolve("age", [None, 37, "x"]), kinds.resolve("vip", [True]))]
['numeric', 'categorical']
>>> str(kinds["plan"]), kinds.resolve("plan", [1.5])       # declared: never re-inferred
('categorical', <FeatureKind.CATEGORICAL: 'categorical'>)
>>> values, wrong = to_numeric([1, None, True, "2", 2.5])
>>> values[~wrong].tolist(), wrong.tolist()
([1.0, nan, 2.5], [False, False, True, True, False])
>>> tally_categories(["a", None, True, 3, "a"])
(Counter({'a': 2, 'true': 1}), 1, 1)
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

__all__ = [
    "FeatureKind",
    "FeatureKinds",
    "feature_columns",
    "feature_names",
    "infer_kind",
    "tally_categories",
    "to_numeric",
]

_BOOLS = (bool, np.bool_)
_NUMBERS = (int, float, np.integer, np.floating)
_PLAIN_NUMERIC_TYPES = frozenset(
    {int, float, type(None), np.float64, np.float32, np.int64, np.int32}
)


class FeatureKind(enum.StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


def infer_kind(values: Iterable[Any]) -> FeatureKind | None:
    """The kind the first non-null, decidable value implies; ``None`` if there is none."""
    for value in values:
        if value is None:
            continue
        if isinstance(value, (*_BOOLS, str)):
            return FeatureKind.CATEGORICAL
        if isinstance(value, _NUMBERS):
            return FeatureKind.NUMERIC
    return None


class FeatureKinds(Mapping[str, FeatureKind]):
    """The kinds of one model version's features: declared first, else inferred once.

    Shared by every profile of the model version, so that all its buckets and segments agree.
    """

    __slots__ = ("_kinds",)

    def __init__(self, declared: Mapping[str, FeatureKind | str] | None = None) -> None:
        self._kinds: dict[str, FeatureKind] = {}
        for name, kind in (declared or {}).items():
            try:
                self._kinds[name] = FeatureKind(kind)
            except ValueError:
                raise ValueError(
                    f"feature {name!r}: kind must be 'numeric' or 'categorical', got {kind!r}"
                ) from None

    def resolve(self, name: str, values: Iterable[Any]) -> FeatureKind | None:
        """The kind of ``name``, inferring it from ``values`` (and remembering it) if unknown."""
        kind = self._kinds.get(name)
        if kind is None:
            kind = infer_kind(values)
            if kind is not None:
                self._kinds[name] = kind
        return kind

    def __getitem__(self, name: str) -> FeatureKind:
        return self._kinds[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def __repr__(self) -> str:
        return f"FeatureKinds({ {k: str(v) for k, v in self._kinds.items()} })"


def to_numeric(column: list[Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """The float64 values of a numeric feature's column, and the mask of wrong-typed entries.

    ``None`` becomes NaN (missing); numbers become floats (an int beyond float64 becomes ±inf,
    a non-finite value). Wrong-typed entries are NaN in ``values`` and True in the mask, which
    is ``None`` when nothing is wrong-typed: drop them with ``values[~wrong]`` before
    sketching, or they count as missing.
    """
    types = set(map(type, column))
    if types <= _PLAIN_NUMERIC_TYPES:  # int, float and None only: numpy converts it all
        try:
            return np.array(column, dtype=np.float64), None
        except OverflowError:  # an int beyond float64
            pass
    return _to_numeric_slow(column)


def _to_numeric_slow(column: list[Any]) -> tuple[np.ndarray, np.ndarray | None]:
    wrong = np.zeros(len(column), dtype=bool)
    out = np.full(len(column), np.nan)
    for i, value in enumerate(column):
        if value is None:
            continue
        if isinstance(value, _BOOLS) or not isinstance(value, _NUMBERS):
            wrong[i] = True
            continue
        try:
            out[i] = float(value)
        except OverflowError:
            out[i] = math.inf if value > 0 else -math.inf
    return out, (wrong if wrong.any() else None)


def tally_categories(values: list[Any]) -> tuple[Counter[str], int, int]:
    """``(counts, missing, wrong_type)`` of a categorical feature's values.

    Strings count as themselves, bools as ``"true"`` / ``"false"``, ``None`` as missing;
    anything else is wrong-typed.
    """
    try:
        tally: Counter[Any] = Counter(values)
    except TypeError:  # an unhashable value (list, dict)
        tally = None  # type: ignore[assignment]
    if tally is not None:
        missing = tally.pop(None, 0)
        if all(type(key) is str for key in tally):
            return tally, missing, 0
    # Slow path: per value, because Counter merges True, 1 and 1.0 into one key.
    out: Counter[str] = Counter()
    missing = wrong = 0
    for value in values:
        if value is None:
            missing += 1
        elif isinstance(value, str):
            out[value] += 1
        elif isinstance(value, _BOOLS):
            out["true" if value else "false"] += 1
        else:
            wrong += 1
    return out, missing, wrong


def feature_names(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], bool]:
    """The feature names of ``rows`` (their union, first seen first) and whether every row
    has exactly those names; builds no column.

    >>> feature_names([{"a": 1, "b": 2}, {"b": 3, "a": 4}])
    (['a', 'b'], True)
    >>> feature_names([{"a": 1}, {"b": 2}])
    (['a', 'b'], False)
    """
    if rows:
        keys = rows[0].keys()
        if all(row.keys() == keys for row in rows):
            return list(keys), True
    return list(dict.fromkeys(chain.from_iterable(rows))), not rows


def feature_columns(
    rows: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None
) -> tuple[list[str], list[list[Any]]]:
    """The feature names of ``rows`` and one column per name (``None`` where a row lacks it).

    With ``names``, columns of those names only (a cap applied before any column is built).
    Fast path: every row has every name (one C-level ``itemgetter`` per row, then a
    transpose); otherwise the union of names, first seen first.
    """
    if names is not None:
        return _columns_of(rows, list(names))
    names = list(rows[0]) if rows else []
    if names:
        try:
            picked = list(map(itemgetter(*names), rows))
        except (KeyError, TypeError):
            picked = None
        if picked is not None and sum(map(len, rows)) == len(rows) * len(names):
            if len(names) == 1:
                return names, [picked]
            return names, list(map(list, zip(*picked, strict=True)))
    names = list(dict.fromkeys(chain.from_iterable(rows)))
    return names, [[row.get(name) for row in rows] for name in names]


def _columns_of(
    rows: Sequence[Mapping[str, Any]], names: list[str]
) -> tuple[list[str], list[list[Any]]]:
    if not names:
        return [], []
    try:
        picked = list(map(itemgetter(*names), rows))
    except (KeyError, TypeError):
        return names, [[row.get(name) for row in rows] for name in names]
    if len(names) == 1:
        return names, [picked]
    return names, list(map(list, zip(*picked, strict=True)))
