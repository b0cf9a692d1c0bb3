"""The compiled decoder (the optional ``driftwire-native`` package), when it is installed.

``_driftwire_native.decode_rows`` parses and validates a whole batch without the GIL (Rust,
serde_json) and returns the parts of a :class:`~driftwire.decode.batch.DecodedBatch`: the
same accepted rows, values, reason codes and field paths as the pure-Python decoder, which
stays the reference and the fallback. Messages of refused values come from the reference's
per-event validator (refused values are few), which also names ``non_finite`` for values that
are not strict JSON only because of NaN, Infinity or an overflowing literal; values the
extension defers (the integer literal ``-0``, which it reads as a float) are decoded there too.

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
from driftwire.decode.limits import DecoderLimits

__all__ = ["ACTIVE", "AVAILABLE", "decode_batch_native"]

_DEFERRED = 255


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
    rejections: list[Rejection] = []
    late: list[tuple[int, _Row]] = []
    for position, _reason, _field in refused:
        item = _reference(position, raws[position], limits)
        if isinstance(item, Rejection):
            rejections.append(item)
        else:  # a deferred value that the reference accepts
            late.append((position, item))
    if late:
        _merge(columns, late)
    return columns.batch(rejections)
