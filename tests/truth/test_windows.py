"""Performance per prediction-time bucket: the join's output read back as windows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from driftwire.truth.join import JoinedPair, Prediction, TruthJoin
from driftwire.truth.label import GroundTruth
from driftwire.truth.windows import PerformanceBuckets

MINUTE = 60_000


def test_stream_of_predictions_and_late_labels_gives_window_metrics() -> None:
    """2,000 scored predictions over 20 minutes, labels for 70% of them 1-30 minutes later,
    out of order: each 10-minute window's accuracy and AUC equal scikit-learn's on the pairs
    whose prediction fell in it; completeness is joined / predictions."""
    rng = np.random.default_rng(4)
    n = 2_000
    times = np.sort(rng.integers(0, 20 * MINUTE, size=n))
    scores = rng.random(n)
    actual = rng.random(n) < scores
    labelled = rng.random(n) < 0.7
    delays = rng.integers(MINUTE, 30 * MINUTE, size=n)
    records: list[tuple[int, object]] = []
    for i in range(n):
        p = Prediction(f"e{i}", "churn", "1", "eu", int(times[i]), float(scores[i]), None)
        records.append((int(times[i]), p))
        if labelled[i]:
            observed = int(times[i] + delays[i])
            label = GroundTruth(
                f"e{i}", "churn", None, "true" if actual[i] else "false", observed, None
            )
            records.append((observed, label))
    records.sort(key=lambda r: r[0])
    join = TruthJoin(horizon_ms=60 * MINUTE)
    buckets = PerformanceBuckets(bucket_ms=MINUTE)
    for _, record in records:
        if isinstance(record, Prediction):
            buckets.seen(record)
            pair = join.add_prediction(record)
        else:
            assert isinstance(record, GroundTruth)
            pair = join.add_label(record)
        if pair is not None:
            buckets.joined(pair)
    for start in (0, 10 * MINUTE):
        w = buckets.window("churn", "1", "eu", start, start + 10 * MINUTE)
        inside = (times >= start) & (times < start + 10 * MINUTE)
        pairs = inside & labelled
        assert w.predictions == inside.sum() and w.joined == pairs.sum()
        assert w.completeness == pytest.approx(pairs.sum() / inside.sum())
        assert w.classification is not None
        m = w.classification.metrics()
        expected = skm.accuracy_score(actual[pairs], scores[pairs] >= 0.5)
        assert m.accuracy.value == pytest.approx(expected)
        assert m.auc is not None and m.auc_bin_error is not None
        exact = skm.roc_auc_score(actual[pairs], scores[pairs])
        assert abs(m.auc.value - exact) <= m.auc_bin_error + 1e-12
        assert w.median_delay_ms == pytest.approx(np.median(delays[pairs]))
    assert buckets.drop_before(10 * MINUTE) == 10
    assert buckets.window("churn", "1", "eu", 0, 10 * MINUTE).predictions == 0


def test_labels_and_regression_targets() -> None:
    buckets = PerformanceBuckets(bucket_ms=MINUTE)
    cls = Prediction("a", "m", "1", "", 0, None, "cat")
    reg = Prediction("b", "price", "1", "", 0, 10.0, None)
    for p in (cls, reg):
        buckets.seen(p)
    buckets.joined(JoinedPair(cls, "dog", 1))
    buckets.joined(JoinedPair(reg, 12.5, 1))
    buckets.expired(Prediction("c", "m", "1", "", 5, None, "dog"))
    w = buckets.window("m", "1", "", 0, MINUTE)
    assert w.classification is not None and w.regression is None
    assert w.classification.positive is None  # multiclass: label metrics only
    assert w.classification.metrics().accuracy.value == 0.0 and w.expired == 1
    r = buckets.window("price", "1", "", 0, MINUTE)
    assert r.regression is not None and r.regression.metrics().bias.value == -2.5


def test_score_predictions_use_the_threshold_and_the_positive_pair() -> None:
    buckets = PerformanceBuckets(bucket_ms=MINUTE, threshold=0.7)
    for i, (score, actual) in enumerate([(0.8, "1"), (0.6, "1"), (0.1, "0")]):
        buckets.joined(JoinedPair(Prediction(f"e{i}", "m", "1", "", 0, score, None), actual, 1))
    state = buckets.window("m", "1", "", 0, MINUTE).classification
    assert state is not None and state.positive == "1"
    assert state.metrics().accuracy.value == pytest.approx(2 / 3)  # 0.6 < 0.7 predicts "0"


def test_a_predicted_label_named_otherwise_than_the_truth_yields_to_the_score() -> None:
    """Events say {"score": s, "label": "churn" | "stay"}, labels say true/false: the score
    and the threshold give the predicted class; a label of the truth's pair is kept."""
    buckets = PerformanceBuckets(bucket_ms=MINUTE)
    rows = [(0.8, "churn", "true"), (0.3, "stay", "false"), (0.9, "churn", "false"),
            (0.2, "false", "true"), (0.7, "false", "true")]  # fmt: skip
    for i, (score, label, actual) in enumerate(rows):
        p = Prediction(f"e{i}", "m", "1", "", 0, score, label)
        buckets.joined(JoinedPair(p, actual, 1))
    state = buckets.window("m", "1", "", 0, MINUTE).classification
    assert state is not None and state.positive == "true"
    # right: rows 0 and 1 (by score); wrong: row 2 (score), rows 3 and 4 (label "false" kept)
    assert state.metrics().accuracy.value == pytest.approx(2 / 5)
