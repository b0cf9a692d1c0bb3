"""The per-event validator: the decoder's reference semantics, one event at a time.

:func:`_parse` handles everything about one raw value that comes before field checks (null,
size, JSON, object); :func:`_validate` checks one parsed event in the documented order (see
:mod:`driftwire.decode.decoder`) and raises :class:`_Bad` at the first problem, naming its reason
code, field and message. The column-wise fast path sends only the events it refuses through
here, to name the reason; ``_decode_reference`` sends every event.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from driftwire.decode._timestamps import MAX_EPOCH_MS, _iso_ms
from driftwire.decode.batch import FeatureValue, Rejection
from driftwire.decode.limits import DecoderLimits


class _Bad(Exception):
    """Raised inside the per-event validator; becomes one Rejection."""

    def __init__(self, reason: str, field: str | None, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.message = message


_JSON_TYPE = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


def _json_type(value: object) -> str:
    return _JSON_TYPE.get(type(value), type(value).__name__)


def _path(prefix: str, key: str) -> str:
    return f"{prefix}.{key if len(key) <= 64 else key[:64] + '...'}"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_Row = tuple[
    int, str, str, dict[str, str], dict[str, FeatureValue], float, str | None, float, str | None
]


def _required(event: dict[str, Any], name: str) -> Any:
    value = event.get(name)
    if value is None:
        raise _Bad("missing_field", name, f"{name} is {'null' if name in event else 'missing'}")
    return value


def _name(value: Any, field: str, limit: int) -> str:
    if type(value) is not str:
        raise _Bad("wrong_type", field, f"{field} must be a string, got {_json_type(value)}")
    if not value:
        raise _Bad("missing_field", field, f"{field} is empty")
    _short(value, field, limit)
    return value


def _short(value: str, field: str, limit: int) -> None:
    if len(value) > limit:
        raise _Bad("too_long", field, f"{field} has {len(value)} characters, limit {limit}")


def _number(value: Any, field: str) -> float:
    """A finite JSON number as float; bool is not a number."""
    kind = type(value)
    if kind is not float and kind is not int:
        raise _Bad("wrong_type", field, f"{field} must be a number, got {_json_type(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _Bad("non_finite", field, f"{field} is {_show(value)}")
    return number


def _timestamp(value: Any) -> int:
    if type(value) is str:
        ms = _iso_ms(value)
        if ms is None:
            raise _Bad(
                "bad_timestamp",
                "timestamp",
                f"timestamp {_show(value)} is not an RFC 3339 date-time with offset",
            )
        return ms
    if type(value) is not int and type(value) is not float:
        raise _Bad(
            "wrong_type",
            "timestamp",
            f"timestamp must be a string or a number, got {_json_type(value)}",
        )
    number = _number(value, "timestamp")
    if not 0 <= number < MAX_EPOCH_MS:
        raise _Bad(
            "bad_timestamp",
            "timestamp",
            f"timestamp {_show(value)} is outside [0, 2**53) epoch milliseconds",
        )
    return int(value)


def _prediction(value: Any, limit: int) -> tuple[float, str | None]:
    kind = type(value)
    if kind is bool:
        return math.nan, "true" if value else "false"
    if kind is str:
        _short(value, "prediction", limit)
        return math.nan, value
    if kind is not dict:
        return _number(value, "prediction"), None
    score, label = value.get("score"), value.get("label")
    if score is None and label is None:
        raise _Bad("missing_field", "prediction", "prediction object has neither score nor label")
    number = math.nan if score is None else _number(score, "prediction.score")
    if label is not None:
        if type(label) is not str:
            raise _Bad(
                "wrong_type",
                "prediction.label",
                f"prediction.label must be a string, got {_json_type(label)}",
            )
        _short(label, "prediction.label", limit)
    return number, label


def _features(value: Any, limits: DecoderLimits) -> dict[str, FeatureValue]:
    if type(value) is not dict:
        raise _Bad("wrong_type", "features", f"features must be an object, got {_json_type(value)}")
    if len(value) > limits.max_features:
        raise _Bad(
            "too_many_features", "features", f"{len(value)} features, limit {limits.max_features}"
        )
    limit = limits.max_string_length
    for name, item in value.items():
        if len(name) > limit:
            raise _Bad(
                "too_long",
                _path("features", name),
                f"feature name has {len(name)} characters, limit {limit}",
            )
        kind = type(item)
        if kind is str:
            _short(item, _path("features", name), limit)
        elif kind is float or kind is int:
            _number(item, _path("features", name))
        elif item is not None and kind is not bool:
            field = _path("features", name)
            raise _Bad(
                "wrong_type",
                field,
                f"{field} must be a number, string, boolean or null, got {_json_type(item)}",
            )
    return value


def _segment(value: Any, limits: DecoderLimits) -> dict[str, str]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise _Bad("wrong_type", "segment", f"segment must be an object, got {_json_type(value)}")
    if len(value) > limits.max_segment_keys:
        raise _Bad(
            "too_many_segment_keys",
            "segment",
            f"{len(value)} segment keys, limit {limits.max_segment_keys}",
        )
    limit = limits.max_string_length
    for key, item in value.items():
        field = _path("segment", key)
        if len(key) > limit:
            raise _Bad("too_long", field, f"segment key has {len(key)} characters, limit {limit}")
        if type(item) is not str:
            raise _Bad("wrong_type", field, f"{field} must be a string, got {_json_type(item)}")
        _short(item, field, limit)
    return value


def _validate(event: dict[str, Any], limits: DecoderLimits) -> _Row:
    """Check one parsed event in the documented order; raise _Bad at the first problem."""
    limit = limits.max_string_length
    model = _name(_required(event, "model"), "model", limit)
    version = _name(_required(event, "model_version"), "model_version", limit)
    timestamp = _timestamp(_required(event, "timestamp"))
    latency = _number(_required(event, "latency_ms"), "latency_ms")
    if latency < 0:
        raise _Bad("negative_latency", "latency_ms", f"latency_ms is {_show(latency)}")
    score, label = _prediction(_required(event, "prediction"), limit)
    features = _features(_required(event, "features"), limits)
    segment = _segment(event.get("segment"), limits)
    event_id = event.get("event_id")
    if event_id is not None:
        if type(event_id) is not str:
            raise _Bad(
                "wrong_type", "event_id", f"event_id must be a string, got {_json_type(event_id)}"
            )
        _short(event_id, "event_id", limit)
    return (timestamp, model, version, segment, features, score, label, latency, event_id)


def _non_finite_field(event: dict[str, Any]) -> str | None:
    """The first numeric field holding NaN/Infinity/an overflowing literal, if any."""

    def bad(value: Any) -> bool:
        if type(value) is float:
            return not math.isfinite(value)
        if type(value) is int:
            try:
                float(value)
            except OverflowError:
                return True
        return False

    for name in ("timestamp", "latency_ms", "prediction"):
        if bad(event.get(name)):
            return name
    prediction = event.get("prediction")
    if type(prediction) is dict and bad(prediction.get("score")):
        return "prediction.score"
    features = event.get("features")
    if type(features) is dict:
        for name, value in features.items():
            if bad(value):
                return _path("features", name)
    return None


def _not_json(raw: bytes, error: Exception) -> _Bad:
    """Classify a value orjson refused: NaN/Infinity in a numeric field, or plainly not JSON.

    The stdlib parser accepts ``NaN``, ``Infinity`` and overflowing literals, so it tells a
    producer that wrote ``"latency_ms": NaN`` apart from one that wrote garbage.
    """
    try:
        loose = json.loads(raw)
    except (ValueError, RecursionError):
        loose = None
    if type(loose) is dict:
        field = _non_finite_field(loose)
        if field is not None:
            return _Bad("non_finite", field, f"{field} is NaN or infinite (not valid JSON)")
    return _Bad("not_json", None, f"not JSON: {str(error)[:200]}")


def _parse(index: int, raw: Any, limits: DecoderLimits) -> dict[str, Any] | Rejection:
    """Everything about one raw value that comes before field checks."""
    if raw is None:
        return Rejection(index, "empty", None, "null value (tombstone)")
    if type(raw) is not bytes:
        if not isinstance(raw, bytearray | memoryview):
            return Rejection(index, "not_json", None, f"value is {type(raw).__name__}, not bytes")
        raw = bytes(raw)
    if not raw:
        return Rejection(index, "empty", None, "zero-length value")
    if len(raw) > limits.max_event_bytes:
        return Rejection(
            index, "oversized", None, f"{len(raw)} bytes, limit {limits.max_event_bytes}"
        )
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        bad = _not_json(raw, error)
        return Rejection(index, bad.reason, bad.field, bad.message)
    if type(event) is not dict:
        return Rejection(index, "not_object", None, f"JSON {_json_type(event)}, not an object")
    return event
