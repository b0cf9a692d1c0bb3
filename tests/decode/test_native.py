"""The compiled decoder against the pure-Python reference, on its own answer.

``test_decoder.py`` already runs every decoder test on both paths; here the
extension's raw output is compared with the reference row by row: the accepted rows and the
reason code and field path it gives for every refused value (messages come from the reference).
Collected only when the extension is installed (``tests/conftest.py``).
"""

from __future__ import annotations

import importlib
import json
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_decoder import HYPOTHESIS, _batches, _json_values, _serialize, assert_same, event, raw

from driftwire.decode import _native
from driftwire.decode.columns import ABSENT, BOOL, NULL, NUMBER, STRING
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
    _same_columns(values, limits, reference)


def _number_bits(value: float) -> bytes:
    return struct.pack("<d", value)


def _same_columns(values: list[Any], limits: DecoderLimits, reference: Any) -> None:
    """The extension's columns hold the reference's rows: every string, every feature value
    (bit for bit as float64), every key in its order, and nothing else."""
    batch = _native.decode_batch_columns(values, limits)
    assert batch is not None
    assert batch.rejections == reference.rejections
    np.testing.assert_array_equal(batch.index, reference.index)
    np.testing.assert_array_equal(batch.timestamp_ms, reference.timestamp_ms)
    assert _number_bits_of(batch.prediction_score) == _number_bits_of(reference.prediction_score)
    assert _number_bits_of(batch.latency_ms) == _number_bits_of(reference.latency_ms)
    c = batch.columns
    if c is None:  # the rows path (checked above); only over the cell limit
        return
    n = len(reference.index)
    assert [c.model_names[k] for k in c.model_codes] == reference.model
    assert [c.version_names[k] for k in c.version_codes] == reference.model_version
    segments = [dict(c.segment_items[k]) for k in c.segment_codes]
    assert segments == reference.segment
    assert [list(c.segment_items[k]) for k in c.segment_codes] == [
        list(s.items()) for s in reference.segment
    ]
    labels = [None if k < 0 else c.label_names[k] for k in c.label_codes]
    assert labels == reference.prediction_label
    ids: list[str | None] = []
    start = 0
    for present, end in zip(c.event_id_present.tolist(), c.event_id_ends.tolist(), strict=True):
        ids.append(c.event_id_buffer[start:end].decode() if present else None)
        start = end
    assert ids == reference.event_id
    assert (
        c.kind.shape == c.value.shape == c.code.shape == c.rank.shape == (len(c.feature_names), n)
    )
    for row in range(n):
        expected = reference.features[row]
        present = [f for f in range(len(c.feature_names)) if c.kind[f, row] != ABSENT]
        present.sort(key=lambda f: c.rank[f, row])
        assert [c.feature_names[f] for f in present] == list(expected)
        assert [c.rank[f, row] for f in present] == list(range(len(present)))
        for f in present:
            value, kind = expected[c.feature_names[f]], c.kind[f, row]
            if value is None:
                assert kind == NULL
            elif isinstance(value, bool):
                assert kind == BOOL
                assert c.categories[f][c.code[f, row]] == ("true" if value else "false")
            elif isinstance(value, str):
                assert kind == STRING and c.categories[f][c.code[f, row]] == value
            else:
                assert kind == NUMBER
                assert _number_bits(c.value[f, row]) == _number_bits(float(value))


def _number_bits_of(values: np.ndarray) -> list[bytes]:
    return [_number_bits(v) for v in values.tolist()]


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


# --- the scanner's own edges: what orjson accepts and refuses, byte for byte ----------------

_AGE = b'"age":37'


def _with_age(text: bytes) -> bytes:
    return raw(event()).replace(_AGE, b'"age":' + text)


_NUMBERS = [
    b"-0",
    b"0",
    b"-0.0",
    b"0e0",
    b"-0e0",
    b"0.0e-5",
    b"1e308",
    b"-1e308",
    b"1.7976931348623157e308",
    b"1.7976931348623158e308",
    b"1.7976931348623159e308",
    b"1e-320",
    b"4.9e-324",
    b"2.4703282292062328e-324",
    b"2.4703282292062327e-324",
    b"1e-400",
    b"1e400",
    b"-1e400",
    b"1" + b"0" * 400,
    b"0.1",
    b"0.30000000000000004",
    b"9007199254740993",
    b"9007199254740993.0",
    b"-9007199254740993",
    b"123456789012345678",
    b"1234567890123456789",
    b"12345678901234567890",
    b"99999999999999999999",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"1E5",
    b"1e+5",
    b"1.5E-5",
    b"2e22",
    b"2e23",
    b"1e-22",
    b"1e-23",
    b"0.000000000000000000000000001",
    b"1234567890123456789012345.678e-10",
    b"8.98846567431158e307",
    b"7.2057594037927933e16",
    b"5e-324",
    # refused: not JSON numbers
    b"+1",
    b"01",
    b"-01",
    b"00",
    b"1.",
    b".5",
    b"1e",
    b"1e+",
    b"-",
    b"--1",
    b"0x10",
    b"1.e5",
    b"Infinity",
    b"-Infinity",
    b"NaN",
    b"1_000",
]


def test_numbers_at_the_edges_are_read_as_orjson_reads_them() -> None:
    _own_reasons([_with_age(text) for text in _NUMBERS])
    # also as the latency (the numeric checks after parsing) and the timestamp
    good = raw(event())
    _own_reasons([good.replace(b'"latency_ms":12.4', b'"latency_ms":' + t) for t in _NUMBERS])


def test_strings_escapes_and_utf8_are_read_as_orjson_reads_them() -> None:
    good = raw(event())
    country = b'"country":"DE"'

    def with_country(text: bytes) -> bytes:
        return good.replace(country, b'"country":"' + text + b'"')

    def with_key(text: bytes) -> bytes:
        return good.replace(_AGE, b'"' + text + b'":37')

    texts = [
        b"\\u00e9",
        b"\\u00E9",
        b'\\/\\b\\f\\n\\r\\t\\\\\\"',
        b"\\u0000",
        b"a\\u0000b",
        b"\\ud83d\\ude00",
        "\U0001f600".encode(),
        "é".encode(),
        b"\x7f",
        # refused
        b"\\x",
        b"\\u12",
        b"\\u12g4",
        b"\\U0041",
        b"\\ud83d",
        b"\\ude00",
        b"\\ud83d\\u0041",
        b"\\ud83dx",
        b"\x01",
        b"\x1f",
        b"\t",
        b"\xc0\x80",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82",
        b"\xff",
        b"\\\xc3\xa9",
        b"\\",
    ]
    values = [with_country(t) for t in texts] + [with_key(t) for t in texts]
    values += [
        with_key(b"\\u0061ge"),  # the same key as "age" spelled with an escape
        good.replace(_AGE, b'"age":37,"\\u0061ge":38'),  # a duplicate through an escape
        good.replace(b'"model":"churn"', b'"\\u006dodel":"ch\\u0075rn"'),
        good.replace(b'"features":{', b'"features":{"plan":"x",'),  # duplicate: first place
        good.replace(b'"features":{', b'"features":{"age":"x","age":[1],'),  # last value wins
        good.replace(b'"features":', b'"features":{"age":1},"features":'),
        good.replace(b'"features":{', b'"segment":{"a":"b"},"segment":{"c":"d"},"features":{'),
        good.replace(b'"features":{', b'"segment":{"a":"b","a":"c"},"features":{'),
        good.replace(b'"prediction":0.83', b'"prediction":{"score":"x","score":0.5}'),
    ]
    _own_reasons(values)


def test_whitespace_depth_and_trailing_bytes_are_read_as_orjson_reads_them() -> None:
    good = raw(event(segment={"region": "eu"}, event_id="e-1"))
    pretty = json.dumps(orjson.loads(good), indent=2).encode()

    def nested(levels: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
        return good.replace(b"{", b'{"deep":' + open_ * levels + close * levels + b",", 1)

    values = [
        pretty,
        pretty.replace(b"\n", b"\r\n").replace(b"  ", b"\t"),
        b" \t\r\n" + good + b" \t\r\n",
        b"\x0c" + good,  # form feed is not JSON whitespace
        good + b"\xa0",
        good + b"x",
        good + b"\x00",
        good + b"{}",
        good + b",",
        good[:-1] + b",}",
        good.replace(b",", b" , ").replace(b":", b" : "),
        nested(1023),
        nested(1024),
        nested(1023, b'{"a":', b"}"),
        nested(1024, b'{"a":', b"}"),
        good.replace(b'"country":"DE"', b'"country":' + b"[" * 1030 + b"]" * 1030),
        b"{}",
        b"[]",
        b"[1,]",
        b"1",
        b'"x"',
        b"null",
        b"true",
        b"tru",
        b"{",
        b'{"a"}',
        b'{"a":}',
        b'{"a" 1}',
        b"{,}",
        b'{"a":1,,"b":2}',
        b"\xef\xbb\xbf" + good,
    ]
    _own_reasons(values)


def test_equal_segments_written_differently_share_a_code() -> None:
    spellings = [
        b'{"region":"eu","tier":"gold"}',
        b'{ "region" : "eu" , "tier" : "gold" }',
        b'{"r\\u0065gion":"eu","tier":"gold"}',
        b'{"region":"eu","tier":"gold","region":"eu"}',
        b'{"tier":"gold","region":"eu"}',  # another key order: another group
        b"null",
        b"{}",
    ]
    good = raw(event())
    values: list[bytes | None] = [
        good.replace(b'"features":', b'"segment":' + s + b',"features":') for s in spellings
    ]
    values.append(good)  # no segment at all: the same group as null and {}
    _own_reasons(values)
    batch = _native.decode_batch_columns(values, DEFAULT_LIMITS)
    assert batch is not None and batch.columns is not None
    codes = batch.columns.segment_codes.tolist()
    assert codes[0] == codes[1] == codes[2] == codes[3]
    assert codes[4] != codes[0]
    assert codes[5] == codes[6] == codes[7] != codes[0]


_NUMBER_TEXT = st.from_regex(
    r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)


_NUMBER_EXAMPLES = settings(HYPOTHESIS, max_examples=100)  # 20 literals each: 2,000 per run


@_NUMBER_EXAMPLES
@given(st.lists(_NUMBER_TEXT, min_size=1, max_size=20))
def test_number_literals_give_the_reference_values(texts: list[str]) -> None:
    _own_reasons([_with_age(text.encode()) for text in texts])


@_NUMBER_EXAMPLES
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=20))
def test_shortest_float_reprs_round_trip(numbers: list[float]) -> None:
    _own_reasons([_with_age(repr(x).encode()) for x in numbers])


def test_keys_read_in_place_of_the_last_events_keys() -> None:
    """A key is first compared with the one the last event (or larger object) had at the same
    position; near misses, prefixes, escapes and values cut anywhere still read as orjson reads
    them."""
    for good in (raw(event()), raw(event(segment={"region": "eu", "tier": "gold", "a": "b"}))):
        _keys_in_place(good)


def _keys_in_place(good: bytes) -> None:
    variants = [
        good.replace(_AGE, b'"ag":37'),
        good.replace(_AGE, b'"ages":37'),
        good.replace(_AGE, b'"age" :37'),
        good.replace(_AGE, b'"ag\\u0065":37'),
        good.replace(_AGE, '"agé":37'.encode()),
        good.replace(_AGE, b'"age":37,"age":38'),
        good.replace(_AGE, b'"":37'),
        good.replace(b'"model":"churn"', b'"modelx":"churn"'),
        good.replace(b'"model":"churn"', b'"mode":"churn","model":"churn"'),
        good.replace(b'"model":"churn"', b'"model" : "churn"'),
        good.replace(b'"model":"churn"', b'"model\x01":"churn"'),
        good.replace(b'"features":{', b'"features":{"income":1,'),
        good.replace(b'"country":"DE","plan":null', b'"plan":null,"country":"DE"'),
    ]
    values: list[bytes | None] = []
    for variant in variants:
        values += [good, variant, variant, good]
    values += [good[:cut] for cut in range(len(good))]  # each after a whole event's keys
    _own_reasons(values)


def test_strings_of_every_length_around_a_stop_byte() -> None:
    """Strings scanned many bytes at a time: a quote, escape, non-ASCII or control byte at
    every offset of the first words, and strings running to the end of the value."""
    good = raw(event())
    values: list[bytes | None] = []
    for n in range(40):
        for stop in (b"", b'\\"', b"\\n", "é".encode(), b"\x01", b"\x7f", b"\\u00e9"):
            text = b"a" * n + stop + b"bcd"
            values.append(good.replace(b'"country":"DE"', b'"country":"' + text + b'"'))
            values.append(good.replace(_AGE, b'"' + text + b'":37'))
        values.append(b'"' + b"a" * n + b'"')  # a document that is one string: not an object
        values.append(b'"' + b"a" * n)  # unterminated
    _own_reasons(values)


def test_numbers_of_every_length_read_eight_digits_at_a_time() -> None:
    """Integer and fraction parts of 1 to 25 digits (read in chunks of up to eight while the
    mantissa holds them exactly), followed by each kind of byte, and at the end of a value."""
    texts: list[bytes] = []
    for n in range(1, 26):
        for digit in (b"1", b"7", b"9"):
            run = digit * n
            texts += [run, b"-" + run, b"0." + run, run + b"." + run[::-1], b"-0." + run]
            texts += [run + b"e5", b"3." + run + b"E-7", run + b"0" * (n % 9) + b".25"]
        texts += [b"1" + b"0" * n, b"0." + b"0" * n + b"1", b"0." + b"123456789" * 3]
    values: list[bytes | None] = [_with_age(text) for text in texts]
    values += texts  # a bare number: not an object
    values += [text + b"x" for text in texts[:40]]  # a number then a byte that is not JSON
    _own_reasons(values)
