"""The compiled decoder against the pure-Python reference, on its own answer.

``test_decoder.py`` already runs every decoder test on both paths; here the
extension's raw output is compared with the reference row by row: the accepted rows and the
reason code and field path it gives for every refused value (messages come from the reference).
Collected only when the extension is installed (``tests/conftest.py``).
"""

from __future__ import annotations

import importlib
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_decoder import HYPOTHESIS, _batches, _json_values, _serialize, assert_same, event, raw

from driftwire.decode import _native
from driftwire.decode.decoder import (
    DEFAULT_LIMITS,
    REASONS,
    DecoderLimits,
    _decode_python,
    _decode_reference,
)

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def _own_reasons(values: list[Any], limits: DecoderLimits = DEFAULT_LIMITS) -> None:
    """The extension's accepted rows and (reason, field) pairs are the reference's."""
    result = _native.decode_rows(values, limits)
    assert result is not None
    index, refused = list(memoryview(result[0]).cast("q")), result[-1]
    reference = _decode_reference(values, limits)
    deferred = {i for i, code, _ in refused if code == 255}
    assert sorted(index) == sorted(set(reference.index.tolist()) - deferred)
    expected = {r.index: (r.reason, r.field) for r in reference.rejections}
    for position, code, field in refused:
        if code == 255:
            continue
        reason = REASONS[code]
        if reason == "not_json":  # the reference tells NaN/Infinity literals apart
            assert expected[position][0] in ("not_json", "non_finite")
        else:
            assert (reason, field) == expected[position], values[position]
    batch = _native.decode_batch_native(values, limits)
    assert batch is not None
    assert_same(batch, reference)


def _corpus() -> list[bytes | None]:
    valid = [line.encode() for line in (CORPUS / "events_valid.jsonl").read_text().splitlines()]
    invalid = []
    for line in (CORPUS / "events_invalid.jsonl").read_text().splitlines():
        entry = json.loads(line)
        invalid.append(entry["raw"].encode() if "raw" in entry else orjson.dumps(entry["event"]))
    return [*valid, *invalid, None]


def test_corpus_reasons_match_the_reference() -> None:
    _own_reasons(_corpus())


def test_extension_reason_codes_are_the_documented_ones() -> None:
    extension = importlib.import_module("_driftwire_native")
    assert tuple(extension.REASONS) == REASONS


def test_small_limits() -> None:
    limits = DecoderLimits(max_features=2, max_segment_keys=1, max_string_length=4)
    _own_reasons(_corpus(), limits)
    _own_reasons([raw(event(segment={"ab": "cd"}))], DecoderLimits(max_event_bytes=50))


def test_edge_cases_of_strict_json() -> None:
    deep = b'{"x": ' + b"[" * 1023 + b"]" * 1023 + b', "model": 1}'
    too_deep = b'{"x": ' + b"[" * 1024 + b"]" * 1024 + b"}"
    good = raw(event())
    values: list[bytes | None] = [
        deep,
        too_deep,
        good.replace(b'"age":37', b'"age":-0'),  # orjson: the int 0
        good.replace(b'"age":37', b'"age":-0.0'),
        good.replace(b'"age":37', b'"age":18446744073709551615'),
        good.replace(b'"age":37', b'"age":18446744073709551616'),  # a float
        good.replace(b'"age":37', b'"age":-9223372036854775809'),
        good.replace(b'"age":37', b'"age":1e-400'),
        good.replace(b'"age":37', b'"age":1e400'),
        good.replace(b'"age":37', b'"age":NaN'),
        good.replace(b'"model":"churn"', b'"model":"churn","model":"x"'),
        good.replace(b'"age":37', b'"age":1,"plan":2,"age":[3]'),
        good.replace(b'"age":37', b'"a\\u0067e":37'),
        good.replace(b'"country":"DE"', b'"country":"\\ud83d\\ude00"'),
        good.replace(b'"country":"DE"', b'"country":"\\ud83d"'),
        good.replace(b'"country":"DE"', b'"country":"\xff"'),
        good + b" \n",
        b"\xef\xbb\xbf" + good,
        good.replace(b'"latency_ms":12.4', b'"latency_ms":-0'),
        good.replace(b'"timestamp":"2026-11-22T15:04:05.123Z"', b'"timestamp":9007199254740991'),
        good.replace(b'"timestamp":"2026-11-22T15:04:05.123Z"', b'"timestamp":9007199254740992'),
        good.replace(b'"timestamp":"2026-11-22T15:04:05.123Z"', b'"timestamp":1.5e12'),
        good.replace(
            b'"timestamp":"2026-11-22T15:04:05.123Z"', b'"timestamp":"0001-01-01T00:00:00+23:59"'
        ),
        good.replace(
            b'"timestamp":"2026-11-22T15:04:05.123Z"', b'"timestamp":"2024-02-29t23:59:59.9999z"'
        ),
        good.replace(
            b'"timestamp":"2026-11-22T15:04:05.123Z"', b'"timestamp":"2023-02-29T00:00:00Z"'
        ),
        good.replace(
            b'"timestamp":"2026-11-22T15:04:05.123Z"', b'"timestamp":"2026-11-22T15:04:05.Z"'
        ),
        good.replace(
            b'"timestamp":"2026-11-22T15:04:05.123Z"', b'"timestamp":"\\u0032026-11-22T15:04:05Z"'
        ),
        good.replace(b'"prediction":0.83', b'"prediction":{"score":null,"label":"x","z":[{}]}'),
        good.replace(b'"prediction":0.83', b'"prediction":{"score":null,"label":null}'),
        good.replace(b'"prediction":0.83', b'"prediction":false'),
        good.replace(b'"features":{', b'"features":{"' + "é".encode() * 256 + b'":1,'),
        good.replace(b'"features":{', b'"features":{"' + "é".encode() * 257 + b'":1,'),
    ]
    _own_reasons(values)


def test_bytes_like_values_take_the_python_path() -> None:
    assert _native.decode_rows([bytearray(raw(event()))], DEFAULT_LIMITS) is None


def test_threads_decode_the_same_batches() -> None:
    # The parse runs without the GIL: batches decoded in parallel threads come out whole.
    values: list[bytes | None] = [raw(event(latency_ms=float(i))) for i in range(2000)]
    expected = _decode_python(values)
    results: list[Any] = []

    def work() -> None:
        results.append(_native.decode_batch_native(values, DEFAULT_LIMITS))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for batch in results:
        assert_same(batch, expected)


@HYPOTHESIS
@given(_batches())
def test_almost_valid_batches_give_the_reference_reasons(values: list[bytes | None]) -> None:
    _own_reasons(values)


@HYPOTHESIS
@given(st.lists(_json_values, max_size=20), st.sampled_from(["orjson", "ascii", "unicode"]))
def test_arbitrary_json_gives_the_reference_reasons(objects: list[Any], style: str) -> None:
    _own_reasons([_serialize(value, style) for value in objects])


@HYPOTHESIS
@given(st.lists(st.none() | st.binary(max_size=200), max_size=30))
def test_arbitrary_bytes_give_the_reference_reasons(values: list[bytes | None]) -> None:
    _own_reasons(values)


def test_batches_the_columns_cannot_hold_are_decoded_into_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = raw(event())
    values: list[bytes | None] = [good, good.replace(b'"age":37', b'"age":-0'), b"{"]
    reference = _decode_reference(values)
    # the integer -0 is the int 0 (as orjson reads it), decoded into the columns
    batch = _native.decode_batch_columns(values, DEFAULT_LIMITS)
    assert batch is not None and batch.columns is not None
    assert_same(batch, reference)
    age = batch.columns.feature_names.index("age")
    assert batch.columns.value[age].tolist() == [37.0, 0.0]
    assert not np.signbit(batch.columns.value[age][1])
    # a feature matrix over the cell limit
    monkeypatch.setattr(_native, "MAX_CELLS", 3)
    batch = _native.decode_batch_columns([good, good], DEFAULT_LIMITS)
    assert batch is not None and batch.columns is None
    assert_same(batch, _decode_reference([good, good]))
    monkeypatch.setattr(_native, "MAX_CELLS", 4 * 2)
    batch = _native.decode_batch_columns([good, good], DEFAULT_LIMITS)
    assert batch is not None and batch.columns is not None
    assert_same(batch, _decode_reference([good, good]))


def test_lists_of_a_column_batch_are_built_when_read_and_after_take() -> None:
    values: list[bytes | None] = [
        raw(event(latency_ms=float(i), event_id=f"e{i}")) for i in range(5)
    ]
    values.insert(2, None)
    batch = _native.decode_batch_columns(values, DEFAULT_LIMITS)
    assert batch is not None and batch.columns is not None
    kept = batch.take(np.array([1, 3]))
    reference = _decode_reference(values)
    assert kept.columns is not None
    assert kept.event_id == ["e1", "e3"]
    assert kept.features == [reference.features[1], reference.features[3]]
    assert kept.columns.event_id_ends.tolist() == [2, 4]
    assert_same(batch, reference)
