"""The profiler folds the compiled decoder's columns exactly as it folds per-row lists.

The same raw batches are decoded by the pure-Python decoder (lists) and the compiled one
(columns) and folded by two fresh profilers: every closed bucket's profiles must be
byte-identical (``Profile.to_bytes``), in the same order, with the same late, future and
overflow counts; and the in-memory pipeline must give byte-identical alerts on a generated
stream with drift and malformed events. Collected only when the extension is installed
(``tests/conftest.py``).
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftwire.alerts.alert import encode
from driftwire.decode import _native
from driftwire.decode.decoder import DEFAULT_LIMITS, _decode_python
from driftwire.offline.generator import Change, StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.profiling._columns import categorical_parts, categorical_parts_numpy, group_tallies
from driftwire.profiling.catalog import ModelCatalog, ProfilerLimits
from driftwire.profiling.clock import EventClock
from driftwire.profiling.profiler import ClosedBucket, Profiler
from driftwire.stages.inmemory import InMemoryPipeline

MINUTE = 60_000
START = 1_767_225_600_000

_feature_values = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.integers(2**60, 2**64 - 1)
    | st.floats(-1e6, 1e6, allow_nan=False)
    | st.sampled_from(["a", "b", "true", "false", "é"])
)
_segments = st.none() | st.dictionaries(
    st.sampled_from(["region", "tier", "x"]), st.sampled_from(["eu", "us", "gold"]), max_size=3
)
_events = st.fixed_dictionaries(
    {
        "timestamp": st.integers(START, START + 4 * MINUTE),
        "model": st.sampled_from(["churn", "fraud", "ranker"]),
        "model_version": st.sampled_from(["1", "2"]),
        "features": st.dictionaries(
            st.sampled_from(["age", "plan", "income", "country", "f5", "f6", "f7"]),
            _feature_values,
            max_size=7,
        ),
        "prediction": st.floats(0, 1) | st.sampled_from(["yes", "no"]) | st.booleans(),
        "latency_ms": st.floats(0, 100),
    },
    optional={"segment": _segments, "event_id": st.sampled_from(["e1", "e2"])},
)


def _profiler(limits: ProfilerLimits) -> Profiler:
    clock = EventClock(bucket_ms=MINUTE, allowed_lateness_ms=MINUTE // 2)
    return Profiler(clock, catalog=ModelCatalog(limits))


def _snapshot(closed: list[ClosedBucket]) -> list[Any]:
    return [
        (c.model, c.model_version, c.start_ms, [(k, p.to_bytes()) for k, p in c.segments.items()])
        for c in closed
    ]


def _fold_both(batches: list[list[bytes | None]], limits: ProfilerLimits) -> None:
    by_lists, by_columns = _profiler(limits), _profiler(limits)
    out_lists: list[Any] = []
    out_columns: list[Any] = []
    for values in batches:
        plain = _decode_python(values)
        compiled = _native.decode_batch_columns(values, DEFAULT_LIMITS)
        assert compiled is not None and compiled.columns is not None
        now = START + 10 * MINUTE
        a, b = by_lists.fold(plain, now), by_columns.fold(compiled, now)
        np.testing.assert_array_equal(a.admission.accepted, b.admission.accepted)
        assert (a.late, a.future) == (b.late, b.future)
        out_lists += _snapshot(a.closed)
        out_columns += _snapshot(b.closed)
    out_lists += _snapshot(by_lists.flush())
    out_columns += _snapshot(by_columns.flush())
    assert out_columns == out_lists
    assert dict(by_columns.overflow_counts) == dict(by_lists.overflow_counts)
    assert dict(by_columns.late_counts) == dict(by_lists.late_counts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(_events, min_size=1, max_size=40), min_size=1, max_size=4),
    st.sampled_from(
        [ProfilerLimits(), ProfilerLimits(max_segments=2, max_features=3, max_models=2)]
    ),
)
def test_folds_of_columns_and_lists_are_byte_identical(
    batches: list[list[dict[str, Any]]], limits: ProfilerLimits
) -> None:
    raw: list[list[bytes | None]] = [[orjson.dumps(e) for e in batch] for batch in batches]
    raw[0].append(b"not json")
    _fold_both(raw, limits)


def test_segments_in_other_key_orders_and_late_events() -> None:
    def event(ms: int, segment: Any, **features: Any) -> bytes:
        return orjson.dumps(
            {
                "timestamp": ms,
                "model": "churn",
                "model_version": "1",
                "segment": segment,
                "features": features,
                "prediction": 0.5,
                "latency_ms": 1,
            }
        )

    first = [
        event(START + i * 1000, {"tier": "gold", "region": "eu"}, age=i, plan="a")
        for i in range(30)
    ]
    first += [event(START + 2000, {"region": "eu", "tier": "gold"}, plan=True, age=None)]
    later = [event(START + 3 * MINUTE, {"region": "us"}, age=1.5)]
    later += [event(START, {"region": "eu", "tier": "gold"}, age=2)]  # late: dropped
    later += [event(START + 3 * MINUTE + 5, None, plan="b", extra=3)]
    _fold_both([first, later], ProfilerLimits())


def test_pipeline_alerts_are_byte_identical() -> None:
    stream = StreamSpec(
        events=6000,
        seed=5,
        events_per_second=6000 / (20 * 60),
        changes=(Change("age", START + 12 * MINUTE, 2.0),),
        malformed_ratio=0.01,
    )
    config = Settings.model_validate(
        {"detect": {"window_buckets": 3, "min_count": 100, "min_reference_count": 200}}
    )
    values = list(generate(stream))
    results = []
    before = _native.ACTIVE
    try:
        for active in (False, True):
            _native.ACTIVE = active
            pipeline = InMemoryPipeline(config)
            alerts = [encode(alert, "test") for alert in pipeline.run(values)]
            results.append((alerts, pipeline.stats))
    finally:
        _native.ACTIVE = before
    (python_alerts, python_stats), (native_alerts, native_stats) = results
    assert python_alerts  # the drift fires
    assert native_alerts == python_alerts
    assert native_stats == python_stats


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-1, 4), max_size=60), st.data())
def test_group_tallies_count_like_a_counter_per_group(codes: list[int], data: Any) -> None:
    names = ["a", "b", "c", "d", "e"]
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(len(codes), 1)), max_size=5))))
    starts = np.array([0, *[c for c in cuts if c < len(codes)]], dtype=np.int64)
    bounds = [*starts.tolist(), len(codes)]
    expected = [dict(Counter(names[c] for c in codes[a:b] if c >= 0)) for a, b in pairwise(bounds)]
    got = group_tallies(np.array(codes, dtype=np.int32), names, starts)
    assert [list(d.items()) for d in got] == [list(d.items()) for d in expected]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(-1, 4)), max_size=60), st.data())
def test_category_counts_in_one_pass_equal_the_numpy_passes(
    rows: list[tuple[int, int]], data: Any
) -> None:
    """The extension's ``tally_categories`` (counts, missing, wrong-typed per group) gives
    what the numpy passes over the kind and code rows give, dict order included."""
    names = ["a", "b", "c", "d", "e"]
    kinds = np.array([k for k, _ in rows], dtype=np.uint8)
    codes = np.array([c for _, c in rows], dtype=np.int32)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(len(rows) - 1, 1)), max_size=5))))
    starts = np.array([0, *[c for c in cuts if c < len(rows)]], dtype=np.int64)
    if not len(rows):
        starts = np.zeros(0, dtype=np.int64)
    assert _native.tally_categories(kinds, codes, starts, names) is not None
    got = categorical_parts(kinds, codes, names, starts)
    expected = categorical_parts_numpy(kinds, codes, names, starts) if len(rows) else []
    assert [(list(t.items()), m, w) for t, m, w in got] == [
        (list(t.items()), m, w) for t, m, w in expected
    ]
