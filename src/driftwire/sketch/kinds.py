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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

__all__ = [
    "FeatureKind",
    "FeatureKinds",
    "capped_columns",
    "feature_columns",
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


def feature_columns(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The feature names of ``rows`` and one column per name (``None`` where a row lacks it).

    Fast path: every row has exactly the first row's names (one C-level ``itemgetter`` per
    row, then a transpose); otherwise the union of names, first seen first.
    """
    names, columns, _, _ = capped_columns(rows, None)
    return names, columns


def capped_columns(
    rows: Sequence[Mapping[str, Any]], admit: Callable[[str], bool] | None
) -> tuple[list[str], list[list[Any]], bool, int]:
    """Columns of the names ``admit`` accepts (all, without it), built for those names only.

    Returns the admitted names (first seen first), their columns (``None`` where a row lacks
    the name), whether every row has exactly the same names, and how many non-null values the
    refused names held (a cap applied before any column is built: 2,000 rows of 100 fresh names
    each would otherwise be 200,000 columns of 2,000 slots).

    >>> capped_columns([{"a": 1, "b": 2}, {"a": 3, "c": 4}], lambda n: n != "c")
    (['a', 'b'], [[1, 3], [2, None]], False, 1)
    """
    names = list(rows[0]) if rows else []
    picked = None
    if names and sum(map(len, rows)) == len(rows) * len(names):
        try:
            picked = list(map(itemgetter(*names), rows))
        except (KeyError, TypeError):
            picked = None
    if picked is not None:  # every row has exactly these names
        if len(names) == 1:
            picked = [(value,) for value in picked]
        keep = [i for i, name in enumerate(names) if admit is None or admit(name)]
        if len(keep) == len(names):
            return names, list(map(list, zip(*picked, strict=True))), True, 0
        columns = [[row[i] for row in picked] for i in keep]
        kept_at = set(keep)
        refused = sum(
            1 for row in picked for i, v in enumerate(row) if v is not None and i not in kept_at
        )
        return [names[i] for i in keep], columns, True, refused
    seen = list(dict.fromkeys(chain.from_iterable(rows)))
    kept = seen if admit is None else [name for name in seen if admit(name)]
    columns = [[row.get(name) for row in rows] for name in kept]
    refused = 0
    if len(kept) < len(seen):
        given = sum(1 for row in rows for v in row.values() if v is not None)
        refused = given - sum(len(column) - column.count(None) for column in columns)
    uniform = sum(map(len, rows)) == len(rows) * len(seen)
    return kept, columns, uniform, refused
