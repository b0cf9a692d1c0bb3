"""95% confidence intervals for the performance metrics.

>>> e = wilson(45, 50)
>>> e.value, round(e.low, 4), round(e.high, 4), e.n
(0.9, 0.7864, 0.9565, 50)
>>> e = mean_interval(10.0, 30.0, 5)       # values 0, 1, 2, 3, 4: mean 2, mean square 6
>>> e.value, round(e.low, 4), round(e.high, 4)
(2.0, 0.6141, 3.3859)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Z95", "Estimate", "mean_interval", "wilson"]

Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Estimate:
    """A metric's value, its 95% interval and the number of observations behind it.

    ``value`` is NaN when there is nothing to measure (``n`` 0); ``low`` and ``high`` then too.
    """

    value: float
    low: float
    high: float
    n: int


def wilson(successes: int, n: int) -> Estimate:
    """A proportion with Wilson's score interval (good at small n and near 0 or 1)."""
    if n <= 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    p = successes / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def mean_interval(total: float, total_squares: float, n: int) -> Estimate:
    """A mean from its sum and sum of squares, with the normal interval (sample variance)."""
    if n <= 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = total / n
    var = max(total_squares / n - mean * mean, 0.0) * n / (n - 1) if n > 1 else math.inf
    half = Z95 * math.sqrt(var / n)
    return Estimate(mean, mean - half, mean + half, n)
