"""Building and serializing one inference event on the caller's thread: cheap, O(1) checks.

Production checks cover the types of the top-level fields, a finite non-negative latency and
the serialized size; per-feature rules are left to driftwire's decoder, which dead-letters what
it cannot use. A failed check raises :class:`InvalidEventError`, which the queue counts as
``invalid`` (or lets through to the caller in development mode).

>>> _encode("m", "1", {}, 1, 2, None, None, 0, max_event_bytes=256, validator=None)
b'{"timestamp":0,"model":"m","model_version":"1","features":{},"prediction":1,"latency_ms":2}'
>>> try:
...     _encode("m", "1", {}, 1, -2, None, None, 0, max_event_bytes=256, validator=None)
... except InvalidEventError as error:
...     print(error)
invalid inference event at 'latency_ms': must be finite and >= 0
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from driftwire.errors import InputError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class InvalidEventError(InputError):
    """An event breaks the inference-event contract (raised in development mode only)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"invalid inference event at '{field}': {problem}")


def _encode(
    model: Any,
    model_version: Any,
    features: Any,
    prediction: Any,
    latency_ms: Any,
    segment: Any,
    event_id: Any,
    timestamp: Any,
    *,
    max_event_bytes: int,
    validator: Callable[[Any], None] | None,
) -> bytes:
    """The event as JSON bytes; ``validator`` (development mode) checks what is sent."""
    if type(model) is not str or not model:
        raise InvalidEventError("model", "must be a non-empty string")
    if type(model_version) is not str or not model_version:
        raise InvalidEventError("model_version", "must be a non-empty string")
    if type(features) is not dict:
        if not isinstance(features, Mapping):
            raise InvalidEventError("features", "must be a mapping of name to value")
        features = dict(features)
    if prediction is None or (isinstance(prediction, float) and not math.isfinite(prediction)):
        raise InvalidEventError("prediction", "must be a finite number, a label or a dict")
    if type(latency_ms) is not float and type(latency_ms) is not int:
        if isinstance(latency_ms, bool | str):
            raise InvalidEventError("latency_ms", "must be a number")
        try:
            latency_ms = float(latency_ms)  # numpy scalars and the like
        except (TypeError, ValueError):
            raise InvalidEventError("latency_ms", "must be a number") from None
    if not (math.isfinite(latency_ms) and latency_ms >= 0):
        raise InvalidEventError("latency_ms", "must be finite and >= 0")
    event: dict[str, Any] = {
        "timestamp": _timestamp(timestamp),
        "model": model,
        "model_version": model_version,
        "features": features,
        "prediction": prediction,
        "latency_ms": latency_ms,
    }
    if segment:
        if not isinstance(segment, Mapping):
            raise InvalidEventError("segment", "must be a mapping of name to string")
        event["segment"] = segment if type(segment) is dict else dict(segment)
    if event_id is not None:
        event["event_id"] = event_id
    try:
        value = orjson.dumps(event, default=_default, option=_DUMPS_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise InvalidEventError("<event>", f"not serializable as JSON: {exc}") from None
    if len(value) > max_event_bytes:
        raise InvalidEventError("<event>", f"{len(value)} bytes > {max_event_bytes}")
    if validator is not None:
        validator(orjson.loads(value))  # what is sent, e.g. NaN features as null
    return value


def _encode_label(
    event_id: Any,
    model: Any,
    actual: Any,
    model_version: Any,
    observed_at: Any,
    prediction_timestamp: Any,
    *,
    max_event_bytes: int,
    validator: Callable[[Any], None] | None,
) -> bytes:
    """A ground-truth record (``schemas/ground-truth.schema.json``) as JSON bytes.

    >>> _encode_label("e1", "churn", True, None, 5, None, max_event_bytes=256, validator=None)
    b'{"event_id":"e1","model":"churn","actual":true,"observed_at":5}'
    """
    if type(event_id) is not str or not event_id:
        raise InvalidEventError("event_id", "must be a non-empty string")
    if type(model) is not str or not model:
        raise InvalidEventError("model", "must be a non-empty string")
    if actual is None or (isinstance(actual, float) and not math.isfinite(actual)):
        raise InvalidEventError("actual", "must be a label, a bool or a finite number")
    record: dict[str, Any] = {"event_id": event_id, "model": model, "actual": actual}
    if model_version is not None:
        if type(model_version) is not str or not model_version:
            raise InvalidEventError("model_version", "must be a non-empty string")
        record["model_version"] = model_version
    record["observed_at"] = _timestamp(observed_at)
    if prediction_timestamp is not None:
        record["prediction_timestamp"] = _timestamp(prediction_timestamp)
    try:
        value = orjson.dumps(record, default=_default, option=_DUMPS_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise InvalidEventError("<label>", f"not serializable as JSON: {exc}") from None
    if len(value) > max_event_bytes:
        raise InvalidEventError("<label>", f"{len(value)} bytes > {max_event_bytes}")
    if validator is not None:
        validator(orjson.loads(value))
    return value


def _timestamp(value: Any) -> int | str:
    """Epoch milliseconds (now by default), an aware datetime, or an RFC 3339 string as is."""
    if value is None:
        return time.time_ns() // 1_000_000
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidEventError("timestamp", "a datetime without a timezone is ambiguous")
        return (value - _EPOCH) // _MS
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not (math.isfinite(value) and value >= 0):
            raise InvalidEventError("timestamp", "epoch milliseconds must be finite and >= 0")
        return int(value)
    if isinstance(value, str):
        return value
    raise InvalidEventError("timestamp", "must be a datetime, epoch milliseconds or RFC 3339")


def _default(value: Any) -> Any:
    """orjson's fallback: numpy-like scalars (``.item()``) and decimals."""
    if isinstance(value, Decimal):
        return float(value)
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
