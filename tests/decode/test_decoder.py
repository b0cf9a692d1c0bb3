"""Tests of driftwire.decode.decoder.

One test per reason code and per accepted shape; the corpus in ``tests/corpus`` against both the
decoder and the JSON Schema; hypothesis properties: the decoder never raises, partitions its
input, agrees with the schema on every strict-JSON input, and its column-wise fast path gives
exactly what the one-event-at-a-time reference (``_decode_reference``) gives.
"""

from __future__ import annotations

import doctest
import json
import math
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

import driftwire.decode._columns as decode_fast
import driftwire.decode.decoder as decoder
from driftwire.decode import _native
from driftwire.decode._scan import _byte_scan
from driftwire.decode._timestamps import _iso_many, _iso_ms
from driftwire.decode.batch import DecodedBatch, Rejection
from driftwire.decode.decoder import (
    DEFAULT_LIMITS,
    MAX_EPOCH_MS,
    REASONS,
    DecoderLimits,
    _decode_reference,
    decode_batch,
)
from driftwire.errors import ConfigError

# Every test here runs once per decoding path: the pure-Python one and, when the compiled
# extension (driftwire-native) is installed, the compiled one.
PATHS = ["python", "native"] if _native.AVAILABLE else ["python"]


@pytest.fixture(scope="module", params=PATHS, autouse=True)
def decoding_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Module-scoped (hypothesis tests may use it): ``decode_batch`` takes this path."""
    before = _native.ACTIVE
    _native.ACTIVE = request.param == "native"
    try:
        yield request.param
    finally:
        _native.ACTIVE = before


ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parents[1] / "corpus"
SCHEMA = json.loads((ROOT / "schemas" / "inference-event.schema.json").read_text("utf-8"))

# Reasons JSON Schema cannot express: the bytes are not strict JSON (not_json, empty; NaN,
# Infinity and overflowing literals, non_finite) or the limit is on bytes (oversized).
NOT_SCHEMA_REASONS = {"empty", "not_json", "non_finite", "oversized"}

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))",
    re.ASCII,
)


def _format_checker() -> FormatChecker:
    """jsonschema checks ``date-time`` only when rfc3339-validator is installed; otherwise
    register RFC 3339 section 5.6 here (syntax plus calendar), written independently of the
    decoder."""
    checker = Draft202012Validator.FORMAT_CHECKER
    if "date-time" in checker.checkers:
        return checker
    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        match = _RFC3339.fullmatch(value)
        if match is None:
            return False
        year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
        datetime(year, month, day, hour, minute, second)  # ValueError if not a real instant
        off_h, off_m = match.group(9), match.group(10)
        return off_h is None or (int(off_h) <= 23 and int(off_m) <= 59)

    return checker


VALIDATOR = Draft202012Validator(SCHEMA, format_checker=_format_checker())


def schema_accepts(raw: bytes | None) -> bool | None:
    """What a schema-based consumer says: None if the bytes are not strict JSON at all."""
    if raw is None:
        return None
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return VALIDATOR.is_valid(event)


def event(**changes: Any) -> dict[str, Any]:
    """A valid event, with fields replaced (or removed when the value is ``DROP``)."""
    base: dict[str, Any] = {
        "timestamp": "2026-11-22T15:04:05.123Z",
        "model": "churn",
        "model_version": "1.4.2",
        "features": {"age": 37, "income": 52000.5, "country": "DE", "plan": None},
        "prediction": 0.83,
        "latency_ms": 12.4,
    }
    for key, value in changes.items():
        if value is DROP:
            base.pop(key, None)
        else:
            base[key] = value
    return base


DROP = object()


def raw(value: Any) -> bytes:
    return orjson.dumps(value)


def refused(value: bytes | None, limits: DecoderLimits = DEFAULT_LIMITS) -> Rejection:
    batch = decode_batch([value], limits)
    assert len(batch) == 0, "expected a rejection"
    (rejection,) = batch.rejections
    assert rejection.index == 0
    assert rejection.message
    return rejection


def accepted(value: bytes, limits: DecoderLimits = DEFAULT_LIMITS) -> DecodedBatch:
    batch = decode_batch([value], limits)
    assert batch.rejections == [], batch.rejections
    assert len(batch) == 1
    return batch


def check_batch(values: list[bytes | None], batch: DecodedBatch) -> None:
    """Invariants of every decoded batch."""
    positions = batch.index.tolist() + [r.index for r in batch.rejections]
    assert sorted(positions) == list(range(len(values)))
    assert [r.index for r in batch.rejections] == sorted(r.index for r in batch.rejections)
    assert all(r.reason in REASONS for r in batch.rejections)
    n = len(batch)
    assert batch.index.dtype == np.int64 and batch.timestamp_ms.dtype == np.int64
    assert batch.prediction_score.dtype == np.float64 and batch.latency_ms.dtype == np.float64
    for array in (batch.index, batch.timestamp_ms, batch.prediction_score, batch.latency_ms):
        assert array.shape == (n,)
    for column in (
        batch.model_version,
        batch.segment,
        batch.features,
        batch.prediction_label,
        batch.event_id,
    ):
        assert len(column) == n
    assert np.all(np.isfinite(batch.latency_ms)) and np.all(batch.latency_ms >= 0)
    assert np.all((batch.timestamp_ms > -62_200_000_000_000) & (batch.timestamp_ms < MAX_EPOCH_MS))
    for i in range(n):
        assert batch.prediction_label[i] is not None or not math.isnan(batch.prediction_score[i])


def check_schema_agreement(values: list[bytes | None], batch: DecodedBatch) -> None:
    for position in batch.index.tolist():
        assert schema_accepts(values[position]) is True, values[position]
    for rejection in batch.rejections:
        verdict = schema_accepts(values[rejection.index])
        if rejection.reason in NOT_SCHEMA_REASONS:
            assert verdict is not True or rejection.reason == "oversized"
        else:
            assert verdict is False, (rejection, values[rejection.index])


def assert_same(fast: DecodedBatch, reference: DecodedBatch) -> None:
    np.testing.assert_array_equal(fast.index, reference.index)
    np.testing.assert_array_equal(fast.timestamp_ms, reference.timestamp_ms)
    np.testing.assert_array_equal(fast.latency_ms, reference.latency_ms)
    np.testing.assert_array_equal(fast.prediction_score, reference.prediction_score)
    assert fast.model == reference.model
    assert fast.model_version == reference.model_version
    assert fast.segment == reference.segment
    assert fast.features == reference.features
    assert fast.prediction_label == reference.prediction_label
    assert fast.event_id == reference.event_id
    assert fast.rejections == reference.rejections


# --- the module's own contract ---------------------------------------------------------------


def test_doctest_example_runs() -> None:
    result = doctest.testmod(decoder)
    assert result.attempted > 0 and result.failed == 0


def test_schema_is_valid_and_documented() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$id"].endswith("/inference-event.schema.json")

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                assert "description" in sub, name
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(SCHEMA)
    for example in SCHEMA["examples"]:
        assert VALIDATOR.is_valid(example)
        accepted(raw(example))


def test_schema_documents_the_default_limits() -> None:
    props = SCHEMA["properties"]
    assert props["features"]["maxProperties"] == DEFAULT_LIMITS.max_features
    assert props["segment"]["maxProperties"] == DEFAULT_LIMITS.max_segment_keys
    assert props["model"]["maxLength"] == DEFAULT_LIMITS.max_string_length
    assert props["timestamp"]["anyOf"][1]["exclusiveMaximum"] == MAX_EPOCH_MS


def test_reasons_are_the_documented_codes() -> None:
    assert len(set(REASONS)) == len(REASONS)
    for reason in REASONS:
        assert f"``{reason}``" in (decoder.__doc__ or "")


@pytest.mark.parametrize(
    "field", ["max_event_bytes", "max_features", "max_segment_keys", "max_string_length"]
)
@pytest.mark.parametrize("value", [0, -1, 1.5, True, "10"])
def test_limits_are_validated(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"decoder.{field}"):
        DecoderLimits(**{field: value})


def test_empty_batch() -> None:
    batch = decode_batch([])
    assert len(batch) == 0 and batch.rejections == [] and batch.index.shape == (0,)


# --- accepted shapes ---------------------------------------------------------------------------


def test_columns_of_a_full_event() -> None:
    value = event(event_id="e-1", segment={"region": "eu", "tier": "gold"})
    batch = accepted(raw(value))
    assert batch.index.tolist() == [0]
    assert batch.timestamp_ms.tolist() == [1_795_359_845_123]
    assert batch.model == ["churn"] and batch.model_version == ["1.4.2"]
    assert batch.segment == [{"region": "eu", "tier": "gold"}]
    assert batch.features == [{"age": 37, "income": 52000.5, "country": "DE", "plan": None}]
    assert batch.prediction_score.tolist() == [0.83] and batch.prediction_label == [None]
    assert batch.latency_ms.tolist() == [12.4] and batch.event_id == ["e-1"]


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-11-22T15:04:05.123Z", 1_795_359_845_123),
        ("2026-11-22T15:04:05Z", 1_795_359_845_000),
        ("2026-11-22t15:04:05.123z", 1_795_359_845_123),
        ("2026-11-22T16:04:05.123+01:00", 1_795_359_845_123),
        ("2026-11-22T09:34:05.123-05:30", 1_795_359_845_123),
        ("2026-11-22T15:04:05.123-00:00", 1_795_359_845_123),
        ("2026-11-22T15:04:05.1239999Z", 1_795_359_845_123),  # truncated, not rounded
        ("2026-11-22T15:04:05.5Z", 1_795_359_845_500),
        ("1969-12-31T23:59:59.999Z", -1),
        ("0001-01-01T00:00:00Z", -62_135_596_800_000),
        (1_795_359_845_123, 1_795_359_845_123),
        (1_795_359_845_123.999, 1_795_359_845_123),  # truncated
        (0, 0),
        (MAX_EPOCH_MS - 1, MAX_EPOCH_MS - 1),
        (1_700_000_000, 1_700_000_000),  # seconds are not guessed: this is January 1970
    ],
)
def test_timestamps(timestamp: str | int | float, expected: int) -> None:
    assert accepted(raw(event(timestamp=timestamp))).timestamp_ms.tolist() == [expected]
    # the same value in a batch large enough for the vectorized parser
    batch = decode_batch([raw(event(timestamp=timestamp))] * 40)
    assert batch.rejections == [] and batch.timestamp_ms.tolist() == [expected] * 40


@pytest.mark.parametrize(
    ("prediction", "score", "label"),
    [
        (0.25, 0.25, None),
        (3, 3.0, None),
        (-1.5, -1.5, None),
        ("approve", None, "approve"),
        ("", None, ""),
        (True, None, "true"),
        (False, None, "false"),
        ({"score": 0.9, "label": "fraud"}, 0.9, "fraud"),
        ({"score": 0.9}, 0.9, None),
        ({"label": "fraud"}, None, "fraud"),
        ({"score": 1, "label": None, "explanation": [1, 2]}, 1.0, None),
        ({"score": None, "label": "x"}, None, "x"),
    ],
)
def test_predictions(prediction: Any, score: float | None, label: str | None) -> None:
    batch = accepted(raw(event(prediction=prediction)))
    got = batch.prediction_score[0]
    assert math.isnan(got) if score is None else got == score
    assert batch.prediction_label == [label]


def test_null_features_are_missing_values() -> None:
    features = {"a": None, "b": True, "c": "x", "d": 1.5, "e": -0.0, "f": 18446744073709551615}
    assert accepted(raw(event(features=features))).features == [features]


def test_no_features_at_all() -> None:
    assert accepted(raw(event(features={}))).features == [{}]


@pytest.mark.parametrize("segment", [DROP, None])
def test_missing_segment_is_empty(segment: Any) -> None:
    batch = accepted(raw(event(segment=segment, event_id=None)))
    assert batch.segment == [{}] and batch.event_id == [None]


def test_unknown_fields_are_ignored() -> None:
    value = event(metadata={"a": [1, {"b": None}]}, note="n" * 10_000, tags=["x"], n=1e300)
    batch = accepted(raw(value))
    assert batch.model == ["churn"]


def test_strings_at_the_limit_and_non_ascii() -> None:
    value = event(model="m" * 256, features={"k" * 256: "東" * 256, "q": 'say "hi" \\ {['})
    assert accepted(json.dumps(value).encode()).features == [value["features"]]
    assert accepted(raw(value)).features == [value["features"]]


def test_limits_are_configurable() -> None:
    limits = DecoderLimits(
        max_features=2, max_segment_keys=1, max_string_length=3, max_event_bytes=200
    )
    ok = event(model="abc", model_version="1", features={"a": 1, "b": "xyz"}, segment={"r": "eu"})
    accepted(raw(ok), limits)
    assert refused(raw({**ok, "features": {"a": 1, "b": 2, "c": 3}}), limits).reason == (
        "too_many_features"
    )
    assert refused(raw({**ok, "segment": {"r": "eu", "t": "g"}}), limits).reason == (
        "too_many_segment_keys"
    )
    assert refused(raw({**ok, "model": "abcd"}), limits).reason == "too_long"
    assert refused(raw({**ok, "pad": "p" * 200}), limits).reason == "oversized"


# --- one test per reason code ------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, b""])
def test_empty(value: bytes | None) -> None:
    rejection = refused(value)
    assert (rejection.reason, rejection.field) == ("empty", None)


def test_oversized_is_checked_before_parsing() -> None:
    limits = DecoderLimits(max_event_bytes=100)
    rejection = refused(b"{" * 101, limits)  # not JSON either: size wins
    assert (rejection.reason, rejection.field) == ("oversized", None)
    assert refused(raw(event(pad="p" * 70_000))).reason == "oversized"
    padded = b" " * 10 + raw(event()) + b" " * 10
    accepted(padded, DecoderLimits(max_event_bytes=len(padded)))
    assert refused(padded, DecoderLimits(max_event_bytes=len(padded) - 1)).reason == "oversized"


@pytest.mark.parametrize(
    "value", [b"{", b"nope", b'{"a":1} x', b"\xff\xfe", "{}", 12, bytearray(b"[")]
)
def test_not_json(value: Any) -> None:
    rejection = refused(value)
    assert (rejection.reason, rejection.field) == ("not_json", None)


def test_bytes_like_values_are_decoded() -> None:
    body = raw(event())
    batch = decode_batch([bytearray(body), memoryview(body)])  # type: ignore[list-item]
    assert batch.rejections == [] and len(batch) == 2


@pytest.mark.parametrize("value", [b"[1]", b'"x"', b"1", b"null", b"true"])
def test_not_object(value: bytes) -> None:
    assert refused(value).reason == "not_object"


@pytest.mark.parametrize(
    "name", ["timestamp", "model", "model_version", "features", "prediction", "latency_ms"]
)
@pytest.mark.parametrize("how", ["absent", "null"])
def test_missing_field(name: str, how: str) -> None:
    rejection = refused(raw(event(**{name: DROP if how == "absent" else None})))
    assert (rejection.reason, rejection.field) == ("missing_field", name)
    assert how in rejection.message or "missing" in rejection.message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model": ""}, "model"),
        ({"model_version": ""}, "model_version"),
        ({"prediction": {}}, "prediction"),
        ({"prediction": {"score": None, "label": None}}, "prediction"),
    ],
)
def test_empty_values_count_as_missing(changes: dict[str, Any], field: str) -> None:
    rejection = refused(raw(event(**changes)))
    assert (rejection.reason, rejection.field) == ("missing_field", field)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model": 42}, "model"),
        ({"model_version": 1.4}, "model_version"),
        ({"timestamp": True}, "timestamp"),
        ({"timestamp": [1]}, "timestamp"),
        ({"latency_ms": True}, "latency_ms"),
        ({"latency_ms": "12"}, "latency_ms"),
        ({"prediction": [0.5]}, "prediction"),
        ({"prediction": {"score": False}}, "prediction.score"),
        ({"prediction": {"score": "0.5"}}, "prediction.score"),
        ({"prediction": {"label": 1}}, "prediction.label"),
        ({"features": [1]}, "features"),
        ({"features": {"age": {"v": 1}}}, "features.age"),
        ({"features": {"age": 1, "tags": ["a"]}}, "features.tags"),
        ({"segment": "eu"}, "segment"),
        ({"segment": {"region": 1}}, "segment.region"),
        ({"segment": {"region": None}}, "segment.region"),
        ({"segment": {"region": True}}, "segment.region"),
        ({"event_id": 7}, "event_id"),
    ],
)
def test_wrong_type(changes: dict[str, Any], field: str) -> None:
    rejection = refused(raw(event(**changes)))
    assert (rejection.reason, rejection.field) == ("wrong_type", field)


def test_booleans_are_not_numbers_but_are_features() -> None:
    assert refused(raw(event(latency_ms=False))).reason == "wrong_type"
    assert refused(raw(event(timestamp=False))).reason == "wrong_type"
    assert accepted(raw(event(features={"flag": False}))).features == [{"flag": False}]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model": "m" * 257}, "model"),
        ({"event_id": "e" * 257}, "event_id"),
        ({"features": {"n" * 257: 1}}, "features." + "n" * 64 + "..."),
        ({"features": {"city": "c" * 257}}, "features.city"),
        ({"segment": {"region": "r" * 257}}, "segment.region"),
        ({"prediction": "l" * 257}, "prediction"),
        ({"prediction": {"label": "l" * 257}}, "prediction.label"),
    ],
)
def test_too_long(changes: dict[str, Any], field: str) -> None:
    for body in (raw(event(**changes)), json.dumps(event(**changes)).encode()):
        rejection = refused(body)
        assert (rejection.reason, rejection.field) == ("too_long", field)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (b'"latency_ms":12.4', b'"latency_ms":NaN', "latency_ms"),
        (b'"latency_ms":12.4', b'"latency_ms":-Infinity', "latency_ms"),
        (b'"prediction":0.83', b'"prediction":Infinity', "prediction"),
        (b'"prediction":0.83', b'"prediction":{"score":NaN}', "prediction.score"),
        (b'"income":52000.5', b'"income":1e400', "features.income"),
        (b'"age":37', b'"age":' + b"9" * 400, "features.age"),
        (b'"timestamp":"2026-11-22T15:04:05.123Z"', b'"timestamp":-1e999', "timestamp"),
    ],
)
def test_non_finite(old: bytes, new: bytes, field: str) -> None:
    body = raw(event())
    assert old in body
    rejection = refused(body.replace(old, new))
    assert (rejection.reason, rejection.field) == ("non_finite", field)


def test_non_finite_outside_known_fields_is_not_json() -> None:
    body = raw(event()).replace(b"{", b'{"extra":NaN,', 1)
    assert refused(body).reason == "not_json"


@pytest.mark.parametrize("latency", [-1, -0.001, -1e300])
def test_negative_latency(latency: float) -> None:
    rejection = refused(raw(event(latency_ms=latency)))
    assert (rejection.reason, rejection.field) == ("negative_latency", "latency_ms")


def test_zero_and_negative_zero_latency_are_fine() -> None:
    assert accepted(raw(event(latency_ms=-0.0))).latency_ms.tolist() == [0.0]
    assert accepted(raw(event(latency_ms=0))).latency_ms.tolist() == [0.0]


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-22T15:04:05",  # naive: ambiguous
        "2026-11-22T15:04:05.123",
        "2026-11-22 15:04:05Z",
        "2026-11-22",
        "2026-11-22T15:04Z",
        "2026-02-30T00:00:00Z",
        "2026-11-22T24:00:00Z",
        "2026-11-22T15:04:60Z",
        "2026-11-22T15:04:05+24:00",
        "2026-11-22T15:04:05+0100",
        "2026-11-22T15:04:05.Z",
        "0000-01-01T00:00:00Z",
        "2026-11-22T15:04:05Z\n",
        "20261122T150405Z",
        "1795359845123",
        "",
        -1,
        -0.5,
        MAX_EPOCH_MS,
        1e16,
    ],
)
def test_bad_timestamp(timestamp: Any) -> None:
    rejection = refused(raw(event(timestamp=timestamp)))
    assert (rejection.reason, rejection.field) == ("bad_timestamp", "timestamp")
    batch = decode_batch([raw(event(timestamp=timestamp))] * 20 + [raw(event())])
    assert batch.index.tolist() == [20]
    assert {r.reason for r in batch.rejections} == {"bad_timestamp"}


def test_too_many_features() -> None:
    features = {f"f{i}": i for i in range(DEFAULT_LIMITS.max_features)}
    accepted(raw(event(features=features)))
    features["one_more"] = 0
    rejection = refused(raw(event(features=features)))
    assert (rejection.reason, rejection.field) == ("too_many_features", "features")


def test_too_many_segment_keys() -> None:
    segment = {f"k{i}": "v" for i in range(DEFAULT_LIMITS.max_segment_keys + 1)}
    rejection = refused(raw(event(segment=segment)))
    assert (rejection.reason, rejection.field) == ("too_many_segment_keys", "segment")


def test_first_problem_in_documented_order_is_reported() -> None:
    bad = event(model_version=DROP, timestamp="soon", latency_ms=-1, features=[1])
    assert refused(raw(bad)).field == "model_version"
    assert refused(raw({**bad, "model_version": "1"})).field == "timestamp"


def test_one_bad_event_among_many() -> None:
    values: list[bytes | None] = [raw(event(latency_ms=float(i))) for i in range(100)]
    values[17] = raw(event(features={"x": {"nested": 1}}))
    values[50] = None
    values[63] = raw(event(features={"long": "y" * 300}))
    batch = decode_batch(values)
    check_batch(values, batch)
    assert [(r.index, r.reason, r.field) for r in batch.rejections] == [
        (17, "wrong_type", "features.x"),
        (50, "empty", None),
        (63, "too_long", "features.long"),
    ]
    assert batch.latency_ms.tolist() == [float(i) for i in range(100) if i not in (17, 50, 63)]
    assert_same(batch, _decode_reference(values))


def test_byte_scan_flags_only_rows_that_need_a_closer_look() -> None:
    # Not a correctness property (flagged rows are checked exactly) but the speed of the fast
    # path: ordinary traffic must not be flagged at all.
    rows = [raw(event(segment={"region": "eu"}, event_id=f"id-{i}")) for i in range(50)]
    rows[3] = raw(event(segment={"region": "eu"}, metadata={"a": [1]}))  # extra containers
    rows[9] = raw(event(segment={"region": "eu"}, note="n" * 300))  # a long string
    rows[20] = json.dumps(event(segment={"region": "eu"}, model="é")).encode()  # an escape
    lens = [len(r) for r in rows]

    def per_row() -> np.ndarray:  # each row: itself, features, segment
        return np.full(len(rows), 3)

    containers, strings = _byte_scan(b"".join(rows), lens, 3 * len(rows), per_row, 256)
    assert containers == {3}
    assert 9 in strings and 20 in strings and len(strings) <= 4  # a block may span two rows
    plain = rows[:3] + rows[4:9] + rows[10:20] + rows[21:]
    assert _byte_scan(b"".join(plain), [len(r) for r in plain], 3 * 47, per_row, 256) == (
        set(),
        set(),
    )


def test_rows_set_aside_by_mistake_are_still_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    # The column checks are exact, so decode_batch never needs its merge step; if one were
    # ever too strict, the per-event validator would accept the row and it must come back
    # in input order.
    values: list[bytes | None] = [raw(event(latency_ms=float(i))) for i in range(30)]
    values[5] = b"{"
    real = decode_fast._names_bad
    monkeypatch.setattr(
        decode_fast, "_names_bad", lambda column, limit: [0, 7, *real(column, limit)]
    )
    batch = decode_batch(values)
    assert_same(batch, _decode_reference(values))
    assert batch.index.tolist() == [i for i in range(30) if i != 5]


# --- the corpus: decoder and schema agree ----------------------------------------------------


def _corpus(name: str) -> list[str]:
    return (CORPUS / name).read_text("utf-8").splitlines()


def test_valid_corpus_is_accepted_by_decoder_and_schema() -> None:
    values: list[bytes | None] = [line.encode() for line in _corpus("events_valid.jsonl")]
    assert len(values) >= 40
    batch = decode_batch(values)
    assert batch.rejections == []
    assert batch.index.tolist() == list(range(len(values)))
    check_batch(values, batch)
    assert_same(batch, _decode_reference(values))
    for value in values:
        assert schema_accepts(value) is True, value


def _invalid_cases() -> list[tuple[bytes, str, str | None]]:
    cases = []
    for line in _corpus("events_invalid.jsonl"):
        entry = json.loads(line)
        body = entry["raw"].encode() if "raw" in entry else raw(entry["event"])
        cases.append((body, entry["reason"], entry["field"]))
    return cases


def test_invalid_corpus_covers_every_schema_reason() -> None:
    covered = {reason for _, reason, _ in _invalid_cases()}
    assert covered == set(REASONS) - {"oversized"}  # a 64 KiB line has no place in the corpus


def test_invalid_corpus_is_refused_by_decoder_and_schema() -> None:
    cases = _invalid_cases()
    values: list[bytes | None] = [body for body, _, _ in cases]
    batch = decode_batch(values)
    assert len(batch) == 0
    check_batch(values, batch)
    assert_same(batch, _decode_reference(values))
    for (body, reason, field), rejection in zip(cases, batch.rejections, strict=True):
        assert (rejection.reason, rejection.field) == (reason, field), body[:120]
        verdict = schema_accepts(body)
        if reason in NOT_SCHEMA_REASONS:
            assert verdict is None  # not strict JSON: the schema never sees it
        else:
            assert verdict is False, body[:120]


def test_invalid_corpus_mixed_into_valid_traffic() -> None:
    valid = [line.encode() for line in _corpus("events_valid.jsonl")]
    invalid = [body for body, _, _ in _invalid_cases()]
    values: list[bytes | None] = [v for pair in zip(valid * 3, invalid, strict=False) for v in pair]
    batch = decode_batch(values)
    check_batch(values, batch)
    assert batch.index.tolist() == list(range(0, len(values), 2))
    assert_same(batch, _decode_reference(values))


# --- timestamps: vectorized parser = scalar parser = datetime -----------------------------------

_timestamps_in_range = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-23, minutes=-59))]
    ),
)


def _rfc3339(moment: datetime, digits: int, zulu: bool) -> str:
    text = f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S")  # %Y is not padded
    if digits:
        text += "." + (f"{moment.microsecond:06d}" + "7" * 30)[:digits]
    offset = moment.utcoffset() or timedelta()
    if zulu and not offset:
        return text + "Z"
    sign = "-" if offset < timedelta() else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@settings(max_examples=200, deadline=None)
@given(_timestamps_in_range, st.integers(0, 30), st.booleans())
def test_iso_parser_matches_datetime(moment: datetime, digits: int, zulu: bool) -> None:
    text = _rfc3339(moment, digits, zulu)
    truncated = moment.replace(microsecond=moment.microsecond // 1000 * 1000 if digits else 0)
    if digits and digits < 3:
        truncated = moment.replace(
            microsecond=int(f"{moment.microsecond:06d}"[:digits].ljust(6, "0"))
        )
    expected = (truncated - EPOCH) // ONE_MS
    assert _iso_ms(text) == expected
    ms, bad = _iso_many([text] * 20)
    assert bad == [] and ms.tolist() == [expected] * 20


_timestamp_chars = st.sampled_from([*"0123456789-:.TtZz+ ", "٣", "\n", "x"])


@st.composite
def _timestamp_texts(draw: st.DrawFn) -> str:
    text = _rfc3339(draw(_timestamps_in_range), draw(st.integers(0, 30)), draw(st.booleans()))
    chars = list(text)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(chars)))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        if action == "insert" or not chars:
            chars.insert(at, draw(_timestamp_chars))
        elif action == "replace":
            chars[min(at, len(chars) - 1)] = draw(_timestamp_chars)
        else:
            del chars[min(at, len(chars) - 1)]
    return "".join(chars)


@settings(max_examples=200, deadline=None)
@given(st.lists(_timestamp_texts(), min_size=1, max_size=60))
def test_vectorized_timestamps_match_scalar_parser(texts: list[str]) -> None:
    texts = texts * (1 + 20 // len(texts))  # enough rows of one length for the vectorized path
    ms, bad = _iso_many(texts)
    for i, text in enumerate(texts):
        expected = _iso_ms(text)
        assert (None if i in bad else int(ms[i])) == expected, text


@pytest.mark.parametrize("digits", [1, 2, 3, 4, 9, 12, 25, 60])
@pytest.mark.parametrize("at", [0, 1, 2, 3, -1])
def test_long_fractions_are_checked_digit_by_digit(digits: int, at: int) -> None:
    fraction = list("1" * digits)
    fraction[min(at, digits - 1)] = "x"
    for zone in ("Z", "+01:00"):
        good = "2026-11-22T15:04:05." + "1" * digits + zone
        bad = "2026-11-22T15:04:05." + "".join(fraction) + zone
        ms, refused = _iso_many([good] * 20 + [bad] * 20)
        assert refused == list(range(20, 40))
        assert ms[:20].tolist() == [_iso_ms(good)] * 20
        assert _iso_ms(bad) is None


def test_vectorized_timestamps_are_not_fooled_by_nul_characters() -> None:
    # Joined with NUL, these line up like 16 strings of 20 characters; only the NUL count
    # tells that "" is not a timestamp.
    good = "2026-11-22T15:04:05Z"
    texts = [good, good + "\x00" + good, "", good[:19], *[good] * 12]
    assert len("\x00".join(texts)) == len(texts) * 21 - 1
    ms, bad = _iso_many(texts)
    assert bad == [1, 2, 3]
    assert ms[[0, *range(4, 16)]].tolist() == [_iso_ms(good)] * 13


# --- hypothesis: robustness and agreement ------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_names = st.text(min_size=1, max_size=12) | st.text(min_size=250, max_size=260)
_feature_values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.text(min_size=255, max_size=258)
)
_valid_timestamps = (
    st.builds(_rfc3339, _timestamps_in_range, st.sampled_from([0, 3, 3, 3, 6, 9]), st.booleans())
    | st.integers(0, MAX_EPOCH_MS - 1)
    | st.floats(0, MAX_EPOCH_MS - 1)
)
_predictions = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-10, 10)
    | st.text(max_size=8)
    | st.booleans()
    | st.fixed_dictionaries(
        {},
        optional={"score": st.none() | st.floats(-1, 1), "label": st.none() | st.text(max_size=8)},
    )
)
_events = st.fixed_dictionaries(
    {
        "timestamp": _valid_timestamps,
        "model": st.sampled_from(["churn", "fraud"]) | _names,
        "model_version": st.sampled_from(["1.4.2", "2"]) | _names,
        "features": st.dictionaries(
            st.text(max_size=8) | st.text(min_size=255, max_size=258), _feature_values, max_size=14
        ),
        "prediction": _predictions,
        "latency_ms": st.floats(0, 1e6) | st.integers(0, 10**6),
    },
    optional={
        "event_id": st.none() | st.text(max_size=40),
        "segment": st.none()
        | st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=17),
        "extra": _json_values,
    },
)


def _mutate(draw: Callable[[st.SearchStrategy[Any]], Any], value: dict[str, Any]) -> dict[str, Any]:
    value = dict(value)
    target = draw(st.sampled_from([*value, "features", "segment", "prediction", "timestamp"]))
    replacement = draw(
        _json_values
        | st.sampled_from(
            [
                None,
                True,
                -1,
                -0.5,
                "",
                "x" * 257,
                MAX_EPOCH_MS,
                [],
                {},
                "2026-02-29T00:00:00Z",
                "2026-11-22T15:04:05",
            ]
        )
    )
    action = draw(st.sampled_from(["drop", "replace", "nested"]))
    if action == "drop":
        value.pop(target, None)
    elif action == "nested" and isinstance(value.get(target), dict) and value[target]:
        inner = dict(value[target])
        inner[draw(st.sampled_from(sorted(inner)))] = replacement
        value[target] = inner
    else:
        value[target] = replacement
    return value


def _serialize(value: Any, style: str) -> bytes:
    if style == "orjson":
        try:
            return orjson.dumps(value)
        except (orjson.JSONEncodeError, TypeError):
            pass
    text = json.dumps(value, allow_nan=True, ensure_ascii=style == "ascii")
    return text.encode("utf-8", "surrogatepass")


@st.composite
def _batches(draw: st.DrawFn) -> list[bytes | None]:
    events = draw(st.lists(_events, min_size=0, max_size=45))
    style = draw(st.sampled_from(["orjson", "ascii", "unicode"]))
    values: list[bytes | None] = []
    for value in events:
        if draw(st.integers(0, 9)) == 0:
            value = _mutate(draw, value)
        values.append(_serialize(value, style))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(values)))
        values.insert(
            at,
            draw(
                st.none()
                | st.binary(max_size=40)
                | _json_values.map(lambda v: _serialize(v, "ascii"))
            ),
        )
    return values


HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYPOTHESIS
@given(st.lists(st.none() | st.binary(max_size=200), max_size=30))
def test_arbitrary_bytes_never_raise(values: list[bytes | None]) -> None:
    batch = decode_batch(values)
    check_batch(values, batch)
    check_schema_agreement(values, batch)
    assert_same(batch, _decode_reference(values))


@HYPOTHESIS
@given(st.lists(_json_values, max_size=20), st.sampled_from(["orjson", "ascii", "unicode"]))
def test_arbitrary_json_never_raises(objects: list[Any], style: str) -> None:
    values: list[bytes | None] = [_serialize(value, style) for value in objects]
    batch = decode_batch(values)
    check_batch(values, batch)
    check_schema_agreement(values, batch)
    assert_same(batch, _decode_reference(values))


@HYPOTHESIS
@given(_batches())
def test_almost_valid_batches_agree_with_schema_and_reference(values: list[bytes | None]) -> None:
    batch = decode_batch(values)
    check_batch(values, batch)
    check_schema_agreement(values, batch)
    assert_same(batch, _decode_reference(values))
    for position in range(len(values)):
        if schema_accepts(values[position]) is True:
            assert position in batch.index.tolist()


@HYPOTHESIS
@given(_events, st.data())
def test_one_mutation_is_caught_like_the_schema_says(
    value: dict[str, Any], data: st.DataObject
) -> None:
    mutated = _serialize(_mutate(data.draw, value), "orjson")
    batch = decode_batch([mutated])
    verdict = schema_accepts(mutated)
    if verdict is None:
        assert batch.rejections[0].reason in NOT_SCHEMA_REASONS
    else:
        assert (len(batch) == 1) == verdict
