"""Latency anomalies: spikes against the reference, SLOs, creep (Page-Hinkley), state, metrics."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry
from scenarios import MINUTE, START, of, pipeline, run, small, table

from driftwire.detect.detector import Detector
from driftwire.detect.latency import Creep, quantile_name
from driftwire.offline.generator import Change, generate
from driftwire.ops.config import ConfigError, LatencySettings, load_settings
from driftwire.ops.metrics import DriftScoreCollector


def ramp(start_minute: int, minutes: int, step: float) -> tuple[Change, ...]:
    """Latency x (1 + step), x (1 + 2 step), ... one minute each: a slow degradation."""
    return tuple(
        Change(
            "latency",
            START + (start_minute + i) * MINUTE,
            1 + step * (i + 1),
            end_ms=START + (start_minute + i + 1) * MINUTE,
        )
        for i in range(minutes)
    )


def latency_rows(alerts: list) -> set[tuple[str, str, str]]:
    return {(a.status, a.labels["segment"], a.labels["statistic"]) for a in alerts}


def test_spike_fires_per_percentile_and_resolves() -> None:
    change = Change("latency", START + 30 * MINUTE, 4.0, end_ms=START + 45 * MINUTE)
    alerts = run(generate(small(18_000, 60, change)))
    assert {a.kind for a in alerts} == {"latency_anomaly"}
    fired = of(alerts, "latency_anomaly", "firing")
    stats = {(a.labels["segment"], a.labels["statistic"]) for a in fired}
    assert {("all", "p50"), ("all", "p95"), ("all", "p99")} <= stats
    assert {"region=eu,tier=gold", "region=us,tier=gold"} <= {s for s, _ in stats}
    assert all(a.labels["severity"] == "warning" and 3.0 <= a.value < 10.0 for a in fired)
    # K = 2 windows: the window ending at 31 holds one slow bucket, the next one fires
    assert min(a.evaluated_at_ms for a in fired) == START + 32 * MINUTE
    resolved = {a.fingerprint for a in of(alerts, "latency_anomaly", "resolved")}
    assert {a.fingerprint for a in fired if a.labels["segment"] == "all"} <= resolved
    assert all(a.evaluated_at_ms >= START + 45 * MINUTE for a in alerts if a.status == "resolved")
    assert not [a for a in fired if a.labels["statistic"] == "p95_creep"]  # the spike speaks
    p99 = next(a for a in fired if a.labels["statistic"] == "p99")
    assert p99.reference["kind"] == "frozen_window"
    assert set(p99.evidence["quantiles_ms"]["reference"]) == {"p50", "p95", "p99"}


def test_ten_times_is_critical() -> None:
    change = Change("latency", START + 30 * MINUTE, 12.0)
    alerts = run(generate(small(12_000, 45, change)))
    severities = {
        a.labels["severity"] for a in of(alerts, "latency_anomaly", "firing") if a.value >= 10
    }
    assert severities == {"critical"}


def test_creep_regression_pin() -> None:
    # +2% per minute from minute 20 on: creep fires at about 1.4x; from 1.5x (minute 45) the
    # percentiles are relevant and significant and speak instead (the creep is superseded)
    alerts = run(generate(small(12_000, 60, *ramp(20, 40, 0.02))))
    rows = table(alerts)
    assert rows[:3] == [
        (38, "firing", "latency_anomaly", "region=us,tier=gold", "", "p95_creep"),
        (39, "firing", "latency_anomaly", "all", "", "p95_creep"),
        (40, "firing", "latency_anomaly", "region=eu,tier=gold", "", "p95_creep"),
    ]
    for alert in alerts[:3]:
        assert 1.2 <= alert.value < 1.5
        assert alert.evidence["page_hinkley"]["statistic"] > 1.5
        assert alert.evidence["tail_count"]["p_value"] < 1e-4
    later = {(r[1], r[3], r[5]) for r in rows[3:]}
    assert ("resolved", "all", "p95_creep") in later
    assert {("firing", "all", "p50"), ("firing", "all", "p95"), ("firing", "all", "p99")} <= later
    assert all(1.5 <= a.value < 2.0 for a in alerts[3:] if a.status == "firing")
    assert min(r[0] for r in rows[3:]) >= 45


def test_stationary_latency_is_silent() -> None:
    assert run(generate(small(12_000, 60))) == []


def test_slo_breach_in_milliseconds() -> None:
    change = Change("latency", START + 30 * MINUTE, 1.5)
    alerts = run(generate(small(12_000, 45, change)), latency={"slo_ms": {"p99": [30.0, 100.0]}})
    slo = [a for a in of(alerts, "latency_anomaly", "firing") if a.labels["statistic"] == "p99_slo"]
    assert {a.labels["segment"] for a in slo} >= {"all"}
    for alert in slo:  # p99 of lognormal(ln 12, 0.3) x 1.5 is ~36 ms
        assert alert.labels["severity"] == "warning"
        assert 30.0 <= alert.value < 60.0
        assert alert.threshold == 30.0


def test_restored_detector_continues_identically() -> None:
    # a creep to 1.44x that ends at minute 42: one creep alert fires and resolves, far from
    # any threshold the sketches' run-to-run noise could cross
    values = list(generate(small(12_000, 60, *ramp(20, 22, 0.02))))
    straight = list(pipeline().run(values))
    p = pipeline()
    resumed = []
    for first in range(0, 6_000, 2_000):
        resumed += p.feed(values[first : first + 2_000])
    state = orjson.loads(orjson.dumps(p.detector.snapshot("churn")))  # JSON on the way
    parts = {key: blob for _, key, blob in p.detector.stored_parts() if blob is not None}
    assert state["versions"]["1.4.2"]["creep"]
    p.detector = Detector(
        p.settings.detect,
        p.settings.alerts,
        p.references,
        bucket_ms=60_000,
        on_evaluation=p._evaluated,
    )
    p.detector.restore("churn", state)
    for key in p.detector.part_keys("churn"):  # the window's buckets, the frozen reference
        p.detector.load_part(key, parts[key])
    for first in range(6_000, len(values), 2_000):
        resumed += p.feed(values[first : first + 2_000])
    resumed += p.finish()
    assert straight
    key = [(a.fingerprint, a.status, a.evaluated_at_ms) for a in straight]
    assert [(a.fingerprint, a.status, a.evaluated_at_ms) for a in resumed] == key
    # KLL compaction draws from the library's own unseeded random bits: windows of more than
    # k = 200 latencies differ within the rank error from run to run
    assert [a.value for a in resumed] == pytest.approx([a.value for a in straight], rel=0.05)


def test_creep_state_round_trip_is_exact() -> None:
    rng = np.random.default_rng(8)
    series = 12.0 * rng.lognormal(0.0, 0.05, 200) * np.linspace(1.0, 1.5, 200)
    original = Creep(LatencySettings())
    for x in series[:90]:
        original.update(float(x))
    copy = Creep.from_state(LatencySettings(), orjson.loads(orjson.dumps(original.to_state())))
    a = [original.update(float(x)) for x in series[90:]]
    b = [copy.update(float(x)) for x in series[90:]]
    assert a == b and any(a)
    assert original.to_state() == copy.to_state()


def test_latency_percentiles_are_exported_in_seconds() -> None:
    p = pipeline()
    list(p.run(generate(small(6_000, 20))))
    registry = CollectorRegistry()
    registry.register(DriftScoreCollector(p.detector.condition_samples, p.detector.latency_samples))
    labels = {"model": "churn", "model_version": "1.4.2", "segment": "all"}
    p99 = registry.get_sample_value("driftwire_latency_seconds", {**labels, "percentile": "p99"})
    p50 = registry.get_sample_value("driftwire_latency_seconds", {**labels, "percentile": "p50"})
    assert p50 is not None and p99 is not None
    assert 0.010 < p50 < 0.014 < 0.018 < p99 < 0.032  # lognormal(ln 12 ms, 0.3)
    firing = registry.get_sample_value(
        "driftwire_alerts_firing", {"kind": "latency_anomaly", "severity": "warning"}
    )
    assert firing == 0.0


def test_quantile_names() -> None:
    assert [quantile_name(q) for q in (0.5, 0.95, 0.99, 0.999)] == ["p50", "p95", "p99", "p99.9"]


@pytest.mark.parametrize(
    ("latency", "key"),
    [
        ({"slo_ms": {"p90": [10, 20]}}, "detect.latency"),
        ({"spike_factor": [5, 2]}, "detect.latency"),
        ({"creep_min_ratio": 1.05}, "detect.latency"),
        ({"quantiles": [0.5, 1.0]}, "detect.latency"),
    ],
)
def test_bad_latency_settings_name_the_key(latency: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"DRIFTWIRE_DETECT_LATENCY": orjson.dumps(latency).decode()})
    assert key in str(info.value)
