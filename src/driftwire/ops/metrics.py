"""Every Prometheus metric of driftwire, defined in one place.

Components take a :class:`Metrics` built on a registry, so tests use a fresh
``CollectorRegistry`` and read values with ``get_sample_value``. Label values that come from
event data (models, segments, features) pass through a :class:`LabelCap` first, so no
producer can explode the number of series.

>>> from prometheus_client import CollectorRegistry
>>> reg = CollectorRegistry()
>>> m = Metrics(reg)
>>> m.events_invalid.labels(reason="not_json").inc()
>>> reg.get_sample_value("driftwire_events_invalid_total", {"reason": "not_json"})
1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from driftwire.detect.detector import Evaluation

from driftwire import __version__
from driftwire.alerts.alert import ALERT_NAMES
from driftwire.detect.samples import ConditionSample, LatencySample, ReferenceSample

OTHER = "__other__"


class LabelCap:
    """Admit at most ``limit`` distinct values of one label; fold the rest into ``__other__``.

    >>> cap = LabelCap(2)
    >>> [cap("a"), cap("b"), cap("c"), cap("a")]
    ['a', 'b', '__other__', 'a']
    >>> cap.folded
    1
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self.folded = 0

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self.limit:
            self._seen.add(value)
            return value
        self.folded += 1
        return OTHER

    def forget(self, value: str) -> None:
        """Free the slot of a retired value (a removed model version)."""
        self._seen.discard(value)


class Metrics:
    """The metrics of one driftwire process."""

    def __init__(self, registry: CollectorRegistry, *, max_models: int = 100) -> None:
        self.registry = registry
        self.model_label = LabelCap(max_models)
        Info("driftwire_build", "driftwire build information", registry=registry).info(
            {"version": __version__}
        )
        # profile stage
        self.events_consumed = Counter(
            "driftwire_events_consumed_total",
            "Inference events read from the input topic",
            ["topic"],
            registry=registry,
        )
        self.events_invalid = Counter(
            "driftwire_events_invalid_total",
            "Inference events rejected and sent to the dead-letter topic, by reason",
            ["reason"],
            registry=registry,
        )
        self.events_late = Counter(
            "driftwire_events_late_total",
            "Events whose bucket had already closed (beyond the allowed lateness), by model",
            ["model"],
            registry=registry,
        )
        self.events_future = Counter(
            "driftwire_events_future_total",
            "Events stamped too far ahead of the wall clock (producer clock error), by model",
            ["model"],
            registry=registry,
        )
        self.overflow = Counter(
            "driftwire_cardinality_overflow_total",
            "Values folded into an overflow bucket by a cardinality cap, by what was capped",
            ["what"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "driftwire_dead_letters_produced_total",
            "Records produced to the dead-letter topic and acknowledged by the broker",
            registry=registry,
        )
        self.dead_letters_truncated = Counter(
            "driftwire_dead_letters_truncated_total",
            "Dead letters whose value was cut to fit in one Kafka record (headers say so)",
            registry=registry,
        )
        self.partials = Counter(
            "driftwire_partials_produced_total",
            "Bucket partials produced to the partials topic and acknowledged",
            registry=registry,
        )
        self.batch_duration = Histogram(
            "driftwire_batch_duration_seconds",
            "Time to decode, profile and dispatch one fetched batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.commits = Counter(
            "driftwire_offset_commits_total",
            "Offset commits of the profile stage, by result",
            ["result"],
            registry=registry,
        )
        self.rebalances = Counter(
            "driftwire_rebalances_total",
            "Consumer-group rebalances seen, by phase",
            ["phase"],
            registry=registry,
        )
        self.assigned_partitions = Gauge(
            "driftwire_assigned_partitions",
            "Input partitions currently assigned to this worker",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "driftwire_consumer_lag",
            "Records between the committed position and the end of each input partition",
            ["consumergroup", "topic", "partition"],
            registry=registry,
        )
        self.last_progress = Gauge(
            "driftwire_last_progress_timestamp_seconds",
            "Unix time of the last batch the profile stage finished",
            registry=registry,
        )


class DriftScoreCollector:
    """Exports the latest drift score, threshold and 0/1 state of every condition.

    Values computed per window are read from the detectors at scrape time instead of being
    kept as thousands of live gauge children (client_python's custom-collector pattern).
    ``conditions`` returns ``(labels, value, warning, critical, firing severity or None)`` of
    every condition; the drift gauges show the drift kinds, ``driftwire_alerts_firing`` counts
    every kind. ``latency`` (optional) returns ``(labels, {"p99": ms, ...})`` per (model,
    version, segment), exported in seconds as ``driftwire_latency_seconds{percentile="p99"}``
    (not ``quantile``: Prometheus reserves that label for summaries).
    Label values come from the profiler, whose caps bound segments and features.
    """

    def __init__(
        self,
        conditions: Callable[[], Iterable[ConditionSample]],
        latency: Callable[[], Iterable[LatencySample]] | None = None,
        references: Callable[[], Iterable[ReferenceSample]] | None = None,
    ) -> None:
        self._conditions = conditions
        self._latency = latency
        self._references = references

    def collect(self) -> Iterator[Metric]:
        names = ["model", "model_version", "segment", "feature", "statistic"]
        score = GaugeMetricFamily(
            "driftwire_drift_score",
            "Latest drift statistic of each feature and segment",
            labels=names,
        )
        threshold = GaugeMetricFamily(
            "driftwire_drift_threshold",
            "Threshold the latest drift statistic was held against, by severity",
            labels=[*names, "severity"],
        )
        detected = GaugeMetricFamily(
            "driftwire_drift_detected",
            "1 while a drift alert of the condition is firing",
            labels=names,
        )
        firing_by: dict[tuple[str, str], int] = {}
        for labels, value, warning, critical, severity in self._conditions():
            if severity:
                group = (labels.get("kind", ""), severity)
                firing_by[group] = firing_by.get(group, 0) + 1
            if labels.get("kind") not in DRIFT_KINDS:
                continue
            key = [labels.get(n, "") for n in names]
            if value is not None:
                score.add_metric(key, value)
            threshold.add_metric([*key, "warning"], warning)
            threshold.add_metric([*key, "critical"], critical)
            detected.add_metric(key, 1.0 if severity else 0.0)
        alerts = GaugeMetricFamily(
            "driftwire_alerts_firing",
            "Alerts firing now, by kind and severity",
            labels=["kind", "severity"],
        )
        for kind in ALERT_NAMES:
            for severity in ("warning", "critical"):
                alerts.add_metric([kind, severity], firing_by.get((kind, severity), 0))
        yield score
        yield threshold
        yield detected
        yield alerts
        if self._latency is not None:
            latency = GaugeMetricFamily(
                "driftwire_latency_seconds",
                "Latency percentiles of the latest window, by model version and segment",
                labels=["model", "model_version", "segment", "percentile"],
            )
            for labels, quantiles in self._latency():
                key = [labels.get(n, "") for n in ("model", "model_version", "segment")]
                for name, ms in quantiles.items():
                    latency.add_metric([*key, name], ms / 1000.0)  # name: "p50", "p99"
            yield latency
        if self._references is not None:
            yield from self._reference_metrics(self._references)

    @staticmethod
    def _reference_metrics(samples: Callable[[], Iterable[ReferenceSample]]) -> Iterator[Metric]:
        names = ["model", "model_version", "segment"]
        events = GaugeMetricFamily(
            "driftwire_reference_events",
            "Events of the reference profile each evaluated segment is compared with",
            labels=names,
        )
        small = GaugeMetricFamily(
            "driftwire_reference_too_small",
            "1 while a segment's reference has fewer events than detect.min_reference_count "
            "(its drift and data-quality checks report insufficient data)",
            labels=names,
        )
        for labels, n, too_small in samples():
            key = [labels.get(name, "") for name in names]
            events.add_metric(key, n)
            small.add_metric(key, 1.0 if too_small else 0.0)
        yield events
        yield small

    def describe(self) -> Iterator[Metric]:
        return iter(())


DRIFT_KINDS = frozenset({"data_drift", "prediction_drift"})


class DetectMetrics:
    """Metrics of the detect stage: records, alerts, baselines, state, evaluations."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter(
            "driftwire_detect_records_total",
            "Partials-topic records read by the detect stage, by type (partial, watermark, "
            "malformed, failed)",
            ["type"],
            registry=registry,
        )
        self.alerts = Counter(
            "driftwire_alerts_produced_total",
            "Alert events produced to the alerts topic and acknowledged, by kind and status",
            ["kind", "status"],
            registry=registry,
        )
        self.alerts_failed = Counter(
            "driftwire_alerts_failed_total",
            "Alert events the broker did not acknowledge (the stage stops after one)",
            registry=registry,
        )
        self.late_partials = Counter(
            "driftwire_detect_late_partials_total",
            "Partials that arrived for a bucket already evaluated and were not merged",
            registry=registry,
        )
        self.alerts_pending = Gauge(
            "driftwire_alerts_pending",
            "Alert events kept in the state table until the broker acknowledges them, by "
            "partials partition",
            ["partition"],
            registry=registry,
        )
        self.baselines = Counter(
            "driftwire_baselines_total",
            "Records read from the baselines topic, by result (loaded, removed, invalid)",
            ["result"],
            registry=registry,
        )
        self.baselines_loaded = Gauge(
            "driftwire_baselines_loaded", "Baselines currently held", registry=registry
        )
        self.snapshots = Counter(
            "driftwire_detect_snapshots_total",
            "Detector snapshots written to the state table, by result (written, too_large)",
            ["result"],
            registry=registry,
        )
        self.snapshot_bytes = Histogram(
            "driftwire_detect_snapshot_bytes",
            "Size of one model's detector snapshot in the state changelog",
            buckets=(1e3, 1e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6, 5e6, 1e7),
            registry=registry,
        )
        self.restores = Counter(
            "driftwire_detect_restores_total",
            "Model states restored from the state table, by result (ok, invalid)",
            ["result"],
            registry=registry,
        )
        self.rebalances = Counter(
            "driftwire_detect_rebalances_total",
            "Rebalances of the detect stage, by phase (revoked, recovered)",
            ["phase"],
            registry=registry,
        )
        self.owned_partitions = Gauge(
            "driftwire_detect_assigned_partitions",
            "Partials partitions (and so models) this worker's detect stage owns",
            registry=registry,
        )
        self.windows = Counter(
            "driftwire_windows_evaluated_total",
            "Window comparisons (feature x segment x statistic), by result (ok, insufficient_data)",
            ["result"],
            registry=registry,
        )
        self.last_progress = Gauge(
            "driftwire_detect_last_progress_timestamp_seconds",
            "Unix time of the last partials record or tick the detect stage finished",
            registry=registry,
        )

    def evaluated(self, evaluation: Evaluation) -> None:
        """Count one bucket's comparisons (the detector's ``on_evaluation`` hook)."""
        insufficient = evaluation.insufficient
        self.windows.labels(result="ok").inc(len(evaluation.results) - insufficient)
        self.windows.labels(result="insufficient_data").inc(insufficient)


BRIDGE_STATUSES = ("firing", "resolved")
BRIDGE_RESULTS = ("delivered", "rejected", "undeliverable")
BRIDGE_SKIPS = ("duplicate", "routed_out")
BRIDGE_DEAD_LETTER_REASONS = ("rejected", "undeliverable", "invalid_alert")
BRIDGE_CODES = ("2xx", "3xx", "4xx", "5xx", "error")


class BridgeMetrics:
    """Metrics of ``driftwire bridge TARGET``: does every alert reach its receiver?

    Every series carries ``target`` (one of four), so bridges of several targets can be summed
    in one Prometheus. The children of every bounded label combination are created at start
    (at 0), so ``rate()`` and ``increase()`` see a failure or a delivery from the first one.

    >>> from prometheus_client import CollectorRegistry
    >>> reg = CollectorRegistry()
    >>> m = BridgeMetrics(reg, "webhook")
    >>> m.deliveries.labels("webhook", "firing", "delivered").inc()
    >>> reg.get_sample_value(
    ...     "driftwire_bridge_deliveries_total",
    ...     {"target": "webhook", "status": "firing", "result": "delivered"})
    1.0
    >>> reg.get_sample_value(
    ...     "driftwire_bridge_deliveries_total",
    ...     {"target": "webhook", "status": "resolved", "result": "undeliverable"})
    0.0
    """

    def __init__(self, registry: CollectorRegistry, target: str) -> None:
        self.registry = registry
        self.target = target
        Info("driftwire_build", "driftwire build information", registry=registry).info(
            {"version": __version__}
        )
        self.deliveries = Counter(
            "driftwire_bridge_deliveries_total",
            "Alert emissions the bridge tried to deliver, by status and result (delivered; "
            "rejected: a 4xx, not retried; undeliverable: still failing after the retries)",
            ["target", "status", "result"],
            registry=registry,
        )
        self.skipped = Counter(
            "driftwire_bridge_skipped_total",
            "Alert records not sent, by reason (duplicate: that status was already delivered "
            "for the fingerprint; routed_out: bridges.routes excludes it)",
            ["target", "reason"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "driftwire_bridge_dead_letters_total",
            "Records produced to the bridge's dead-letter topic and acknowledged, by reason",
            ["target", "reason"],
            registry=registry,
        )
        self.requests = Counter(
            "driftwire_bridge_requests_total",
            "HTTP requests to the receiver (every attempt, re-sends included), by status class "
            "(2xx, 3xx, 4xx, 5xx; error: timeout or connection failure)",
            ["target", "code"],
            registry=registry,
        )
        self.retries = Counter(
            "driftwire_bridge_retries_total",
            "HTTP attempts that repeated a failed one (5xx, 408, 429, timeouts, refused)",
            ["target"],
            registry=registry,
        )
        self.resends = Counter(
            "driftwire_bridge_resends_total",
            "Periodic re-sends of the firing alerts (Alertmanager), by result (ok, failed)",
            ["target", "result"],
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "driftwire_bridge_delivery_seconds",
            "Time to deliver one alert emission, from the first attempt to the outcome "
            "(retries and backoff included), whatever the outcome",
            ["target"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=registry,
        )
        self.alert_age = Histogram(
            "driftwire_bridge_alert_age_seconds",
            "Age of an alert when the receiver accepted it: from its evaluation (the "
            "CloudEvent time) to the delivery, the whole way from detector to on-call",
            ["target"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
            registry=registry,
        )
        self.last_delivery = Gauge(
            "driftwire_bridge_last_delivery_timestamp_seconds",
            "Unix time of the last alert emission the receiver accepted",
            ["target"],
            registry=registry,
        )
        self.last_progress = Gauge(
            "driftwire_bridge_last_progress_timestamp_seconds",
            "Unix time the bridge's consume loop last made progress (a poll, a record, an "
            "HTTP attempt)",
            ["target"],
            registry=registry,
        )
        self.assigned_partitions = Gauge(
            "driftwire_bridge_assigned_partitions",
            "Alerts-topic partitions assigned to this bridge",
            ["target"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "driftwire_bridge_consumer_lag",
            "Records of the alerts topic between the bridge's last handled (committed) offset "
            "and the end of each assigned partition",
            ["target", "partition"],
            registry=registry,
        )
        for status in BRIDGE_STATUSES:
            for result in BRIDGE_RESULTS:
                self.deliveries.labels(target, status, result)
        for reason in BRIDGE_SKIPS:
            self.skipped.labels(target, reason)
        for reason in BRIDGE_DEAD_LETTER_REASONS:
            self.dead_letters.labels(target, reason)
        for code in BRIDGE_CODES:
            self.requests.labels(target, code)
        for result in ("ok", "failed"):
            self.resends.labels(target, result)
        self.retries.labels(target)
        self.delivery_seconds.labels(target)
        self.alert_age.labels(target)
        self.assigned_partitions.labels(target)

    def request(self, attempt: int, status: int | None) -> None:
        """Count one HTTP attempt (``status`` None: timeout or connection error)."""
        code = "error" if status is None else f"{min(max(status // 100, 2), 5)}xx"
        self.requests.labels(self.target, code).inc()
        if attempt > 1:
            self.retries.labels(self.target).inc()
