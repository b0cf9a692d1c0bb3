"""Ground-truth records: raw bytes of the labels topic to :class:`GroundTruth` or a rejection.

The rules are ``schemas/ground-truth.schema.json``'s, and refusals carry the decoder's reason
codes (:data:`driftwire.decode.decoder.REASONS`) so that one dead-letter topic and one counter
serve events and labels alike.

>>> decode_label(b'{"event_id": "e1", "model": "churn", "actual": true}', received_ms=5)
GroundTruth(event_id='e1', model='churn', model_version=None, actual='true', observed_ms=5, \
prediction_ms=None)
>>> decode_label(b'{"event_id": "e1", "model": "price", "actual": [1]}', received_ms=5).reason
'wrong_type'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from driftwire.decode._timestamps import MAX_EPOCH_MS, _iso_ms
from driftwire.decode.batch import Rejection

__all__ = ["MAX_LABEL_BYTES", "GroundTruth", "decode_label"]

MAX_LABEL_BYTES = 65_536
_MAX_TEXT = 256

Actual = str | float


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """The known outcome of one prediction.

    ``actual`` is a class label (``str``; booleans become ``"true"`` / ``"false"``) or a
    regression target (``float``). ``observed_ms`` is when it became known (the record's
    ``observed_at``, else the Kafka timestamp passed as ``received_ms``).
    """

    event_id: str
    model: str
    model_version: str | None
    actual: Actual
    observed_ms: int
    prediction_ms: int | None


def decode_label(raw: bytes | None, *, received_ms: int, index: int = 0) -> GroundTruth | Rejection:
    """One record value of the labels topic, checked against the ground-truth schema."""
    if not raw:
        return Rejection(index, "empty", None, "empty record value")
    if len(raw) > MAX_LABEL_BYTES:
        return Rejection(index, "oversized", None, f"{len(raw)} bytes > {MAX_LABEL_BYTES}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection(index, "not_json", None, str(exc))
    if not isinstance(doc, dict):
        return Rejection(index, "not_object", None, "a ground-truth record is a JSON object")
    try:
        return _from_object(doc, received_ms)
    except _Refused as refused:
        return Rejection(index, refused.reason, refused.field, refused.message)


class _Refused(Exception):
    def __init__(self, reason: str, field: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.field, self.message = reason, field, message


def _from_object(doc: dict[str, Any], received_ms: int) -> GroundTruth:
    event_id = _text(doc, "event_id", required=True)
    model = _text(doc, "model", required=True)
    version = _text(doc, "model_version", required=False)
    if "actual" not in doc or doc["actual"] is None:
        raise _Refused("missing_field", "actual", "actual is required")
    observed = _timestamp(doc, "observed_at")
    return GroundTruth(
        event_id=event_id or "",
        model=model or "",
        model_version=version,
        actual=_actual(doc["actual"]),
        observed_ms=received_ms if observed is None else observed,
        prediction_ms=_timestamp(doc, "prediction_timestamp"),
    )


def _text(doc: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise _Refused("missing_field", key, f"{key} is required")
        return None
    if not isinstance(value, str):
        raise _Refused("wrong_type", key, f"{key} must be a string")
    if not value:
        raise _Refused("missing_field", key, f"{key} must not be empty")
    if len(value) > _MAX_TEXT:
        raise _Refused("too_long", key, f"{key} is longer than {_MAX_TEXT} characters")
    return value


def _actual(value: object) -> Actual:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if len(value) > _MAX_TEXT:
            raise _Refused("too_long", "actual", f"actual is longer than {_MAX_TEXT} characters")
        return value
    if isinstance(value, int | float):
        return float(value)
    raise _Refused("wrong_type", "actual", "actual must be a string, a boolean or a number")


def _timestamp(doc: dict[str, Any], key: str) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Refused("wrong_type", key, f"{key} must be a date-time string or epoch ms")
    if isinstance(value, int | float):
        if not 0 <= value < MAX_EPOCH_MS:
            raise _Refused("bad_timestamp", key, f"{key} is outside [0, 2^53) epoch ms")
        return int(value)
    if isinstance(value, str):
        ms = _iso_ms(value)
        if ms is None:
            raise _Refused("bad_timestamp", key, f"{key} is not an RFC 3339 date-time with offset")
        return ms
    raise _Refused("wrong_type", key, f"{key} must be a date-time string or epoch ms")
