"""Exact checks of whole columns (one field of every event of a batch) for the fast path.

Each check returns the rows it refuses, and only rows the per-event validator refuses too;
they use C-level builtins (``map``, ``set``) and numpy, never a Python loop per event, except
over the rows already known to be bad or in rare mixed columns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain, compress, repeat
from operator import is_
from typing import Any

import numpy as np

from driftwire.decode._timestamps import MAX_EPOCH_MS, _iso_many

_NUM = frozenset((int, float))
_NUM_OR_NONE = frozenset((int, float, type(None)))
_STR = frozenset((str,))
_STR_OR_NONE = frozenset((str, type(None)))
_DICT = frozenset((dict,))
_PREDICTION_KINDS = frozenset((int, float, str, dict))


def _rows_where(column: Sequence[Any], ok: Any) -> list[int]:
    return [i for i, value in enumerate(column) if not ok(value)]


def _names_bad(column: Sequence[Any], limit: int) -> list[int]:
    """Rows whose model / model_version is not a string of 1..limit characters."""

    def ok(value: Any) -> bool:
        return type(value) is str and 0 < len(value) <= limit

    try:
        distinct = set(column)
    except TypeError:  # an object or array
        return _rows_where(column, ok)
    if all(map(ok, distinct)):
        return []
    return _rows_where(column, ok)


def _epoch_column(values: list[Any] | np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Epoch ms of numbers (a float array, or a list that may hold anything), refused rows."""
    bad: list[int] = []
    if type(values) is list and not set(map(type, values)) <= _NUM:
        bad = _rows_where(values, lambda v: type(v) is int or type(v) is float)
        values = [0 if type(v) is not int and type(v) is not float else v for v in values]
    number = np.asarray(values, dtype=np.float64)
    out = (number < 0) | ~(number < MAX_EPOCH_MS)
    if out.any():
        bad.extend(np.flatnonzero(out).tolist())
        number = np.where(out, 0, number)
    return number.astype(np.int64), bad


def _kind_mask(types: list[type], kinds: frozenset[type]) -> np.ndarray:
    """Rows whose type is one of ``kinds``."""
    flags = None
    for kind in kinds:
        one = np.frombuffer(bytes(map(is_, types, repeat(kind))), dtype=bool)
        flags = one if flags is None else flags | one
    return np.zeros(len(types), dtype=bool) if flags is None else flags


def _timestamp_column(values: list[Any]) -> tuple[np.ndarray, list[int]]:
    types = list(map(type, values))
    kinds = set(types)
    if kinds == _STR:
        return _iso_many(values)
    if kinds <= _NUM:
        return _epoch_column(values)
    # mixed producers: split strings from the rest through an object array
    is_str = _kind_mask(types, _STR)
    rows_str, rows_other = np.flatnonzero(is_str), np.flatnonzero(~is_str)
    column = np.array(values, dtype=object) if kinds <= _STR | _NUM else None
    if column is not None:
        strings, others = column[is_str].tolist(), column[~is_str].astype(np.float64)
    else:  # objects or arrays among them: no object array (it could grow a dimension)
        strings = list(compress(values, is_str.tolist()))
        others = list(compress(values, (~is_str).tolist()))
    out = np.zeros(len(values), dtype=np.int64)
    iso, bad_iso = _iso_many(strings)
    epoch, bad_epoch = _epoch_column(others)
    out[rows_str] = iso
    out[rows_other] = epoch
    return out, rows_str[bad_iso].tolist() + rows_other[bad_epoch].tolist()


def _prediction_pair(value: Any) -> tuple[float, str | None] | None:
    kind = type(value)
    if kind is float or kind is int:
        return float(value), None  # finite: orjson never yields NaN/inf
    if kind is str:
        return math.nan, value
    if kind is bool:
        return math.nan, "true" if value else "false"
    if kind is dict:
        score, label = value.get("score"), value.get("label")
        if score is None and label is None:
            return None
        if (score is not None and type(score) is not float and type(score) is not int) or (
            label is not None and type(label) is not str
        ):
            return None
        return (math.nan if score is None else float(score)), label
    return None


def _prediction_column(
    values: list[Any], kinds: set[type]
) -> tuple[np.ndarray, list[str | None], list[int], int]:
    """Scores (NaN: none), labels (None: none), refused rows, and how many were objects."""
    n = len(values)
    if kinds <= _NUM:
        return np.array(values, dtype=np.float64), [None] * n, [], 0
    if kinds == _STR:
        return np.full(n, np.nan), list(values), [], 0
    if kinds == _DICT:
        known = {key: key for key in chain(values[0], values[-1])}  # see _decode_columns
        scores = list(map(dict.get, values, repeat(known.get("score", "score"))))
        labels = list(map(dict.get, values, repeat(known.get("label", "label"))))
        if set(map(type, scores)) <= _NUM_OR_NONE and set(map(type, labels)) <= _STR_OR_NONE:
            bad: list[int] = []
            if None in scores and None in labels:
                both = zip(scores, labels, strict=True)
                bad = [i for i, (s, lab) in enumerate(both) if s is None and lab is None]
            return np.array(scores, dtype=np.float64), labels, bad, n
    if len(kinds) > 1 and kinds <= _PREDICTION_KINDS:
        # Producers of different kinds share a topic: decode each kind as a column of its own.
        types = list(map(type, values))
        column = np.array(values, dtype=object)  # 1-d: no list or tuple among the values
        score = np.full(n, np.nan)
        label = np.full(n, None, dtype=object)
        bad = []
        objects = 0
        groups = [frozenset(kinds & group) for group in (_NUM, _STR, _DICT) if kinds & group]
        masks = [_kind_mask(types, group) for group in groups[:-1]]
        rest = masks[0] if len(masks) == 1 else masks[0] | masks[1]
        masks.append(~rest)  # the last kind present: every other row
        for group, mask in zip(groups, masks, strict=True):
            if group <= _NUM:
                score[mask] = column[mask].astype(np.float64)
            elif group == _STR:
                label[mask] = column[mask]
            else:
                rows = np.flatnonzero(mask)
                part_score, part_label, part_bad, objects = _prediction_column(
                    column[mask].tolist(), {dict}
                )
                score[rows] = part_score
                label[rows] = np.array(part_label, dtype=object)
                bad = rows[part_bad].tolist()
        return score, label.tolist(), bad, objects
    pairs_or_none = list(map(_prediction_pair, values))
    bad = [i for i, pair in enumerate(pairs_or_none) if pair is None]
    pairs = [(math.nan, None) if pair is None else pair for pair in pairs_or_none]
    objects = sum(map(isinstance, values, repeat(dict)))
    return np.array([p[0] for p in pairs], dtype=np.float64), [p[1] for p in pairs], bad, objects
