"""Null distributions and FDR control (driftwire.stats.significance), against scipy on raw data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from driftwire.sketch.numeric import NumericSketch
from driftwire.stats.calibrated import categorical_test, numeric_test
from driftwire.stats.significance import (
    by_factor,
    chi2_homogeneity,
    fdr_cutoff,
    fdr_threshold,
    ks_null_quantile,
    ks_p_value,
)

#: Stephens' approximation against scipy's kstwo (the null of ks_2samp(method="asymp")) for
#: n_e >= 50, p >= 1e-8: measured within 5% (see the module docstring); asserted at 8%.
STEPHENS_RTOL = 0.08


def sketch(values: np.ndarray) -> NumericSketch:
    s = NumericSketch()
    s.update_batch(values)
    return s


@pytest.mark.parametrize("shift", [0.0, 0.3, 0.45])
def test_ks_p_value_of_exact_sketches_is_scipy_asymp(shift: float) -> None:
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(size=180), rng.normal(shift, size=150)  # <= k: exact sketches
    test = numeric_test(sketch(ref).quantile_sketch, sketch(cur).quantile_sketch, "ks")
    exact = stats.ks_2samp(ref.astype(np.float32), cur.astype(np.float32), method="asymp")
    assert test.value == pytest.approx(exact.statistic, abs=1e-12)
    assert test.p_value == pytest.approx(exact.pvalue, rel=STEPHENS_RTOL)


@pytest.mark.parametrize(("shift", "n_cur"), [(0.0, 2_500), (0.12, 2_500), (0.12, 20_000)])
def test_ks_p_value_from_sketches_brackets_scipy_on_the_raw_data(shift: float, n_cur: int) -> None:
    """Within the sketch bound: scipy's p-value on the raw data lies between the p-values at
    D - bound and D + bound, and the default (widened) p-value is never below the lower one."""
    rng = np.random.default_rng(8)
    ref, cur = rng.normal(size=60_000), rng.normal(shift, size=n_cur)
    test = numeric_test(sketch(ref).quantile_sketch, sketch(cur).quantile_sketch, "ks")
    assert test.value is not None and test.p_value is not None
    exact = stats.ks_2samp(ref.astype(np.float32), cur.astype(np.float32), method="asymp")
    bound = test.result.bound
    assert abs(test.value - exact.statistic) <= bound
    low = ks_p_value(test.value + bound, 60_000, n_cur)[0]
    high = ks_p_value(max(test.value - bound, 0.0), 60_000, n_cur)[0]
    assert low * (1 - STEPHENS_RTOL) <= exact.pvalue <= min(1.0, high * (1 + STEPHENS_RTOL))
    assert test.p_value >= low


def test_ks_null_quantile_inverts_the_p_value() -> None:
    for n in (30.0, 240.0, 2_400.0, 50_000.0):
        for p in (0.05, 1e-4, 1e-8):
            d = ks_null_quantile(p, n)
            assert ks_p_value(d, round(2 * n), round(2 * n))[0] == pytest.approx(p, rel=0.02)


def test_chi2_equals_scipy_without_pooling_and_on_the_pooled_table() -> None:
    ref = np.array([5000.0, 3000, 1500, 400])
    cur = np.array([260.0, 140, 80, 20])
    chi2, dof, p, pooled = chi2_homogeneity(ref, cur, ["a", "b", "c", "d"])
    expected = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert pooled == []
    assert (chi2, dof) == (pytest.approx(expected.statistic), expected.dof)
    assert p == pytest.approx(expected.pvalue)
    # "d" and "e" have expected window counts below 5: pooled into one cell of 8 + 4 events
    ref2, cur2 = np.append(ref, [60.0, 40.0]), np.append(cur, [8.0, 4.0])
    chi2, dof, p, pooled = chi2_homogeneity(ref2, cur2, list("abcdef"))
    assert sorted(pooled) == ["e", "f"]
    table = np.vstack([np.append(ref, 100.0), np.append(cur, 12.0)])
    expected = stats.chi2_contingency(table, correction=False)
    assert (chi2, dof, p) == (
        pytest.approx(expected.statistic),
        expected.dof,
        pytest.approx(expected.pvalue),
    )
    exp = stats.contingency.expected_freq(table)
    assert exp.min() >= 5


def test_categorical_test_effect_is_total_variation_of_shares() -> None:
    ref = {"DE": 6000, "FR": 3000, "IT": 1000}
    cur = {"DE": 1100, "FR": 700, "IT": 200}  # shares 0.55 / 0.35 / 0.10 vs 0.6 / 0.3 / 0.1
    t = categorical_test(ref, 0, cur, 0)
    assert t.effect == pytest.approx(0.05)
    table = np.array([[6000, 3000, 1000], [1100, 700, 200]])
    assert t.p_value == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue)


@pytest.mark.parametrize("method", ["bh", "by"])
def test_fdr_cutoff_rejects_what_scipy_rejects(method: str) -> None:
    rng = np.random.default_rng(2)
    for _ in range(50):
        p = np.concatenate([rng.uniform(size=40), rng.uniform(0, 1e-3, size=rng.integers(0, 6))])
        adjusted = stats.false_discovery_control(p, method=method)
        cut = fdr_cutoff(p.tolist(), 0.05, method)  # type: ignore[arg-type]
        ours = p <= cut if cut is not None else np.zeros(p.size, dtype=bool)
        assert (ours == (adjusted <= 0.05)).all()


def test_fdr_threshold_is_the_bh_line_at_the_number_of_discoveries() -> None:
    p = [0.0001, 0.004, 0.019, 0.03, 0.5]
    # BH at 0.05 over 5: lines 0.01, 0.02, 0.03, 0.04, 0.05 -> 4 discoveries (0.03 <= 0.04)
    assert fdr_threshold(p, 0.05) == pytest.approx(0.04)
    assert all((x <= fdr_threshold(p, 0.05)) == (x <= 0.03) for x in p)
    assert fdr_threshold([0.2, 0.9], 0.01) == pytest.approx(0.005)  # what one would need


@pytest.mark.parametrize("method", ["holm", "holm_by"])
def test_holm_rejects_what_statsmodels_holm_rejects(method: str) -> None:
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(3)
    for _ in range(50):
        p = np.concatenate([rng.uniform(size=40), rng.uniform(0, 1e-3, size=rng.integers(0, 6))])
        level = 0.05 / (by_factor(p.size) if method == "holm_by" else 1.0)
        expected = multipletests(p, alpha=level, method="holm")[0]
        cut = fdr_cutoff(p.tolist(), 0.05, method)  # type: ignore[arg-type]
        ours = p <= cut if cut is not None else np.zeros(p.size, dtype=bool)
        assert (ours == expected).all()
        threshold = fdr_threshold(p.tolist(), 0.05, method)  # type: ignore[arg-type]
        assert ((p <= threshold) == expected).all()


def test_holm_does_not_loosen_the_cut_off_for_the_others_as_bh_does() -> None:
    # one strong discovery among 12: BH lets a second p-value in at 2 q / m, Holm at q / 11
    p = [1e-9, 0.0015, *[0.5] * 10]
    assert fdr_threshold(p, 0.01, "bh") == pytest.approx(2 * 0.01 / 12)
    assert fdr_cutoff(p, 0.01, "bh") == 0.0015
    assert fdr_threshold(p, 0.01, "holm") == pytest.approx(0.01 / 12)
    assert fdr_cutoff(p, 0.01, "holm") == 1e-9
    assert fdr_threshold([0.5] * 12, 0.01, "holm") == fdr_threshold([0.5] * 12, 0.01, "bh")
