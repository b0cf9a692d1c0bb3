"""The calibrated numeric test reads both sketches' own CDFs (driftwire.stats.calibrated),
against scipy on the raw data and against the sketches' own queries."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from driftwire.sketch.quantiles import QuantileSketch
from driftwire.stats.calibrated import numeric_test
from driftwire.stats.numeric import numeric_drift


def fed(values: np.ndarray, batch: int = 250) -> QuantileSketch:
    s = QuantileSketch(200)
    for chunk in np.array_split(values, max(1, values.size // batch)):
        s.update_batch(chunk)
    return s


def test_exact_sketches_with_ties_give_scipys_ks_and_wasserstein() -> None:
    rng = np.random.default_rng(11)
    ref, cur = rng.integers(0, 12, 390).astype(float), rng.integers(1, 13, 300).astype(float)
    r, c = fed(ref), fed(cur)
    assert r.is_exact and c.is_exact
    t = numeric_test(r, c, "ks")
    assert t.value == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)
    assert t.result.bound == 0.0
    w = t.result.evidence["wasserstein"]
    assert w["value"] * w["scale"] == pytest.approx(stats.wasserstein_distance(ref, cur), rel=1e-9)


@pytest.mark.parametrize(("shift", "n_cur"), [(0.0, 2_500), (0.12, 20_000)])
def test_estimation_mode_d_is_the_sketches_own_distance_within_their_bounds(
    shift: float, n_cur: int
) -> None:
    """D is the largest gap of the two sketches' CDFs (their own cdf queries at every retained
    item), so it is off the raw data's D by at most the two rank-error bounds, no grid term."""
    rng = np.random.default_rng(12)
    ref, cur = rng.normal(size=60_000), rng.normal(shift, size=n_cur)
    r, c = fed(ref), fed(cur)
    t = numeric_test(r, c, "ks")
    assert t.value is not None
    points = np.union1d(r.sorted_view()[0], c.sorted_view()[0])
    own = float(np.abs(r.cdf(points) - c.cdf(points)).max())
    assert t.value == pytest.approx(own, abs=1e-12)
    bound = r.rank_error_bound() + c.rank_error_bound()
    assert t.result.bound == pytest.approx(bound)
    exact = stats.ks_2samp(ref.astype(np.float32), cur.astype(np.float32)).statistic
    assert abs(t.value - exact) <= bound
    # W1: integral |F_sketch - F| dx <= eps * (max - min) per side
    w = t.result.evidence["wasserstein"]
    w1_exact = stats.wasserstein_distance(ref.astype(np.float32), cur.astype(np.float32))
    slack = r.rank_error_bound() * np.ptp(ref) + c.rank_error_bound() * np.ptp(cur)
    assert abs(w["value"] * w["scale"] - w1_exact) <= slack


def test_shown_psi_bins_both_sides_alike_on_discrete_data() -> None:
    """The shown PSI counts each bin [lower, upper) on both sides (exclusive CDFs at the
    edges), as the fixed rule's PSI: identical integer samples show PSI 0."""
    values = np.random.default_rng(13).integers(0, 6, 5_000).astype(float)
    r, c = fed(values), fed(values)
    t = numeric_test(r, c, "ks")
    assert t.shown["psi"] == pytest.approx(0.0, abs=1e-12)
    other = fed(np.random.default_rng(14).integers(0, 6, 3_000).astype(float))
    fixed = numeric_drift(r, other, ["psi"], min_count=1, min_reference_count=1)["psi"].value
    assert numeric_test(r, other, "ks").shown["psi"] == pytest.approx(fixed, abs=1e-12)
