"""One feature's test for the calibrated rule: significance, effect size and PSI, from sketches.

:func:`numeric_test` compares two KLL sketches: the significance statistic (``ks`` by default;
``psi`` or ``js`` with their chi-square null), the effect = normalised Wasserstein (in
reference standard deviations, ``IQR / 1.349``; a pure location shift of ``s`` sd gives ``s``)
and PSI, shown. :func:`categorical_test` compares category counts: ``chi2`` (the 2 x k
homogeneity test with small cells pooled) by default, the effect = total-variation distance
of the shares (``sum |p - q| / 2``, in share points: 0.05 = five percentage points moved),
Jensen–Shannon distance as magnitude and PSI, shown.

A :class:`Test` knows its p-value and how to turn a p-value cut-off into the statistic's null
quantile (:meth:`Test.null_quantile`); the cut-off itself comes from the family
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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from driftwire.stats._common import DriftResult, Status, binned_value
from driftwire.stats.categorical import align_counts, categorical_drift
from driftwire.stats.numeric import numeric_drift
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
CATEGORICAL_SIGNIFICANCE = ("chi2", "psi", "js")


@dataclass(frozen=True, slots=True)
class Test:
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


def refused(test: Test, cutoff: float) -> Test:
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
    return Test(test.statistic, None, None, None, None, test.effect_unit, result)


def ks_p_min(n_reference: int, n_current: int) -> float:
    """Exact p-value of D = 1 (the two samples do not overlap): ``2 / C(n + m, n)``."""
    log_choose = (
        special.gammaln(n_reference + n_current + 1)
        - special.gammaln(n_reference + 1)
        - special.gammaln(n_current + 1)
    )
    return float(min(1.0, 2.0 * math.exp(-log_choose)))


def _unavailable(statistic: str, result: DriftResult, unit: str) -> Test:
    return Test(statistic, None, None, None, None, unit, result)


def numeric_test(
    reference: Any,
    current: Any,
    statistic: str = "ks",
    *,
    min_count: int = 1,
    sketch_error: SketchError = "variance",
    reference_cache: dict[str, Any] | None = None,
) -> Test:
    """The calibrated test of two KLL sketches (see the module docstring)."""
    names = ["ks", "wasserstein", "psi"] if statistic == "ks" else [statistic, "wasserstein"]
    if "psi" not in names:
        names.append("psi")
    results = numeric_drift(
        reference,
        current,
        names,
        min_count=min_count,
        min_reference_count=1,
        reference_cache=reference_cache,
    )
    main = results[statistic]
    if main.value is None:
        return _unavailable(statistic, main, "sd")
    n_r, n_c = main.n_reference, main.n_current
    wasserstein = results["wasserstein"].value
    shown = {"psi": results["psi"].value, "wasserstein": wasserstein}
    if statistic == "ks":
        eps = main.evidence["rank_error"]
        e_r, e_c = float(eps["reference"]), float(eps["current"])
        p, n_eff, tested = ks_p_value(main.value, n_r, n_c, e_r, e_c, sketch_error)
        null = {"kind": "ks", "n_effective": n_eff, "sketch_error": sketch_error}
    else:
        dof = _binned_dof(main)
        p = binned_p_value(statistic, main.value, dof, n_r, n_c)
        tested = main.value
        null = {"kind": statistic, "dof": dof}
    extreme = "a window wholly beside the reference (D = 1)"
    p_min = ks_p_min(n_r, n_c)
    return Test(
        statistic, main.value, tested, p, wasserstein, "sd", main, shown, null, p_min, extreme
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
) -> Test:
    """The calibrated test of two category-count tables (see the module docstring)."""
    shown_names = ["psi", "js"]
    results = categorical_drift(
        reference,
        reference_other,
        current,
        current_other,
        shown_names,
        min_count=min_count,
        min_reference_count=1,
    )
    base = results["psi"]
    if base.value is None:
        return _unavailable(statistic, base, "share")
    n_r, n_c = base.n_reference, base.n_current
    aligned = align_counts(reference, reference_other, current, current_other)
    p_ref, p_cur = aligned.reference / n_r, aligned.current / n_c
    tvd = 0.5 * float(np.abs(p_ref - p_cur).sum())
    shown: dict[str, float | None] = {"psi": base.value, "js": results["js"].value}
    if statistic == "chi2":
        n = n_r + n_c
        p_min = float(special.chdtrc(1, n))  # two disjoint categories: chi2 = N, 1 dof
        extreme = f"no shared category (chi2 = {n})"
        chi2, dof, p, pooled = chi2_homogeneity(aligned.reference, aligned.current, aligned.labels)
        evidence = {
            "dof": dof,
            "pooled": pooled[:20],
            "top_categories": base.evidence.get("top_categories", []),
            "other": base.evidence.get("other"),
            "p_value_method": "Pearson chi-square, 2 x k, cells pooled to expected counts >= 5",
        }
        main = DriftResult("chi2", chi2, 0.0, p, n_r, n_c, "ok", evidence)
        null = {"kind": "chi2", "dof": max(dof, 1)}
        return Test("chi2", chi2, chi2, p, tvd, "share", main, shown, null, p_min, extreme)
    main = results.get(statistic, base)
    dof = max(len(aligned.labels) - 1, 0)
    value = float(main.value) if main.value is not None else binned_value(statistic, p_ref, p_cur)
    p = binned_p_value(statistic, value, dof, n_r, n_c)
    null = {"kind": statistic, "dof": dof}
    return Test(statistic, value, value, p, tvd, "share", main, shown, null)


def describe_effect(effect: float, unit: str) -> str:
    """``0.14 sd`` or ``3.1 points`` (of share)."""
    if unit == "sd":
        return f"{effect:.2g} sd"
    return f"{effect * 100:.2g} points"


def finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x
