"""What numeric and categorical drift share: the result type, the default tables, the guards
against too little data, and the binned formulas (PSI, Jensen–Shannon, Hellinger) with their
error bounds over per-bin share intervals.

Every binned statistic is a sum of per-bin terms ``t(p_i, q_i)`` (``p`` reference shares, ``q``
current shares), passed through a monotone outer function (identity for PSI, square root for
the Jensen–Shannon and Hellinger distances). Each term is zero on the diagonal ``p == q`` and
grows as either share moves away from the other, so over a rectangle of possible shares its
maximum is at a corner and its minimum is 0 (the intervals overlap) or at the corner nearest to
the diagonal. Summing the per-bin extremes bounds the statistic for every pair of share
vectors in the rectangles; this ignores that shares sum to 1, so the bound is conservative.

>>> p = np.array([0.25, 0.25, 0.25, 0.25]); q = np.array([0.1, 0.2, 0.3, 0.4])
>>> round(binned_value("psi", p, q), 6)          # the hand-computed textbook example
0.228217
>>> BinnedShares(p, q, None, None).evaluate("psi")[1]   # exact shares: no error
0.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import special

from driftwire.errors import ConfigError

Status = Literal["ok", "insufficient_data", "empty_reference"]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]

#: Shares below this are raised to it before PSI's logarithm (no renormalisation). The
#: convention of Evidently and NannyML (they replace empty bins by 0.0001); a max() rather than
#: an ``== 0`` test keeps the term monotone, which the error bound needs. JS and Hellinger are
#: defined at zero shares and are not smoothed.
PSI_FLOOR = 1e-4

#: Default minimum number of events in the current window; below it: ``insufficient_data``.
DEFAULT_MIN_COUNT = 200
#: Default minimum number of reference events. Higher than the window's because the
#: reference's sampling noise is added to every comparison for as long as it is used.
DEFAULT_MIN_REFERENCE_COUNT = 1000
#: Default number of PSI bins (at reference quantiles); JS and Hellinger use the same bins.
DEFAULT_BINS = 10

NUMERIC_STATISTICS = ("psi", "ks", "wasserstein", "js", "hellinger")
CATEGORICAL_STATISTICS = ("psi", "js", "hellinger", "cramers_v", "linf", "unseen_share")

#: Statistics computed when the caller names none. Numeric: PSI (the convention users know),
#: KS (the tightest sketch bound, sensitive to location changes) and normalised Wasserstein
#: (how far, in reference standard deviations). JS and Hellinger repeat PSI's information on
#: the same bins and are opt-in. Categorical: PSI, the chi-square effect size, and the share
#: of never-seen categories (an upstream change more often than a drift).
DEFAULT_STATISTICS: dict[str, tuple[str, ...]] = {
    "numeric": ("psi", "ks", "wasserstein"),
    "categorical": ("psi", "cramers_v", "unseen_share"),
}

#: (warning, critical) per statistic. PSI uses the industry convention 0.1 / 0.25. The numeric
#: ones are calibrated to it: the value each statistic takes when a normal feature's mean
#: shifts until 10-bin PSI reaches 0.1 (0.32 sd) or 0.25 (0.51 sd), rounded. Categorical JS and
#: Hellinger share the numeric values (the same small-difference relation to PSI holds);
#: Cramér's V (balanced, see drift_categorical) ~ sqrt(PSI) / 2; L-inf is a share difference of
#: 10 / 20 percentage points in one category (PSI-equivalent for features with a few
#: categories); unseen_share warns at 1% of the window in never-seen categories.
DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {
    "psi": (0.10, 0.25),
    "ks": (0.13, 0.20),
    "wasserstein": (0.30, 0.50),
    "js": (0.13, 0.21),
    "hellinger": (0.11, 0.18),
    "cramers_v": (0.15, 0.25),
    "linf": (0.10, 0.20),
    "unseen_share": (0.01, 0.05),
}


@dataclass(frozen=True, slots=True)
class DriftResult:
    """One statistic comparing a current window with its reference.

    ``value`` is ``None`` unless ``status == "ok"``. ``bound`` is the largest absolute
    difference between ``value`` and the same statistic computed exactly on the raw events
    (with the same bins / scale, listed in ``evidence``), at the sketches' 99% confidence;
    0 when both inputs are exact. For the binned statistics and Wasserstein it is a worst case
    and wide at k = 200 (see :mod:`driftwire.stats.numeric`); KS's is tight. ``p_value`` is
    informational: at large counts every small
    difference is "significant", so alerts threshold ``value``, never ``p_value``.
    """

    statistic: str
    value: float | None
    bound: float
    p_value: float | None
    n_reference: int
    n_current: int
    status: Status
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (no infinities: open bin ends are ``None``)."""
        return asdict(self)


def guard(
    n_reference: int, n_current: int, *, min_count: int, min_reference_count: int
) -> tuple[Status, str] | None:
    """Why nothing can be computed (status and reason), or ``None`` when there is enough data.

    An empty reference is reported as such (a setup problem, not a quiet window); an empty
    window, an all-missing feature and a window or reference below its minimum count are
    ``insufficient_data``.
    """
    if n_reference == 0:
        return "empty_reference", "the reference has no events"
    if n_current == 0:
        return "insufficient_data", "the window has no events"
    if n_current < min_count:
        return (
            "insufficient_data",
            f"the window has {n_current} events, fewer than min_count={min_count}",
        )
    if n_reference < min_reference_count:
        return (
            "insufficient_data",
            f"the reference has {n_reference} events, "
            f"fewer than min_reference_count={min_reference_count}",
        )
    return None


def unavailable(
    statistic: str, n_reference: int, n_current: int, why: tuple[Status, str]
) -> DriftResult:
    """The result of a statistic that could not be computed: ``value=None``, the reason."""
    return DriftResult(
        statistic, None, 0.0, None, n_reference, n_current, why[0], {"reason": why[1]}
    )


def check_statistics(
    statistics: Iterable[str] | None, kind: str, known: tuple[str, ...]
) -> tuple[str, ...]:
    """The statistics to compute (the kind's defaults when ``None``); unknown names fail."""
    names = DEFAULT_STATISTICS[kind] if statistics is None else tuple(statistics)
    for name in names:
        if name not in known:
            raise ConfigError(
                "statistics", f"unknown {kind} statistic {name!r}", f"use one of {list(known)}"
            )
    return names


# --- binned formulas -------------------------------------------------------------------------


def _psi_terms(p: FloatArray, q: FloatArray) -> FloatArray:
    p = np.maximum(p, PSI_FLOOR)
    q = np.maximum(q, PSI_FLOOR)
    return (q - p) * np.log(q / p)


def _js_terms(p: FloatArray, q: FloatArray) -> FloatArray:
    """Per-bin Jensen–Shannon divergence in bits (0 log 0 = 0, as scipy's ``rel_entr``)."""
    m = 0.5 * (p + q)
    terms: FloatArray = (special.rel_entr(p, m) + special.rel_entr(q, m)) * (0.5 / np.log(2.0))
    return terms


def _hellinger_terms(p: FloatArray, q: FloatArray) -> FloatArray:
    return 0.5 * (np.sqrt(p) - np.sqrt(q)) ** 2


def _identity(x: float) -> float:
    return x


def _sqrt(x: float) -> float:
    return float(np.sqrt(max(x, 0.0)))


_BINNED: dict[str, tuple[Callable[[FloatArray, FloatArray], FloatArray], Callable[[float], float]]]
_BINNED = {
    "psi": (_psi_terms, _identity),
    "js": (_js_terms, _sqrt),
    "hellinger": (_hellinger_terms, _sqrt),
}
BINNED_STATISTICS = tuple(_BINNED)


def binned_value(statistic: str, p: FloatArray, q: FloatArray) -> float:
    """PSI (floored shares), JS distance (base 2) or Hellinger distance of two share vectors.

    >>> p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    >>> [round(binned_value(s, p, q), 4) for s in ("psi", "js", "hellinger")]
    [0.8789, 0.3831, 0.3249]
    """
    terms, outer = _BINNED[statistic]
    return outer(float(terms(p, q).sum()))


class BinnedShares:
    """Reference shares ``p`` and current shares ``q`` per bin, each known to within ``± w``.

    :meth:`evaluate` gives a statistic's value, its bound (the largest change when every share
    moves within its interval, clipped to [0, 1]) and the per-bin contributions. The four
    corners of every bin's rectangle are built once and shared by all statistics.

    >>> s = BinnedShares(np.array([0.5, 0.5]), np.array([0.6, 0.4]), np.full(2, 0.01), None)
    >>> value, bound, terms = s.evaluate("psi")
    >>> round(value, 4), round(bound, 4), terms.round(4).tolist()
    (0.0405, 0.0085, [0.0182, 0.0223])
    """

    def __init__(
        self, p: FloatArray, q: FloatArray, wp: FloatArray | None, wq: FloatArray | None
    ) -> None:
        self.p, self.q, self.m = p, q, p.size
        wp = np.zeros(self.m) if wp is None else wp
        wq = np.zeros(self.m) if wq is None else wq
        self.exact = not (wp.any() or wq.any())
        if self.exact:
            self.P, self.Q = p, q
            return
        plo, phi = np.maximum(p - wp, 0.0), np.minimum(p + wp, 1.0)
        qlo, qhi = np.maximum(q - wq, 0.0), np.minimum(q + wq, 1.0)
        # Rows: (plo, qlo), (plo, qhi), (phi, qlo), (phi, qhi), then the estimate (p, q).
        self.P = np.concatenate((plo, plo, phi, phi, p))
        self.Q = np.concatenate((qlo, qhi, qlo, qhi, q))
        # Where the intervals do not overlap, the minimum is at the corner nearest the diagonal.
        self.q_above = qlo > phi
        self.p_above = plo > qhi

    def evaluate(self, statistic: str) -> tuple[float, float, FloatArray]:
        terms, outer = _BINNED[statistic]
        t = terms(self.P, self.Q)
        total = np.add.reduce
        if self.exact:
            return outer(float(total(t))), 0.0, t
        t = t.reshape(5, self.m)
        value = outer(float(total(t[4])))
        highest = outer(float(total(np.maximum.reduce(t[:4]))))
        lowest = outer(float(total(t[2] * self.q_above) + total(t[1] * self.p_above)))
        return value, max(highest - value, value - lowest, 0.0), t[4]


def binned_null_p99(statistic: str, dof: int, n_reference: int, n_current: int) -> float | None:
    """99th percentile of the statistic when nothing drifted, from its chi-square approximation.

    With ``s = 1/n_r + 1/n_c`` and ``X ~ chi2(dof)``: PSI ~ s X, JS divergence (bits)
    ~ s X / (8 ln 2), squared Hellinger ~ s X / 8. A value below this is sampling noise at these
    counts, whatever the threshold says.
    """
    if dof < 1:
        return None
    s = 1.0 / n_reference + 1.0 / n_current
    x = float(special.chdtri(dof, 0.01)) * s
    if statistic == "psi":
        return x
    if statistic == "js":
        return float(np.sqrt(x / (8.0 * np.log(2.0))))
    return float(np.sqrt(x / 8.0))


def top_rows(
    contributions: FloatArray, rows: list[dict[str, Any]], limit: int = 5
) -> list[dict[str, Any]]:
    """The ``limit`` rows with the largest contributions (added to each), largest first."""
    c = contributions.tolist()
    order = sorted(range(len(c)), key=c.__getitem__, reverse=True)[:limit]
    return [{**rows[i], "contribution": c[i]} for i in order]
