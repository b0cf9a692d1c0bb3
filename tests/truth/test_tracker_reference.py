"""The tracker with a baseline's reference performance, and estimated performance per window."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from jsonschema import Draft202012Validator, FormatChecker

from driftwire.alerts.alert import Alert
from driftwire.truth.join import Prediction
from driftwire.truth.label import GroundTruth
from driftwire.truth.reference import ReferencePerformance, ReferencePerformanceBuilder
from driftwire.truth.tracker import TrackerSettings, TruthTracker

MINUTE = 60_000
SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "alert.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FormatChecker())
Record = Prediction | GroundTruth


def stream(
    seed: int,
    minutes: int,
    *,
    flip_share: float = 0.0,
    narrow_from: int | None = None,
) -> list[Record]:
    """400 calibrated scored predictions a minute (the outcome is true with the score's
    probability), labels for 80% of them 1-5 minutes later, in arrival order. ``flip_share``
    of the outcomes flip throughout (concept drift from the first minute); from
    ``narrow_from`` the scores crowd around 0.5 (a covariate shift that harms accuracy and
    that the scores show)."""
    rng = np.random.default_rng(seed)
    records: list[tuple[int, int, Record]] = []
    k = 0
    for minute in range(minutes):
        for t in np.sort(rng.integers(minute * MINUTE, (minute + 1) * MINUTE, size=400)).tolist():
            narrow = narrow_from is not None and minute >= narrow_from
            score = float(rng.uniform(0.35, 0.65) if narrow else rng.random())
            actual = bool(rng.random() < score)
            if rng.random() < flip_share:
                actual = not actual
            k += 1
            event_id = f"e{k}"
            records.append((t, 2 * k, Prediction(event_id, "churn", "1", "all", t, score, None)))
            if rng.random() < 0.8:
                observed = t + int(rng.integers(MINUTE, 5 * MINUTE))
                label = GroundTruth(event_id, "churn", None, str(actual).lower(), observed, None)
                records.append((observed, 2 * k + 1, label))
    return [r for _, _, r in sorted(records, key=lambda r: (r[0], r[1]))]


def reference_performance(seed: int, rows: int) -> ReferencePerformance:
    """The model's realized performance on reference data without drift."""
    rng = np.random.default_rng(seed)
    builder = ReferencePerformanceBuilder(threshold=0.5)
    for score in rng.random(rows).tolist():
        actual = "true" if rng.random() < score else "false"
        builder.add(segment="all", score=score, label=None, actual=actual)
    return builder.finish()


def tracker() -> TruthTracker:
    return TruthTracker(
        TrackerSettings(
            bucket_ms=MINUTE,
            window_ms=5 * MINUTE,
            horizon_ms=60 * MINUTE,
            evaluation_delay_ms=5 * MINUTE,
        )
    )


def run(t: TruthTracker, records: list[Record]) -> list[Alert]:
    alerts: list[Alert] = []
    for r in records:
        alerts += t.add_prediction(r) if isinstance(r, Prediction) else t.add_label(r)
    return alerts


def test_a_baseline_reference_sees_drift_that_a_frozen_one_would_absorb() -> None:
    """Concept drift from the first minute: a reference frozen from the first labels holds
    the drift and never alerts; the baseline's reference performance (no drift) does, from
    the first judged window, and the alert names the baseline."""
    records = stream(5, 30, flip_share=0.3)
    assert [a for a in run(tracker(), records) if a.kind == "performance_degradation"] == []
    with_baseline = tracker()
    with_baseline.use_baseline("churn", "1", "b-123", reference_performance(6, 20_000))
    alerts = [a for a in run(with_baseline, records) if a.kind == "performance_degradation"]
    accuracy = [a for a in alerts if a.labels["statistic"] == "accuracy"]
    assert accuracy and accuracy[0].status == "firing"
    # the first window ends at minute 1 and is judged at 6; two breaching windows fire
    assert accuracy[0].evaluated_at_ms == 7 * MINUTE
    assert accuracy[0].reference == {
        "kind": "baseline",
        "id": "b-123",
        "count": 20_000,
        "note": "the baseline's realized performance on segment all",
    }
    for alert in alerts:
        VALIDATOR.validate(alert.cloudevent("driftwire"))
    assert with_baseline.references == {}  # nothing was frozen


def test_a_baseline_without_drift_stays_quiet() -> None:
    t = tracker()
    t.use_baseline("churn", "1", "b-1", reference_performance(7, 20_000))
    assert run(t, stream(8, 40)) == []


def test_estimated_performance_sees_a_harmful_covariate_shift_before_the_labels() -> None:
    """Scores crowd around 0.5 from minute 20: the estimate of the window that just closed
    falls at once (fires two windows in, before the realized judgement five minutes later),
    its alert says it is an estimate, and once realized labels arrive the estimate's error
    beside them is small."""
    t = tracker()
    t.use_baseline("churn", "1", "b-1", reference_performance(9, 20_000))
    alerts = run(t, stream(10, 40, narrow_from=20))
    estimated = [a for a in alerts if a.kind == "estimated_performance"]
    realized = [a for a in alerts if a.kind == "performance_degradation"]
    assert estimated[0].status == "firing" and realized[0].status == "firing"
    # the first window holding narrowed scores closes at 21: fired at 22; realized at 27
    assert estimated[0].evaluated_at_ms == 22 * MINUTE
    assert realized[0].evaluated_at_ms > estimated[0].evaluated_at_ms
    assert "an estimate" in estimated[0].summary
    for alert in alerts:
        VALIDATOR.validate(alert.cloudevent("driftwire"))
    assert estimated[0].labels["alertname"] == "DriftwireEstimatedPerformance"
    latest = t.estimated[("churn", "1", "all")]  # the clock ends short of minute 40
    # narrowed scores: expected accuracy E[max(s, 1-s)] for s ~ U(0.35, 0.65) = 0.575
    assert latest.window_end_ms == 39 * MINUTE and abs(latest.metrics["accuracy"] - 0.575) < 0.03
    judged = t.latest[("churn", "1", "all")]
    assert judged.window_end_ms == 34 * MINUTE
    # 1,600 labels behind the realized accuracy: its standard error is about 0.012
    assert set(judged.estimate_error) == {"accuracy", "precision", "recall", "f1", "auc"}
    assert abs(judged.estimate_error["accuracy"]) < 0.05
    # exported beside the metrics with intervals: F1 and the calibration error, without bounds
    f1, low, high = judged.metrics["f1"]
    precision, recall = judged.metrics["precision"][0], judged.metrics["recall"][0]
    assert abs(f1 - 2 * precision * recall / (precision + recall)) < 1e-9
    assert (low, high) == (None, None)
    assert judged.metrics["calibration_error"][0] >= 0


def test_concept_drift_is_invisible_to_the_estimate() -> None:
    """Outcomes flip, scores do not move: realized performance fires, the estimate does not."""
    t = tracker()
    t.use_baseline("churn", "1", "b-1", reference_performance(11, 20_000))
    alerts = run(t, stream(12, 30, flip_share=0.3))
    assert any(a.kind == "performance_degradation" for a in alerts)
    assert not any(a.kind == "estimated_performance" for a in alerts)
    judged = t.latest[("churn", "1", "all")]
    # the estimate (0.75) is above the realized accuracy (0.75 * 0.7 + 0.25 * 0.3 = 0.6)
    assert 0.1 < judged.estimate_error["accuracy"] < 0.2


def test_a_frozen_reference_calibrates_the_estimate_too() -> None:
    """Without a baseline the reference (and the calibration) is frozen from the first labels;
    the estimate's alerts say so, in the alert schema's terms."""
    t = tracker()
    alerts = run(t, stream(13, 40, narrow_from=25))
    assert ("churn", "1", "all") in t.references
    assert abs(t.estimated[("churn", "1", "all")].metrics["accuracy"] - 0.575) < 0.03
    estimated = [a for a in alerts if a.kind == "estimated_performance"]
    assert estimated and estimated[0].reference["kind"] == "frozen_window"
    assert estimated[0].reference["count"] >= 2_000
    for alert in alerts:
        VALIDATOR.validate(alert.cloudevent("driftwire"))


def test_regression_models_keep_no_score_histograms() -> None:
    t = tracker()
    builder = ReferencePerformanceBuilder()
    for i in range(100):
        builder.add(segment="all", score=float(i), label=None, actual=float(i) + 0.5)
    t.use_baseline("price", "1", "b-2", builder.finish())
    for i in range(50):
        t.add_prediction(Prediction(f"p{i}", "price", "1", "all", i * 1_000, 0.3, None))
    assert not t.buckets.scores("price", "1", "all", 0, MINUTE).any()
    assert t.estimated == {}
