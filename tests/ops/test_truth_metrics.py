"""The truth stage's gauges: estimates beside realized values, bounded class labels, counters
that exist at 0 from the start."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from driftwire.ops.truth_metrics import ALERT_KINDS, TruthMetrics

KEY = ("churn", "1", "all")
SERIES = {"model": "churn", "model_version": "1", "segment": "all"}


def test_alert_and_baseline_counters_start_at_zero() -> None:
    registry = CollectorRegistry()
    TruthMetrics(registry)
    value = registry.get_sample_value
    for kind in ALERT_KINDS:
        for status in ("firing", "resolved"):
            labels = {"kind": kind, "status": status}
            assert value("driftwire_truth_alerts_produced_total", labels) == 0
    for result in ("loaded", "removed", "invalid"):
        assert value("driftwire_truth_baselines_total", {"result": result}) == 0


def test_judged_and_estimated_windows_are_exported_side_by_side() -> None:
    registry = CollectorRegistry()
    m = TruthMetrics(registry, max_classes=2)
    m.estimated_now(KEY, {"accuracy": 0.74, "auc": 0.81})
    m.judged(
        KEY,
        0.8,
        {"accuracy": (0.70, 0.67, 0.73)},
        joined=640,
        estimate_error={"accuracy": 0.04},
        actual_shares={"false": 0.6, "true": 0.4},
    )
    value = registry.get_sample_value
    assert value("driftwire_performance_estimated", {**SERIES, "metric": "accuracy"}) == 0.74
    assert value("driftwire_performance", {**SERIES, "metric": "accuracy"}) == 0.70
    assert value("driftwire_performance_estimate_error", {**SERIES, "metric": "accuracy"}) == 0.04
    assert value("driftwire_performance_labelled_predictions", SERIES) == 640
    assert value("driftwire_actual_label_share", {**SERIES, "label": "true"}) == 0.4
    # a third class is not exported (max_classes), a class absent from a window reads 0
    m.judged(KEY, 0.8, {}, actual_shares={"false": 0.5, "maybe": 0.5})
    assert value("driftwire_actual_label_share", {**SERIES, "label": "maybe"}) is None
    assert value("driftwire_actual_label_share", {**SERIES, "label": "true"}) == 0.0
    assert value("driftwire_actual_label_share", {**SERIES, "label": "false"}) == 0.5


def test_a_metric_without_an_interval_has_no_bound_series() -> None:
    registry = CollectorRegistry()
    m = TruthMetrics(registry)
    m.judged(KEY, 1.0, {"f1": (0.62, None, None), "mae": (3.0, 2.5, 3.5)}, joined=900)
    value = registry.get_sample_value
    assert value("driftwire_performance", {**SERIES, "metric": "f1"}) == 0.62
    for bound in ("low", "high"):
        labels = {**SERIES, "metric": "f1", "bound": bound}
        assert value("driftwire_performance_bound", labels) is None
    labels = {**SERIES, "metric": "mae", "bound": "low"}
    assert value("driftwire_performance_bound", labels) == 2.5
