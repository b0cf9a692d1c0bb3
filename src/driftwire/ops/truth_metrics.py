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
#: The judged gauges' series: one per (model, version, segment) and judgement age (the
#: configured ages, e.g. 0s, 1h, 6h, 1d, 3d, 7d: bounded by the config, not by the data).
_JUDGED = (*_SERIES, "age")
#: The alert kinds of the truth stage.
ALERT_KINDS = ("performance_degradation", "label_drift", "estimated_performance")


class TruthMetrics:
    """Join accounting, label completeness and realized performance per window."""

    def __init__(
        self, registry: CollectorRegistry, *, max_models: int = 100, max_classes: int = 20
    ) -> None:
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
        self.future = Counter(
            "driftwire_truth_predictions_future",
            "Predictions left out of the join because their timestamp is more than "
            "profile.max_future_seconds past their record's time",
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
            "Share of the predictions of the window judged at this age (age after its end) "
            "whose label had arrived when it was judged",
            list(_JUDGED),
            registry=registry,
        )
        self.performance = Gauge(
            "driftwire_performance",
            "Realized performance of the window (prediction time) that ended age ago, on "
            "every label joined when it was judged, by metric",
            [*_JUDGED, "metric"],
            registry=registry,
        )
        self.performance_bound = Gauge(
            "driftwire_performance_bound",
            "95% interval of driftwire_performance: bound=low|high",
            [*_JUDGED, "metric", "bound"],
            registry=registry,
        )
        self.estimated = Gauge(
            "driftwire_performance_estimated",
            "Estimated performance of the window that just closed, from its scores before its "
            "labels (binary classifiers; calibration fitted on the reference), by metric",
            [*_SERIES, "metric"],
            registry=registry,
        )
        self.estimate_error = Gauge(
            "driftwire_performance_estimate_error",
            "The estimate of the window judged at this age (made when it closed) minus its "
            "realized value, by metric; read it with driftwire_label_completeness_ratio",
            [*_JUDGED, "metric"],
            registry=registry,
        )
        self.joined_window = Gauge(
            "driftwire_performance_labelled_predictions",
            "Labelled predictions behind the realized performance of the window judged at this age",
            list(_JUDGED),
            registry=registry,
        )
        self.baselines = Counter(
            "driftwire_truth_baselines",
            "Baselines-topic records read by the truth stage, by result (loaded, removed, "
            "invalid); a loaded one with reference performance replaces the frozen reference",
            ["result"],
            registry=registry,
        )
        for result in ("loaded", "removed", "invalid"):
            self.baselines.labels(result=result)
        self.baselines_loaded = Gauge(
            "driftwire_truth_baselines_with_performance",
            "Baselines held by the truth stage that carry reference performance",
            registry=registry,
        )
        self.actual_share = Gauge(
            "driftwire_actual_label_share",
            "Share of each actual class among the labelled predictions of the window judged "
            "at this age (the first max_classes classes seen per series)",
            [*_JUDGED, "label"],
            registry=registry,
        )
        self.alerts = Counter(
            "driftwire_truth_alerts_produced",
            "Performance alert events produced and acknowledged, by kind and status",
            ["kind", "status"],
            registry=registry,
        )
        for kind in ALERT_KINDS:
            for status in ("firing", "resolved"):
                self.alerts.labels(kind=kind, status=status)
        self._max_classes = max_classes
        self._classes: dict[tuple[str, str, str, str], set[str]] = {}
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
        metrics: Mapping[str, tuple[float, float | None, float | None]],
        *,
        age: str,
        joined: int = 0,
        estimate_error: Mapping[str, float] | None = None,
        actual_shares: Mapping[str, float] | None = None,
    ) -> None:
        """The gauges of one series' window judged at ``age`` (its latest judgement there)."""
        model, version, segment = key
        labels = {
            "model": self.model_label(model),
            "model_version": version,
            "segment": segment,
            "age": age,
        }
        self.completeness.labels(**labels).set(completeness)
        self.joined_window.labels(**labels).set(joined)
        for metric, error in (estimate_error or {}).items():
            self.estimate_error.labels(**labels, metric=metric).set(error)
        known = self._classes.setdefault((*key, age), set())
        for label, share in sorted((actual_shares or {}).items()):
            if label not in known and len(known) >= self._max_classes:
                continue  # a bounded number of classes per series
            known.add(label)
            self.actual_share.labels(**labels, label=label).set(share)
        for label in known - set(actual_shares or {}):
            self.actual_share.labels(**labels, label=label).set(0.0)
        for metric, (value, low, high) in metrics.items():
            self.performance.labels(**labels, metric=metric).set(value)
            if low is not None and high is not None:  # F1, calibration error, MAPE: no interval
                self.performance_bound.labels(**labels, metric=metric, bound="low").set(low)
                self.performance_bound.labels(**labels, metric=metric, bound="high").set(high)

    def estimated_now(self, key: tuple[str, str, str], metrics: Mapping[str, float]) -> None:
        """The gauges of one series' latest estimate (NaN where a metric is undefined)."""
        model, version, segment = key
        labels = {"model": self.model_label(model), "model_version": version, "segment": segment}
        for metric, value in metrics.items():
            self.estimated.labels(**labels, metric=metric).set(value)
