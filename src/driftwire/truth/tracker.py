"""The ground-truth pipeline in one pure object: join, per-bucket performance, judgement, alerts.

:class:`TruthTracker` takes predictions and labels in arrival order and, each time its clock
(:attr:`TruthTracker.clock_ms`: the slower of the two inputs' event times) passes a bucket
boundary, judges the window of predictions that ended ``evaluation_delay_ms`` before it (give
slow labels that long to arrive) for every (model, version, segment) with predictions in it.
The reference of each is frozen from its first ``reference_count`` joined predictions (all
windows from its first prediction to the first window end where that many have joined; the
baseline's realized performance takes its place once baselines carry it), and judging starts
with the next window. Findings go through an :class:`~driftwire.alerts.policy.AlertPolicy`
(two consecutive breaching windows to fire) and come back as
:class:`~driftwire.alerts.alert.Alert` emissions. Everything is a function of the input
order: the same records in the same order give the same alerts, with the same CloudEvents
ids.

>>> from driftwire.truth.join import Prediction
>>> from driftwire.truth.label import GroundTruth
>>> tracker = TruthTracker(TrackerSettings(bucket_ms=1_000, window_ms=10_000, horizon_ms=60_000))
>>> tracker.add_prediction(Prediction("e1", "churn", "1", "all", 500, 0.9, None))
[]
>>> tracker.add_label(GroundTruth("e1", "churn", None, "true", 900, None))
[]
>>> tracker.join.counts.joined, tracker.latest
(1, {})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from driftwire.alerts.alert import Alert, iso
from driftwire.alerts.finding import Finding
from driftwire.alerts.policy import AlertPolicy
from driftwire.truth.compare import PerformanceRule, classification_checks, regression_checks
from driftwire.truth.findings import performance_finding
from driftwire.truth.join import Prediction, TruthJoin
from driftwire.truth.label import GroundTruth
from driftwire.truth.windows import PerformanceBuckets, WindowPerformance

__all__ = ["Judged", "TrackerSettings", "TruthTracker"]

Key = tuple[str, str, str]  # model, model_version, segment
_BEGINNING = -(2**62)


@dataclass(frozen=True)
class TrackerSettings:
    """Bucket and window lengths, the join's horizon and bounds, the rule."""

    bucket_ms: int
    window_ms: int
    horizon_ms: int
    evaluation_delay_ms: int = 0
    sample_fraction: float = 1.0
    max_pending: int = 1_000_000
    threshold: float = 0.5
    reference_count: int = 2_000
    rule: PerformanceRule = field(default_factory=PerformanceRule)


@dataclass(frozen=True)
class Judged:
    """The latest judgement of one (model, version, segment): metric values for gauges."""

    window_end_ms: int
    completeness: float
    joined: int
    metrics: dict[str, tuple[float, float, float]]  # metric -> (value, low, high)


class TruthTracker:
    """Join, performance buckets, frozen references and the alert policy; see the module doc."""

    def __init__(self, settings: TrackerSettings, *, consecutive: int = 2) -> None:
        if settings.window_ms % settings.bucket_ms or settings.window_ms < settings.bucket_ms:
            raise ValueError("window_ms must be a whole number (>= 1) of buckets")
        self.settings = settings
        self.join = TruthJoin(
            horizon_ms=settings.horizon_ms,
            max_pending=settings.max_pending,
            sample_fraction=settings.sample_fraction,
        )
        self.buckets = PerformanceBuckets(
            bucket_ms=settings.bucket_ms, threshold=settings.threshold
        )
        self.policy = AlertPolicy(consecutive=consecutive, resolve_windows=2, resolve_ratio=0.6)
        self.references: dict[Key, WindowPerformance] = {}
        self.latest: dict[Key, Judged] = {}
        self._keys: set[Key] = set()
        self._next_tick: int | None = None
        self._prediction_clock = self._label_clock = _BEGINNING
        #: set by a shell that reads several partitions: the clock never passes it (the event
        #: time every lagging input partition has reached); None: no limit
        self.limit_ms: int | None = None

    def add_prediction(self, prediction: Prediction) -> list[Alert]:
        """One decoded prediction (with an event id); returns the alerts now due."""
        before = self.join.counts.not_sampled_predictions
        pair = self.join.add_prediction(prediction)
        if self.join.counts.not_sampled_predictions == before:
            self.buckets.seen(prediction)
            self._keys.add((prediction.model, prediction.model_version, prediction.segment))
        if pair is not None:
            self.buckets.joined(pair)
        self._prediction_clock = max(self._prediction_clock, prediction.timestamp_ms)
        return self._after()

    def add_label(self, label: GroundTruth) -> list[Alert]:
        """One decoded ground-truth record; returns the alerts now due."""
        pair = self.join.add_label(label)
        if pair is not None:
            self.buckets.joined(pair)
        self._label_clock = max(self._label_clock, label.observed_ms)
        return self._after()

    @property
    def clock_ms(self) -> int:
        """The time windows are judged by: the slower of the two inputs (so a backlog of one
        topic read ahead of the other does not judge windows before their labels are read),
        but never more than the horizon behind the predictions (labels that stop coming do
        not stop the judging), and never past :attr:`limit_ms`."""
        floor = self._prediction_clock - self.settings.horizon_ms
        clock = min(self._prediction_clock, max(self._label_clock, floor))
        return clock if self.limit_ms is None else min(clock, self.limit_ms)

    def tick(self) -> list[Alert]:
        """Judge what the clock now allows (after :attr:`limit_ms` moved)."""
        return self._after()

    def _after(self) -> list[Alert]:
        for prediction in self.join.drain_expired():
            self.buckets.expired(prediction)
        bucket = self.settings.bucket_ms
        if self._next_tick is None:
            if self._prediction_clock == _BEGINNING:
                return []
            # the first tick is the boundary after the first prediction read, whenever the
            # clock gets there: windows are never skipped
            first = self._prediction_clock
            self._next_tick = first - first % bucket + bucket
        clock = self.clock_ms
        alerts: list[Alert] = []
        while clock >= self._next_tick:
            alerts += self._judge(self._next_tick)
            self._next_tick += bucket
        return alerts

    def _judge(self, tick: int) -> list[Alert]:
        s = self.settings
        end = tick - s.evaluation_delay_ms
        start = end - s.window_ms
        alerts: list[Alert] = []
        for key in sorted(self._keys):
            window = self.buckets.window(*key, start, end)
            if window.predictions == 0:
                continue
            reference = self.references.get(key)
            if reference is None:
                so_far = self.buckets.window(*key, _BEGINNING, end)
                if so_far.joined >= s.reference_count:
                    self.references[key] = so_far  # frozen: the first labelled predictions
                continue
            for finding in self._findings(key, window, reference):
                alerts += self._emit(finding, key, start, end, tick)
            self.latest[key] = _judged(end, window)
        self.buckets.drop_before(end - s.window_ms - s.horizon_ms - s.evaluation_delay_ms)
        return alerts

    def _findings(
        self, key: Key, window: WindowPerformance, reference: WindowPerformance
    ) -> list[Finding]:
        rule = self.settings.rule
        checks = []
        if window.classification is not None and reference.classification is not None:
            checks = classification_checks(
                window.classification.metrics(), reference.classification.metrics(), rule
            )
        elif window.regression is not None and reference.regression is not None:
            checks = regression_checks(
                window.regression.metrics(), reference.regression.metrics(), rule
            )
        model, version, segment = key
        return [
            performance_finding(
                c,
                model=model,
                model_version=version,
                segment=segment,
                completeness=window.completeness,
                rule=rule,
            )
            for c in checks
        ]

    def _emit(self, f: Finding, key: Key, start: int, end: int, tick: int) -> list[Alert]:
        policy_key = "/".join((*key, f.labels["kind"], f.labels["statistic"]))
        alerts = []
        for t in self.policy.observe(policy_key, f.value, f.thresholds, now_ms=tick):
            threshold = f.threshold(t.severity)
            alerts.append(
                Alert(
                    labels={**f.labels, "severity": t.severity},
                    status=t.status,
                    summary=f.headline(t.status, threshold),
                    description=f.description,
                    runbook_url="",
                    generator_url="",
                    starts_at_ms=t.starts_at_ms,
                    ends_at_ms=t.ends_at_ms,
                    evaluated_at_ms=tick,
                    value=f.reported,
                    threshold=None,
                    bound=None,
                    window={"start": iso(start), "end": iso(end), "count": f.count},
                    reference={"kind": "frozen", "first_window": True},
                    evidence=f.evidence,
                )
            )
        return alerts


def _judged(end: int, window: WindowPerformance) -> Judged:
    metrics: dict[str, tuple[float, float, float]] = {}
    if window.classification is not None:
        m = window.classification.metrics()
        estimates: dict[str, Any] = {"accuracy": m.accuracy, "auc": m.auc, "log_loss": m.log_loss}
        for name, e in estimates.items():
            if e is not None:
                metrics[name] = (e.value, e.low, e.high)
    if window.regression is not None:
        r = window.regression.metrics()
        for name, e in (("mae", r.mae), ("rmse", r.rmse), ("bias", r.bias)):
            metrics[name] = (e.value, e.low, e.high)
    return Judged(end, window.completeness, window.joined, metrics)
