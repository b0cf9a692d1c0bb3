"""One feature's test for the calibrated rule: significance, effect size and PSI, from sketches.

:func:`numeric_test` compares two KLL sketches: the significance statistic (``ks`` by default;
``psi`` or ``js`` with their chi-square null), the effect = normalised Wasserstein (in
reference standard deviations, ``IQR / 1.349``; a pure location shift of ``s`` sd gives ``s``)
and PSI, shown. :func:`categorical_test` compares category counts: ``chi2`` (the 2 x k
homogeneity test with small cells pooled) by default, the effect = total-variation distance
of the shares (``sum |p - q| / 2``, in share points: 0.05 = five percentage points moved),
Jensen–Shannon distance as magnitude and PSI, shown.

A :class:`FeatureTest` knows its p-value and how to turn a p-value cut-off into the statistic's null
quantile (:meth:`FeatureTest.null_quantile`); the cut-off itself comes from the family
(:func:`driftwire.stats.significance.fdr_threshold`).

A reference too small for any decision is refused (:func:`refused`, by the family's decision):
when even the most extreme outcome (KS ``D = 1``: the window lies wholly beside the reference,
exact p = ``2 / C(n + m, n)``; chi-square: the two sides share no category, chi2 = n + m) has a
p-value above the cut-off the test would need as the family's only discovery (``q / m``).
At q = 0.01 and m = 100 tests: a 1-event reference against windows under 20,000 events, a
2-event one against windows under 199 events; from 3 events on, against windows of at least
``min_count`` = 200 events, every reference is decided.

>>> import datasketches, numpy as np
>>> rng = np.random.default_rng(3)
>>> ref, cur = datasketches.kll_doubles_sketch(200), datasketches.kll_doubles_sketch(200)
>>> ref.update(rng.normal(size=150)); cur.update(rng.normal(1.0, size=150))
>>> t = numeric_test(ref, cur, "ks")
>>> t.status, t.p_value < 1e-6, 0.7 < t.effect < 1.3
('ok', True, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import special

from driftwire.sketch.quantiles import QuantileSketch
from driftwire.stats._common import (
    DEFAULT_BINS,
    DriftResult,
    FloatArray,
    Status,
    binned_value,
    guard,
    unavailable,
)
from driftwire.stats._weighted import WeightedItems, cdf_distances
from driftwire.stats.categorical import align_counts
from driftwire.stats.numeric import (
    _grid_points,
    _scale,
    _side,
    numeric_drift,
    reference_edges,
)
from driftwire.stats.significance import (
    SketchError,
    binned_null_quantile,
    binned_p_value,
    chi2_homogeneity,
    chi2_null_quantile,
    ks_null_quantile,
    ks_p_value,
)

NUMERIC_SIGNIFICANCE = ("ks", "psi", "js")
#: Mid-rank quantiles read per sketch in estimation mode from a sketch with no sorted view
#: (datasketches KLL): a grid CDF is then within ``eps + 1 / 2048`` of the sketch's (a coarser
#: grid inflates D under the null). A QuantileSketch is compared on its own items, no grid.
CALIBRATED_GRID = 1024
CATEGORICAL_SIGNIFICANCE = ("chi2", "psi", "js")


@dataclass(frozen=True, slots=True)
class FeatureTest:
    """One significance test of one feature, with its effect size and PSI.

    ``value`` is the significance statistic (KS ``D``, chi-square, PSI or JS distance);
    ``tested`` the value the null is evaluated at (``D`` less the sketch error with the
    ``worst_case`` widening, else ``value``); ``effect`` the relevance measure in
    ``effect_unit`` (``sd`` or ``share``). ``null`` holds what :meth:`null_quantile` needs.
    ``result`` is the significance statistic's :class:`DriftResult` (its evidence, bound and
    counts), ``shown`` the other statistics' values (``psi``, ``wasserstein`` / ``js``).
    """

    statistic: str
    value: float | None
    tested: float | None
    p_value: float | None
    effect: float | None
    effect_unit: str
    result: DriftResult
    shown: dict[str, float | None] = field(default_factory=dict)
    null: dict[str, Any] = field(default_factory=dict)
    #: the p-value of the most extreme outcome at these sizes, and that outcome in words
    p_min: float = 0.0
    extreme: str = ""

    @property
    def status(self) -> Status:
        return self.result.status

    def null_quantile(self, p: float) -> float:
        """The statistic's value whose p-value is ``p`` at these sample sizes."""
        kind = self.null["kind"]
        if kind == "ks":
            return ks_null_quantile(p, self.null["n_effective"])
        if kind == "chi2":
            return chi2_null_quantile(p, self.null["dof"])
        return binned_null_quantile(
            kind, p, self.null["dof"], self.result.n_reference, self.result.n_current
        )


def refused(test: FeatureTest, cutoff: float) -> FeatureTest:
    """``test`` refused: its reference is too small for even the most extreme outcome to
    reach ``cutoff`` (the p-value it would need as the family's only discovery)."""
    r = test.result
    reason = (
        f"the reference has {r.n_reference} events, too few for any decision: even "
        f"{test.extreme} has p = {test.p_min:.3g} > {cutoff:.3g}, the cut-off it would need"
    )
    result = DriftResult(
        test.statistic,
        None,
        0.0,
        None,
        r.n_reference,
        r.n_current,
        "insufficient_data",
        {"reason": reason, "reference_too_small": True},
    )
    return FeatureTest(test.statistic, None, None, None, None, test.effect_unit, result)


def ks_p_min(n_reference: int, n_current: int) -> float:
    """Exact p-value of D = 1 (the two samples do not overlap): ``2 / C(n + m, n)``.

    >>> round(ks_p_min(2, 3), 12)  # 2 of the C(5, 2) = 10 orderings put one wholly below
    0.2
    """
    log_choose = (
        math.lgamma(n_reference + n_current + 1)
        - math.lgamma(n_reference + 1)
        - math.lgamma(n_current + 1)
    )
    return min(1.0, 2.0 * math.exp(-log_choose))


def _unavailable(statistic: str, result: DriftResult, unit: str) -> FeatureTest:
    return FeatureTest(statistic, None, None, None, None, unit, result)


def _weighted(sketch: Any, side: Any, grid: int) -> tuple[WeightedItems, float]:
    """The CDF a sketch answers, as weighted sorted items, and how far it is from the data's.

    A :class:`~driftwire.sketch.quantiles.QuantileSketch` gives its retained items and weights:
    its own CDF, within its rank-error bound. Other KLL sketches are read at ``grid``
    mid-rank quantiles (every item if exact), within ``eps + 1 / (2 grid)``.
    """
    if isinstance(sketch, QuantileSketch):
        return WeightedItems.of_cumulative(*sketch.cumulative_view()), side.eps
    points = _grid_points(side, grid)
    ranks = np.arange(1, points.size + 1)
    return WeightedItems.of_cumulative(points, ranks), 0.0 if side.exact else side.eps + 0.5 / grid


@dataclass(frozen=True, slots=True)
class ReferenceSide:
    """What the calibrated numeric test needs of a reference, read once per reference."""

    items: WeightedItems
    bound: float  # the most its CDF may be off the data's
    scale: float
    scale_kind: str
    edges: FloatArray
    shares: FloatArray  # of the PSI bins [lower, upper) at ``edges``
    quantiles: dict[str, float]


def _read_reference(reference: Any, ref: Any, grid: int) -> ReferenceSide:
    items, bound = _weighted(reference, ref, grid)
    q25, q50, q75 = ref.quantiles([0.25, 0.5, 0.75], True)
    scale, kind = _scale(q25, q50, q75, None if q75 > q25 else _grid_points(ref, grid))
    edges = reference_edges(reference, DEFAULT_BINS)
    return ReferenceSide(
        items, bound, scale, kind, edges, items.shares_below(edges), _quantiles(items)
    )


def _reference_side(
    reference: Any, ref: Any, cache: dict[str, Any] | None, grid: int
) -> ReferenceSide:
    """The reference's :class:`ReferenceSide`: read once, then kept in ``cache``."""
    key = f"calibrated:{ref.n}:{grid}"
    if cache is not None and cache.get("calibrated_of") is reference and key in cache:
        found: ReferenceSide = cache[key]
        return found
    found = _read_reference(reference, ref, grid)
    if cache is not None:
        if cache.get("calibrated_of") is not reference:
            for k in [k for k in cache if k.startswith("calibrated:")]:
                del cache[k]
            cache["calibrated_of"] = reference
        cache[key] = found
    return found


def _quantiles(side: WeightedItems) -> dict[str, float]:
    p5, p50, p95 = side.quantiles([0.05, 0.5, 0.95]).tolist()
    return {"p5": p5, "p50": p50, "p95": p95}


def _numeric_side(
    reference: Any, current: Any, cache: dict[str, Any] | None, grid: int, min_count: int
) -> tuple[DriftResult, float | None, float]:
    """KS (with evidence), normalised Wasserstein and PSI from the two sketches' CDFs.

    Both CDFs are the sketches' own, read off their weighted sorted items
    (:func:`driftwire.stats._weighted.cdf_distances`; the reference's read once and cached):
    exact sketches give every item, so D is exactly scipy's; otherwise D is within the two
    rank-error bounds of the data's (the KS ``bound``). PSI: the reference-decile bins of
    :func:`driftwire.stats.numeric.reference_edges`, both sides' shares from their exclusive
    CDFs at the edges (as the fixed rule's PSI). Sketches without a sorted view (datasketches
    KLL) are read at ``grid`` mid-rank quantiles instead, within ``eps + 1 / (2 grid)``.
    """
    ref, cur = _side(reference, "reference"), _side(current, "current")
    why = guard(ref.n, cur.n, min_count=min_count, min_reference_count=1)
    if why is not None:
        return unavailable("ks", ref.n, cur.n, why), None, 0.0
    r = _reference_side(reference, ref, cache, grid)
    c, c_bound = _weighted(current, cur, grid)
    dist = cdf_distances(r.items, c)
    psi = binned_value("psi", r.shares, c.shares_below(r.edges))
    wasserstein = dist.w1 / r.scale
    method = "the sketches' CDFs (weighted sorted items)"
    if not isinstance(reference, QuantileSketch) or not isinstance(current, QuantileSketch):
        method = f"CDFs read off {grid} mid-rank quantiles per sketch"
    evidence = {
        "at": dist.at,
        "reference_cdf": dist.reference_cdf,
        "current_cdf": dist.current_cdf,
        "n_effective": ref.n * cur.n / (ref.n + cur.n),
        "rank_error": {"reference": ref.eps, "current": cur.eps},
        "quantiles": {"reference": dict(r.quantiles), "current": _quantiles(c)},
        "wasserstein": {"value": wasserstein, "scale": r.scale, "scale_kind": r.scale_kind},
        "psi": {"value": psi, "edges": r.edges.tolist()},
        "method": method,
    }
    bound = r.bound + c_bound
    result = DriftResult("ks", dist.d, bound, None, ref.n, cur.n, "ok", evidence)
    return result, wasserstein, psi


def numeric_test(
    reference: Any,
    current: Any,
    statistic: str = "ks",
    *,
    min_count: int = 1,
    sketch_error: SketchError = "variance",
    reference_cache: dict[str, Any] | None = None,
    grid: int = CALIBRATED_GRID,
) -> FeatureTest:
    """The calibrated test of two KLL sketches (see the module docstring)."""
    ks, wasserstein, psi = _numeric_side(reference, current, reference_cache, grid, min_count)
    if ks.value is None or wasserstein is None:
        return _unavailable(statistic, replace(ks, statistic=statistic), "sd")
    n_r, n_c = ks.n_reference, ks.n_current
    shown: dict[str, float | None] = {"psi": psi, "wasserstein": wasserstein}
    if statistic == "ks":
        main = ks
        e = ks.evidence["rank_error"]
        p, n_eff, tested = ks_p_value(
            ks.value, n_r, n_c, float(e["reference"]), float(e["current"]), sketch_error
        )
        null = {"kind": "ks", "n_effective": n_eff, "sketch_error": sketch_error}
        value = ks.value
    else:
        main = numeric_drift(
            reference,
            current,
            [statistic],
            min_count=min_count,
            min_reference_count=1,
            reference_cache=reference_cache,
        )[statistic]
        value = float(main.value or 0.0)
        dof = _binned_dof(main)
        p = binned_p_value(statistic, value, dof, n_r, n_c)
        tested = value
        null = {"kind": statistic, "dof": dof}
    extreme = "a window wholly beside the reference (D = 1)"
    p_min = ks_p_min(n_r, n_c)
    return FeatureTest(
        statistic, value, tested, p, wasserstein, "sd", main, shown, null, p_min, extreme
    )


def _binned_dof(result: DriftResult) -> int:
    rows = result.evidence.get("edges")
    return 0 if rows is None else len(rows)


def categorical_test(
    reference: Mapping[str, int],
    reference_other: int,
    current: Mapping[str, int],
    current_other: int,
    statistic: str = "chi2",
    *,
    min_count: int = 1,
) -> FeatureTest:
    """The calibrated test of two category-count tables (see the module docstring).

    The categories are aligned once (:func:`driftwire.stats.categorical.align_counts`); PSI
    and the JS distance are those of :func:`driftwire.stats.categorical.categorical_drift`.
    """
    aligned = align_counts(reference, reference_other, current, current_other)
    n_r, n_c = int(aligned.reference.sum()), int(aligned.current.sum())
    why = guard(n_r, n_c, min_count=min_count, min_reference_count=1)
    if why is not None:
        return _unavailable(statistic, unavailable(statistic, n_r, n_c, why), "share")
    p_ref, p_cur = aligned.reference / n_r, aligned.current / n_c
    moved = np.abs(p_ref - p_cur)
    tvd = 0.5 * float(moved.sum())
    shown: dict[str, float | None] = {
        "psi": binned_value("psi", p_ref, p_cur),
        "js": binned_value("js", p_ref, p_cur),
    }
    order = np.argsort(-moved, kind="stable")[:5].tolist()
    top = [
        {"category": aligned.labels[i], "reference": float(p_ref[i]), "current": float(p_cur[i])}
        for i in order
    ]
    evidence: dict[str, Any] = {
        "top_categories": top,
        "folded_for_alignment": aligned.folded[:20],
    }
    if statistic != "chi2":
        dof = max(len(aligned.labels) - 1, 0)
        value = float(shown[statistic] or 0.0)
        p = binned_p_value(statistic, value, dof, n_r, n_c)
        main = DriftResult(statistic, value, 0.0, p, n_r, n_c, "ok", evidence)
        null = {"kind": statistic, "dof": dof}
        return FeatureTest(statistic, value, value, p, tvd, "share", main, shown, null)
    n = n_r + n_c
    p_min = float(special.chdtrc(1, n))  # two disjoint categories: chi2 = N, 1 dof
    extreme = f"no shared category (chi2 = {n})"
    chi2, dof, p, pooled = chi2_homogeneity(aligned.reference, aligned.current, aligned.labels)
    evidence.update(
        dof=dof,
        pooled=pooled[:20],
        p_value_method="Pearson chi-square, 2 x k, cells pooled to expected counts >= 5",
    )
    main = DriftResult("chi2", chi2, 0.0, p, n_r, n_c, "ok", evidence)
    null = {"kind": "chi2", "dof": max(dof, 1)}
    return FeatureTest("chi2", chi2, chi2, p, tvd, "share", main, shown, null, p_min, extreme)


#: How a significance test is named in alert text.
TEST_NAMES = {"ks": "KS", "chi2": "chi2", "psi": "PSI", "js": "JS"}


def describe_effect(effect: float, unit: str) -> str:
    """``0.14 sd`` or ``3.1 points`` (of share)."""
    if unit == "sd":
        return f"{effect:.2g} sd"
    return f"{effect * 100:.2g} points"
