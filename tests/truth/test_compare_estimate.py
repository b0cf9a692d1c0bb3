"""The performance rule (significance + relevance) and the confidence-based estimate."""

from __future__ import annotations

import numpy as np
import pytest

from driftwire.truth.classification import ClassificationState, score_histogram
from driftwire.truth.compare import (
    PerformanceRule,
    classification_checks,
    label_drift_check,
    regression_checks,
)
from driftwire.truth.estimate import ScoreCalibration, estimate_binary
from driftwire.truth.findings import estimate_finding, performance_finding
from driftwire.truth.regression import RegressionState


def _classifier(rng: np.random.Generator, n: int, *, flip: float = 0.0, base: float = 0.3):
    """Scores from a calibrated model: actual ~ Bernoulli(score); ``flip`` turns a share of
    the outcomes around (concept drift: the scores keep their meaning no longer)."""
    score = rng.beta(2, 2 / base - 2 if base < 1 else 1, size=n)
    actual = rng.random(n) < score
    flipped = rng.random(n) < flip
    actual = np.where(flipped, ~actual, actual)
    state = ClassificationState(positive="1")
    for a, s in zip(actual.tolist(), score.tolist(), strict=True):
        state.update("1" if a else "0", "1" if s >= 0.5 else "0", s)
    return state, score


def test_stationary_windows_are_quiet_and_degraded_ones_fire() -> None:
    """200 stationary windows of 500 labelled predictions against a 20,000 reference: the
    one-sided tests at alpha 0.01 / 3 (Bonferroni) flag none with a relevant margin; windows
    where 30% of outcomes are flipped (accuracy 0.72 -> about 0.59) are critical in all 50."""
    rng = np.random.default_rng(11)
    reference, _ = _classifier(rng, 20_000)
    ref = reference.metrics()
    flagged = 0
    for _ in range(200):
        window, _ = _classifier(rng, 500)
        checks = classification_checks(window.metrics(), ref)
        flagged += any(c.severity for c in checks if c.kind == "performance_degradation")
    assert flagged <= 1
    for _ in range(50):
        window, _ = _classifier(rng, 500, flip=0.3)
        checks = {c.metric: c for c in classification_checks(window.metrics(), ref)}
        assert checks["accuracy"].severity == "critical"
        assert checks["accuracy"].p_value < 1e-4


def test_small_windows_are_not_judged() -> None:
    rng = np.random.default_rng(3)
    reference, _ = _classifier(rng, 5_000)
    window, _ = _classifier(rng, 40, flip=0.5)
    checks = classification_checks(window.metrics(), reference.metrics())
    assert all(c.severity is None and c.insufficient for c in checks)
    assert "min_count 100" in (checks[0].insufficient or "")


def test_label_drift_needs_a_relevant_share_change() -> None:
    rng = np.random.default_rng(5)
    reference, _ = _classifier(rng, 20_000, base=0.3)
    same, _ = _classifier(rng, 3_000, base=0.3)
    moved, _ = _classifier(rng, 3_000, base=0.5)  # positive share 0.3 -> 0.5
    assert label_drift_check(same.metrics(), reference.metrics()).severity is None
    check = label_drift_check(moved.metrics(), reference.metrics())
    assert check.severity == "critical" and check.effect == pytest.approx(0.2, abs=0.03)


def test_regression_degradation() -> None:
    rng = np.random.default_rng(8)
    y = rng.normal(100, 20, size=30_000)
    reference = RegressionState()
    reference.update_batch(y[:20_000] + rng.normal(0, 5, 20_000), y[:20_000])
    good, bad = RegressionState(), RegressionState()
    good.update_batch(y[20_000:25_000] + rng.normal(0, 5, 5_000), y[20_000:25_000])
    bad.update_batch(y[25_000:] + rng.normal(0, 7, 5_000), y[25_000:])  # error sd 5 -> 7
    assert not any(c.severity for c in regression_checks(good.metrics(), reference.metrics()))
    checks = {c.metric: c for c in regression_checks(bad.metrics(), reference.metrics())}
    assert checks["mae"].severity == "critical" and checks["rmse"].severity == "critical"
    assert checks["rmse"].effect == pytest.approx(0.4, abs=0.05)


def test_margin_is_configurable() -> None:
    rng = np.random.default_rng(9)
    reference, _ = _classifier(rng, 20_000)
    window, _ = _classifier(rng, 3_000, flip=0.1)  # accuracy 0.72 -> about 0.68
    lax = PerformanceRule(margins={**PerformanceRule().margins, "accuracy": (0.1, 0.2)})
    default = {c.metric: c for c in classification_checks(window.metrics(), reference.metrics())}
    relaxed = {
        c.metric: c for c in classification_checks(window.metrics(), reference.metrics(), lax)
    }
    assert default["accuracy"].severity == "warning"
    assert relaxed["accuracy"].severity is None


def test_estimate_tracks_realized_under_covariate_shift_not_concept_drift() -> None:
    """Calibration fitted on a 20,000 reference; windows of 5,000. Under covariate shift (the
    score distribution moves, its meaning stays) within the reference's range, the estimated
    accuracy and AUC are within 0.02 of the realized ones; under concept drift (outcomes
    flipped) they are not. A shift far beyond the reference's scores is reported."""
    rng = np.random.default_rng(21)
    reference, _ = _classifier(rng, 20_000)
    positives, negatives = reference.score_histograms()
    calibration = ScoreCalibration.fit(positives, negatives)
    outside: list[float] = []
    for base in (0.3, 0.4, 0.5):
        window, scores = _classifier(rng, 5_000, base=base)
        realized = window.metrics()
        estimate = estimate_binary(score_histogram(scores), calibration)
        assert estimate.n == 5_000
        assert estimate.accuracy == pytest.approx(realized.accuracy.value, abs=0.02)
        assert realized.auc is not None
        assert estimate.auc == pytest.approx(realized.auc.value, abs=0.02)
        assert estimate.recall == pytest.approx(realized.per_class["1"].recall.value, abs=0.03)
        outside.append(estimate.outside_reference_share)
    _, far = _classifier(rng, 5_000, base=0.8)
    outside.append(estimate_binary(score_histogram(far), calibration).outside_reference_share)
    assert outside[0] < 0.02 and outside == sorted(outside) and outside[-1] > 0.3
    drifted, scores = _classifier(rng, 5_000, flip=0.2)
    estimate = estimate_binary(score_histogram(scores), calibration)
    assert estimate.accuracy - drifted.metrics().accuracy.value > 0.08


def test_calibration_is_monotone_and_pools_violations() -> None:
    positives = np.zeros(1000, dtype=np.int64)
    negatives = np.zeros(1000, dtype=np.int64)
    positives[[100, 300, 500]] = [10, 40, 30]  # rates 0.1, 0.4, 0.3: the last two pool
    negatives[[100, 300, 500]] = [90, 60, 70]
    calibration = ScoreCalibration.fit(positives, negatives)
    p = calibration.probability
    assert calibration.reference_count == 300
    assert np.all(np.diff(p) >= 0)
    assert p[0] == pytest.approx(0.1) and p[999] == pytest.approx(0.35)
    assert p[100] == pytest.approx(0.1) and p[400] == pytest.approx(0.35)
    assert p[250] == pytest.approx(0.1 + 0.25 * (150 / 300), rel=1e-6)  # interpolated


def test_findings_follow_the_rule_through_the_alert_policy() -> None:
    """A degraded window's finding reaches the policy's critical level, a quiet one stays
    below warning, an unjudged one is insufficient data (None); the alert has the texts."""
    rng = np.random.default_rng(13)
    reference, _ = _classifier(rng, 20_000)
    rule = PerformanceRule()
    bad, _ = _classifier(rng, 800, flip=0.3)
    good, _ = _classifier(rng, 800)
    tiny, _ = _classifier(rng, 30)
    levels = {}
    for name, window in (("bad", bad), ("good", good), ("tiny", tiny)):
        checks = classification_checks(window.metrics(), reference.metrics(), rule)
        findings = [
            performance_finding(
                c, model="m", model_version="1", segment="all", completeness=0.5, rule=rule
            )
            for c in checks
        ]
        levels[name] = {f.labels["statistic"]: (f.level, f.value) for f in findings}
        for f in findings:
            assert f.labels["alertname"] in {
                "DriftwirePerformanceDegradation",
                "DriftwireLabelDrift",
            }
            assert "50% of the window" in f.headline("firing", 1.0)
    assert levels["bad"]["accuracy"][0] == "critical"
    assert all(level is None for level, _ in levels["good"].values())
    assert all(value is None for _, value in levels["tiny"].values())


def test_estimate_finding() -> None:
    rng = np.random.default_rng(17)
    reference, _ = _classifier(rng, 20_000)
    calibration = ScoreCalibration.fit(*reference.score_histograms())
    accuracy = reference.metrics().accuracy.value
    _, shifted = _classifier(rng, 3_000, base=0.5)  # scores nearer 0.5: less accurate
    estimate = estimate_binary(score_histogram(shifted), calibration)
    finding = estimate_finding(
        estimate,
        accuracy,
        model="m",
        model_version="1",
        segment="all",
        rule=PerformanceRule(),
        min_count=100,
    )
    assert finding.value == pytest.approx((accuracy - estimate.accuracy) / 0.02)
    assert "an estimate" in finding.headline("firing", 1.0)
    few = estimate_binary(score_histogram(shifted[:50]), calibration)
    quiet = estimate_finding(
        few,
        accuracy,
        model="m",
        model_version="1",
        segment="all",
        rule=PerformanceRule(),
        min_count=100,
    )
    assert quiet.value is None
