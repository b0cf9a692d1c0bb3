"""Ground-truth records: the label decoder and schemas/ground-truth.schema.json agree."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from driftwire.decode.batch import Rejection
from driftwire.decode.decoder import REASONS
from driftwire.truth.label import MAX_LABEL_BYTES, GroundTruth, decode_label

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "ground-truth.schema.json").read_text("utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)
OBSERVED = "observed_at"


def test_schema_is_valid_and_its_examples_decode() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    for example in SCHEMA["examples"]:
        assert VALIDATOR.is_valid(example)
        assert isinstance(decode_label(orjson.dumps(example), received_ms=0), GroundTruth)


def test_fields_are_read() -> None:
    raw = orjson.dumps(
        {
            "event_id": "e9",
            "model": "price",
            "model_version": "2",
            "actual": 12,
            "observed_at": "2026-12-01T09:00:00.250+01:00",
            "prediction_timestamp": 1_700_000_000_000,
            "extra": [1, 2],
        }
    )
    label = decode_label(raw, received_ms=5)
    observed = datetime(2026, 12, 1, 8, 0, 0, 250_000, tzinfo=UTC)  # 09:00 at +01:00
    expected_ms = round(observed.timestamp() * 1000)
    assert label == GroundTruth("e9", "price", "2", 12.0, expected_ms, 1_700_000_000_000)
    no_time = decode_label(b'{"event_id":"e","model":"m","actual":false}', received_ms=77)
    assert isinstance(no_time, GroundTruth)
    assert (no_time.actual, no_time.observed_ms) == ("false", 77)


def test_refusals_name_reason_and_field() -> None:
    cases = {
        b"": ("empty", None),
        b"[1]": ("not_object", None),
        b"{": ("not_json", None),
        b'{"event_id":"e","model":"m","actual":1e400}': ("not_json", None),
        b'{"model":"m","actual":1}': ("missing_field", "event_id"),
        b'{"event_id":"e","model":"m"}': ("missing_field", "actual"),
        b'{"event_id":"e","model":"m","actual":null}': ("missing_field", "actual"),
        b'{"event_id":"","model":"m","actual":1}': ("missing_field", "event_id"),
        b'{"event_id":7,"model":"m","actual":1}': ("wrong_type", "event_id"),
        b'{"event_id":"e","model":"m","actual":{"a":1}}': ("wrong_type", "actual"),
        b'{"event_id":"e","model":"m","actual":1,"observed_at":"yesterday"}': (
            "bad_timestamp",
            "observed_at",
        ),
        b'{"event_id":"e","model":"m","actual":1,"observed_at":-1}': (
            "bad_timestamp",
            "observed_at",
        ),
        b'{"event_id":"e","model":"m","actual":1,"observed_at":true}': (
            "wrong_type",
            "observed_at",
        ),
    }
    for raw, expected in cases.items():
        rejection = decode_label(raw, received_ms=0, index=3)
        assert isinstance(rejection, Rejection), raw
        assert (rejection.reason, rejection.field) == expected, raw
        assert rejection.index == 3 and rejection.reason in REASONS
    big = b'{"event_id":"e","model":"m","actual":"' + b"x" * MAX_LABEL_BYTES + b'"}'
    assert decode_label(big, received_ms=0).reason == "oversized"  # type: ignore[union-attr]


_TEXT = st.one_of(st.text(max_size=3), st.text(min_size=255, max_size=258))
_TIME = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.isoformat().replace("+00:00", "Z") if d.microsecond else d.isoformat()),
    st.integers(min_value=-5, max_value=2**53 + 5),
    st.floats(min_value=0, max_value=1e16),
    st.text(max_size=8),
    st.booleans(),
)
_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**60), 2**60), st.floats(-1e300, 1e300), _TEXT
)
_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "event_id": _VALUE,
        "model": _VALUE,
        "model_version": _VALUE,
        "actual": st.one_of(_VALUE, st.lists(st.integers(-5, 5), max_size=1)),
        "observed_at": _TIME,
        "prediction_timestamp": _TIME,
    },
)


@settings(max_examples=400, deadline=None)
@given(_FIELDS)
def test_decoder_accepts_exactly_what_the_schema_accepts(doc: dict[str, Any]) -> None:
    raw = orjson.dumps(doc)
    result = decode_label(raw, received_ms=0)
    assert isinstance(result, GroundTruth) == VALIDATOR.is_valid(doc), (doc, result)
