"""Profiler: grouping against a row-by-row oracle, segment keys, caps, late and future events."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftwire.decode.batch import DecodedBatch
from driftwire.profiling.clock import EventClock
from driftwire.profiling.profiler import (
    OTHER,
    ClosedBucket,
    ModelCatalog,
    Profiler,
    ProfilerLimits,
    parse_segment_key,
    segment_key,
)
from driftwire.sketch.kinds import FeatureKind, FeatureKinds
from driftwire.sketch.numeric import CategoricalSketch, NumericSketch
from driftwire.sketch.profile import Profile

MIN = 60_000
T0 = 1_767_225_600_000


def make_batch(
    times: list[int],
    features: list[dict[str, Any]],
    *,
    model: list[str] | str = "churn",
    version: list[str] | str = "1",
    segment: list[dict[str, str]] | None = None,
    score: list[float] | None = None,
    label: list[str | None] | None = None,
) -> DecodedBatch:
    n = len(times)
    return DecodedBatch(
        index=np.arange(n, dtype=np.int64),
        timestamp_ms=np.array(times, dtype=np.int64),
        model=[model] * n if isinstance(model, str) else model,
        model_version=[version] * n if isinstance(version, str) else version,
        segment=segment if segment is not None else [{} for _ in range(n)],
        features=features,
        prediction_score=np.array(score if score is not None else [0.5] * n, dtype=np.float64),
        prediction_label=label if label is not None else [None] * n,
        latency_ms=np.arange(n, dtype=np.float64),
        event_id=[None] * n,
    )


def profiler(lateness: int = 10 * MIN, **kw: Any) -> Profiler:
    return Profiler(EventClock(bucket_ms=MIN, allowed_lateness_ms=lateness), **kw)


def by_key(closed: list[ClosedBucket]) -> dict[tuple[str, str, int, str], Profile]:
    return {
        (c.model, c.model_version, c.start_ms, seg): p
        for c in closed
        for seg, p in c.segments.items()
    }


def summary(p: Profile) -> dict[str, Any]:
    def one(s: NumericSketch | CategoricalSketch) -> tuple[Any, ...]:
        if isinstance(s, NumericSketch):
            return (
                "num",
                s.count,
                s.missing,
                s.non_finite,
                s.min,
                s.max,
                None if not s.count else s.mean,
                tuple(s.quantiles(np.linspace(0, 1, 11)).tolist()) if s.count else None,
            )
        return ("cat", tuple(s.counts.items()), s.count, s.missing, s.other)

    return {
        "n": p.n_events,
        "span": (p.start_ms, p.end_ms),
        "features": {k: one(v) for k, v in sorted(p.features.items())},
        "wrong": dict(sorted(p.wrong_type.items())),
        "untyped": dict(sorted(p.untyped_missing.items())),
        "score": one(p.prediction_score),
        "label": one(p.prediction_label),
        "latency": one(p.latency_ms),
    }


def same(a: Any, b: Any, path: str = "") -> None:
    """Recursive equality; floats equal to 1e-9 relative (summation order moves last bits)."""
    if isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(
            a, b, rel_tol=1e-9, abs_tol=1e-9
        ), f"{path}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for key in a:
            same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, tuple | list) and isinstance(b, tuple | list):
        assert len(a) == len(b), f"{path}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


# -- segment keys ------------------------------------------------------------------------------


def test_segment_key_is_canonical() -> None:
    assert segment_key({}) == ""
    assert segment_key({"tier": "gold", "region": "eu"}) == "region=eu,tier=gold"
    assert segment_key({"a,b": "x=y", "c": "d\\"}) == "a\\,b=x\\=y,c=d\\\\"
    assert segment_key({"a": "b,c=d"}) != segment_key({"a": "b", "c": "d"})


text = st.text(alphabet=st.sampled_from("ab,=\\ é"), max_size=5)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(text, text, max_size=4), st.dictionaries(text, text, max_size=4))
def test_segment_keys_round_trip_and_never_collide(a: dict[str, str], b: dict[str, str]) -> None:
    assert parse_segment_key(segment_key(a)) == a
    assert (segment_key(a) == segment_key(b)) == (a == b)


def test_parse_segment_key_refuses_malformed_keys() -> None:
    for bad in ("a", "a=b=c", "a=b,c", ",a=b"):
        with pytest.raises(ValueError, match="not a segment key"):
            parse_segment_key(bad)


# -- grouping against the row-by-row oracle ------------------------------------------------------


raw_value = st.one_of(
    st.none(),
    st.integers(min_value=-50, max_value=50),
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
    st.booleans(),
    st.sampled_from(["a", "b", "2.5"]),
    st.just([1]),
)
event = st.tuples(
    st.integers(min_value=0, max_value=3 * MIN - 1),  # three buckets
    st.sampled_from(["m1", "m2"]),
    st.sampled_from(["1", "2"]),
    st.sampled_from([{}, {"r": "eu"}, {"r": "us", "t": "g"}, {"t": "g", "r": "us"}]),
    st.one_of(
        st.fixed_dictionaries({"x": raw_value, "y": raw_value}),  # the common layout
        st.dictionaries(st.sampled_from(["x", "y", "z"]), raw_value, max_size=3),
    ),
    st.one_of(st.none(), st.sampled_from(["yes", "no"])),
)


def oracle(batch: DecodedBatch, rows: list[int], kinds: FeatureKinds, start: int) -> Profile:
    p = Profile(start_ms=start, end_ms=start + MIN, kinds=FeatureKinds(dict(kinds)))
    p.update(
        [batch.features[i] for i in rows],
        prediction_score=batch.prediction_score[rows],
        prediction_label=[batch.prediction_label[i] for i in rows],
        latency_ms=batch.latency_ms[rows],
    )
    return p


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, min_size=1, max_size=60))
def test_fold_equals_profiling_each_group_row_by_row(events: list[tuple[Any, ...]]) -> None:
    batch = make_batch(
        [T0 + e[0] for e in events],
        [dict(e[4]) for e in events],
        model=[e[1] for e in events],
        version=[e[2] for e in events],
        segment=[dict(e[3]) for e in events],
        score=[float(i) for i in range(len(events))],
        label=[e[5] for e in events],
    )
    prof = profiler()
    result = prof.fold(batch)
    assert result.admission.accepted.all() and result.closed == []
    got = by_key(prof.flush())
    groups: dict[tuple[str, str, int, str], list[int]] = {}
    for i, e in enumerate(events):
        key = (e[1], e[2], T0 + e[0] - e[0] % MIN, segment_key(e[3]))
        groups.setdefault(key, []).append(i)
    assert sorted(got) == sorted(groups)
    for key, rows in groups.items():
        kinds = prof.catalog.kinds(key[0], key[1])
        same(summary(got[key]), summary(oracle(batch, rows, kinds, key[2])), str(key))


def test_kinds_follow_arrival_order_within_a_model_version() -> None:
    batch = make_batch(
        [T0, T0 + 1, T0 + 2],
        [{"f": "text"}, {"f": 5}, {"f": 6}],
        segment=[{"r": "b"}, {"r": "a"}, {"r": "a"}],  # group order puts "a" first
    )
    prof = profiler()
    prof.fold(batch)
    assert prof.catalog.kinds("churn", "1")["f"] is FeatureKind.CATEGORICAL
    got = by_key(prof.flush())
    assert got[("churn", "1", T0, "r=a")].wrong_type["f"] == 2


def test_kinds_are_sticky_across_batches_and_per_model_version() -> None:
    prof = profiler()
    prof.fold(make_batch([T0], [{"f": 1.5}], version="1"))
    prof.fold(make_batch([T0 + 1, T0 + 2], [{"f": "x"}, {"f": 2.0}], version="1"))
    prof.fold(make_batch([T0 + 3], [{"f": "x"}], version="2"))
    got = by_key(prof.flush())
    v1, v2 = got[("churn", "1", T0, "")], got[("churn", "2", T0, "")]
    assert isinstance(v1.feature("f"), NumericSketch) and v1.wrong_type["f"] == 1
    assert isinstance(v2.feature("f"), CategoricalSketch) and not v2.wrong_type


def test_declared_kinds_come_from_the_catalog() -> None:
    catalog = ModelCatalog(declared={"churn": {"zip": "categorical"}})
    prof = profiler(catalog=catalog)
    prof.fold(make_batch([T0, T0 + 1], [{"zip": 10115}, {"zip": "10115"}]))
    p = by_key(prof.flush())[("churn", "1", T0, "")]
    zip_sketch = p.feature("zip")
    assert isinstance(zip_sketch, CategoricalSketch)
    assert zip_sketch.counts == {"10115": 1} and p.wrong_type["zip"] == 1


def test_absent_features_count_as_missing_only_where_the_group_has_them() -> None:
    batch = make_batch(
        [T0] * 4,
        [{"x": 1.0}, {}, {"x": 3.0, "y": "k"}, {}],
        segment=[{"s": "a"}, {"s": "a"}, {"s": "b"}, {"s": "c"}],
    )
    prof = profiler()
    prof.fold(batch)
    got = by_key(prof.flush())
    a, b, c = (got[("churn", "1", T0, f"s={s}")] for s in "abc")
    assert (a.feature("x").count, a.feature("x").missing) == (1, 1)  # type: ignore[union-attr]
    assert a.feature("y") is None and c.feature("x") is None and not c.features
    assert b.feature("y").count == 1  # type: ignore[union-attr]


def test_many_models_late_rows_and_key_order_in_one_batch() -> None:
    rng = np.random.default_rng(9)
    n = 3_000
    models = [["a", "b", "c"][i] for i in rng.integers(0, 3, n)]
    regions = [["eu", "us"][i] for i in rng.integers(0, 2, n)]
    segments = [
        {"region": r, "tier": "g"} if i % 2 else {"tier": "g", "region": r}
        for i, r in enumerate(regions)
    ]
    values = rng.normal(size=n)
    prof = profiler(lateness=0)
    prof.fold(make_batch([T0 + 2 * MIN], [{}]))  # closes everything before T0 + 2 MIN
    times = (T0 + MIN + rng.integers(0, 2 * MIN, n)).tolist()
    result = prof.fold(
        make_batch(times, [{"v": float(v)} for v in values], model=models, segment=segments)
    )
    late = np.array(times) < T0 + 2 * MIN
    assert result.admission.late.tolist() == late.tolist()
    assert result.late == {
        m: int(sum(1 for i in np.flatnonzero(late) if models[i] == m)) for m in "abc"
    }
    assert prof.late_counts == result.late
    got = by_key(prof.flush())
    for m in "abc":
        for r in ("eu", "us"):
            rows = [i for i in range(n) if models[i] == m and regions[i] == r and not late[i]]
            p = got[(m, "1", T0 + 2 * MIN, f"region={r},tier=g")]
            v = p.feature("v")
            assert isinstance(v, NumericSketch) and p.n_events == v.count == len(rows)
            assert v.mean == pytest.approx(values[rows].mean(), rel=1e-9)


def test_future_events_are_counted_per_model_and_kept_out() -> None:
    prof = profiler()
    now = T0 + 10 * MIN
    result = prof.fold(
        make_batch([now, now + 3_600_000], [{"x": 1.0}, {"x": 2.0}], model=["a", "b"]), now
    )
    assert result.future == {"b": 1} and prof.future_counts == {"b": 1}
    got = by_key(prof.flush())
    assert list(got) == [("a", "1", now, "")]


def test_buckets_close_in_order_and_carry_their_span() -> None:
    prof = profiler(lateness=0)
    first = prof.fold(
        make_batch([T0 + 1, T0 + MIN + 1], [{"x": 1.0}, {"x": 2.0}], model=["a", "b"])
    ).closed
    assert [c.model for c in first] == ["a"]  # watermark T0 + MIN + 1 closes [T0, T0 + MIN)
    later = prof.fold(make_batch([T0 + 3 * MIN], [{"x": 3.0}]), now_ms=T0 + 3 * MIN).closed
    closed = first + later
    assert [(c.model, c.start_ms, c.end_ms, c.events) for c in closed] == [
        ("a", T0, T0 + MIN, 1),
        ("b", T0 + MIN, T0 + 2 * MIN, 1),
    ]
    assert closed[0].segments[""].start_ms == T0
    assert prof.open_profiles == 1
    assert [c.start_ms for c in prof.advance_to(T0 + 4 * MIN)] == [T0 + 3 * MIN]
    assert prof.flush() == [] and prof.open_profiles == 0


# -- caps --------------------------------------------------------------------------------------


def test_segments_beyond_the_cap_fold_into_other() -> None:
    prof = profiler(catalog=ModelCatalog(ProfilerLimits(max_segments=2)))
    segs = [{"r": r} for r in ("a", "b", "c", "d", "a", "c")]
    prof.fold(make_batch([T0] * 6, [{"x": float(i)} for i in range(6)], segment=segs))
    prof.fold(make_batch([T0 + 1], [{"x": 9.0}], segment=[{"r": "e"}]))
    got = by_key(prof.flush())
    assert sorted(k[3] for k in got) == [OTHER, "r=a", "r=b"]
    assert got[("churn", "1", T0, OTHER)].n_events == 4
    assert prof.overflow_counts[("churn", "segments")] == 4


def test_features_beyond_the_cap_are_dropped_and_counted() -> None:
    prof = profiler(catalog=ModelCatalog(ProfilerLimits(max_features=2)))
    rows = [{"a": 1.0, "b": "x", "c": 2.0, "d": None}, {"a": 1.0, "b": "x", "c": 3.0, "d": 4.0}]
    prof.fold(make_batch([T0, T0 + 1], rows))
    p = by_key(prof.flush())[("churn", "1", T0, "")]
    assert sorted(p.features) == ["a", "b"]
    assert prof.overflow_counts[("churn", "features")] == 3  # non-null values of c and d


def test_models_beyond_the_cap_are_dropped_and_counted() -> None:
    prof = profiler(catalog=ModelCatalog(ProfilerLimits(max_models=1)))
    prof.fold(make_batch([T0] * 3, [{}] * 3, model=["a", "b", "b"]))
    assert [k[0] for k in by_key(prof.flush())] == ["a"]
    assert prof.overflow_counts[(OTHER, "models")] == 2
    prof.catalog.forget("a")
    prof.fold(make_batch([T0 + 1], [{}], model=["b"]))
    assert [k[0] for k in by_key(prof.flush())] == ["b"]


def test_a_shared_catalog_keeps_partitions_consistent() -> None:
    catalog = ModelCatalog(ProfilerLimits(max_segments=1))
    one, two = profiler(catalog=catalog), profiler(catalog=catalog)
    one.fold(make_batch([T0], [{"f": 1}], segment=[{"r": "a"}]))
    two.fold(make_batch([T0], [{"f": "x"}], segment=[{"r": "b"}]))
    p = by_key(two.flush())[("churn", "1", T0, OTHER)]
    assert p.wrong_type["f"] == 1  # kind numeric, learnt by the other partition


# -- wrong types and odd values on the column path ------------------------------------------------


def test_wrong_types_on_the_column_path() -> None:
    rows = [
        {"n": 1.0, "c": "x"},
        {"n": True, "c": 3},
        {"n": "7", "c": False},
        {"n": None, "c": None},
        {"n": 10**400, "c": [1]},
        {"n": 2, "c": "x"},
    ]
    prof = profiler()
    prof.fold(make_batch([T0] * 6, rows, segment=[{"s": str(i % 2)} for i in range(6)]))
    got = by_key(prof.flush())
    even, odd = got[("churn", "1", T0, "s=0")], got[("churn", "1", T0, "s=1")]
    n_even, n_odd = even.feature("n"), odd.feature("n")
    assert isinstance(n_even, NumericSketch) and isinstance(n_odd, NumericSketch)
    assert (n_even.count, n_even.non_finite, even.wrong_type["n"]) == (1, 1, 1)  # 1.0; 1e400; "7"
    assert (n_odd.count, n_odd.missing, odd.wrong_type["n"]) == (1, 1, 1)  # 2; None; True
    c_even, c_odd = even.feature("c"), odd.feature("c")
    assert isinstance(c_even, CategoricalSketch) and isinstance(c_odd, CategoricalSketch)
    assert c_even.counts == {"false": 1, "x": 1} and even.wrong_type["c"] == 1
    assert c_odd.counts == {"x": 1} and c_odd.missing == 1 and odd.wrong_type["c"] == 1
    assert math.isinf(n_even.quantile_sketch.max) is False


def test_empty_batch_and_all_late_batch() -> None:
    prof = profiler(lateness=0)
    assert prof.fold(make_batch([], [])).closed == []
    prof.fold(make_batch([T0 + 5 * MIN], [{}]))
    result = prof.fold(make_batch([T0, T0 + 1], [{}, {}]))
    assert result.late == {"churn": 2} and not result.admission.accepted.any()
