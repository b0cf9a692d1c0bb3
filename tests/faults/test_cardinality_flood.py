"""Fault (f): a flood of random model, version, segment and feature names through both stages.

A real model ("churn") sends steadily while every other event carries fresh random names. The
stages keep to their caps: the number of Prometheus series stays under the bound the caps
imply (computed below and stated in the assert), the detector keeps at most the capped models
and versions, and the process RSS stops growing once the caps are full: it grows by less than
``RSS_GROWTH_BOUND`` while the flood goes on for three times as long as it took to fill them.
The real model keeps its segments and features throughout.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from driftwire.ops.config import Settings
from driftwire.ops.metrics import DriftScoreCollector
from driftwire.stages.inmemory import InMemoryPipeline

MINUTE = 60_000
START = 1_767_225_600_000
CAPS = {"max_models": 20, "max_versions": 3, "max_segments": 5, "max_features": 12}
DRIFT_PER_VERSION, DRIFT_TOTAL = 40, 400
QUANTILES = 3  # p50, p95, p99
RSS_GROWTH_BOUND = 40 * 2**20  # bytes


def settings() -> Settings:
    return Settings.model_validate(
        {
            "profile": CAPS,
            "detect": {
                "window_buckets": 3,
                "min_count": 50,
                "max_models": CAPS["max_models"],
                "max_versions": CAPS["max_versions"],
                "retire_after_buckets": 10,
                "stale_windows": 5,
                "latency": {"reference": "baseline"},
            },
            "http": {
                "max_drift_conditions_per_version": DRIFT_PER_VERSION,
                "max_drift_conditions": DRIFT_TOTAL,
            },
        }
    )


def flood(minutes: range, per_minute: int, seed: int) -> Iterator[bytes]:
    rng = np.random.default_rng(seed)

    def name(prefix: str) -> str:
        return f"{prefix}{rng.integers(1 << 40):x}"

    for m in minutes:
        base = START + m * MINUTE
        for i in range(per_minute):
            t = base + i * (MINUTE // per_minute)
            if i % 2 == 0:  # the real model
                event = {
                    "timestamp": t,
                    "model": "churn",
                    "model_version": "1",
                    "segment": {"region": ["eu", "us"][i % 4 // 2]},
                    "features": {"age": float(rng.normal(40, 5)), "plan": "gold"},
                }
            else:
                event = {
                    "timestamp": t,
                    "model": name("m") if rng.random() < 0.5 else f"m{rng.integers(40)}",
                    "model_version": name("v"),
                    "segment": {name("k"): name("s")},
                    "features": {name("f"): float(rng.random()) for _ in range(5)},
                }
            event.update(prediction=float(rng.random()), latency_ms=float(rng.gamma(2, 5)))
            yield orjson.dumps(event)


def series(registry: CollectorRegistry) -> int:
    return sum(len(metric.samples) for metric in registry.collect())


def series_bound() -> int:
    """What the caps allow: drift gauges (4 per exported condition, plus the omitted gauge),
    per kept (model, version, segment) latency percentiles and two reference gauges, the
    fixed metrics, and the late/future counters' model label (100 + __other__)."""
    segments = CAPS["max_segments"] + 2  # + __other__ + the all aggregate
    kept = CAPS["max_models"] * CAPS["max_versions"] * segments
    return 4 * DRIFT_TOTAL + 1 + kept * (QUANTILES + 2) + 2 * 101 + 200


def rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_cardinality_flood_keeps_series_and_memory_within_the_caps() -> None:
    registry = CollectorRegistry()
    pipeline = InMemoryPipeline(settings(), registry=registry)
    detector = pipeline.detector
    registry.register(
        DriftScoreCollector(
            detector.condition_samples,
            detector.latency_samples,
            detector.reference_samples,
            max_per_version=DRIFT_PER_VERSION,
            max_total=DRIFT_TOTAL,
        )
    )
    bound = series_bound()

    def feed(minutes: range, seed: int) -> int:
        most = 0
        for m in minutes:
            pipeline.feed(list(flood(range(m, m + 1), 1_000, seed + m)))
            most = max(most, series(registry))
        return most

    most = feed(range(0, 15), seed=1)  # the caps fill
    filled = rss()
    most = max(most, feed(range(15, 60), seed=2))  # three times as long again
    grown = rss() - filled
    pipeline.finish()
    print(f"series: at most {most} (bound {bound}); RSS +{grown / 2**20:.1f} MiB after the fill")
    assert most <= bound
    assert grown < RSS_GROWTH_BOUND
    models = {labels["model"] for labels, *_ in detector.condition_samples()}
    assert "churn" in models and len(models) <= CAPS["max_models"]
    versions = {
        (labels["model"], labels["model_version"]) for labels, *_ in detector.condition_samples()
    }
    assert len(versions) <= CAPS["max_models"] * CAPS["max_versions"]
    assert len(list(detector.condition_samples())) <= 20_000
    churn = {
        (labels["segment"], labels.get("feature", ""))
        for labels, *_ in detector.condition_samples()
        if labels["model"] == "churn" and labels["kind"] == "data_drift"
    }
    assert {("region=eu", "age"), ("region=us", "age"), ("region=eu", "plan")} <= churn
    overflow = {
        what: registry.get_sample_value("driftwire_cardinality_overflow_total", {"what": what})
        for what in ("models", "versions", "segments", "features")
    }
    assert all(overflow.values()), overflow
