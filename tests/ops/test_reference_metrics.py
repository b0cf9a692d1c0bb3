"""Small references are never silent: the detector reports them once, the shells log and export."""

from __future__ import annotations

import logging

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from driftwire.detect.reference import Reference, ReferenceStore
from driftwire.offline.generator import StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.ops.metrics import DriftScoreCollector
from driftwire.sketch.profile import Profile
from driftwire.stages.detect.stage import DetectStage
from driftwire.stages.inmemory import InMemoryPipeline


def _baseline(rows: int) -> Reference:
    events = [orjson.loads(v) for v in generate(StreamSpec(events=rows, seed=3))]
    profile = Profile()
    profile.update(
        [e["features"] for e in events],
        prediction_score=np.array([e["prediction"]["score"] for e in events]),
        latency_ms=np.array([e["latency_ms"] for e in events]),
    )
    return Reference("baseline", "baseline:small", "churn", "1.4.2", {"all": profile})


def _pipeline(rows: int) -> InMemoryPipeline:
    store = ReferenceStore()
    store.put(_baseline(rows))
    settings = Settings.model_validate({"detect": {"window_buckets": 5, "min_count": 200}})
    pipeline = InMemoryPipeline(settings, store)
    spec = StreamSpec(events=12_000, seed=5, events_per_second=12_000 / 1800)
    list(pipeline.run(generate(spec)))
    return pipeline


def test_a_500_row_baseline_is_reported_once_and_exported_as_a_gauge(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline = _pipeline(500)
    (small,) = pipeline.stats.small_references  # once per model version, not per window
    assert (small.model, small.model_version, small.reference_id) == (
        "churn",
        "1.4.2",
        "baseline:small",
    )
    assert small.min_reference_count == 1000
    assert small.segments and set(small.segments.values()) == {500}
    registry = CollectorRegistry()
    detector = pipeline.detector
    registry.register(
        DriftScoreCollector(detector.condition_samples, references=detector.reference_samples)
    )
    for segment in small.segments:
        labels = {"model": "churn", "model_version": "1.4.2", "segment": segment}
        assert registry.get_sample_value("driftwire_reference_events", labels) == 500
        assert registry.get_sample_value("driftwire_reference_too_small", labels) == 1
    # the detect stage logs what the detector reports (JSON fields), and only once
    detector._small_new.append(small)
    with caplog.at_level(logging.WARNING, logger="driftwire.stages.detect.stage"):
        DetectStage._report_small_references(detector)
        DetectStage._report_small_references(detector)
    (record,) = caplog.records
    assert "fewer than 1000 events" in record.getMessage()
    assert record.fields["reference_id"] == "baseline:small"  # type: ignore[attr-defined]


def test_a_large_enough_baseline_is_not_reported() -> None:
    pipeline = _pipeline(2_000)
    assert pipeline.stats.small_references == []
    registry = CollectorRegistry()
    registry.register(
        DriftScoreCollector(lambda: (), references=pipeline.detector.reference_samples)
    )
    labels = {"model": "churn", "model_version": "1.4.2", "segment": "all"}
    assert registry.get_sample_value("driftwire_reference_events", labels) == 2_000
    assert registry.get_sample_value("driftwire_reference_too_small", labels) == 0
