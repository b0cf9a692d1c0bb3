"""Drift of a numeric distribution, from two quantile sketches.

Inputs are :class:`driftwire.sketch.quantiles.QuantileSketch` objects (what profiles hold:
deterministic, float32) or Apache DataSketches' ``kll_doubles_sketch`` / ``kll_floats_sketch``
(float32 sketches are "exact" on the float32-rounded values). Only their queries are used:
counts, min / max, quantiles, CDF and the rank error.

How each statistic is read off the sketches, and its error bound. ``eps`` is the sketch's
rank error, 0 for an exact sketch. For a ``QuantileSketch`` it is ``rank_error_bound()``, a
worst-case bound that holds with certainty at every point at once (0.0056 at 1e4 values and
0.011 at 1e6 for k = 200, fed in small batches). For a datasketches KLL sketch in estimation
mode it is ``get_normalized_rank_error(k, False)`` (0.0133 at k = 200), which holds with 99%
confidence for one query. Both keep min and max exactly, so the CDF is exact outside
``[min, max]``. The bounds below are therefore certain for ``QuantileSketch`` inputs.

* **ks**: the largest ``|F_ref - F_cur|`` of the right-continuous CDFs ``P(X <= x)`` over the
  union of both sketches' quantile grids (``grid`` mid-ranks each, or every item of an exact
  sketch), which handles ties as ``scipy.stats.ks_2samp`` does. Bound: ``eps_ref + eps_cur``
  plus the most the sketch CDFs could still differ by between grid points (computed; 0 in
  exact mode). ``p_value``: the asymptotic Kolmogorov distribution
  at ``sqrt(n_eff) * D``, ``n_eff = n_ref n_cur / (n_ref + n_cur)``: informational only.
* **psi**, **js**, **hellinger**: on bins at the reference's quantiles (``bins`` = 10), see
  :func:`reference_edges`. A bin is ``[lower, upper)``, the outer bins are open. Shares are
  CDF differences, so each is off by at most the ``eps`` of its two edges (0 at an edge where
  the CDF is exact); the bound is the worst case over those share intervals
  (:class:`driftwire.stats._common.BinnedShares`).
* **wasserstein**: ``W1 = integral |F_ref - F_cur| dx`` over the union grid, divided by the
  reference scale (:func:`reference_scale`). Bound: ``(eps_ref * range_ref + eps_cur *
  range_cur + grid slack) / scale``, since ``integral |F_sketch - F| dx <= eps * (max - min)``.

How wide the bounds are with datasketches KLL inputs, both in estimation mode (1e6 vs 1e5
normal events, mean shifts 0 / 0.2 / 0.5 sd): at k = 200, KS +-0.027; PSI +-0.27 / 0.38 / 0.67;
JS +-0.2; Hellinger +-0.17; Wasserstein +-0.27 (in sd; for heavy tails several sd, since it
grows with the range). At k = 1000: KS +-0.008, PSI +-0.01 / 0.04 / 0.09, JS +-0.04, Hellinger
+-0.03, Wasserstein +-0.07. ``QuantileSketch`` inputs at k = 200 (the profile's) give the
figures of ``load_tests/bench_drift.py``. The binned bounds are worst cases over every bin at
once; the errors measured against exact computation are several times smaller
(tests/stats/test_drift_accuracy.py).

>>> import datasketches
>>> ref, cur = datasketches.kll_doubles_sketch(200), datasketches.kll_doubles_sketch(200)
>>> ref.update(np.arange(100.0)); cur.update(np.arange(100.0) + 30)
>>> r = numeric_drift(ref, cur, min_count=1, min_reference_count=1)
>>> round(r["ks"].value, 2), r["ks"].bound, round(r["psi"].value, 3), r["psi"].status
(0.3, 0.0, 2.486, 'ok')
>>> w = r["wasserstein"]       # W1 = 30, in units of the reference's IQR / 1.349
>>> round(w.evidence["unnormalized"], 9), round(w.evidence["scale"], 2), round(w.value, 3)
(30.0, 37.07, 0.809)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import datasketches
import numpy as np
from scipy import special

from driftwire.errors import ConfigError, InputError
from driftwire.sketch.quantiles import QuantileSketch
from driftwire.stats._common import (
    BINNED_STATISTICS,
    DEFAULT_BINS,
    DEFAULT_MIN_COUNT,
    DEFAULT_MIN_REFERENCE_COUNT,
    NUMERIC_STATISTICS,
    PSI_FLOOR,
    BinnedShares,
    DriftResult,
    FloatArray,
    binned_null_p99,
    check_statistics,
    guard,
    top_rows,
    unavailable,
)

#: Quantile-grid points read from a sketch in estimation mode (an exact sketch gives all items).
DEFAULT_GRID = 256
#: Interquartile range of the standard normal: IQR / this is a robust standard deviation.
ROBUST_SD_IQR = 1.3489795003921634
_KS_NULL_P99 = float(special.kolmogi(0.01))


def _read_attr(obj: Any, *names: str) -> Any:
    """The first of ``names`` that exists: a property's value or a method's result.

    datasketches 5.x exposes ``n`` and ``k`` as properties and ``is_empty()`` as a method;
    older bindings and other languages use ``get_n()`` / ``get_k()``. Accept both.
    """
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value() if callable(value) else value
    raise InputError(f"{type(obj).__name__} has none of {names}: not a KLL sketch")


@dataclass(frozen=True, slots=True)
class _Side:
    """What is read once from one sketch, and its two queries.

    ``quantiles(ranks, inclusive)`` and ``cdf(points, inclusive)`` (one value per point).
    """

    quantiles: Callable[[Sequence[float], bool], list[float]]
    cdf: Callable[[Sequence[float], bool], FloatArray]
    n: int
    eps: float  # normalized rank error; 0 for an exact sketch
    lo: float
    hi: float
    float32: bool

    @property
    def exact(self) -> bool:
        return self.eps == 0.0


def _side(sketch: Any, role: str) -> _Side:
    if isinstance(sketch, QuantileSketch):

        def ask(ranks: Sequence[float], inclusive: bool) -> list[float]:
            values: list[float] = sketch.quantiles(ranks, inclusive).tolist()
            return values

        def cdf(points: Sequence[float], inclusive: bool) -> FloatArray:
            return sketch.cdf(points, inclusive)

        bound = sketch.rank_error_bound()
        return _Side(ask, cdf, sketch.n, bound, sketch.min, sketch.max, True)
    if not all(hasattr(sketch, m) for m in ("get_cdf", "get_quantiles", "get_min_value")):
        raise InputError(
            f"{role}: expected a QuantileSketch or a KLL sketch (datasketches."
            f"kll_doubles_sketch or kll_floats_sketch), got {type(sketch).__name__}"
        )

    def kll_quantiles(ranks: Sequence[float], inclusive: bool) -> list[float]:
        return list(sketch.get_quantiles(ranks, inclusive=inclusive))

    def kll_cdf(points: Sequence[float], inclusive: bool) -> FloatArray:
        return np.array(sketch.get_cdf(points, inclusive=inclusive), dtype=np.float64)[:-1]

    float32 = isinstance(sketch, datasketches.kll_floats_sketch)
    n = 0 if _read_attr(sketch, "is_empty") else int(_read_attr(sketch, "n", "get_n"))
    if n == 0:
        return _Side(kll_quantiles, kll_cdf, 0, 0.0, float("nan"), float("nan"), float32)
    eps = 0.0
    if _read_attr(sketch, "is_estimation_mode"):
        k = int(_read_attr(sketch, "k", "get_k"))
        eps = float(type(sketch).get_normalized_rank_error(k, False))
    lo, hi = float(sketch.get_min_value()), float(sketch.get_max_value())
    return _Side(kll_quantiles, kll_cdf, n, eps, lo, hi, float32)


def _next_up(x: float, float32: bool) -> float:
    dtype = np.float32 if float32 else np.float64
    return float(np.nextafter(dtype(x), dtype(np.inf)))


def _edges(ref: _Side, bins: int, float32: bool) -> FloatArray:
    ranks = [j / bins for j in range(1, bins)]
    q = ref.quantiles(ranks, False)  # exclusive ranks: exact shares 1/bins without ties
    if float32:
        q = np.asarray(q, dtype=np.float32).tolist()
    # At most bins - 1 values: deduplicating them in Python is cheaper than np.unique.
    edges = sorted({v for v in q if v > ref.lo})
    if not edges:  # constant, or >= (bins-1)/bins of the mass at the minimum
        edges = [ref.lo, _next_up(ref.lo, float32)]
    return np.array(edges, dtype=np.float64)


def reference_edges(reference: Any, bins: int = DEFAULT_BINS) -> FloatArray:
    """Bin edges for PSI / JS / Hellinger: the reference's quantiles at ranks ``j / bins``.

    Ties are deduplicated, so an integer feature gets one bin per frequent value rather than
    empty bins. An edge at the reference minimum is dropped (it would open an always-empty
    bin below the minimum). If nothing is left (a constant reference, or one with at least
    ``(bins - 1) / bins`` of its mass at the minimum), the edges are ``[min, next float up]``:
    three bins ``< min``, ``== min`` and ``> min``, so a move either way is seen. Bins are
    ``[lower, upper)`` with open outer ends (``np.searchsorted(edges, x, side="right")``
    gives the bin of ``x``).

    >>> import datasketches
    >>> s = datasketches.kll_doubles_sketch(200)
    >>> s.update(np.repeat([0.0, 1.0, 2.0, 3.0], 25))
    >>> reference_edges(s).tolist()
    [1.0, 2.0, 3.0]
    """
    side = _side(reference, "reference")
    if side.n == 0:
        return np.empty(0)
    return _edges(side, bins, side.float32)


def _scale(q25: float, q50: float, q75: float, points: FloatArray | None) -> tuple[float, str]:
    iqr = q75 - q25
    if iqr > 0:
        return iqr / ROBUST_SD_IQR, "iqr"
    if points is not None:
        std = float(np.std(points))
        if std > 0:
            return std, "std"
    if q50 != 0:
        return abs(q50), "abs_median"
    return 1.0, "unit"


def reference_scale(reference: Any, grid: int = DEFAULT_GRID) -> tuple[float, str]:
    """The unit of normalised Wasserstein: a robust standard deviation of the reference.

    ``IQR / 1.349`` (the standard deviation for normal data; quantiles with inclusive ranks,
    numpy's ``method="inverted_cdf"``); if the IQR is 0 (half the mass on one value), the
    standard deviation of the reference (from its quantile grid; exact for an exact sketch);
    if that is 0 too (a constant reference), ``|median|``; if the median is 0, 1. Returns
    ``(scale, kind)`` with kind ``iqr`` / ``std`` / ``abs_median`` / ``unit``.

    >>> import datasketches
    >>> s = datasketches.kll_doubles_sketch(200); s.update(np.full(50, 7.0))
    >>> reference_scale(s)
    (7.0, 'abs_median')
    """
    side = _side(reference, "reference")
    if side.n == 0:
        return 1.0, "unit"
    q25, q50, q75 = side.quantiles([0.25, 0.5, 0.75], True)
    points = None if q75 > q25 else _grid_points(side, grid)
    return _scale(q25, q50, q75, points)


@functools.lru_cache(maxsize=64)
def _mid_ranks(g: int) -> list[float]:
    ranks: list[float] = ((np.arange(g) + 0.5) / g).tolist()
    return ranks


def _grid_values(side: _Side, grid: int) -> list[float]:
    """Quantiles at ``grid`` mid-ranks; every item, in order, for an exact sketch."""
    return list(side.quantiles(_mid_ranks(side.n if side.exact else grid), True))


def _grid_points(side: _Side, grid: int) -> FloatArray:
    return np.array(_grid_values(side, grid), dtype=np.float64)


class _Comparison:
    """The pieces several statistics share, each read from the sketches at most once."""

    def __init__(self, ref: _Side, cur: _Side, bins: int, grid: int) -> None:
        self.ref, self.cur, self.bins, self.grid = ref, cur, bins, grid
        self.float32 = ref.float32 or cur.float32

    def common(self) -> dict[str, Any]:
        """Evidence every numeric result carries (fresh dicts: results do not share state)."""
        q = self.quantiles
        return {
            "quantiles": {"reference": dict(q["reference"]), "current": dict(q["current"])},
            "rank_error": {"reference": self.ref.eps, "current": self.cur.eps},
        }

    @cached_property
    def _ref_q(self) -> list[float]:
        return list(self.ref.quantiles([0.05, 0.25, 0.5, 0.75, 0.95], True))

    @cached_property
    def quantiles(self) -> dict[str, dict[str, float]]:
        r = self._ref_q
        c = self.cur.quantiles([0.05, 0.5, 0.95], True)
        return {
            "reference": {"p5": r[0], "p50": r[2], "p95": r[4]},
            "current": {"p5": c[0], "p50": c[1], "p95": c[2]},
        }

    # --- binned ---------------------------------------------------------------------------

    @cached_property
    def edges(self) -> FloatArray:
        return _edges(self.ref, self.bins, self.float32)

    def _shares(self, side: _Side) -> tuple[FloatArray, FloatArray | None]:
        edges = self.edges.tolist()
        cdf = np.append(side.cdf(edges, False), 1.0)  # P(X < e) ..., 1
        shares = cdf.copy()
        shares[1:] -= cdf[:-1]
        if side.exact:
            return shares, None
        # The CDF is exact at an edge <= min (0) or > max (1); elsewhere off by <= eps. A few
        # edges: plain Python is cheaper than numpy here.
        eps = [side.eps if side.lo < e <= side.hi else 0.0 for e in edges]
        width = [a + b for a, b in zip([0.0, *eps], [*eps, 0.0], strict=True)]
        return shares, np.array(width)

    @cached_property
    def _ref_shares(self) -> tuple[FloatArray, FloatArray | None]:
        return self._shares(self.ref)

    @cached_property
    def shares(self) -> BinnedShares:
        p, wp = self._ref_shares
        q, wq = self._shares(self.cur)
        return BinnedShares(p, q, wp, wq)

    @cached_property
    def _bins(self) -> tuple[list[dict[str, Any]], int]:
        """Every bin's edges and shares (for the evidence) and the chi-square dof."""
        edges, shares = self.edges.tolist(), self.shares
        lower, upper = [None, *edges], [*edges, None]
        p, q = shares.p.tolist(), shares.q.tolist()
        rows = [
            {"lower": lo, "upper": up, "reference": a, "current": b}
            for lo, up, a, b in zip(lower, upper, p, q, strict=True)
        ]
        dof = sum(1 for a, b in zip(p, q, strict=True) if a > 0 or b > 0) - 1
        return rows, dof

    def binned(self, statistic: str) -> DriftResult:
        value, bound, terms = self.shares.evaluate(statistic)
        rows, dof = self._bins
        ref, cur = self.ref, self.cur
        evidence = {
            "top_bins": top_rows(terms, rows),
            "edges": self.edges.tolist(),
            "null_p99": binned_null_p99(statistic, dof, ref.n, cur.n),
            **self.common(),
        }
        if statistic == "psi":
            evidence["smoothing"] = f"shares floored at {PSI_FLOOR}"
        return DriftResult(statistic, value, bound, None, ref.n, cur.n, "ok", evidence)

    # --- CDF curves: KS and Wasserstein ---------------------------------------------------

    @cached_property
    def _ref_values(self) -> list[float]:
        return _grid_values(self.ref, self.grid)

    @cached_property
    def ref_points(self) -> FloatArray:
        return np.array(self._ref_values, dtype=np.float64)

    def _cdf(self, side: _Side, x: FloatArray, xs: list[float]) -> tuple[FloatArray, FloatArray]:
        """``P(X <= x_j)`` and, per gap ``(x_j, x_j+1)``, an upper limit of the CDF in it.

        The limit is ``P(X < x_j+1)``: fetched where the CDF jumps by more than a grid step
        (ties, heavy items), else ``P(X <= x_j+1)``, higher by at most that step. An exact
        sketch has no item inside a gap (its grid holds every item): its limit is ``F(x_j)``.
        """
        f = side.cdf(xs, True)
        if side.exact:
            return f, f[:-1]
        upper = f[1:].copy()
        jumps = np.flatnonzero(upper - f[:-1] > 1.0 / self.grid)
        if jumps.size:
            upper[jumps] = side.cdf(x[jumps + 1].tolist(), False)
        return f, upper

    @cached_property
    def curves(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        """The union grid ``x``; per sketch ``P(X <= x)`` and the per-gap upper limits."""
        ref, cur = self.ref, self.cur
        values = self._ref_values + _grid_values(cur, self.grid) + [ref.lo, ref.hi, cur.lo, cur.hi]
        # Split points must stay distinct in float32 when a floats sketch is involved.
        x = np.unique(np.array(values, dtype=np.float32 if self.float32 else np.float64))
        x = x.astype(np.float64, copy=False)
        xs = x.tolist()
        fr, ur = self._cdf(ref, x, xs)
        fc, uc = self._cdf(cur, x, xs)
        return x, fr, ur, fc, uc

    @cached_property
    def gaps(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Per gap between grid points: mid-estimate, max and min of ``|F_ref - F_cur|``.

        In the open gap ``(x_j, x_j+1)`` a sketch CDF lies in ``[F(x_j), upper_j]``.
        """
        _, fr, r1, fc, c1 = self.curves
        r0, c0 = fr[:-1], fc[:-1]
        mid = np.abs((r0 + r1) - (c0 + c1)) * 0.5
        high = np.maximum(r1 - c0, c1 - r0)
        low = np.maximum(np.maximum(r0 - c1, c0 - r1), 0.0)
        return mid, high, low

    def ks(self) -> DriftResult:
        x, fr, _, fc, _ = self.curves
        diff = np.abs(fr - fc)
        j = int(diff.argmax())
        value = float(diff[j])
        slack = max(float(self.gaps[1].max()) - value, 0.0) if x.size > 1 else 0.0
        ref, cur = self.ref, self.cur
        n_eff = ref.n * cur.n / (ref.n + cur.n)
        p_value = float(special.kolmogorov(math.sqrt(n_eff) * value))
        evidence = {
            "at": float(x[j]),
            "reference_cdf": float(fr[j]),
            "current_cdf": float(fc[j]),
            "n_effective": n_eff,
            "null_p99": _KS_NULL_P99 / math.sqrt(n_eff),
            "p_value_method": "asymptotic Kolmogorov distribution (informational)",
            **self.common(),
        }
        bound = ref.eps + cur.eps + slack
        return DriftResult("ks", value, bound, p_value, ref.n, cur.n, "ok", evidence)

    def wasserstein(self) -> DriftResult:
        x = self.curves[0]
        w1 = slack = 0.0
        if x.size > 1:
            mid, high, low = self.gaps
            width = x[1:] - x[:-1]
            w1 = float(width @ mid)
            slack = float(width @ np.maximum(high - mid, mid - low))
        q = self._ref_q
        scale, kind = _scale(q[1], q[2], q[3], None if q[3] > q[1] else self.ref_points)
        ref, cur = self.ref, self.cur
        error = ref.eps * (ref.hi - ref.lo) + cur.eps * (cur.hi - cur.lo) + slack
        evidence = {"scale": scale, "scale_kind": kind, "unnormalized": w1, **self.common()}
        return DriftResult(
            "wasserstein", w1 / scale, error / scale, None, ref.n, cur.n, "ok", evidence
        )

    def compute(self, statistic: str) -> DriftResult:
        if statistic == "ks":
            return self.ks()
        if statistic == "wasserstein":
            return self.wasserstein()
        return self.binned(statistic)


def numeric_drift(
    reference: Any,
    current: Any,
    statistics: Iterable[str] | None = None,
    *,
    bins: int = DEFAULT_BINS,
    min_count: int = DEFAULT_MIN_COUNT,
    min_reference_count: int = DEFAULT_MIN_REFERENCE_COUNT,
    grid: int = DEFAULT_GRID,
    reference_cache: dict[str, Any] | None = None,
) -> dict[str, DriftResult]:
    """Compare two quantile sketches; one :class:`DriftResult` per statistic, keyed by name.

    ``reference_cache``: a dict kept with the reference sketch by the caller; what depends on
    the reference alone (its quantiles, grid, bin edges and shares) is read from it, or
    computed once and stored in it, so a reference is read once however many windows use it.

    ``statistics`` from ``ks``, ``psi``, ``wasserstein``, ``js``, ``hellinger`` (default
    ``DEFAULT_STATISTICS["numeric"]``). Too little data gives ``status="insufficient_data"``
    (or ``"empty_reference"``) and ``value=None``, never an exception.

    >>> import datasketches
    >>> rng = np.random.default_rng(7)
    >>> ref, cur = datasketches.kll_doubles_sketch(200), datasketches.kll_doubles_sketch(200)
    >>> ref.update(rng.normal(size=150)); cur.update(rng.normal(1.0, size=150))
    >>> r = numeric_drift(ref, cur, ["ks", "psi"], min_count=100, min_reference_count=100)
    >>> r["ks"].value > 0.3 and r["ks"].p_value < 1e-6 and r["psi"].value > 0.25
    True
    >>> numeric_drift(ref, cur)["psi"].status   # 150 reference events < 1000
    'insufficient_data'
    """
    names = check_statistics(statistics, "numeric", NUMERIC_STATISTICS)
    if bins < 2:
        raise ConfigError("bins", f"must be >= 2, got {bins}")
    if grid < 16:
        raise ConfigError("grid", f"must be >= 16, got {grid}")
    ref, cur = _side(reference, "reference"), _side(current, "current")
    why = guard(ref.n, cur.n, min_count=min_count, min_reference_count=min_reference_count)
    if why is not None:
        return {name: unavailable(name, ref.n, cur.n, why) for name in names}
    comparison = _Comparison(ref, cur, bins, grid)
    if reference_cache is None:
        return {name: comparison.compute(name) for name in names}
    key = (ref.n, bins, grid, comparison.float32)
    if reference_cache.get("sketch") is not reference or reference_cache.get("key") != key:
        reference_cache.clear()
        reference_cache.update(sketch=reference, key=key)
    for part in _REFERENCE_SIDE:
        if part in reference_cache:
            comparison.__dict__[part] = reference_cache[part]  # a cached_property's slot
    out = {name: comparison.compute(name) for name in names}
    for part in _REFERENCE_SIDE:
        if part in comparison.__dict__:
            reference_cache[part] = comparison.__dict__[part]
    return out


#: The cached properties of :class:`_Comparison` that depend on the reference sketch alone.
_REFERENCE_SIDE = ("_ref_q", "edges", "_ref_values", "ref_points", "_ref_shares")


__all__ = [
    "BINNED_STATISTICS",
    "DEFAULT_GRID",
    "ROBUST_SD_IQR",
    "numeric_drift",
    "reference_edges",
    "reference_scale",
]
