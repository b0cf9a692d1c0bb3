"""The truth stage's gauges: estimates beside realized values, bounded class labels, counters
that exist at 0 from the start."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from driftwire.ops.truth_metrics import ALERT_KINDS, TruthMetrics

KEY = ("churn", "1", "all")
SERIES = {"model": "churn", "model_version": "1", "segment": "all", "age": "0s"}


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
        age="0s",
        joined=640,
        estimate_error={"accuracy": 0.04},
        actual_shares={"false": 0.6, "true": 0.4},
    )
    value = registry.get_sample_value
    estimated = {k: v for k, v in SERIES.items() if k != "age"}
    assert value("driftwire_performance_estimated", {**estimated, "metric": "accuracy"}) == 0.74
    assert value("driftwire_performance", {**SERIES, "metric": "accuracy"}) == 0.70
    assert value("driftwire_performance_estimate_error", {**SERIES, "metric": "accuracy"}) == 0.04
    assert value("driftwire_performance_labelled_predictions", SERIES) == 640
    assert value("driftwire_actual_label_share", {**SERIES, "label": "true"}) == 0.4
    # a third class is not exported (max_classes), a class absent from a window reads 0
    m.judged(KEY, 0.8, {}, age="0s", actual_shares={"false": 0.5, "maybe": 0.5})
    assert value("driftwire_actual_label_share", {**SERIES, "label": "maybe"}) is None
    assert value("driftwire_actual_label_share", {**SERIES, "label": "true"}) == 0.0
    assert value("driftwire_actual_label_share", {**SERIES, "label": "false"}) == 0.5


def test_a_metric_without_an_interval_has_no_bound_series() -> None:
    registry = CollectorRegistry()
    m = TruthMetrics(registry)
    m.judged(KEY, 1.0, {"f1": (0.62, None, None), "mae": (3.0, 2.5, 3.5)}, age="0s", joined=900)
    value = registry.get_sample_value
    assert value("driftwire_performance", {**SERIES, "metric": "f1"}) == 0.62
    for bound in ("low", "high"):
        labels = {**SERIES, "metric": "f1", "bound": bound}
        assert value("driftwire_performance_bound", labels) is None
    labels = {**SERIES, "metric": "mae", "bound": "low"}
    assert value("driftwire_performance_bound", labels) == 2.5


def test_each_judgement_age_is_its_own_series() -> None:
    """A window judged again later (more labels in) updates its age's series only."""
    registry = CollectorRegistry()
    m = TruthMetrics(registry)
    m.judged(KEY, 0.3, {"accuracy": (0.80, 0.70, 0.90)}, age="0s", estimate_error={"auc": 0.0})
    m.judged(KEY, 0.9, {"accuracy": (0.62, 0.60, 0.64)}, age="1d", estimate_error={"auc": 0.1})
    value = registry.get_sample_value
    for age, completeness, accuracy, error in (("0s", 0.3, 0.80, 0.0), ("1d", 0.9, 0.62, 0.1)):
        series = {**SERIES, "age": age}
        assert value("driftwire_label_completeness_ratio", series) == completeness
        assert value("driftwire_performance", {**series, "metric": "accuracy"}) == accuracy
        assert value("driftwire_performance_estimate_error", {**series, "metric": "auc"}) == error
