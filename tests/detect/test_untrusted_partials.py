"""Untrusted partials: what stage 2 reads from the partials topic is checked before it touches
state (:mod:`driftwire.detect.intake`), a refused partial leaves no trace in the detector, and
one model whose evaluation raises does not take the other models' alerts with it."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from driftwire.alerts.alert import Alert
from driftwire.detect.detector import Detector
from driftwire.detect.intake import (
    REASONS,
    IntakeLimits,
    InvalidPartial,
    Rejected,
    admit,
    schema_violation,
)
from driftwire.offline.generator import Change, StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.partials import Partial, Watermark, decode_record
from driftwire.profiling.partitions import OutRecord
from driftwire.sketch.numeric import SketchParams
from driftwire.sketch.profile import Profile
from driftwire.stages.inmemory import InMemoryPipeline

SCHEMA = json.loads(
    (Path(__file__).parents[2] / "schemas" / "partial.schema.json").read_text(encoding="utf-8")
)
VALIDATOR = Draft202012Validator(SCHEMA)
START_MS = 1_767_225_600_000  # the generator's default start
MINUTE = 60_000
YEAR_MS = 365 * 86_400_000
LIMITS = IntakeLimits(bucket_ms=MINUTE, max_ahead_ms=420_000)


class _Capturing(InMemoryPipeline):
    """The in-memory pipeline, keeping every partials-topic record stage 1 produced."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.values: list[bytes] = []

    def _deliver(self, outputs: list[OutRecord]) -> list[Alert]:
        self.values.extend(o.value for o in outputs)
        return super()._deliver(outputs)


def _settings() -> Settings:
    return Settings.model_validate(
        {
            "profile": {"bucket_seconds": 60},
            "detect": {
                "window_buckets": 2,
                "min_count": 100,
                "min_reference_count": 100,
                "consecutive_windows": 1,
                "resolve_windows": 1,
            },
        }
    )


def _drifting_stream() -> StreamSpec:
    """12 minutes of one model, 300 events a minute; income shifts by 4 sd from minute 6."""
    return StreamSpec(
        events=12 * 300,
        seed=5,
        events_per_second=5.0,
        numeric_features=2,
        categorical_features=1,
        regions=("eu",),
        tiers=("gold",),
        changes=(Change(target="income", start_ms=START_MS + 6 * MINUTE, shift=4.0),),
    )


def _captured() -> tuple[list[bytes], list[Alert]]:
    pipeline = _Capturing(_settings())
    alerts = list(pipeline.run(generate(_drifting_stream())))
    end = pipeline.core.max_event_time(0)
    assert end is not None
    pipeline.values.append(Watermark(pipeline.core.topic, 0, 1, end + 1).encode())
    return pipeline.values, alerts


def _feed(detector: Detector, values: list[bytes]) -> list[Alert]:
    alerts: list[Alert] = []
    for value in values:
        record = decode_record(value)
        if isinstance(record, Partial):
            alerts += detector.on_partial(record, 0)
        else:
            alerts += detector.on_watermark(record, 0)
    return alerts


def _fresh_detector() -> Detector:
    return InMemoryPipeline(_settings()).detector


def _ids(alerts: list[Alert]) -> list[str]:
    return [a.cloudevent("driftwire")["id"] for a in alerts]


# -- the schema in code equals the JSON Schema ---------------------------------------------

_PARTIAL = orjson.loads(
    Partial("events", 3, 10, 19, 0, MINUTE, "churn", "1.4", events=5, segments={"": b"x"}).encode()
)
_WATERMARK = orjson.loads(Watermark("events", 1, 4, 120_000, idle=True).encode())
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.0, 0.0, -1.0, 2.5]),
    st.text(max_size=3),
    st.sampled_from(["", "a" * 24, "0123456789abcdef01234567", "partial", "watermark"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2),
)


def _paths(doc: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*at, k))
    return out


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(draw(st.sampled_from([_PARTIAL, _WATERMARK])))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        paths = [p for p in _paths(doc) if p and p[0] != "type"]
        path = draw(st.sampled_from(paths))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add":
            parent[draw(st.sampled_from(["extra", "part", "idle", "x"]))] = draw(_VALUES)
        else:
            parent[path[-1]] = draw(_VALUES)
        if not isinstance(doc.get("source", {}), dict):
            break
    return doc


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(_mutated())
def test_the_schema_in_code_says_what_the_json_schema_says(doc: dict[str, Any]) -> None:
    assert (schema_violation(doc) is None) == VALIDATOR.is_valid(doc), doc


def test_the_records_stage_one_writes_follow_the_schema_and_pass_the_intake() -> None:
    values, _ = _captured()
    assert len(values) > 12  # partials and watermarks of 12 minutes
    now_ms = START_MS + 12 * MINUTE  # the stream's end, as stage 2 would see it live
    for value in values:
        assert VALIDATOR.is_valid(orjson.loads(value))
        assert admit(value, now_ms=now_ms, limits=LIMITS) == decode_record(value)


# -- every reason, exactly ---------------------------------------------------------------


def _partial(**changes: Any) -> Partial:
    base = Partial(
        "events", 0, 100, 109, START_MS, START_MS + MINUTE, "churn", "1", events=10, segments={}
    )
    return replace(base, **changes)


def _doc_with(doc: dict[str, Any], **changes: Any) -> bytes:
    return orjson.dumps({**doc, **changes})


NOW = START_MS + 10 * MINUTE
CASES: list[tuple[str, bytes]] = [
    ("malformed", b"\x00\xff not json"),
    ("malformed", b"[1, 2]"),
    ("malformed", _doc_with(_WATERMARK, type="checkpoint")),
    ("schema", _doc_with(_WATERMARK, watermark_ms="soon")),
    ("schema", _doc_with(_PARTIAL, events=-5)),
    ("schema", _doc_with(_PARTIAL, extra=1)),
    ("schema", _doc_with(_PARTIAL, format=2)),
    ("schema", _doc_with(_PARTIAL, segments={"": "not base64!"})),
    ("id", _doc_with(_PARTIAL, id="0" * 24)),
    ("source", Watermark("events", 4, 4, NOW).encode()),
    ("source", Watermark("events", 0, 10_000_000, NOW).encode()),
    ("source", _partial(first_offset=109, last_offset=100).encode()),
    ("bucket", _partial(bucket_start_ms=START_MS + 1).encode()),
    ("bucket", _partial(bucket_end_ms=START_MS + 2 * MINUTE).encode()),
    ("count", _partial(events=11).encode()),
    (
        "future_bucket",
        _partial(bucket_start_ms=NOW + YEAR_MS, bucket_end_ms=NOW + YEAR_MS + MINUTE).encode(),
    ),
    ("future_watermark", Watermark("events", 0, 1, NOW + 10 * YEAR_MS).encode()),
    ("future_watermark", Watermark("events", 0, 1, NOW + 420_001).encode()),
]


@pytest.mark.parametrize(("reason", "value"), CASES)
def test_each_bad_record_is_refused_with_its_reason(reason: str, value: bytes) -> None:
    got = admit(value, now_ms=NOW, limits=LIMITS)
    assert isinstance(got, Rejected), got
    assert got.reason == reason, got
    assert got.reason in REASONS


def test_records_at_the_bounds_are_admitted() -> None:
    assert admit(Watermark("events", 0, 1, NOW + 420_000).encode(), now_ms=NOW, limits=LIMITS)
    edge = _partial(bucket_start_ms=NOW + 360_000, bucket_end_ms=NOW + 420_000)
    assert admit(edge.encode(), now_ms=NOW, limits=LIMITS) == edge
    assert admit(_partial(events=0).encode(), now_ms=NOW, limits=LIMITS) == _partial(events=0)


KNOWN = replace(LIMITS, input_partitions=4)  # the events topic has 4 partitions


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (Watermark("events", 4, 5, NOW).encode(), "source.partition"),
        (Watermark("events", 9_999, 10_000, START_MS).encode(), "source.partition"),
        (Watermark("events", 0, 5, NOW).encode(), "source.partitions"),
        (_partial(partition=4).encode(), "source.partition"),
    ],
    ids=["watermark-next", "watermark-far-low", "watermark-count", "partial"],
)
def test_a_partition_the_input_topic_does_not_have_is_refused(value: bytes, field: str) -> None:
    """Schema-valid, within MAX_INPUT_PARTITIONS: admitted when the count is unknown, refused
    once stage 2 knows the topic has 4 partitions."""
    assert not isinstance(admit(value, now_ms=NOW, limits=LIMITS), Rejected)
    got = admit(value, now_ms=NOW, limits=KNOWN)
    assert isinstance(got, Rejected), got
    assert (got.reason, got.field) == ("source", field)
    assert "the input topic has 4" in got.message


def test_the_partitions_the_input_topic_has_are_admitted() -> None:
    for p in range(4):
        mark = Watermark("events", p, 4, NOW)
        assert admit(mark.encode(), now_ms=NOW, limits=KNOWN) == mark
        assert admit(_partial(partition=p).encode(), now_ms=NOW, limits=KNOWN) == _partial(
            partition=p
        )
    fewer = Watermark("events", 0, 2, NOW)  # stage 1 has not seen the topic grow yet
    assert admit(fewer.encode(), now_ms=NOW, limits=KNOWN) == fewer


def test_a_watermark_of_a_partition_that_does_not_exist_would_hold_detection_back() -> None:
    """Why the check exists: admitted, a low watermark of partition 9 of 10 keeps every bucket
    of a 2-partition topic incomplete, however long the grace has run."""
    values, expected = _captured()
    assert expected  # alone, the stream fires
    ghost = Watermark("events", 9, 10, START_MS).encode()
    detector = _fresh_detector()
    alerts = _feed(detector, [values[0], ghost, *values[1:]])
    alerts += detector.tick(NOW + 86_400_000)  # a day later: the grace is long over
    assert alerts == []
    assert not detector.evaluated_versions("churn")
    refused = admit(ghost, now_ms=NOW, limits=replace(LIMITS, input_partitions=1))
    assert isinstance(refused, Rejected)


# -- the detector refuses a bad partial before changing anything ---------------------------


def _profile(n: int, params: SketchParams | None = None, start: int = START_MS) -> bytes:
    p = Profile(params, start_ms=start, end_ms=start + MINUTE)
    p.update([{"age": float(i)} for i in range(n)])
    return p.to_bytes()


@pytest.mark.parametrize(
    ("reason", "partial"),
    [
        # the first segment is good, the second is not: nothing of either may stay
        ("sketch", _partial(events=10, segments={"a=1": _profile(4), "a=2": b"\x01junk"})),
        ("count", _partial(events=9, segments={"a=1": _profile(4), "a=2": _profile(6)})),
    ],
)
def test_a_refused_partial_leaves_no_trace(reason: str, partial: Partial) -> None:
    values, expected = _captured()
    detector = _fresh_detector()
    with pytest.raises(InvalidPartial) as refused:
        detector.on_partial(partial, 0)
    assert refused.value.rejected.reason == reason
    # the valid stream then gives exactly what it gives alone: same alerts, same state
    assert _ids(_feed(detector, values)) == _ids(expected)
    alone = _fresh_detector()
    _feed(alone, values)
    assert detector.snapshot("churn") == alone.snapshot("churn")


def test_profiles_of_other_sketch_parameters_than_their_bucket_are_refused() -> None:
    detector = _fresh_detector()
    detector.on_partial(_partial(events=4, segments={"": _profile(4)}), 0)
    other = _partial(partition=1, events=4, segments={"": _profile(4, SketchParams(k=100))})
    with pytest.raises(InvalidPartial) as refused:
        detector.on_partial(other, 0)
    assert refused.value.rejected.reason == "sketch"


# -- one model's failed evaluation keeps the others' alerts ---------------------------------


def test_a_model_whose_evaluation_raises_does_not_take_the_others_alerts() -> None:
    values, expected = _captured()
    assert any(a.status == "firing" for a in expected)  # worth checking
    detector = _fresh_detector()
    # model "a-broken" comes first in the detector and sends two buckets whose profiles were
    # made with different sketch parameters: merging them into its window raises
    broken = [
        Partial(
            "events",
            0,
            0,
            9,
            START_MS,
            START_MS + MINUTE,
            "a-broken",
            "1",
            10,
            {"": _profile(10, start=START_MS)},
        ),
        Partial(
            "events",
            0,
            10,
            19,
            START_MS + MINUTE,
            START_MS + 2 * MINUTE,
            "a-broken",
            "1",
            10,
            {"": _profile(10, SketchParams(k=100), start=START_MS + MINUTE)},
        ),
    ]
    for p in broken:
        detector.on_partial(p, 0)
    got = _feed(detector, values)
    churn = [a for a in got if a.labels["model"] == "churn"]
    assert _ids(churn) == _ids(expected)
    failures = detector.take_failures()
    assert [(f.model, f.bucket_end_ms) for f in failures] == [("a-broken", START_MS + 2 * MINUTE)]
    assert "FormatError" in failures[0].error
    assert detector.take_failures() == []
