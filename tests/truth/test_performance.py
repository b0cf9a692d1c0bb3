"""Realized performance from mergeable state against scikit-learn on the raw joined pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from driftwire.truth.classification import CALIBRATION_BINS, ClassificationState
from driftwire.truth.interval import mean_interval, wilson
from driftwire.truth.regression import ERROR_QUANTILES, RegressionState


def _binary(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    actual = rng.random(n) < 0.3
    score = np.clip(rng.normal(0.35 + 0.3 * actual, 0.2), 0, 1)
    return actual, score


def _state(actual: np.ndarray, score: np.ndarray) -> ClassificationState:
    state = ClassificationState(positive="1")
    for a, s in zip(actual.tolist(), score.tolist(), strict=True):
        state.update("1" if a else "0", "1" if s >= 0.5 else "0", s)
    return state


def test_binary_metrics_match_scikit_learn() -> None:
    actual, score = _binary(1, 3_000)
    predicted = score >= 0.5
    m = _state(actual, score).metrics()
    assert m.n == 3_000
    assert m.accuracy.value == pytest.approx(skm.accuracy_score(actual, predicted), abs=1e-12)
    report = skm.precision_recall_fscore_support(actual, predicted, labels=[True, False])
    for k, name in enumerate(["1", "0"]):
        c = m.per_class[name]
        assert c.precision.value == pytest.approx(report[0][k], abs=1e-12)
        assert c.recall.value == pytest.approx(report[1][k], abs=1e-12)
        assert c.f1 == pytest.approx(report[2][k], abs=1e-12)
        assert c.support == report[3][k]
    assert m.actual_shares["1"] == pytest.approx(actual.mean(), abs=1e-12)
    assert m.log_loss is not None and m.auc is not None and m.auc_bin_error is not None
    assert m.log_loss.value == pytest.approx(skm.log_loss(actual, score), rel=1e-9)
    exact_auc = skm.roc_auc_score(actual, score)
    # stated bound: half the share of positive-negative pairs sharing a score bin
    assert abs(m.auc.value - exact_auc) <= m.auc_bin_error + 1e-12
    assert m.auc_bin_error < 0.002
    assert m.auc.low < exact_auc < m.auc.high


def test_calibration_error_matches_its_definition() -> None:
    actual, score = _binary(2, 2_000)
    m = _state(actual, score).metrics()
    bins = np.minimum((score * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    expected = sum(
        abs(score[bins == b].sum() - actual[bins == b].sum()) for b in range(CALIBRATION_BINS)
    ) / len(score)
    assert m.calibration_error == pytest.approx(expected, rel=1e-9)


def test_merge_of_parts_equals_the_whole() -> None:
    actual, score = _binary(3, 1_200)
    whole = _state(actual, score).metrics()
    merged = _state(actual[:500], score[:500]).merge(_state(actual[500:], score[500:]))
    restored = ClassificationState.from_bytes(merged.to_bytes()).metrics()
    # counts and histograms add exactly; the loss sums only up to float rounding
    assert (restored.accuracy, restored.per_class, restored.auc, restored.actual_shares) == (
        whole.accuracy,
        whole.per_class,
        whole.auc,
        whole.actual_shares,
    )
    assert restored.log_loss is not None and whole.log_loss is not None
    assert restored.log_loss.value == pytest.approx(whole.log_loss.value, rel=1e-12)
    with pytest.raises(ValueError, match="positive"):
        ClassificationState(positive="1").merge(ClassificationState(positive="yes"))


def test_multiclass_without_scores_has_label_metrics_only() -> None:
    state = ClassificationState()
    truth = ["a", "b", "c", "a", "b", "a"]
    guess = ["a", "c", "c", "a", None, "b"]
    for t, g in zip(truth, guess, strict=True):
        state.update(t, g)
    m = state.metrics()
    assert m.accuracy.value == pytest.approx(3 / 6)
    assert m.auc is None and m.log_loss is None and m.calibration_error is None
    sk = skm.precision_recall_fscore_support(
        truth, [g or "" for g in guess], labels=["a", "b", "c"], zero_division=0
    )
    for k, name in enumerate(["a", "b", "c"]):
        assert m.per_class[name].precision.value == pytest.approx(sk[0][k]) or (
            math.isnan(m.per_class[name].precision.value) and sk[0][k] == 0
        )
        assert m.per_class[name].recall.value == pytest.approx(sk[1][k])
        assert m.per_class[name].f1 == pytest.approx(sk[2][k])


def test_intervals_cover_at_their_level() -> None:
    """Over 400 seeded windows of 200 predictions from a known accuracy of 0.8, Wilson's 95%
    interval covers 0.8 in 93-98.5% of them (binomial(400, 0.95) within about 3 sd)."""
    rng = np.random.default_rng(7)
    hits = rng.binomial(200, 0.8, size=400)
    covered = sum(wilson(int(h), 200).low <= 0.8 <= wilson(int(h), 200).high for h in hits)
    assert 372 <= covered <= 394
    values = rng.exponential(2.0, size=(400, 200))
    covered = sum(
        mean_interval(float(v.sum()), float((v * v).sum()), 200).low
        <= 2.0
        <= mean_interval(float(v.sum()), float((v * v).sum()), 200).high
        for v in values
    )
    assert 364 <= covered <= 394  # skewed values: the normal interval undercovers a little


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-1e3, 1e3),
            st.floats(-1e3, 1e3).map(lambda a: a if abs(a) > 1e-3 else 0.0),  # no tiny actuals
        ),
        min_size=1,
        max_size=300,
    ),
    st.integers(0, 300),
)
def test_regression_metrics_match_numpy_and_merge(
    pairs: list[tuple[float, float]], cut: int
) -> None:
    predicted = np.array([p for p, _ in pairs])
    actual = np.array([a for _, a in pairs])
    whole = RegressionState()
    whole.update_batch(predicted, actual)
    parts = RegressionState()
    parts.update_batch(predicted[:cut], actual[:cut])
    rest = RegressionState()
    rest.update_batch(predicted[cut:], actual[cut:])
    merged = RegressionState.from_bytes(parts.merge(rest).to_bytes())
    error = predicted - actual
    for state in (whole, merged):
        m = state.metrics()
        scale = 1e-9 * (1 + np.abs(error).max())
        assert m.n == len(pairs)
        assert m.bias.value == pytest.approx(error.mean(), abs=scale)
        assert m.mae.value == pytest.approx(skm.mean_absolute_error(actual, predicted), abs=scale)
        assert m.rmse.value == pytest.approx(
            math.sqrt(skm.mean_squared_error(actual, predicted)), rel=1e-6, abs=scale
        )
        nonzero = actual != 0
        if nonzero.any():
            mape = np.mean(np.abs(error[nonzero]) / np.abs(actual[nonzero]))
            assert m.mape == pytest.approx(mape, rel=1e-9)
        # quantiles within the sketch's rank-error bound: the exact rank of the answer
        for q in ERROR_QUANTILES:
            answer = m.error_quantiles[q]
            lo = np.mean(error.astype(np.float32) < np.float32(answer))
            hi = np.mean(error.astype(np.float32) <= np.float32(answer))
            slack = m.quantile_rank_error + 1 / len(pairs)
            assert lo - slack <= q <= hi + slack


def test_regression_ignores_non_finite_pairs() -> None:
    state = RegressionState()
    state.update_batch(np.array([1.0, np.nan, 3.0]), np.array([1.0, 2.0, np.inf]))
    assert state.metrics().n == 1 and state.metrics().mae.value == 0.0
