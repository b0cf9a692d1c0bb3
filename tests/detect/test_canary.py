"""Canary comparison (kind ``version_comparison``) and the retirement of silent versions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry
from scenarios import MINUTE, START, edited, of, pipeline, run, small, table

from driftwire.detect.canary import VersionLedger, outputs, predecessors, version_key
from driftwire.detect.detector import Detector
from driftwire.offline.generator import generate
from driftwire.ops.config import ConfigError, load_settings
from driftwire.ops.metrics import DriftScoreCollector

KIND = "version_comparison"
Edit = Any


def canary(
    share: float,
    *,
    score: float = 0.0,
    latency: float = 1.0,
    until: int | None = None,
    stop: int | None = None,
) -> Edit:
    """``share`` of the events go to 1.5.0, whose scores shift by ``score`` and latency is
    multiplied by ``latency`` until minute ``until``; 1.5.0 sends nothing from minute ``stop``.
    """

    def edit(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any] | None:
        if rng.random() >= share:
            return event
        minute = (event["timestamp"] - START) // MINUTE
        if stop is not None and minute >= stop:
            return None
        event["model_version"] = "1.5.0"
        if until is None or minute < until:
            s = min(1.0, event["prediction"]["score"] + score)
            event["prediction"] = {"score": s, "label": "churn" if s > 0.5 else "stay"}
            event["latency_ms"] *= latency
        return event

    return edit


def stream(edit: Edit, events: int = 24_000, minutes: int = 40, seed: int = 5) -> Iterator[bytes]:
    return edited(small(events, minutes, seed=seed), edit)


def test_a_canary_that_predicts_differently_fires_with_what_on_call_needs() -> None:
    alerts = run(stream(canary(0.2, score=0.15)))  # every alert validates against the schema
    assert {a.kind for a in alerts} == {KIND}
    fired = of(alerts, KIND, "firing")
    assert {(a.labels["segment"], a.labels["feature"]) for a in fired} == {
        (s, f)
        for s in ("all", "region=eu,tier=gold", "region=us,tier=gold")
        for f in ("prediction.score", "prediction.label")
    }
    score = next(a for a in fired if a.labels["feature"] == "prediction.score")
    assert score.labels == {
        "alertname": "DriftwireVersionComparison",
        "kind": KIND,
        "severity": "critical",
        "model": "churn",
        "model_version": "1.5.0",
        "segment": "all",
        "feature": "prediction.score",
        "statistic": "psi",
    }
    assert score.summary.startswith("canary 1.5.0 of churn predicts differently from 1.4.2 in ")
    assert "over the same window" in score.summary and " vs " in score.summary
    assert score.reference["kind"] == "previous_version"
    assert score.reference["id"] == "version:1.4.2"
    assert score.reference["count"] > 4 * score.window["count"] > 0
    assert score.value is not None and score.threshold is not None
    assert score.value >= score.threshold
    assert score.evidence["versions"]["previous"] == "1.4.2"
    assert 0.15 < score.evidence["canary_share"] < 0.25
    assert 'silence kind="version_comparison"' in score.description


def test_an_identical_canary_stays_silent() -> None:
    for seed in (5, 6):
        alerts = run(stream(canary(0.2), events=36_000, minutes=60, seed=seed))
        assert alerts == []


def test_a_slow_canary_fires_on_latency() -> None:
    alerts = run(stream(canary(0.2, latency=5.0)))
    assert {a.kind for a in alerts} == {KIND}  # its own first window is slow: no spike
    fired = of(alerts, KIND, "firing")
    assert {a.labels["feature"] for a in fired} == {"latency_ms"}
    assert {("all", "p50"), ("all", "p95"), ("all", "p99")} <= {
        (a.labels["segment"], a.labels["statistic"]) for a in fired
    }
    for a in fired:
        assert a.value is not None and 4.0 < a.value < 6.5
        assert a.summary.startswith("canary 1.5.0 of churn is slower than 1.4.2 in ")
        assert set(a.evidence["quantiles_ms"]) == {"canary", "previous"}


def test_a_fixed_canary_resolves_every_alert() -> None:
    alerts = of(run(stream(canary(0.2, score=0.15, until=20))), KIND)
    last = {a.fingerprint: a for a in alerts}
    assert len(last) >= 6
    for a in last.values():
        assert a.status == "resolved" and a.ends_at_ms == a.evaluated_at_ms
        if "(escalated" not in a.summary:  # not a warning replaced by a critical alert
            assert a.evaluated_at_ms > START + 20 * MINUTE
            assert "predicts like 1.4.2 again" in a.summary


def test_single_version_models_have_no_comparison() -> None:
    p = pipeline()
    list(p.run(generate(small(12_000, 30))))
    assert p.detector._conditions
    assert not [f for f in p.detector._conditions.values() if f.kind == KIND]


def test_comparison_ends_and_retired_version_is_forgotten() -> None:
    p = pipeline(retire_after_buckets=10)
    registry = CollectorRegistry()
    registry.register(DriftScoreCollector(p.detector.condition_samples, p.detector.latency_samples))
    values = list(stream(canary(0.2, latency=5.0, stop=20)))
    alerts = list(p.run(values[: len(values) // 2]))  # minute 20
    p99 = {"model": "churn", "model_version": "1.5.0", "segment": "all", "percentile": "p99"}
    assert registry.get_sample_value("driftwire_latency_seconds", p99) is not None
    alerts += p.run(values[len(values) // 2 :])
    rows = {(m, s, k, st) for m, s, k, _, _, st in table(alerts)}
    # the comparison ends with the window in which 1.5.0 sent nothing
    assert (25, "resolved", KIND, "p99") in rows
    assert (23, "firing", "throughput", "no_data") in rows  # 3 silent buckets
    assert (30, "resolved", "throughput", "no_data") in rows  # retired after 10
    late = [a for a in alerts if a.evaluated_at_ms >= START + 25 * MINUTE]
    over = next(a for a in late if a.kind == KIND and a.status == "resolved")
    assert over.summary.startswith(
        "comparison of churn 1.5.0 with 1.4.2 over (1.5.0 sent no events in the window); "
        "closing: canary 1.5.0 of churn is slower than 1.4.2"
    )
    retired = next(a for a in alerts if a.kind == "throughput" and a.status == "resolved")
    assert retired.summary.startswith("churn 1.5.0 retired (no events for 10 buckets")
    assert retired.labels["model_version"] == "1.5.0"
    model = p.detector._models["churn"]
    assert set(model.versions) == set(model.ledger.seen) == {"1.4.2"}
    assert not model.compared
    assert {f.labels["model_version"] for f in p.detector._conditions.values()} == {"1.4.2"}
    assert not [k for k in p.detector.policy.to_state() if k in model.muted]
    assert {labels["model_version"] for labels, _ in p.detector.latency_samples()} == {"1.4.2"}
    assert registry.get_sample_value("driftwire_latency_seconds", p99) is None
    state = p.detector.snapshot("churn")
    assert set(state["versions"]) == set(state["ledger"]) == {"1.4.2"}
    firing = registry.get_sample_value(
        "driftwire_alerts_firing", {"kind": KIND, "severity": "critical"}
    )
    assert firing == 0.0


def test_version_order_ledger_and_its_state() -> None:
    ledger = VersionLedger()
    for version, bucket in [("2.0", 0), ("1.10.0", 60), ("1.9.2", 60), ("1.9.2", 120)]:
        ledger.observe(version, bucket)
    assert ledger.order() == ["2.0", "1.9.2", "1.10.0"]  # first seen, then natural order
    assert predecessors(ledger, {"2.0", "1.10.0"}) == {"1.10.0": "2.0"}
    assert predecessors(ledger, {"1.9.2"}) == {}
    assert ledger.retired(after_ms=120) == ["2.0"]
    assert ledger.retired(after_ms=121) == []
    assert version_key("1.10.0") > version_key("1.9.2") > version_key("1.9")
    copy = VersionLedger.from_state(orjson.loads(orjson.dumps(ledger.to_state())))
    assert copy == ledger


def test_a_restored_detector_keeps_the_version_order() -> None:
    p = pipeline()
    values = list(stream(canary(0.2), events=6_000, minutes=10))
    list(p.run(values))
    state = orjson.loads(orjson.dumps(p.detector.snapshot("churn")))
    restored = Detector(p.settings.detect, p.settings.alerts, p.references, bucket_ms=60_000)
    restored.restore("churn", state)
    assert restored._models["churn"].ledger == p.detector._models["churn"].ledger
    del state["ledger"]  # a snapshot from before the ledger
    restored.restore("churn", state)
    assert restored._models["churn"].ledger.seen == {}


@pytest.mark.parametrize(
    ("canary_settings", "key"),
    [
        ({"latency_factor": [5, 2]}, "detect.canary"),
        ({"thresholds": {"psi": [0.3, 0.1]}}, "detect.canary"),
    ],
)
def test_bad_canary_settings_name_the_key(canary_settings: dict, key: str, tmp_path: Any) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(orjson.dumps({"detect": {"canary": canary_settings}}).decode())
    with pytest.raises(ConfigError, match=key):
        load_settings(path, env={})


def test_disabled_canary_compares_nothing() -> None:
    alerts = run(
        stream(canary(0.2, score=0.15), events=12_000, minutes=20), canary={"enabled": False}
    )
    assert of(alerts, KIND) == []


class _OutputsChecked(Detector):
    """The detector, checking each canary comparison's window outputs against merging them
    from the version's buckets (what it did before it reused the evaluated window's)."""

    reused = 0

    def _outputs(self, name: str, model: Any, version: str, start: int, end: int) -> Any:
        got = super()._outputs(name, model, version, start, end)
        made = self._merged.get((name, version))
        self.reused += made is not None and made[0] == end
        buckets = model.versions[version].buckets
        direct = outputs((p for b, p in buckets.items() if b >= start), segments=self._d.segments)
        assert list(got) == list(direct)
        for key, o in got.items():
            d = direct[key]
            assert o.events == d.events
            assert o.score.to_bytes() == d.score.to_bytes()
            assert o.label.to_bytes() == d.label.to_bytes()
            assert o.latency.to_bytes() == d.latency.to_bytes()
        return got


def test_the_canary_compares_the_outputs_of_the_windows_just_evaluated() -> None:
    values = list(stream(canary(0.2, score=0.15), events=12_000, minutes=20))
    expected = [(a.fingerprint, a.status) for a in pipeline().run(values)]
    p = pipeline()
    checked = _OutputsChecked(p.settings.detect, p.settings.alerts, p.references, bucket_ms=MINUTE)
    p.detector = checked
    assert [(a.fingerprint, a.status) for a in p.run(values)] == expected
    assert expected and checked.reused >= 10
