"""The whole ground-truth pipeline, pure: concept drift fires, stationary traffic stays quiet."""

from __future__ import annotations

import numpy as np

from driftwire.alerts.alert import Alert
from driftwire.truth.join import Prediction
from driftwire.truth.label import GroundTruth
from driftwire.truth.tracker import TrackerSettings, TruthTracker

MINUTE = 60_000


def stream(
    seed: int, minutes: int, *, flip_from: int | None, flip_until: int | None = None
) -> list[Prediction | GroundTruth]:
    """400 scored predictions a minute, labels for 80% of them 1-5 minutes later (merged in
    arrival order); from ``flip_from`` to ``flip_until`` a third of the outcomes flip."""
    rng = np.random.default_rng(seed)
    records: list[tuple[int, int, Prediction | GroundTruth]] = []
    k = 0
    for minute in range(minutes):
        for t in np.sort(rng.integers(minute * MINUTE, (minute + 1) * MINUTE, size=400)).tolist():
            score = float(rng.random())
            actual = bool(rng.random() < score)
            drifted = flip_from is not None and flip_from <= minute < (flip_until or minutes)
            if drifted and rng.random() < 1 / 3:
                actual = not actual
            event_id = f"e{k}"
            k += 1
            records.append((t, k * 2, Prediction(event_id, "churn", "1", "all", t, score, None)))
            if rng.random() < 0.8:
                observed = t + int(rng.integers(MINUTE, 5 * MINUTE))
                label = GroundTruth(event_id, "churn", None, str(actual).lower(), observed, None)
                records.append((observed, k * 2 + 1, label))
    return [r for _, _, r in sorted(records, key=lambda r: (r[0], r[1]))]


def run(records: list[Prediction | GroundTruth]) -> list[Alert]:
    tracker = TruthTracker(
        TrackerSettings(
            bucket_ms=MINUTE,
            window_ms=5 * MINUTE,
            horizon_ms=60 * MINUTE,
            evaluation_delay_ms=5 * MINUTE,
        )
    )
    alerts: list[Alert] = []
    for r in records:
        alerts += tracker.add_prediction(r) if isinstance(r, Prediction) else tracker.add_label(r)
    return alerts


def test_concept_drift_fires_and_resolves_and_stationary_is_quiet() -> None:
    assert run(stream(1, 60, flip_from=None)) == []
    alerts = run(stream(2, 60, flip_from=25, flip_until=40))
    transitions = [(a.labels["statistic"], a.status, a.evaluated_at_ms // MINUTE) for a in alerts]
    accuracy = [t for t in transitions if t[0] == "accuracy"]
    assert accuracy and accuracy[0][1] == "firing"
    # a window is judged 5 minutes after it ends: the first holding drifted predictions
    # (minute 25 on) ends at 26 and is judged at 31; the last ends at 44 (judged at 49); it
    # resolves after two windows whose drop is under 0.6 x the margin (hysteresis), within
    # about ten windows of noise around the reference
    assert 31 <= accuracy[0][2] <= 36
    assert accuracy[-1][1] == "resolved" and 49 <= accuracy[-1][2] <= 60
    fired = next(a for a in alerts if a.labels["statistic"] == "accuracy")
    assert fired.labels["kind"] == "performance_degradation"
    assert "labelled predictions" in fired.summary and fired.evidence["completeness"] > 0.7
    assert all(a.labels["statistic"] != "label_distribution" for a in alerts)


def test_same_input_gives_the_same_alert_events() -> None:
    records = stream(3, 40, flip_from=20)
    first = [a.cloudevent("driftwire") for a in run(records)]
    assert first and first == [a.cloudevent("driftwire") for a in run(records)]


def test_a_backlog_of_predictions_read_ahead_of_labels_judges_the_same_windows() -> None:
    """Reading all predictions first and then all labels (a rebuild of two topics at different
    speeds) gives the alerts of the interleaved stream: windows wait for the slower input."""
    records = stream(4, 40, flip_from=20)
    interleaved = run(records)
    predictions_first = run(
        [r for r in records if isinstance(r, Prediction)]
        + [r for r in records if isinstance(r, GroundTruth)]
    )
    assert interleaved
    key = [(a.labels["statistic"], a.status, a.evaluated_at_ms) for a in interleaved]
    assert [(a.labels["statistic"], a.status, a.evaluated_at_ms) for a in predictions_first] == key
