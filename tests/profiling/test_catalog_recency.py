"""Cardinality caps are least recently seen first: names that stopped arriving make room for
today's, and a flood of new names cannot push out the names still sending."""

from __future__ import annotations

from typing import Any

import numpy as np

from driftwire.decode.batch import DecodedBatch
from driftwire.profiling.clock import EventClock
from driftwire.profiling.profiler import OTHER, ClosedBucket, ModelCatalog, Profiler, ProfilerLimits

MIN = 60_000
T0 = 1_767_225_600_000


def make_batch(
    times: list[int],
    features: list[dict[str, Any]],
    *,
    model: list[str] | str = "churn",
    version: list[str] | str = "1",
    segment: list[dict[str, str]] | None = None,
) -> DecodedBatch:
    n = len(times)
    return DecodedBatch(
        index=np.arange(n, dtype=np.int64),
        timestamp_ms=np.array(times, dtype=np.int64),
        model=[model] * n if isinstance(model, str) else model,
        model_version=[version] * n if isinstance(version, str) else version,
        segment=segment if segment is not None else [{} for _ in range(n)],
        features=features,
        prediction_score=np.full(n, 0.5),
        prediction_label=[None] * n,
        latency_ms=np.arange(n, dtype=np.float64),
        event_id=[None] * n,
    )


def profiler(lateness: int, catalog: ModelCatalog) -> Profiler:
    return Profiler(EventClock(bucket_ms=MIN, allowed_lateness_ms=lateness), catalog=catalog)


def segments_of(closed: list[ClosedBucket], start: int) -> dict[tuple[str, str], set[str]]:
    return {(c.model, c.model_version): set(c.segments) for c in closed if c.start_ms == start}


def fold(prof: Profiler, t: int, n: int, **kw: Any) -> list[ClosedBucket]:
    features = kw.pop("features", None) or [{"x": float(i)} for i in range(n)]
    return prof.fold(make_batch([t] * n, features, **kw)).closed


def test_junk_segments_seen_first_do_not_lock_out_real_ones() -> None:
    prof = profiler(lateness=0, catalog=ModelCatalog(ProfilerLimits(max_segments=3)))
    fold(prof, T0, 5, segment=[{"junk": str(i)} for i in range(5)])  # yesterday's flood
    closed = fold(prof, T0 + MIN, 4, segment=[{"r": "eu"}, {"r": "us"}, {"r": "eu"}, {"r": "us"}])
    closed += prof.flush()
    assert segments_of(closed, T0 + MIN) == {("churn", "1"): {"r=eu", "r=us"}}
    assert prof.catalog.evictions["segments"] == 2
    assert prof.overflow_counts[("churn", "segments")] == 2  # junk 3 and 4, in their bucket


def test_a_flood_in_the_current_bucket_cannot_push_out_segments_still_sending() -> None:
    prof = profiler(lateness=0, catalog=ModelCatalog(ProfilerLimits(max_segments=2)))
    fold(prof, T0, 2, segment=[{"r": "eu"}, {"r": "us"}])
    fold(prof, T0 + MIN, 2, segment=[{"r": "eu"}, {"r": "us"}])
    fold(prof, T0 + MIN, 50, segment=[{"junk": str(i)} for i in range(50)])
    closed = prof.flush()
    assert segments_of(closed, T0 + MIN) == {("churn", "1"): {"r=eu", "r=us", OTHER}}
    assert prof.overflow_counts[("churn", "segments")] == 50


def test_junk_features_seen_first_do_not_lock_out_real_ones() -> None:
    prof = profiler(lateness=0, catalog=ModelCatalog(ProfilerLimits(max_features=2)))
    fold(prof, T0, 1, features=[{f"junk{i}": 1.0 for i in range(4)}])
    closed = fold(prof, T0 + MIN, 2, features=[{"age": 30.0, "plan": "a"}] * 2) + prof.flush()
    [today] = [c for c in closed if c.start_ms == T0 + MIN]
    assert sorted(today.segments[""].features) == ["age", "plan"]
    assert prof.overflow_counts[("churn", "features")] == 2  # junk2, junk3 in the first bucket


def test_junk_models_seen_first_do_not_lock_out_real_ones() -> None:
    prof = profiler(lateness=0, catalog=ModelCatalog(ProfilerLimits(max_models=2)))
    fold(prof, T0, 3, model=["junk0", "junk1", "junk2"])
    closed = fold(prof, T0 + MIN, 2, model="churn") + prof.flush()
    assert [c.model for c in closed if c.start_ms == T0 + MIN] == ["churn"]
    assert prof.overflow_counts[(OTHER, "models")] == 1  # junk2, in its bucket
    assert prof.catalog.evictions["models"] == 1


def test_versions_beyond_the_cap_fold_into_other_then_the_oldest_makes_room() -> None:
    prof = profiler(lateness=0, catalog=ModelCatalog(ProfilerLimits(max_versions=2)))
    first = fold(prof, T0, 4, version=["1", "2", "3", "3"])
    second = fold(prof, T0 + MIN, 2, version=["2", "4"]) + prof.flush()
    assert {c.model_version: c.events for c in first + second if c.start_ms == T0} == {
        "1": 1,
        "2": 1,
        OTHER: 2,
    }
    assert prof.overflow_counts[("churn", "versions")] == 2
    # in the next bucket, version 1 (seen longest ago) makes room for version 4
    assert sorted(c.model_version for c in second if c.start_ms == T0 + MIN) == ["2", "4"]
    assert prof.catalog.evictions["versions"] == 1


def test_evicted_models_leave_no_per_model_state_behind() -> None:
    catalog = ModelCatalog(ProfilerLimits(max_models=10, max_segments=1))
    prof = profiler(lateness=0, catalog=catalog)
    for i in range(500):
        t = T0 + i * MIN
        fold(prof, t, 2, model=f"junk{i}", segment=[{"a": "1"}, {"a": "2"}])
    assert catalog.tracked_models == 10
    assert len(catalog.overflow_counts) == 10  # only tracked models keep their own counts
    assert catalog.overflow_totals["segments"] == 500
