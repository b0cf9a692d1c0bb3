"""Null distributions and false-discovery control: how surprising a drift statistic is.

The calibrated detection rule (:mod:`driftwire.detect.compare`) asks of every test one p-value,
the probability of a value at least as large when the window and the reference come from one
distribution, *at their actual sizes*; then a multiple-testing procedure over all tests of one
model version in one window gives the cut-off a p-value must reach (:func:`fdr_threshold`):
Benjamini–Hochberg's or –Yekutieli's step-up, or Holm's step-down, whose first cut-off is the
same but which does not loosen it for the others when one test is a strong discovery.

* **KS** (:func:`ks_p_value`): the Kolmogorov distribution at ``n_e = n m / (n + m)``, with
  Stephens' finite-sample correction ``lambda = (sqrt(n_e) + 0.12 + 0.11 / sqrt(n_e)) D``
  (within 5% of the exact ``scipy.stats.kstwo`` for ``n_e >= 100`` down to p = 1e-8; below
  ``n_e = 50`` the exact ``kstwo`` is used: it is cheap there). A sketch's rank error widens the
  null: ``variance`` (default) adds the sketches' CDF error, taken as a normal error whose 99%
  quantile is the sketch's rank-error bound ``eps``, to the empirical process's variance at the
  median, ``1 / n' = 1 / n_e + 4 (s_r^2 + s_c^2)``, ``s = eps / 2.576``; ``worst_case``
  subtracts the whole bound, ``D' = max(0, D - eps_r - eps_c)``. Ties (discrete data) make KS
  conservative: the p-value is at least the exact one.
* **chi-square** (:func:`chi2_homogeneity`): Pearson's test of the 2 x k table of counts, after
  pooling the categories with the smallest totals until every expected count is at least 5.
* **binned** PSI and JS (:func:`binned_p_value`): ``PSI / (1/n + 1/m) ~ chi2(k - 1)`` and
  ``8 ln 2 JS_div / (1/n + 1/m) ~ chi2(k - 1)`` (their small-difference expansions).

>>> f"{ks_p_value(0.06, 60_000, 2_500)[0]:.2g}"       # exact sketches
'5.7e-08'
>>> fdr_cutoff([0.001, 0.02, 0.04, 0.3], 0.05, "bh")  # 2 x 0.05 / 4 = 0.025 >= 0.02
0.02
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import special, stats

from driftwire.stats._common import FloatArray

SketchError = Literal["variance", "worst_case"]
#: bh / by: Benjamini–Hochberg / –Yekutieli step-up; holm: Holm's step-down at q; holm_by: Holm's
#: step-down at q / c(m), whose first cut-off is BY's
FdrMethod = Literal["bh", "by", "holm", "holm_by"]

#: Below this effective sample size the exact two-sided one-sample distribution (kstwo) is used.
EXACT_KS_BELOW = 50
#: The two-sided 99% quantile of the standard normal: a rank-error bound at 99% over this is an sd.
_Z99 = 2.5758293035489004
#: Every expected count of a chi-square table is at least this after pooling.
MIN_EXPECTED = 5.0


def _stephens(n: float) -> float:
    root = math.sqrt(n)
    return root + 0.12 + 0.11 / root


def ks_effective_n(
    n_reference: int,
    n_current: int,
    eps_reference: float = 0.0,
    eps_current: float = 0.0,
    sketch_error: SketchError = "variance",
) -> float:
    """The sample size of the Kolmogorov null: ``n m / (n + m)``, lowered by sketch error.

    >>> ks_effective_n(60_000, 2_500)
    2400.0
    >>> round(ks_effective_n(60_000, 2_500, 0.0133, 0.0133))
    1587
    """
    n_e = n_reference * n_current / (n_reference + n_current)
    if sketch_error == "worst_case":
        return n_e
    var = ((eps_reference / _Z99) ** 2 + (eps_current / _Z99) ** 2) * 4.0
    return 1.0 / (1.0 / n_e + var)


def ks_p_value(
    d: float,
    n_reference: int,
    n_current: int,
    eps_reference: float = 0.0,
    eps_current: float = 0.0,
    sketch_error: SketchError = "variance",
) -> tuple[float, float, float]:
    """``(p, n', D')``: the p-value of a two-sample KS distance ``d`` from sketches.

    ``D'`` is the distance the null is evaluated at (``d`` less the rank errors with
    ``worst_case``), ``n'`` its effective sample size.
    """
    n = ks_effective_n(n_reference, n_current, eps_reference, eps_current, sketch_error)
    used = d if sketch_error == "variance" else max(0.0, d - eps_reference - eps_current)
    if used <= 0.0:
        return 1.0, n, used
    if n < EXACT_KS_BELOW:
        return float(stats.kstwo.sf(used, max(1, round(n)))), n, used
    return float(min(1.0, special.kolmogorov(_stephens(n) * used))), n, used


def ks_null_quantile(p: float, n_effective: float) -> float:
    """The KS distance whose p-value is ``p`` at ``n'`` (the null's ``1 - p`` quantile).

    >>> round(ks_null_quantile(1e-4, 2400.0), 4)
    0.0453
    """
    p = min(max(p, 1e-300), 1.0)
    if n_effective < EXACT_KS_BELOW:
        return float(stats.kstwo.isf(p, max(1, round(n_effective))))
    return float(special.kolmogi(p)) / _stephens(n_effective)


def chi2_homogeneity(
    reference: FloatArray, current: FloatArray, labels: Sequence[str]
) -> tuple[float, int, float, list[str]]:
    """Pearson's chi-square test that two rows of counts share one distribution.

    Categories are pooled, smallest column total first, into one cell until every expected
    count is at least 5 (and the pooled cell too, taking further categories if needed);
    categories empty on both sides are dropped. Returns ``(chi2, dof, p, pooled labels)``;
    with fewer than two cells left: ``(0, 0, 1, ...)``. Without pooling it equals
    ``scipy.stats.chi2_contingency(table, correction=False)``.

    >>> chi2, dof, p, pooled = chi2_homogeneity(
    ...     np.array([500.0, 300, 200, 3]), np.array([300.0, 300, 200, 1]), ["a", "b", "c", "d"])
    >>> dof, pooled, round(chi2, 2)
    (2, ['d', 'c'], 27.74)
    """
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    n_r, n_c = float(r.sum()), float(c.sum())
    if n_r <= 0 or n_c <= 0:
        return 0.0, 0, 1.0, []
    total = r + c
    keep = total > 0
    r, c, total = r[keep], c[keep], total[keep]
    names = [name for name, k in zip(labels, keep.tolist(), strict=True) if k]
    # a column with total t has expected counts t n_r / N and t n_c / N: both >= 5 iff t >= need
    need = MIN_EXPECTED * (n_r + n_c) / min(n_r, n_c)
    order = np.argsort(total, kind="stable")
    small = int(np.searchsorted(total[order], need))
    pooled: list[str] = []
    if small:
        take, pooled_total = small, float(total[order[:small]].sum())
        while pooled_total < need and take < order.size:
            pooled_total += float(total[order[take]])
            take += 1
        if take > 1:
            idx = order[:take]
            pooled = [names[i] for i in idx.tolist()]
            rest = np.ones(r.size, dtype=bool)
            rest[idx] = False
            r = np.append(r[rest], r[idx].sum())
            c = np.append(c[rest], c[idx].sum())
            total = r + c
    dof = r.size - 1
    if dof < 1:
        return 0.0, 0, 1.0, pooled
    n = n_r + n_c
    exp_r, exp_c = total * (n_r / n), total * (n_c / n)
    chi2 = float(((r - exp_r) ** 2 / exp_r).sum() + ((c - exp_c) ** 2 / exp_c).sum())
    return chi2, dof, float(special.chdtrc(dof, chi2)), pooled


def chi2_null_quantile(p: float, dof: int) -> float:
    """The chi-square value whose upper tail is ``p`` with ``dof`` degrees of freedom."""
    return float(special.chdtri(dof, min(max(p, 1e-300), 1.0)))


def binned_scale(statistic: str, n_reference: int, n_current: int) -> float:
    """The factor that turns PSI / JS distance into its chi-square variable."""
    s = 1.0 / n_reference + 1.0 / n_current
    return 1.0 / s if statistic == "psi" else 8.0 * math.log(2.0) / s


def binned_p_value(
    statistic: str, value: float, dof: int, n_reference: int, n_current: int
) -> float:
    """p-value of PSI or a JS distance over ``dof + 1`` bins from its chi-square approximation.

    >>> round(binned_p_value("psi", 0.01, 9, 60_000, 2_500), 4)
    0.0043
    """
    if dof < 1:
        return 1.0
    x = value if statistic == "psi" else value * value
    return float(special.chdtrc(dof, x * binned_scale(statistic, n_reference, n_current)))


def binned_null_quantile(
    statistic: str, p: float, dof: int, n_reference: int, n_current: int
) -> float:
    """The PSI or JS distance whose p-value is ``p`` (inverse of :func:`binned_p_value`)."""
    x = chi2_null_quantile(p, max(dof, 1)) / binned_scale(statistic, n_reference, n_current)
    return x if statistic == "psi" else math.sqrt(x)


def by_factor(m: int) -> float:
    """Benjamini–Yekutieli's ``c(m) = sum_{i<=m} 1/i`` (any dependence between the tests)."""
    return float(np.sum(1.0 / np.arange(1, m + 1))) if m > 0 else 1.0


def _scale(method: FdrMethod, m: int) -> float:
    return by_factor(m) if method in ("by", "holm_by") else 1.0


def _holm_rejections(p_sorted: FloatArray, q: float, c: float) -> int:
    """How many of the sorted p-values Holm's step-down rejects at level ``q / c``."""
    m = p_sorted.size
    lines = q / (c * (m - np.arange(m)))  # q / (c m), q / (c (m - 1)), ..., q / c
    above = np.flatnonzero(p_sorted > lines)
    return m if above.size == 0 else int(above[0])


def fdr_cutoff(p_values: Sequence[float], q: float, method: FdrMethod = "bh") -> float | None:
    """The largest p-value rejected at level ``q``, or ``None`` when nothing is rejected.

    ``bh`` / ``by``: Benjamini–Hochberg / –Yekutieli (step-up: the largest ``p_(i) <= i q /
    (m c)``); ``holm`` / ``holm_by``: Holm's step-down (``p_(1) <= q / (m c)``, ``p_(2) <= q /
    ((m - 1) c)``, ... until the first that is not), with ``c = 1``, or ``c(m)`` for ``by`` and
    ``holm_by``. A test is a discovery iff its p-value is at most the cut-off.

    >>> fdr_cutoff([0.01, 0.02, 0.9], 0.05, "bh"), fdr_cutoff([0.01, 0.02, 0.9], 0.05, "by")
    (0.02, None)
    >>> fdr_cutoff([0.01, 0.02, 0.9], 0.05, "holm")   # 0.01 <= 0.05/3, 0.02 <= 0.05/2
    0.02
    >>> fdr_cutoff([0.001, 0.03, 0.9], 0.05, "bh"), fdr_cutoff([0.001, 0.03, 0.9], 0.05, "holm")
    (0.03, 0.001)
    """
    m = len(p_values)
    if m == 0:
        return None
    p = np.sort(np.asarray(p_values, dtype=np.float64))
    c = _scale(method, m)
    if method in ("holm", "holm_by"):
        k = _holm_rejections(p, q, c)
        return None if k == 0 else float(p[k - 1])
    line = q * np.arange(1, m + 1) / (m * c)
    hits = np.flatnonzero(p <= line)
    return None if hits.size == 0 else float(p[hits[-1]])


def fdr_threshold(p_values: Sequence[float], q: float, method: FdrMethod = "bh") -> float:
    """The p-value cut-off of this family; with no discovery, what one discovery would need.

    With ``k`` discoveries: ``max(k, 1) q / (m c)`` for BH / BY (``c = 1`` for BH, ``c(m)`` for
    BY); ``q / ((m - max(k, 1) + 1) c)`` for Holm (the line the k-th smallest p-value passed:
    every discovery is at most it, every other p-value above the next line, which is higher).
    A test is a discovery iff its p-value is at most it. Both start at ``q / (m c)``; BH's grows
    with every discovery (the j-th of k discoveries may be as large as ``k q / m``), Holm's
    barely (``q / (m - k + 1)``), so a strong discovery does not lower the bar for the others.

    >>> fdr_threshold([0.001, 0.02, 0.04, 0.3], 0.05), fdr_threshold([0.5, 0.9], 0.05)
    (0.025, 0.025)
    >>> fdr_threshold([0.001, 0.02, 0.04, 0.3], 0.05, "holm")  # 0.001 <= 0.0125, 0.02 > 0.0167
    0.0125
    """
    m = max(len(p_values), 1)
    c = _scale(method, m)
    cut = fdr_cutoff(p_values, q, method)
    k = 0 if cut is None else int(np.sum(np.asarray(p_values, dtype=np.float64) <= cut))
    if method in ("holm", "holm_by"):
        return q / ((m - max(k, 1) + 1) * c)
    return max(k, 1) * q / (m * c)
