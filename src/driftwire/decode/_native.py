"""The compiled decoder (the optional ``driftwire-native`` package), when it is installed.

``_driftwire_native.decode_rows`` parses and validates a whole batch without the GIL (Rust,
a single-pass scanner specialised to the event) and returns the parts of a
:class:`~driftwire.decode.batch.DecodedBatch`: the same accepted rows, values, reason codes and
field paths as the pure-Python decoder, which stays the reference and the fallback. Messages of
refused values come from the reference's per-event validator (refused values are few), which
also names ``non_finite`` for values that are not strict JSON only because of NaN, Infinity or
an overflowing literal. A value the extension marks as deferred (reason code 255; the current
extension marks none, earlier builds deferred the integer literal ``-0``) is decoded there too.

Selection happens once, at import: the compiled path is used when the extension imports and
``DRIFTWIRE_NATIVE`` is not ``0``. :data:`ACTIVE` says which path ``decode_batch`` takes.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from driftwire.decode._columns import _Columns, _merge
from driftwire.decode._event import _Bad, _parse, _Row, _validate
from driftwire.decode.batch import DecodedBatch, Rejection
from driftwire.decode.columns import EventColumns
from driftwire.decode.limits import DecoderLimits

__all__ = [
    "ACTIVE",
    "AVAILABLE",
    "decode_batch_columns",
    "decode_batch_native",
    "tally_categories",
    "tally_groups",
]

_DEFERRED = 255
MAX_CELLS = 1 << 22
"""Feature matrix cells (features x events) above which a batch is decoded into rows."""


def _load() -> ModuleType | None:
    try:
        return importlib.import_module("_driftwire_native")
    except ImportError:
        return None


_EXTENSION = _load()
AVAILABLE: bool = _EXTENSION is not None
"""Whether the compiled extension is installed."""
ACTIVE: bool = AVAILABLE and os.environ.get("DRIFTWIRE_NATIVE", "1") != "0"
"""Whether ``decode_batch`` takes the compiled path (``DRIFTWIRE_NATIVE=0`` forces Python)."""


def decode_rows(values: list[Any], limits: DecoderLimits) -> tuple[Any, ...] | None:
    """The extension's raw answer (tests compare its reason codes with the reference's)."""
    if _EXTENSION is None:
        raise RuntimeError("the compiled decoder (driftwire-native) is not installed")
    result: tuple[Any, ...] | None = _EXTENSION.decode_rows(
        values,
        limits.max_event_bytes,
        limits.max_features,
        limits.max_segment_keys,
        limits.max_string_length,
    )
    return result


def _reference(index: int, raw: Any, limits: DecoderLimits) -> Rejection | _Row:
    parsed = _parse(index, raw, limits)
    if isinstance(parsed, Rejection):
        return parsed
    try:
        return _validate(parsed, limits)
    except _Bad as bad:
        return Rejection(index, bad.reason, bad.field, bad.message)


def decode_batch_native(
    values: Sequence[bytes | None], limits: DecoderLimits
) -> DecodedBatch | None:
    """The compiled decoder's batch; None if a value is neither bytes nor None."""
    raws = values if type(values) is list else list(values)
    result = decode_rows(raws, limits)
    if result is None:
        return None
    index, timestamp, model, version, segment, features, score, label, latency, ids, refused = (
        result
    )
    columns = _Columns()
    columns.index = np.frombuffer(index, dtype=np.int64)
    columns.timestamp = np.frombuffer(timestamp, dtype=np.int64)
    columns.model, columns.version, columns.segment, columns.features = (
        model,
        version,
        segment,
        features,
    )
    columns.score = np.frombuffer(score, dtype=np.float64)
    columns.label = label
    columns.latency = np.frombuffer(latency, dtype=np.float64)
    columns.event_id = ids
    rejections, late = _rejections(refused, raws, limits)
    if late:  # deferred values that the reference accepts
        _merge(columns, late)
    return columns.batch(rejections)


def _rejections(
    refused: list[tuple[int, int, str | None]], raws: list[Any], limits: DecoderLimits
) -> tuple[list[Rejection], list[tuple[int, _Row]]]:
    """The reference's rejections (with messages) of refused values; deferred ones it accepts."""
    rejections: list[Rejection] = []
    late: list[tuple[int, _Row]] = []
    for position, _reason, _field in refused:
        item = _reference(position, raws[position], limits)
        if isinstance(item, Rejection):
            rejections.append(item)
        else:
            late.append((position, item))
    return rejections, late


def decode_batch_columns(
    values: Sequence[bytes | None], limits: DecoderLimits
) -> DecodedBatch | None:
    """The compiled decoder's batch as columns (its lists built only when read); None if a
    value is neither bytes nor None."""
    raws = values if type(values) is list else list(values)
    if _EXTENSION is None:
        raise RuntimeError("the compiled decoder (driftwire-native) is not installed")
    result = _EXTENSION.decode_columns(
        raws,
        limits.max_event_bytes,
        limits.max_features,
        limits.max_segment_keys,
        limits.max_string_length,
        MAX_CELLS,
    )
    if result is None:
        return decode_batch_native(raws, limits)
    (
        index,
        timestamp,
        score,
        latency,
        model_codes,
        model_names,
        version_codes,
        version_names,
        segment_codes,
        segment_items,
        label_codes,
        label_names,
        event_id_buffer,
        event_id_ends,
        event_id_present,
        feature_names,
        kind,
        value,
        code,
        rank,
        categories,
        refused,
    ) = result
    rejections, late = _rejections(refused, raws, limits)
    if late:  # a deferred value the reference accepts: not in the columns
        return decode_batch_native(raws, limits)
    n, f = len(index) // 8, len(feature_names)
    columns = EventColumns(
        model_codes=np.frombuffer(model_codes, dtype=np.int32),
        model_names=model_names,
        version_codes=np.frombuffer(version_codes, dtype=np.int32),
        version_names=version_names,
        segment_codes=np.frombuffer(segment_codes, dtype=np.int32),
        segment_items=segment_items,
        label_codes=np.frombuffer(label_codes, dtype=np.int32),
        label_names=label_names,
        event_id_buffer=bytes(event_id_buffer),
        event_id_ends=np.frombuffer(event_id_ends, dtype=np.int64),
        event_id_present=np.frombuffer(event_id_present, dtype=bool),
        feature_names=feature_names,
        kind=np.frombuffer(kind, dtype=np.uint8).reshape(f, n),
        value=np.frombuffer(value, dtype=np.float64).reshape(f, n),
        code=np.frombuffer(code, dtype=np.int32).reshape(f, n),
        rank=np.frombuffer(rank, dtype=np.int32).reshape(f, n),
        categories=categories,
    )
    accepted = np.frombuffer(index, dtype=np.int64)

    def rows() -> DecodedBatch:
        full = decode_batch_native(raws, limits)
        assert full is not None
        return full.take_lists(np.searchsorted(full.index, accepted))

    return DecodedBatch(
        index=accepted,
        timestamp_ms=np.frombuffer(timestamp, dtype=np.int64),
        model=None,
        model_version=None,
        segment=None,
        features=None,
        prediction_score=np.frombuffer(score, dtype=np.float64),
        prediction_label=None,
        latency_ms=np.frombuffer(latency, dtype=np.float64),
        event_id=None,
        rejections=rejections,
        columns=columns,
        rows=rows,
    )


def tally_groups(
    codes: np.ndarray, starts: np.ndarray, names: list[str]
) -> list[dict[str, int]] | None:
    """Per group (rows ``starts[g]:starts[g+1]``), counts of codes >= 0 by name, first seen
    first (as a ``Counter`` of the group's values); None without the extension."""
    if _EXTENSION is None:
        return None
    tallies: list[dict[str, int]] = _EXTENSION.tally_groups(
        np.ascontiguousarray(codes, dtype="<i4").tobytes(), starts.tolist(), names
    )
    return tallies


def tally_categories(
    kinds: np.ndarray, codes: np.ndarray, starts: np.ndarray, names: list[str]
) -> list[tuple[dict[str, int], int, int]] | None:
    """Per group (rows ``starts[g]:starts[g+1]`` of a categorical column: its kind codes and
    category codes), ``(counts by name, first seen first; missing; wrong-typed)`` as
    ``tally_categories`` of the values; None without an extension that has it."""
    count = getattr(_EXTENSION, "tally_categories", None)
    if count is None:
        return None
    parts: list[tuple[dict[str, int], int, int]] = count(
        np.ascontiguousarray(kinds, dtype=np.uint8),
        np.ascontiguousarray(codes, dtype=np.int32),
        np.ascontiguousarray(starts, dtype=np.int64),
        names,
    )
    return parts
