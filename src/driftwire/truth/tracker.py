"""The ground-truth pipeline in one pure object: join, per-bucket performance, judgement, alerts.

:class:`TruthTracker` takes predictions and labels in arrival order and, each time its clock
(:attr:`TruthTracker.clock_ms`: the slower of the two inputs' event times) passes a bucket
boundary, judges the window of predictions that ended ``evaluation_delay_ms`` before it (give
slow labels that long to arrive) for every (model, version, segment) with predictions in it.
The reference of each is the realized performance stored in its baseline
(:meth:`TruthTracker.use_baseline`, from ``driftwire baseline build --target-column``) when
there is one: the segment's, else the baseline's ``all``. Without one it is frozen from its
first ``reference_count`` joined predictions (all windows from its first prediction to the
first window end where that many have joined), and judging starts with the next window.

Windows stay open for labels until the horizon: with :attr:`TrackerSettings.rejudge_ms`, each
window is judged again at those ages after its end and at the horizon, on every label joined
by then (:attr:`TruthTracker.judged`: the latest judgement per age, for gauges), and the
findings of every age go through one :class:`~driftwire.truth.staged_policy.StagedPolicy`:
a later judgement fires what the first could not see, never a window already alerted on.
Without a baseline, each age freezes its own reference from the first windows as it sees them.

Binary classifiers with scores also get *estimated* performance: at every bucket boundary the
window that just closed (no evaluation delay: its labels have mostly not arrived) is read
through the score calibration fitted on the reference's scores and outcomes
(:mod:`driftwire.truth.estimate`), for gauges (:attr:`TruthTracker.estimated`) and the
``estimated_performance`` alert. When that window is judged on its realized labels, the
estimate made at its close is put beside the realized value (:attr:`Judged.estimate_error`).

Findings go through the policy (two consecutive breaching windows of one age to fire, the
rules of :class:`~driftwire.alerts.policy.AlertPolicy`) and come back as
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

import math
from dataclasses import dataclass, field
from typing import Any

from driftwire.alerts.alert import Alert, iso
from driftwire.alerts.finding import Finding
from driftwire.truth.compare import PerformanceRule, classification_checks, regression_checks
from driftwire.truth.estimate import EstimatedPerformance, ScoreCalibration, estimate_binary
from driftwire.truth.findings import estimate_finding, performance_finding
from driftwire.truth.join import Prediction, TruthJoin
from driftwire.truth.label import GroundTruth
from driftwire.truth.reference import ReferencePerformance
from driftwire.truth.staged_policy import StagedPolicy, age_label
from driftwire.truth.windows import PerformanceBuckets, WindowPerformance

__all__ = ["ESTIMATED_METRICS", "Estimated", "Judged", "TrackerSettings", "TruthTracker"]

#: The metrics estimated before labels (binary classifiers with scores).
ESTIMATED_METRICS = ("accuracy", "precision", "recall", "f1", "auc")

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
    #: later ages (after the window's end) at which a window is judged again, on every label
    #: joined by then; ages at or below ``evaluation_delay_ms`` or past ``horizon_ms`` are left
    #: out, and a non-empty tuple adds the horizon (all labels in) as the last judgement
    rejudge_ms: tuple[int, ...] = ()

    @property
    def judge_ages_ms(self) -> tuple[int, ...]:
        """Every age a window is judged at, the first (``evaluation_delay_ms``) first.

        >>> s = TrackerSettings(1, 10, 100, evaluation_delay_ms=5, rejudge_ms=(3, 50, 400))
        >>> s.judge_ages_ms
        (5, 50, 100)
        """
        later = {a for a in self.rejudge_ms if self.evaluation_delay_ms < a < self.horizon_ms}
        if self.rejudge_ms and self.horizon_ms > self.evaluation_delay_ms:
            later.add(self.horizon_ms)
        return (self.evaluation_delay_ms, *sorted(later))


@dataclass(frozen=True)
class Judged:
    """The latest judgement of one (model, version, segment): metric values for gauges."""

    window_end_ms: int
    completeness: float
    joined: int
    #: metric -> (value, low, high); the bounds are None for a metric without an interval
    #: (F1, calibration error, MAPE)
    metrics: dict[str, tuple[float, float | None, float | None]]
    #: estimate made when the window closed minus the realized value now, per metric of
    #: :data:`ESTIMATED_METRICS` both have (empty when the window was not estimated)
    estimate_error: dict[str, float] = field(default_factory=dict)
    #: share of each actual class among the window's labelled predictions (classifiers)
    actual_shares: dict[str, float] = field(default_factory=dict)
    #: how long after the window's end it was judged (one of ``judge_ages_ms``)
    age_ms: int = 0


@dataclass(frozen=True)
class Estimated:
    """The latest estimate of one (model, version, segment): the window that just closed."""

    window_end_ms: int
    predictions: int
    metrics: dict[str, float]  # metric of ESTIMATED_METRICS -> expected value
    outside_reference_share: float


@dataclass(frozen=True)
class _Baseline:
    id: str
    performance: ReferencePerformance


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
        self.policy = StagedPolicy(consecutive=consecutive, resolve_windows=2, resolve_ratio=0.6)
        self.references: dict[Key, WindowPerformance] = {}
        #: the first judgement of the newest window judged, per (model, version, segment)
        self.latest: dict[Key, Judged] = {}
        #: the latest judgement at each age (:attr:`TrackerSettings.judge_ages_ms`): the
        #: window that ended that long ago, on the labels joined so far
        self.judged: dict[Key, dict[int, Judged]] = {}
        #: the frozen references of the later judgement ages (without a baseline)
        self._aged_references: dict[tuple[Key, int], WindowPerformance] = {}
        self.estimated: dict[Key, Estimated] = {}
        self._baselines: dict[tuple[str, str], _Baseline] = {}
        self._calibrations: dict[Key, ScoreCalibration | None] = {}
        self._estimates: dict[Key, dict[int, EstimatedPerformance]] = {}
        self._keys: set[Key] = set()
        self._next_tick: int | None = None
        #: the earliest prediction time read before the first judgement (the first tick's anchor)
        self._earliest_prediction: int | None = None
        self._prediction_clock = self._label_clock = _BEGINNING
        #: set by a shell that reads several partitions: the clock never passes it (the event
        #: time every lagging input partition has reached); None: no limit
        self.limit_ms: int | None = None

    def use_baseline(
        self, model: str, version: str, baseline_id: str, performance: ReferencePerformance
    ) -> None:
        """Judge ``model``/``version`` against the realized performance of its baseline (and
        fit its score calibration there) from now on, instead of a frozen reference."""
        self._baselines[(model, version)] = _Baseline(baseline_id, performance)
        for key in [k for k in self._calibrations if k[:2] == (model, version)]:
            del self._calibrations[key]

    def remove_baseline(self, model: str, version: str) -> None:
        """Forget the baseline of ``model``/``version`` (a withdrawn one)."""
        if self._baselines.pop((model, version), None) is not None:
            for key in [k for k in self._calibrations if k[:2] == (model, version)]:
                del self._calibrations[key]

    def add_prediction(self, prediction: Prediction) -> list[Alert]:
        """One decoded prediction (with an event id); returns the alerts now due."""
        before = self.join.counts.not_sampled_predictions
        pair = self.join.add_prediction(prediction)
        if self.join.counts.not_sampled_predictions == before:
            key = (prediction.model, prediction.model_version, prediction.segment)
            self.buckets.seen(prediction, keep_score=self._estimable(key))
            self._keys.add(key)
        if pair is not None:
            self.buckets.joined(pair)
        self._prediction_clock = max(self._prediction_clock, prediction.timestamp_ms)
        if self._next_tick is None:
            earliest = self._earliest_prediction
            t = prediction.timestamp_ms
            self._earliest_prediction = t if earliest is None else min(earliest, t)
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
        clock = self.clock_ms
        if self._next_tick is None:
            if self._earliest_prediction is None:
                return []
            # the first tick is the boundary after the earliest prediction read by the time the
            # clock gets there, not after the first one read: a shell reading several
            # partitions may read a later stretch of the stream first (its limit holds the
            # clock until the others are read), and the windows before it are not skipped
            first = self._earliest_prediction
            start = first - first % bucket + bucket
            if clock < start:
                return []
            self._next_tick = start
            self._earliest_prediction = None
        alerts: list[Alert] = []
        while clock >= self._next_tick:
            alerts += self._judge(self._next_tick)
            self._next_tick += bucket
        return alerts

    def _judge(self, tick: int) -> list[Alert]:
        s = self.settings
        ages = s.judge_ages_ms
        alerts: list[Alert] = []
        for key in sorted(self._keys):
            alerts += self._estimate(key, tick)
            for age in ages:
                alerts += self._judge_window(key, tick, age)
        oldest = tick - ages[-1]
        for estimates in self._estimates.values():
            for old in [e for e in estimates if e < oldest]:
                del estimates[old]
        self.buckets.drop_scores_before(tick - s.window_ms)
        end = tick - s.evaluation_delay_ms
        self.buckets.drop_before(
            min(end - s.window_ms - s.horizon_ms - s.evaluation_delay_ms, oldest - s.window_ms)
        )
        return alerts

    def _judge_window(self, key: Key, tick: int, age: int) -> list[Alert]:
        """Judge the window of ``key`` that ended ``age`` before ``tick``, on the labels
        joined so far."""
        s = self.settings
        end = tick - age
        start = end - s.window_ms
        first = age == s.evaluation_delay_ms
        window = self.buckets.window(*key, start, end)
        if window.predictions == 0:
            return []
        reference = self._reference(key, age)
        if reference is None:
            so_far = self.buckets.window(*key, _BEGINNING, end)
            if so_far.joined >= s.reference_count:
                # frozen: the first labelled predictions, as this age sees them (a later age
                # is held against the same windows with as many of their labels in, so labels
                # that come late for one class do not read as a change)
                if first:
                    self.references[key] = so_far
                else:
                    self._aged_references[(key, age)] = so_far
            return []
        alerts: list[Alert] = []
        for finding in self._findings(key, window, reference, age):
            alerts += self._emit(finding, key, start, end, tick, age)
        judged = _judged(end, window, self._estimates.get(key, {}).get(end), age)
        self.judged.setdefault(key, {})[age] = judged
        if first:
            self.latest[key] = judged
        return alerts

    def _reference(self, key: Key, age: int | None = None) -> WindowPerformance | None:
        """The baseline's realized performance of the segment (else its ``all``), else the
        one frozen at the judgement age (None: the first)."""
        baseline = self._baselines.get(key[:2])
        if baseline is not None:
            return baseline.performance.segment(key[2])
        if age is None or age == self.settings.evaluation_delay_ms:
            return self.references.get(key)
        return self._aged_references.get((key, age))

    def _calibration(self, key: Key) -> ScoreCalibration | None:
        """The score calibration fitted on the reference (None: not a binary classifier with
        scores, or no reference yet)."""
        if key in self._calibrations:
            return self._calibrations[key]
        reference = self._reference(key)
        if reference is None:
            return None
        c = reference.classification
        calibration = None
        if c is not None and c.positive is not None:
            positives, negatives = c.score_histograms()
            if positives.sum() and negatives.sum():
                calibration = ScoreCalibration.fit(positives, negatives)
        self._calibrations[key] = calibration
        return calibration

    def _reference_estimate(self, key: Key, calibration: ScoreCalibration) -> float:
        """The reference's accuracy as the estimate reads it (its own scores through its own
        calibration): an estimate is held against an estimate, so the calibration's
        coarseness does not count as a drop."""
        reference = self._reference(key)
        assert reference is not None and reference.classification is not None
        positives, negatives = reference.classification.score_histograms()
        return estimate_binary(
            positives + negatives, calibration, threshold=self.settings.threshold
        ).accuracy

    def _estimable(self, key: Key) -> bool:
        """Keep scores for estimates: a reference that is a scored binary classifier, or none
        yet (it may become one)."""
        return self._reference(key) is None or self._calibration(key) is not None

    def _estimate(self, key: Key, tick: int) -> list[Alert]:
        """Estimate the window that closed at ``tick`` from its scores; the estimate's alert."""
        calibration = self._calibration(key)
        reference = self._reference(key)
        if calibration is None or reference is None or reference.classification is None:
            return []
        s = self.settings
        scores = self.buckets.scores(*key, tick - s.window_ms, tick)
        if not scores.any():
            return []
        estimate = estimate_binary(scores, calibration, threshold=s.threshold)
        self._estimates.setdefault(key, {})[tick] = estimate
        self.estimated[key] = Estimated(
            tick,
            estimate.n,
            {m: getattr(estimate, m) for m in ESTIMATED_METRICS},
            estimate.outside_reference_share,
        )
        model, version, segment = key
        finding = estimate_finding(
            estimate,
            self._reference_estimate(key, calibration),
            model=model,
            model_version=version,
            segment=segment,
            rule=s.rule,
            min_count=s.rule.min_count,
        )
        return self._emit(finding, key, tick - s.window_ms, tick, tick, None)

    def _findings(
        self, key: Key, window: WindowPerformance, reference: WindowPerformance, age: int
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
                age_ms=age,
            )
            for c in checks
        ]

    def _emit(
        self, f: Finding, key: Key, start: int, end: int, tick: int, age: int | None
    ) -> list[Alert]:
        """The alert events of finding ``f`` of the window ``[start, end)`` judged ``age``
        after its end (None: the estimate at its close)."""
        policy_key = "/".join((*key, f.labels["kind"], f.labels["statistic"]))
        alerts = []
        at = 0 if age is None else age
        for t in self.policy.observe(policy_key, at, end, f.value, f.thresholds, now_ms=tick):
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
                    reference=self._describe_reference(key, age),
                    evidence=f.evidence,
                )
            )
        return alerts

    def _describe_reference(self, key: Key, age: int | None) -> dict[str, Any]:
        baseline = self._baselines.get(key[:2])
        if baseline is not None:
            p = baseline.performance
            segment = key[2] if key[2] in p.segments else "all"
            return {
                "kind": "baseline",
                "id": baseline.id,
                "count": p.segments[segment].joined,
                "note": f"the baseline's realized performance on segment {segment}",
            }
        frozen = self._reference(key, age)
        model, version, segment = key
        return {
            "kind": "frozen_window",
            "id": f"frozen:{model}/{version}/{segment}",
            "count": 0 if frozen is None else frozen.joined,
            "note": "no baseline with reference performance: the first labelled predictions"
            + ("" if age is None else f", as judged {age_label(age)} after their windows"),
        }


def _judged(
    end: int, window: WindowPerformance, made: EstimatedPerformance | None, age: int
) -> Judged:
    metrics: dict[str, tuple[float, float | None, float | None]] = {}
    if window.classification is not None:
        m = window.classification.metrics()
        estimates: dict[str, Any] = {"accuracy": m.accuracy, "auc": m.auc, "log_loss": m.log_loss}
        positive = window.classification.positive
        if positive is not None and positive in m.per_class:  # a binary classifier's class
            estimates |= {
                "precision": m.per_class[positive].precision,
                "recall": m.per_class[positive].recall,
            }
            metrics["f1"] = (m.per_class[positive].f1, None, None)
        for name, e in estimates.items():
            if e is not None:
                metrics[name] = (e.value, e.low, e.high)
        if m.calibration_error is not None:
            metrics["calibration_error"] = (m.calibration_error, None, None)
    if window.regression is not None:
        r = window.regression.metrics()
        for name, e in (("mae", r.mae), ("rmse", r.rmse), ("bias", r.bias)):
            metrics[name] = (e.value, e.low, e.high)
        if r.mape is not None:
            metrics["mape"] = (r.mape, None, None)
    errors: dict[str, float] = {}
    if made is not None and window.classification is not None:
        m = window.classification.metrics()
        positive = window.classification.positive
        realized: dict[str, float | None] = {
            "accuracy": m.accuracy.value,
            "auc": None if m.auc is None else m.auc.value,
        }
        if positive is not None and positive in m.per_class:
            per = m.per_class[positive]
            realized |= {"precision": per.precision.value, "recall": per.recall.value, "f1": per.f1}
        for name, value in realized.items():
            expected = getattr(made, name)
            if value is not None and math.isfinite(value) and math.isfinite(expected):
                errors[name] = expected - value
    shares = {} if window.classification is None else window.classification.metrics().actual_shares
    return Judged(end, window.completeness, window.joined, metrics, errors, shares, age)
