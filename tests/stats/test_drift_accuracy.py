"""Oracle tests: every sketch-derived drift statistic against the exact computation on the raw
events, within the bound the result states.

Exact references: ``scipy.stats.ks_2samp`` (statistic), ``scipy.stats.wasserstein_distance``
divided by the scale the result used, ``scipy.spatial.distance.jensenshannon(base=2)`` and the
PSI / Hellinger formulas on the *same* bin edges the result used (so the comparison measures
only the sketch's error in the shares), ``scipy.stats.chi2_contingency(correction=False)``.

Two kinds of sketch. :class:`~driftwire.sketch.quantiles.QuantileSketch` (what profiles hold)
is deterministic and its rank error is a worst-case bound: every comparison below holds with
certainty for it, on the float32-rounded data it stores. The datasketches KLL sketches are
still accepted and tested.

Randomness. The data are seeded; the KLL sketches cannot be: the C++ library seeds its own
generator, so every run compacts differently. A stated bound rests on the sketches' a-priori
rank error eps (0.0133 at k = 200), the 99th percentile of a sketch's largest CDF error over
all points; a comparison can only fail if a sketch exceeds it *and* the two sketches' errors
line up against the statistic. Measured (scratch runs, not part of the suite): in 1,000
trials per size (n = 1e3 .. 1e6; 300 at 1e6) no sketch's largest CDF error exceeded eps
(largest 0.0127, median 0.005 - 0.0075); over 20 repetitions of the estimation-mode cases
below (840 comparisons per statistic) the largest error / bound ratio was 0.55 for KS, 0.27
for Wasserstein, 0.16 for PSI and 0.13 for JS and Hellinger. A KS failure needs the two
sketches' errors to add up to 2 eps at one point, twice the worst sum seen, so a spurious
failure of this file is far below 1 in 1,000 runs; none has been observed.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from typing import Any

import datasketches
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

from driftwire.sketch.quantiles import QuantileSketch
from driftwire.stats.drift import (
    CATEGORICAL_STATISTICS,
    NUMERIC_STATISTICS,
    OTHER,
    align_counts,
    binned_value,
    categorical_drift,
    compute,
    numeric_drift,
)

NO_MINIMUM = {"min_count": 1, "min_reference_count": 1}
ABS_TOL = 1e-9  # floating-point noise between two exact computations

Generator = Callable[[np.random.Generator, int, float], np.ndarray]


def _bimodal(rng: np.random.Generator, n: int, drift: float) -> np.ndarray:
    left = rng.random(n) < 0.5 + drift / 2
    return np.where(left, rng.normal(-2.0, 1.0, n), rng.normal(2.0, 0.5, n))


DISTRIBUTIONS: dict[str, Generator] = {
    "normal": lambda rng, n, d: rng.normal(d, 1.0 + d / 2, n),
    "lognormal": lambda rng, n, d: rng.lognormal(d, 1.0, n),
    "bimodal": _bimodal,
    "uniform": lambda rng, n, d: rng.uniform(d, 1.0 + d, n),
    "integer_ties": lambda rng, n, d: rng.poisson(3.0 + 2 * d, n).astype(np.float64),
    "constant": lambda rng, n, d: np.full(n, 5.0 + d),
}
SIZES = [10, 100, 1_000, 10_000, 100_000]
CASES = [(dist, n) for dist in DISTRIBUTIONS for n in SIZES]
CASES += [("normal", 1_000_000), ("integer_ties", 1_000_000), ("lognormal", 1_000_000)]


def sketch(values: np.ndarray, kind: str = "doubles", k: int = 200) -> Any:
    if kind == "quantile":  # fed 250 values at a time, as the profiler does
        q = QuantileSketch(k)
        for start in range(0, values.size, 250):
            q.update_batch(values[start : start + 250])
        return q
    if kind == "floats":
        s = datasketches.kll_floats_sketch(k)
        s.update(values.astype(np.float32))
    else:
        s = datasketches.kll_doubles_sketch(k)
        s.update(values.astype(np.float64))
    return s


def exact_binned(edges: list[float], ref: np.ndarray, cur: np.ndarray) -> tuple[Any, Any]:
    """Exact shares of the raw data in the bins ``[lower, upper)`` given by ``edges``."""
    e = np.asarray(edges)
    m = e.size + 1
    p = np.bincount(np.searchsorted(e, ref, side="right"), minlength=m) / ref.size
    q = np.bincount(np.searchsorted(e, cur, side="right"), minlength=m) / cur.size
    return p, q


def hellinger(p: np.ndarray, q: np.ndarray) -> float:
    return math.sqrt(0.5 * float(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))


def psi(p: np.ndarray, q: np.ndarray) -> float:
    p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def exact_numeric(results: dict[str, Any], ref: np.ndarray, cur: np.ndarray) -> dict[str, float]:
    """Every numeric statistic on the raw data, with the bins and scale the results used."""
    with np.errstate(divide="ignore"):  # scipy's p-value divides by round(n_eff), 0 for 1 vs 1
        ks = float(stats.ks_2samp(ref, cur, method="asymp").statistic)
    out = {
        "ks": ks,
        "wasserstein": float(stats.wasserstein_distance(ref, cur))
        / results["wasserstein"].evidence["scale"],
    }
    p, q = exact_binned(results["psi"].evidence["edges"], ref, cur)
    out["psi"] = psi(p, q)
    out["js"] = float(jensenshannon(p, q, base=2))
    out["hellinger"] = hellinger(p, q)
    return out


def check(results: dict[str, Any], exact: dict[str, float]) -> dict[str, float]:
    """Assert ``|value - exact| <= bound`` for every statistic; return the error / bound ratios."""
    ratios = {}
    for name, result in results.items():
        assert result.status == "ok", (name, result.evidence)
        error = abs(result.value - exact[name])
        tolerance = ABS_TOL * max(1.0, abs(exact[name]))
        assert error <= result.bound + tolerance, (
            f"{name}: sketch {result.value} exact {exact[name]} error {error} bound {result.bound}"
        )
        ratios[name] = error / result.bound if result.bound else 0.0
    return ratios


@pytest.mark.parametrize(("dist", "n"), CASES, ids=[f"{d}-{n}" for d, n in CASES])
@pytest.mark.parametrize("drift", [0.0, 0.3], ids=["same", "drifted"])
@pytest.mark.parametrize("kind", ["quantile", "doubles"])
def test_numeric_statistics_within_bound(kind: str, dist: str, n: int, drift: float) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{dist}-{n}-{drift}".encode()))
    generate = DISTRIBUTIONS[dist]
    ref = generate(rng, n, 0.0)
    cur = generate(rng, max(n // 2, 10), drift)  # windows are usually smaller
    if kind == "quantile":  # it stores float32: the oracle is the float32-rounded data
        ref, cur = (x.astype(np.float32).astype(np.float64) for x in (ref, cur))
    results = numeric_drift(sketch(ref, kind), sketch(cur, kind), NUMERIC_STATISTICS, **NO_MINIMUM)
    check(results, exact_numeric(results, ref, cur))
    if n <= 200:  # both sketches exact: the statistics are exact
        assert all(r.bound == 0.0 for r in results.values())
    if kind == "quantile" and n >= 10_000 and dist != "constant":
        ranks = results["ks"].evidence["rank_error"]
        assert 0 < ranks["reference"] < 0.0133 and ranks["current"] < 0.0133


@pytest.mark.parametrize("dist", ["normal", "integer_ties", "lognormal"])
@pytest.mark.parametrize("n", [100, 10_000, 100_000])
def test_float32_sketch_is_exact_on_float32_values(dist: str, n: int) -> None:
    """A floats sketch stores float32: the oracle is the float32-rounded data."""
    rng = np.random.default_rng(n)
    ref = DISTRIBUTIONS[dist](rng, n, 0.0).astype(np.float32).astype(np.float64)
    cur = DISTRIBUTIONS[dist](rng, n, 0.3).astype(np.float32).astype(np.float64)
    results = numeric_drift(
        sketch(ref, "floats"), sketch(cur, "floats"), NUMERIC_STATISTICS, **NO_MINIMUM
    )
    check(results, exact_numeric(results, ref, cur))


def test_mixed_exact_and_estimation_sketches() -> None:
    """An exact reference with a window in estimation mode: only the window's error counts."""
    rng = np.random.default_rng(11)
    ref, cur = rng.normal(size=150), rng.normal(0.2, size=50_000)
    results = numeric_drift(sketch(ref), sketch(cur), NUMERIC_STATISTICS, **NO_MINIMUM)
    check(results, exact_numeric(results, ref, cur))
    eps = datasketches.kll_doubles_sketch.get_normalized_rank_error(200, False)
    assert results["ks"].bound == pytest.approx(eps, abs=0.01)


def test_larger_k_tightens_every_bound() -> None:
    rng = np.random.default_rng(12)
    ref, cur = rng.normal(size=100_000), rng.normal(0.3, size=100_000)
    small = numeric_drift(sketch(ref), sketch(cur), NUMERIC_STATISTICS, **NO_MINIMUM)
    large = numeric_drift(
        sketch(ref, k=2000), sketch(cur, k=2000), NUMERIC_STATISTICS, **NO_MINIMUM
    )
    check(large, exact_numeric(large, ref, cur))
    for name in NUMERIC_STATISTICS:
        assert large[name].bound < small[name].bound / 3, name


# --- exact mode: every small sample, equal to scipy ------------------------------------------

small_samples = st.lists(
    st.one_of(
        st.integers(-5, 5).map(float),  # heavy ties
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64),
    ),
    min_size=1,
    max_size=150,
)


@settings(max_examples=150, deadline=None)
@given(small_samples, small_samples)
def test_exact_sketches_equal_scipy_on_any_small_sample(a: list[float], b: list[float]) -> None:
    ref, cur = np.array(a), np.array(b)
    results = numeric_drift(sketch(ref), sketch(cur), NUMERIC_STATISTICS, **NO_MINIMUM)
    exact = exact_numeric(results, ref, cur)
    for name, result in results.items():
        assert result.bound == 0.0
        assert result.value == pytest.approx(exact[name], rel=1e-9, abs=1e-9), name


def test_exact_mode_scale_is_the_raw_reference_rule() -> None:
    """The Wasserstein scale of an exact sketch is the rule applied to the raw reference."""
    rng = np.random.default_rng(13)
    ref = rng.lognormal(size=180)
    result = compute("wasserstein", sketch(ref), sketch(ref + 1), **NO_MINIMUM)
    q25, q75 = np.quantile(ref, [0.25, 0.75], method="inverted_cdf")
    assert result.evidence["scale"] == pytest.approx((q75 - q25) / 1.3489795003921634)
    ties = np.repeat([1.0, 2.0, 9.0], [150, 20, 10])  # IQR 0: falls back to the std
    result = compute("wasserstein", sketch(ties), sketch(ties + 1), **NO_MINIMUM)
    assert result.evidence["scale_kind"] == "std"
    assert result.evidence["scale"] == pytest.approx(np.std(ties))


def test_ks_p_value_is_the_asymptotic_kolmogorov_value() -> None:
    rng = np.random.default_rng(14)
    ref, cur = rng.normal(size=150), rng.normal(0.4, size=120)
    result = compute("ks", sketch(ref), sketch(cur), **NO_MINIMUM)
    n_eff = 150 * 120 / 270
    exact = stats.ks_2samp(ref, cur, method="asymp")
    assert result.p_value == pytest.approx(special.kolmogorov(math.sqrt(n_eff) * exact.statistic))
    assert result.p_value == pytest.approx(exact.pvalue, rel=0.25)  # finite-n vs limit


# --- published reference values ---------------------------------------------------------------


def test_wasserstein_scipy_documented_examples() -> None:
    """The three examples in ``scipy.stats.wasserstein_distance``'s docstring; weights become
    repeated values (W1 is invariant to scaling the weights)."""
    r = compute(
        "wasserstein", sketch(np.array([0.0, 1, 3])), sketch(np.array([5.0, 6, 8])), **NO_MINIMUM
    )
    assert r.evidence["unnormalized"] == 5.0  # scipy: 5.0
    assert r.value == 5.0 / r.evidence["scale"]
    u = np.repeat([0.0, 1.0], [3, 1])
    v = np.repeat([0.0, 1.0], [2, 2])
    r = compute("wasserstein", sketch(u), sketch(v), **NO_MINIMUM)
    assert r.evidence["unnormalized"] == pytest.approx(0.25, abs=1e-15)  # scipy: 0.25
    u = np.repeat([3.4, 3.9, 7.5, 7.8], [14, 9, 31, 72])
    v = np.repeat([4.5, 1.4], [32, 35])
    r = compute("wasserstein", sketch(u), sketch(v), **NO_MINIMUM)
    assert r.evidence["unnormalized"] == pytest.approx(4.0781331438047861, rel=1e-12)


def test_ks_published_values() -> None:
    """R's ``ks.test(c(1,2,3,4,5), c(3,4,5,6,7))`` gives D = 0.4 (at x = 2: 2/5 vs 0);
    disjoint samples give D = 1; identical samples 0."""
    r = compute("ks", sketch(np.arange(1.0, 6)), sketch(np.arange(3.0, 8)), **NO_MINIMUM)
    assert r.value == pytest.approx(0.4, abs=1e-15)
    assert stats.ks_2samp(np.arange(1.0, 6), np.arange(3.0, 8)).statistic == pytest.approx(0.4)
    r = compute("ks", sketch(np.array([1.0, 2, 3])), sketch(np.array([4.0, 5, 6])), **NO_MINIMUM)
    assert r.value == 1.0
    r = compute("ks", sketch(np.arange(50.0)), sketch(np.arange(50.0)), **NO_MINIMUM)
    assert r.value == 0.0
    assert r.p_value == 1.0


# Hand computation, reference shares 0.25 each, current 0.1 / 0.2 / 0.3 / 0.4:
#   (0.1-0.25) ln(0.1/0.25) = 0.15 x 0.916291 = 0.137444
#   (0.2-0.25) ln(0.2/0.25) = 0.05 x 0.223144 = 0.011157
#   (0.3-0.25) ln(0.3/0.25) = 0.05 x 0.182322 = 0.009116
#   (0.4-0.25) ln(0.4/0.25) = 0.15 x 0.470004 = 0.070501      PSI = 0.228217
TEXTBOOK_PSI = 0.2282174


def test_textbook_psi_by_hand() -> None:
    p, q = np.full(4, 0.25), np.array([0.1, 0.2, 0.3, 0.4])
    assert binned_value("psi", p, q) == pytest.approx(TEXTBOOK_PSI, abs=1e-7)
    # The same through a numeric feature: 4 integer values give 4 deduplicated bins.
    ref = np.repeat([0.0, 1.0, 2.0, 3.0], 25)
    cur = np.repeat([0.0, 1.0, 2.0, 3.0], [10, 20, 30, 40])
    r = compute("psi", sketch(ref), sketch(cur), **NO_MINIMUM)
    assert r.evidence["edges"] == [1.0, 2.0, 3.0]
    assert r.value == pytest.approx(TEXTBOOK_PSI, abs=1e-7)
    assert r.bound == 0.0
    # And through a categorical feature.
    r = categorical_drift(
        {"a": 250, "b": 250, "c": 250, "d": 250}, 0, {"a": 100, "b": 200, "c": 300, "d": 400}, 0
    )["psi"]
    assert r.value == pytest.approx(TEXTBOOK_PSI, abs=1e-7)


# --- categorical ----------------------------------------------------------------------------


def raw_categories(rng: np.random.Generator, n: int, shift: float) -> np.ndarray:
    """Zipf-like categories c0..c49; ``shift`` moves mass to the tail and adds new ones."""
    weights = 1.0 / np.arange(1, 51) ** (1.2 - shift)
    weights /= weights.sum()
    codes = rng.choice(50, size=n, p=weights)
    labels = np.array([f"c{i}" for i in range(50)] + [f"new{i}" for i in range(5)])
    if shift:
        codes = np.where(rng.random(n) < shift / 10, 50 + rng.integers(0, 5, n), codes)
    return labels[codes]


def counts_of(values: np.ndarray, top: int | None = None) -> tuple[dict[str, int], int]:
    """Exact counts, optionally only the ``top`` most frequent plus the rest as ``other``."""
    labels, counts = np.unique(values, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    keep = order if top is None else order[:top]
    tracked = dict(zip(labels[keep].tolist(), counts[keep].tolist(), strict=True))
    return tracked, int(values.size - sum(tracked.values()))


@pytest.mark.parametrize("n", [300, 5_000, 1_000_000])
@pytest.mark.parametrize("shift", [0.0, 0.4])
def test_categorical_exact_counts_equal_formulas_on_raw_data(n: int, shift: float) -> None:
    rng = np.random.default_rng(n + int(shift * 10))
    ref, cur = raw_categories(rng, n, 0.0), raw_categories(rng, n // 2, shift)
    (rc, ro), (cc, co) = counts_of(ref), counts_of(cur)
    results = categorical_drift(rc, ro, cc, co, CATEGORICAL_STATISTICS, **NO_MINIMUM)
    # The exact computation, straight from the raw arrays.
    labels, inverse = np.unique(np.concatenate([ref, cur]), return_inverse=True)
    p = np.bincount(inverse[: ref.size], minlength=labels.size) / ref.size
    q = np.bincount(inverse[ref.size :], minlength=labels.size) / cur.size
    table = np.rint([p * ref.size, q * cur.size])
    chi2 = stats.chi2_contingency(table, correction=False)
    exact = {
        "psi": psi(p, q),
        "js": float(jensenshannon(p, q, base=2)),
        "hellinger": hellinger(p, q),
        "linf": float(np.max(np.abs(p - q))),
        "unseen_share": float(np.isin(cur, ref, invert=True).mean()),
        "cramers_v": math.sqrt(0.5 * float(np.sum((p - q) ** 2 / (p + q)))),
    }
    check(results, exact)
    assert all(r.bound == 0.0 for r in results.values())
    v = results["cramers_v"]
    assert v.evidence["chi2"] == pytest.approx(chi2.statistic, rel=1e-9)
    assert v.evidence["dof"] == chi2.dof
    assert v.p_value == pytest.approx(chi2.pvalue, rel=1e-6, abs=1e-300)
    assert v.evidence["cramers_v_plain"] == pytest.approx(
        stats.contingency.association(table.astype(np.int64), method="cramer"), rel=1e-9
    )


@pytest.mark.parametrize("shift", [0.0, 0.4])
def test_categorical_top_k_with_other_is_the_aligned_table(shift: float) -> None:
    """With top-10 tracking and ``other``, the statistics are the formulas on the aligned table
    (bound 0) and the unseen share is an upper limit whose bound covers the truth."""
    rng = np.random.default_rng(21)
    ref, cur = raw_categories(rng, 20_000, 0.0), raw_categories(rng, 5_000, shift)
    (rc, ro), (cc, co) = counts_of(ref, top=10), counts_of(cur, top=10)
    results = categorical_drift(rc, ro, cc, co, CATEGORICAL_STATISTICS, **NO_MINIMUM)
    aligned = align_counts(rc, ro, cc, co)
    assert aligned.labels[-1] == OTHER
    assert aligned.reference.sum() == ref.size and aligned.current.sum() == cur.size
    p, q = aligned.reference / ref.size, aligned.current / cur.size
    table = np.array([aligned.reference, aligned.current])
    exact = {
        "psi": psi(p, q),
        "js": float(jensenshannon(p, q, base=2)),
        "hellinger": hellinger(p, q),
        "linf": float(np.max(np.abs(p - q))),
        "cramers_v": math.sqrt(0.5 * float(np.sum((p - q) ** 2 / (p + q)))),
        "unseen_share": float(np.isin(cur, ref, invert=True).mean()),  # from the raw data
    }
    check(results, exact)
    chi2 = stats.chi2_contingency(table, correction=False)
    assert results["cramers_v"].evidence["chi2"] == pytest.approx(chi2.statistic, rel=1e-9)
    assert results["psi"].evidence["other"]["treated_as_category"] is True


def test_balanced_cramers_v_is_cramers_v_at_equal_sizes() -> None:
    ref, cur = {"a": 600, "b": 300, "c": 100}, {"a": 450, "b": 350, "c": 200}
    r = categorical_drift(ref, 0, cur, 0, ["cramers_v"])["cramers_v"]
    table = np.array([list(ref.values()), list(cur.values())])
    assert r.value == pytest.approx(stats.contingency.association(table, method="cramer"))
    # A 10x larger reference with the same shares: plain V shrinks, the thresholded one stays.
    big = {k: 10 * v for k, v in ref.items()}
    r10 = categorical_drift(big, 0, cur, 0, ["cramers_v"])["cramers_v"]
    assert r10.value == pytest.approx(r.value)
    assert r10.evidence["cramers_v_plain"] < 0.7 * r.evidence["cramers_v_plain"]


@settings(max_examples=100, deadline=None)
@given(small_samples, small_samples)
def test_exact_quantile_sketches_equal_scipy_on_any_small_sample(
    a: list[float], b: list[float]
) -> None:
    ref, cur = (np.array(x).astype(np.float32).astype(np.float64) for x in (a, b))
    results = numeric_drift(
        sketch(ref, "quantile"), sketch(cur, "quantile"), NUMERIC_STATISTICS, **NO_MINIMUM
    )
    exact = exact_numeric(results, ref, cur)
    for name, result in results.items():
        assert result.bound == 0.0
        assert result.value == pytest.approx(exact[name], rel=1e-9, abs=1e-9), name


def test_quantile_sketch_bounds_tighten_with_k_and_equal_the_sketches() -> None:
    rng = np.random.default_rng(13)
    ref = rng.normal(size=200_000).astype(np.float32).astype(np.float64)
    cur = rng.normal(0.3, size=50_000).astype(np.float32).astype(np.float64)
    small_ref, small_cur = sketch(ref, "quantile"), sketch(cur, "quantile")
    small = numeric_drift(small_ref, small_cur, NUMERIC_STATISTICS, **NO_MINIMUM)
    large = numeric_drift(
        sketch(ref, "quantile", 2000),
        sketch(cur, "quantile", 2000),
        NUMERIC_STATISTICS,
        **NO_MINIMUM,
    )
    check(small, exact_numeric(small, ref, cur))
    check(large, exact_numeric(large, ref, cur))
    eps = small_ref.rank_error_bound(), small_cur.rank_error_bound()
    assert small["ks"].evidence["rank_error"] == {"reference": eps[0], "current": eps[1]}
    assert small["ks"].bound >= sum(eps)
    for name in NUMERIC_STATISTICS:
        assert large[name].bound < small[name].bound / 3, name
