"""A firing condition whose data stops arriving resolves once, saying why, and is forgotten."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from scenarios import MINUTE, SEGMENT, START, VALIDATOR, edited, minute, of, pipeline, small

from driftwire.alerts.alert import encode
from driftwire.offline.generator import Change

T = START + 15 * MINUTE
STOP = START + 30 * MINUTE


def eu_stops(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any] | None:
    if event["segment"].get("region") == "eu" and event["timestamp"] >= STOP:
        return None
    return event


def drifted_in_eu(alerts: list[Any], status: str) -> list[Any]:
    return [a for a in of(alerts, "data_drift", status) if a.labels["segment"] == SEGMENT]


def test_a_firing_condition_whose_segment_stops_sending_resolves_with_the_reason() -> None:
    spec = small(16_000, 60, Change("income", T, 2.0, SEGMENT))
    p = pipeline(stale_windows=10)
    alerts = list(p.run(edited(spec, eu_stops)))
    fired = drifted_in_eu(alerts, "firing")
    resolved = drifted_in_eu(alerts, "resolved")
    assert fired, "the shift in eu fires before eu stops"
    # every firing eu alert resolves exactly once, after eu stopped, and none fires again
    assert sorted(a.fingerprint for a in resolved) == sorted(a.fingerprint for a in fired)
    for alert in resolved:
        assert minute(alert.evaluated_at_ms) > 30
        assert alert.annotations["resolved_reason"].startswith("stopped receiving data")
        assert alert.summary.startswith("stopped receiving data")
        data = orjson.loads(encode(alert, "driftwire-test")[1])
        VALIDATOR.validate(data)
        assert data["data"]["annotations"]["resolved_reason"].startswith("stopped receiving")
    last_resolve = max(a.evaluated_at_ms for a in resolved)
    assert not [a for a in fired if a.evaluated_at_ms > last_resolve]
    # and its conditions are gone: nothing of eu is kept or exported any more
    segments = {labels["segment"] for labels, *_ in p.detector.condition_samples()}
    assert SEGMENT not in segments and "region=us,tier=gold" in segments
    assert SEGMENT not in {labels["segment"] for labels, _ in p.detector.latency_samples()}


def test_without_stale_windows_the_condition_fires_on() -> None:
    spec = small(16_000, 60, Change("income", T, 2.0, SEGMENT))
    alerts = list(pipeline(stale_windows=0).run(edited(spec, eu_stops)))
    assert drifted_in_eu(alerts, "firing") and not drifted_in_eu(alerts, "resolved")


def version_by_time(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    event["model_version"] = str(1 + (event["timestamp"] - START) // (15 * MINUTE))
    return event


def test_versions_beyond_max_versions_retire_the_one_seen_longest_ago() -> None:
    spec = small(12_000, 45, versions=("x",))
    p = pipeline(max_versions=2, stale_windows=0, retire_after_buckets=0)
    list(p.run(edited(spec, version_by_time)))
    versions = {labels["model_version"] for labels, *_ in p.detector.condition_samples()}
    assert versions == {"2", "3"}
    p = pipeline(stale_windows=0, retire_after_buckets=0)  # no cap reached: all kept
    list(p.run(edited(spec, version_by_time)))
    versions = {labels["model_version"] for labels, *_ in p.detector.condition_samples()}
    assert versions == {"1", "2", "3"}


def us_is_another_model_that_stops(
    event: dict[str, Any], rng: np.random.Generator
) -> dict[str, Any] | None:
    if event["segment"].get("region") == "us":
        if event["timestamp"] >= STOP:
            return None
        event["model"] = "fraud"
    return event


def test_a_model_silent_while_others_send_is_retired_and_its_alerts_resolve() -> None:
    spec = small(16_000, 60, Change("income", T, 2.0))
    p = pipeline(retire_after_buckets=10, stale_windows=0)
    alerts = list(p.run(edited(spec, us_is_another_model_that_stops)))
    fired = [a for a in of(alerts, "data_drift", "firing") if a.labels["model"] == "fraud"]
    resolved = [a for a in of(alerts, "data_drift", "resolved") if a.labels["model"] == "fraud"]
    assert fired and sorted(a.fingerprint for a in resolved) == sorted(a.fingerprint for a in fired)
    for alert in resolved:
        assert "fraud retired (no events for 10 buckets" in alert.annotations["resolved_reason"]
        assert minute(alert.evaluated_at_ms) >= 40
    assert {labels["model"] for labels, *_ in p.detector.condition_samples()} == {"churn"}
    assert p.detector.snapshot("fraud") == {}


def model_by_time(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    event["model"] = "a" if event["timestamp"] < START + 20 * MINUTE else "b"
    return event


def test_models_beyond_max_models_retire_the_one_seen_longest_ago() -> None:
    spec = small(8_000, 40)
    p = pipeline(max_models=1, retire_after_buckets=0, stale_windows=0)
    list(p.run(edited(spec, model_by_time)))
    assert {labels["model"] for labels, *_ in p.detector.condition_samples()} == {"b"}
    p = pipeline(retire_after_buckets=0, stale_windows=0)
    list(p.run(edited(spec, model_by_time)))
    assert {labels["model"] for labels, *_ in p.detector.condition_samples()} == {"a", "b"}
