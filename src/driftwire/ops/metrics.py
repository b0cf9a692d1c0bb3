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

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from driftwire.detect.detector import Evaluation

from driftwire import __version__
from driftwire.alerts.alert import ALERT_NAMES
from driftwire.detect.samples import ConditionSample, LatencySample, ReferenceSample
from driftwire.ops.logs import LogLimiter
from driftwire.partials import REJECT_REASONS as INVALID_PARTIAL_REASONS

OTHER = "__other__"
ALERT_STATUSES = ("firing", "resolved")


def _start_at_zero(counter: Counter, label: str, values: Iterable[str]) -> None:
    """Create the series of every known label value, so each exists at 0 from the start
    (``rate()`` and ``increase()`` then see the first increment)."""
    for value in values:
        counter.labels(**{label: value})


log = logging.getLogger(__name__)


class LabelCap:
    """Admit at most ``limit`` distinct values of one label; fold the rest into ``__other__``.

    Least recently seen first: a new value that finds the cap full takes the place of the value
    seen longest ago, if that one was last seen more than ``keep_s`` seconds before (``now``,
    from a monotonic clock); ``on_evict`` callbacks then remove its series. So a value that
    stopped arriving gives way to today's, and a flood cannot push out values still in use.

    >>> cap = LabelCap(2, keep_s=60)
    >>> [cap("a", now=0), cap("b", now=0), cap("c", now=0), cap("a", now=0)]
    ['a', 'b', '__other__', 'a']
    >>> cap.folded
    1
    >>> cap("c", now=100), cap.evicted   # b was seen longest ago
    ('c', 1)
    """

    def __init__(self, limit: int, *, keep_s: float = 600.0) -> None:
        self.limit = limit
        self.keep_s = keep_s
        self._seen: dict[str, float] = {}  # value -> last seen, oldest first
        self.folded = 0
        self.evicted = 0
        self.on_evict: list[Callable[[str], None]] = []

    def __call__(self, value: str, *, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        seen = self._seen
        if value in seen:
            del seen[value]
            seen[value] = now
            return value
        if len(seen) >= self.limit:
            oldest, last = next(iter(seen.items()))
            if now - last <= self.keep_s:
                self.folded += 1
                return OTHER
            del seen[oldest]
            self.evicted += 1
            for evict in self.on_evict:
                evict(oldest)
        seen[value] = now
        return value

    def forget(self, value: str) -> None:
        """Free the slot of a retired value (a removed model version)."""
        self._seen.pop(value, None)


class Metrics:
    """The metrics of one driftwire process."""

    def __init__(self, registry: CollectorRegistry, *, max_models: int = 100) -> None:
        self.registry = registry
        self.model_label = LabelCap(max_models)
        #: called on the event loop before each scrape, which is rendered in a thread
        #: (:class:`DriftScoreCollector.snapshot`, see :class:`driftwire.ops.health.HealthServer`)
        self.before_scrape: list[Callable[[], None]] = []
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
        self.evictions = Counter(
            "driftwire_cardinality_evictions_total",
            "Names (models, versions, segments, features) a cardinality cap pushed out, least "
            "recently seen first, to make room for new ones, by what was capped",
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
        _start_at_zero(self.commits, "result", ("ok", "failed"))
        _start_at_zero(self.rebalances, "phase", ("assigned", "revoked"))
        for counter in (self.events_late, self.events_future):
            self.model_label.on_evict.append(_remover(counter))


def _remover(counter: Counter) -> Callable[[str], None]:
    """Removes the series of a model label value a :class:`LabelCap` pushed out."""

    def remove(model: str) -> None:
        with contextlib.suppress(KeyError):
            counter.remove(model)

    return remove


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

    The drift gauges export at most ``max_per_version`` conditions of one model version and
    ``max_total`` in all (firing ones first, then the highest values);
    ``driftwire_drift_conditions_omitted`` says how many were left out at the last scrape.

    :meth:`snapshot` copies what the sources say now, and the next :meth:`collect` reads that
    copy: the HTTP shell takes the snapshot on the event loop that owns the detectors and
    renders the page in a thread, so a big scrape does not stall the stages.
    """

    def __init__(
        self,
        conditions: Callable[[], Iterable[ConditionSample]],
        latency: Callable[[], Iterable[LatencySample]] | None = None,
        references: Callable[[], Iterable[ReferenceSample]] | None = None,
        *,
        max_per_version: int = 500,
        max_total: int = 20_000,
    ) -> None:
        self._conditions = conditions
        self._latency = latency
        self._references = references
        self.max_per_version = max_per_version
        self.max_total = max_total
        self.limiter = LogLimiter(600.0)  # omissions are logged once per 10 minutes
        self._snapshot: (
            tuple[list[ConditionSample], list[LatencySample], list[ReferenceSample]] | None
        ) = None

    def snapshot(self) -> None:
        """Copy the sources now; the next :meth:`collect` reads the copy."""
        self._snapshot = (
            list(self._conditions()),
            [] if self._latency is None else list(self._latency()),
            [] if self._references is None else list(self._references()),
        )

    def _exported(self, conditions: Iterable[ConditionSample]) -> tuple[list[ConditionSample], int]:
        """The drift conditions within the caps, firing and highest first; how many were not."""
        per_version: dict[tuple[str, str], list[ConditionSample]] = {}
        for sample in conditions:
            labels = sample[0]
            if labels.get("kind") in DRIFT_KINDS:
                version = (labels.get("model", ""), labels.get("model_version", ""))
                per_version.setdefault(version, []).append(sample)
        kept: list[ConditionSample] = []
        omitted = 0

        def rank(sample: ConditionSample) -> tuple[bool, float]:
            value = sample[1]
            return (sample[4] is None, -(value if value is not None else float("-inf")))

        for samples in per_version.values():
            if len(samples) > self.max_per_version:
                samples.sort(key=rank)
                omitted += len(samples) - self.max_per_version
                samples = samples[: self.max_per_version]
            kept += samples
        if len(kept) > self.max_total:
            kept.sort(key=rank)
            omitted += len(kept) - self.max_total
            kept = kept[: self.max_total]
        if omitted and self.limiter("drift_conditions", now_s=time.monotonic()):
            log.warning(
                f"{omitted} drift conditions left out of the drift gauges: raise "
                "http.max_drift_conditions_per_version / http.max_drift_conditions if "
                "Prometheus can take the series (alerts are not affected)",
                extra={"fields": {"omitted": omitted}},
            )
        return kept, omitted

    def collect(self) -> Iterator[Metric]:
        if self._snapshot is not None:
            samples, latency_samples, reference_samples = self._snapshot
            self._snapshot = None
        else:
            samples = list(self._conditions())
            latency_samples = [] if self._latency is None else list(self._latency())
            reference_samples = [] if self._references is None else list(self._references())
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
        for labels, _, _, _, severity in samples:
            if severity:
                group = (labels.get("kind", ""), severity)
                firing_by[group] = firing_by.get(group, 0) + 1
        exported, omitted = self._exported(samples)
        for labels, value, warning, critical, severity in exported:
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
        left_out = GaugeMetricFamily(
            "driftwire_drift_conditions_omitted",
            "Drift conditions left out of the drift gauges at this scrape by "
            "http.max_drift_conditions_per_version / http.max_drift_conditions",
        )
        left_out.add_metric([], omitted)
        yield score
        yield threshold
        yield detected
        yield alerts
        yield left_out
        if self._latency is not None:
            latency = GaugeMetricFamily(
                "driftwire_latency_seconds",
                "Latency percentiles of the latest window, by model version and segment",
                labels=["model", "model_version", "segment", "percentile"],
            )
            for labels, quantiles in latency_samples:
                key = [labels.get(n, "") for n in ("model", "model_version", "segment")]
                for name, ms in quantiles.items():
                    latency.add_metric([*key, name], ms / 1000.0)  # name: "p50", "p99"
            yield latency
        if self._references is not None:
            yield from self._reference_metrics(reference_samples)

    @staticmethod
    def _reference_metrics(samples: Iterable[ReferenceSample]) -> Iterator[Metric]:
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
        for labels, n, too_small in samples:
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
        self.invalid_partials = Counter(
            "driftwire_detect_invalid_partials_total",
            "Partials-topic records refused and dead-lettered by the detect stage, by reason "
            "(malformed, schema, id, source, bucket, count, sketch, future_bucket, "
            "future_watermark)",
            ["reason"],
            registry=registry,
        )
        self.evaluation_failures = Counter(
            "driftwire_detect_evaluation_failures_total",
            "Evaluations of one model's bucket (or of model retirement) that raised; the bucket "
            "is skipped and the other models' alerts are sent",
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
        self.baselines_unmatched = Gauge(
            "driftwire_baselines_unmatched",
            "Baselines held whose model sent no events while "
            "detect.unmatched_baseline_buckets buckets were evaluated (a typo in the model "
            "name?); each is logged once",
            registry=registry,
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
        self.commit_stalled = Gauge(
            "driftwire_detect_commit_stalled_partitions",
            "Partials partitions whose committed offset has not moved for 5 minutes while "
            "records past it were read (a restart would replay them all)",
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

        for kind in ALERT_NAMES:  # every kind and status is a series from the start, at 0
            for status in ALERT_STATUSES:
                self.alerts.labels(kind=kind, status=status)
        _start_at_zero(self.records, "type", ("partial", "watermark", "malformed", "failed"))
        _start_at_zero(self.baselines, "result", ("loaded", "removed", "invalid"))
        _start_at_zero(self.invalid_partials, "reason", INVALID_PARTIAL_REASONS)
        _start_at_zero(self.snapshots, "result", ("written", "too_large"))
        _start_at_zero(self.restores, "result", ("ok", "invalid"))
        _start_at_zero(self.rebalances, "phase", ("revoked", "recovered"))
        _start_at_zero(self.windows, "result", ("ok", "insufficient_data"))

    def evaluated(self, evaluation: Evaluation) -> None:
        """Count one bucket's comparisons (the detector's ``on_evaluation`` hook)."""
        insufficient = evaluation.insufficient
        self.windows.labels(result="ok").inc(len(evaluation.results) - insufficient)
        self.windows.labels(result="insufficient_data").inc(insufficient)


RELOAD_RESULTS = ("applied", "restart_needed", "unchanged", "rejected")


class ConfigMetrics:
    """The running config's hash and the reloads (``driftwire.ops.reload``).

    >>> from prometheus_client import CollectorRegistry
    >>> reg = CollectorRegistry()
    >>> m = ConfigMetrics(reg)
    >>> m.running("0123456789ab")
    >>> m.running("ba9876543210", "applied")
    >>> reg.get_sample_value("driftwire_config_info", {"hash": "ba9876543210"})
    1.0
    >>> reg.get_sample_value("driftwire_config_info", {"hash": "0123456789ab"}) is None
    True
    >>> reg.get_sample_value("driftwire_config_reloads_total", {"result": "applied"})
    1.0
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.info = Gauge(
            "driftwire_config_info",
            "1 for the hash of the running settings (changes when a reload applies)",
            ["hash"],
            registry=registry,
        )
        self.reloads = Counter(
            "driftwire_config_reloads_total",
            "Config reloads (SIGHUP or a change of the file), by result (applied; "
            "restart_needed: only keys that need a restart changed; unchanged; rejected: the "
            "file did not load, the running config is kept)",
            ["result"],
            registry=registry,
        )
        for result in RELOAD_RESULTS:
            self.reloads.labels(result=result)
        self._hash: str | None = None

    def running(self, config_hash: str, result: str | None = None) -> None:
        """The running config's hash, after a reload with ``result`` (None: at start)."""
        if config_hash != self._hash:
            if self._hash is not None:
                self.info.remove(self._hash)
            self.info.labels(hash=config_hash).set(1)
            self._hash = config_hash
        if result is not None:
            self.reloads.labels(result=result).inc()


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
