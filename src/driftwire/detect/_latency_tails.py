"""Tail counts: is a window's latency percentile significantly above its reference's?

For a percentile ``q`` with reference value ``r`` (the reference's ``q``-quantile) the reference
puts a share ``p`` of its latencies above ``r`` (``1 - q`` up to ties). Under "nothing changed"
the number ``k`` of the window's ``n`` latencies above ``r`` is binomial ``(n, p)``, widened by
three things that are known, each as a factor on the binomial variance ``n p (1 - p)``
(:func:`dispersion`):

* the reference's own estimate of ``r``: its tail share has variance ``p (1 - p) / N`` for
  ``N`` reference latencies, which adds ``n / N``;
* the sketches: a rank query errs by at most ``eps`` (99%), read as a standard deviation of
  ``eps / 2.576`` for the window's count and for the reference's quantile, which adds
  ``n (eps_w^2 + eps_r^2) / (2.576^2 p (1 - p))``;
* the reference's variability between its parts (the slots of a trailing or seasonal reference):
  the per-part tail shares ``k_i / n_i`` around ``p`` give Pearson's ``X^2 = sum (k_i - n_i p)^2
  / (n_i p (1 - p))``; beyond what binomial and sketch noise explain (``m - 1`` parts and the
  sketch term of a part) the excess is a between-part variance ``tau^2`` of the tail share,
  which adds ``n tau^2 / (p (1 - p))`` (:func:`between_parts`). A daily cycle inside a 24-hour
  trailing reference makes it large, so such a reference asks for stronger evidence.

A seasonal reference merges the same hours of several periods, which should agree; one that
holds an incident (a spike last Tuesday) would hide this week's. :func:`left_out` drops such
parts before the merge: those whose share above the median of the parts' p95 is at least
``OUTLIER_SHARE`` (20%, four times the 5% expected), the worst first, at most a third of the
parts, so that a lasting change (the majority) becomes the reference as it should.

With the total factor ``D`` the count is judged quasi-binomially: the p-value is the binomial
upper tail of ``k / D`` successes in ``n / D`` trials, ``I_p(k/D, (n - k)/D + 1)`` (the
regularized incomplete beta function, which is ``P(X >= k)`` of a binomial for ``D = 1`` and
integer ``k``; :func:`tail_pvalue`).

>>> round(tail_pvalue(12, 600, 0.01), 6)          # 12 above the reference p99 in 600: 2x
0.01953
>>> round(tail_pvalue(12, 600, 0.01, dispersion=2.0), 4)
0.0829
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

from scipy.special import betainc

from driftwire.sketch.numeric import NumericSketch

#: a rank error stated at 99% confidence, read as this many standard deviations
Z99 = 2.5758


def tail_pvalue(k: float, n: float, p: float, dispersion: float = 1.0) -> float:
    """``P(K >= k)`` for ``K`` binomial ``(n, p)`` with its variance widened ``dispersion`` x."""
    if n <= 0 or k <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0 or k > n:
        return 1.0 if p >= 1.0 else 0.0
    d = max(1.0, dispersion)
    return float(betainc(k / d, (n - k) / d + 1.0, p))


def sketch_term(n: float, p: float, eps: float) -> float:
    """Variance factor of a count of ``n`` read from a sketch with rank error ``eps``."""
    return n * (eps / Z99) ** 2 / (p * (1.0 - p))


def between_parts(parts: Iterable[NumericSketch], r: float, p: float, eps: float) -> float:
    """``tau^2 / (p (1 - p))``: between-part variance of the tail share above ``r``, per event.

    0 with fewer than 2 non-empty parts (nothing to compare).
    """
    counts = [(s.count, s.count * (1.0 - float(s.cdf([r])[0]))) for s in parts if s.count > 0]
    m = len(counts)
    if m < 2 or not 0.0 < p < 1.0:
        return 0.0
    pq = p * (1.0 - p)
    chi2 = sum((k - n * p) ** 2 / (n * pq) for n, k in counts)
    mean_n = sum(n for n, _ in counts) / m
    excess = chi2 / (m - 1) - 1.0 - sketch_term(mean_n, p, eps)
    return max(0.0, excess) / mean_n


#: a seasonal part with at least this share above the parts' median p95 is an incident
OUTLIER_SHARE = 0.2


def left_out(parts: list[NumericSketch]) -> list[int]:
    """Indices of the parts of a seasonal reference that hold an incident (see above)."""
    filled = [s for s in parts if s.count > 0]
    if len(filled) < 3:
        return []
    r = statistics.median(float(s.quantiles([0.95])[0]) for s in filled)
    shares = [1.0 - float(s.cdf([r])[0]) if s.count else 0.0 for s in parts]
    worst = sorted(range(len(parts)), key=lambda i: -shares[i])[: len(filled) // 3]
    return sorted(i for i in worst if shares[i] >= OUTLIER_SHARE)


def dispersion(
    n: float, n_reference: float, p: float, eps_window: float, eps_reference: float, spread: float
) -> float:
    """The factor ``D`` on the binomial variance of the window's tail count (see above)."""
    if not 0.0 < p < 1.0:
        return 1.0
    sketch = sketch_term(n, p, math.hypot(eps_window, eps_reference))
    return 1.0 + n / max(n_reference, 1.0) + sketch + n * spread
