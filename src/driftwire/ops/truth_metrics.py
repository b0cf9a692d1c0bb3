"""Prometheus metrics of the ground-truth stage (beside :mod:`driftwire.ops.metrics`).

>>> from prometheus_client import CollectorRegistry
>>> reg = CollectorRegistry()
>>> m = TruthMetrics(reg)
>>> reg.get_sample_value("driftwire_truth_records_total", {"outcome": "joined"})
0.0
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from driftwire.ops.metrics import LabelCap

#: Every outcome of the join's accounting (``driftwire.truth.join.JoinCounts``).
OUTCOMES = (
    "predictions",
    "labels",
    "joined",
    "expired",
    "late_labels",
    "orphan_labels",
    "duplicate_predictions",
    "duplicate_labels",
    "mismatched_labels",
    "not_sampled_predictions",
    "not_sampled_labels",
    "evicted_predictions",
    "evicted_labels",
)
_SERIES = ("model", "model_version", "segment")


class TruthMetrics:
    """Join accounting, label completeness and realized performance per window."""

    def __init__(self, registry: CollectorRegistry, *, max_models: int = 100) -> None:
        self.model_label = LabelCap(max_models)
        self.records = Counter(
            "driftwire_truth_records",
            "Predictions and labels through the ground-truth join, by where each one went",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.records.labels(outcome=outcome)
        self.labels_invalid = Counter(
            "driftwire_labels_invalid",
            "Ground-truth records refused and sent to the labels' dead-letter topic, by reason",
            ["reason"],
            registry=registry,
        )
        self.pending = Gauge(
            "driftwire_truth_pending",
            "Predictions waiting for their label and labels waiting for their prediction",
            ["side"],
            registry=registry,
        )
        self.completeness = Gauge(
            "driftwire_label_completeness_ratio",
            "Share of the last judged window's predictions whose label has arrived",
            list(_SERIES),
            registry=registry,
        )
        self.performance = Gauge(
            "driftwire_performance",
            "Realized performance of the last judged window (prediction time), by metric",
            [*_SERIES, "metric"],
            registry=registry,
        )
        self.performance_bound = Gauge(
            "driftwire_performance_bound",
            "95% interval of driftwire_performance: bound=low|high",
            [*_SERIES, "metric", "bound"],
            registry=registry,
        )
        self.alerts = Counter(
            "driftwire_truth_alerts_produced",
            "Performance alert events produced and acknowledged, by kind and status",
            ["kind", "status"],
            registry=registry,
        )
        self._counted: dict[str, int] = dict.fromkeys(OUTCOMES, 0)

    def count(self, counts: Mapping[str, int]) -> None:
        """Bring the outcome counters up to the join's cumulative ``counts``."""
        for outcome in OUTCOMES:
            delta = counts[outcome] - self._counted[outcome]
            if delta > 0:
                self.records.labels(outcome=outcome).inc(delta)
                self._counted[outcome] = counts[outcome]

    def judged(
        self,
        key: tuple[str, str, str],
        completeness: float,
        metrics: Mapping[str, tuple[float, float, float]],
    ) -> None:
        model, version, segment = key
        labels = {"model": self.model_label(model), "model_version": version, "segment": segment}
        self.completeness.labels(**labels).set(completeness)
        for metric, (value, low, high) in metrics.items():
            self.performance.labels(**labels, metric=metric).set(value)
            self.performance_bound.labels(**labels, metric=metric, bound="low").set(low)
            self.performance_bound.labels(**labels, metric=metric, bound="high").set(high)
