"""The limit: the smallest change any test could detect at the configured α and these sizes.

Two-sample tests at level α, power 1 - β (``POWER`` = 0.8 here), n window events against m
reference events, effect in the column's standard deviations:

* location (two-sample z-test on means): ``MDE = (z_{1-α/2} + z_{power}) * sqrt(1/n + 1/m)`` sd;
* scale (log of the sd ratio, normal data: se ≈ sqrt(1/(2n) + 1/(2m))):
  ``MDE = (z_{1-α/2} + z_{power}) * sqrt(1/(2n) + 1/(2m))`` in log(sd ratio);
* share of one category (two proportions at the reference share p):
  ``MDE = (z_{1-α/2} + z_{power}) * sqrt(p (1 - p) (1/n + 1/m))`` share points;
* a never-seen category (:func:`mde_new_category`): the check tests *its share is at most
  half the floor* (0.5% of a window's traffic, issue 14 item 6) on its values; on n window
  values the most powerful level-α test of that null against any larger share rejects at
  ``c`` values or more (the binomial has a monotone likelihood ratio), so the limit is the share
  that reaches ``c`` values with the power above, and never less than the floor. At 1,000
  events it is 0.79%: a new category at 1% is 1.27 x the limit, not 2 x. No test does better
  within one window at the same level: :func:`best_power_new_category` is the Neyman-Pearson
  bound (randomized at exactly α) on the probability of a report within one window.

α is the level one test gets after false-discovery control over the family of one model
version's tests in one window (inputs x scopes x statistics): with Benjamini-Hochberg at level
q and a single true change among F tests, the change is found when its p-value is at most
``q / F`` (rank 1 of F), so ``α = q / F``, and the same with Holm's step-down (the default's,
whose first line is BH's); Benjamini-Yekutieli divides by ``F * H(F)`` as well.
The level ``q`` and the method are read from the detection settings when they define one;
otherwise (the PSI-threshold rule has no α) the figures use q = 0.05 with BH, stated as assumed.

>>> round(mde_location(3000, 60000, alpha=0.05 / 24), 3)
0.073
>>> round(mde_share(0.55, 3000, 20000, alpha=0.05 / 24), 3)
0.038
>>> [round(mde_new_category(n, alpha=0.05), 4) for n in (300, 1000, 3000)]
[0.0142, 0.0079, 0.0053]
>>> round(best_power_new_category(1000, 0.01, alpha=0.05), 3)
0.938
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy import special
from scipy.stats import binom, norm

POWER = 0.8
ASSUMED_Q = 0.05
NEW_CATEGORY_FLOOR = 0.005  # issue 14, item 6: an unseen category with >= 0.5% of a window
NEW_CATEGORY_ALPHA, NEW_CATEGORY_LEAST = 0.05, 5  # detect.quality's defaults, if not configured


@dataclass(frozen=True)
class Level:
    """The false-discovery level in force and where it came from."""

    q: float
    method: str  # "BH", "BY" or "Holm" (whose first cut-off is BH's)
    source: str  # the settings field, or "assumed"

    def alpha(self, family: int) -> float:
        """The level of the single test that detects one change among ``family`` tests."""
        family = max(family, 1)
        harmonic = sum(1.0 / i for i in range(1, family + 1)) if self.method == "BY" else 1.0
        return self.q / (family * harmonic)


_Q_NAMES = ("fdr_q", "fdr_level", "false_discovery_rate", "q", "fdr", "alpha", "significance",
            "false_discovery")  # fmt: skip
_METHOD_NAMES = ("fdr_method", "method", "correction")


def _look(section: Any, names: tuple[str, ...]) -> tuple[Any, str] | None:
    for name in names:
        value = getattr(section, name, None)
        if value is not None:
            return value, name
    return None


def level(detect: Any) -> Level:
    """The FDR level of ``detect`` (the settings section), or the stated assumption.

    Looks for a level among a few likely field names, directly on the section or on a
    sub-section (e.g. ``detect.fdr.q``), and for a method naming Yekutieli.
    """
    found = _look(detect, _Q_NAMES)
    if found is None:
        return Level(ASSUMED_Q, "BH", "assumed")
    value, name = found
    section, where = detect, f"detect.{name}"
    if not isinstance(value, int | float):
        inner = _look(value, ("q", "fdr_q", "level", "alpha"))
        if inner is None or not isinstance(inner[0], int | float):
            return Level(ASSUMED_Q, "BH", "assumed")
        section, where, value = value, f"{where}.{inner[1]}", inner[0]
    how = _look(section, (*_METHOD_NAMES, "fdr"))
    text = str(how[0]).lower() if how else ""
    if "yekutieli" in text or text == "by":
        method = "BY"
    elif text in ("auto", "holm"):  # Holm's step-down: its first line is BH's, q / F
        method = "Holm"
    else:
        method = "BH"
    return Level(float(value), method, where)


def statistics_per_kind(detect: Any) -> tuple[int, int]:
    """How many statistics are tested per numeric and per categorical input."""
    calibrated = getattr(detect, "rule", "fixed") == "calibrated"
    stats = getattr(detect, "significance" if calibrated else "statistics", None) or {}
    return max(len(stats.get("numeric", ()) or ()), 1), max(
        len(stats.get("categorical", ()) or ()), 1
    )


def family_size(detect: Any, numeric: int, categorical: int, scopes: int) -> int:
    """Tests of one model version in one window: inputs x scopes x statistics.

    ``numeric`` and ``categorical`` count the prediction too (its score is numeric, its label
    categorical).
    """
    per_num, per_cat = statistics_per_kind(detect)
    return (numeric * per_num + categorical * per_cat) * scopes


def _z(alpha: float, power: float) -> float:
    return float(norm.isf(alpha / 2) + norm.ppf(power))


def mde_location(n: float, m: float, *, alpha: float, power: float = POWER) -> float:
    """Smallest mean shift (sd) a two-sample z-test detects with ``power``."""
    return _z(alpha, power) * math.sqrt(1 / n + 1 / m)


def mde_scale(n: float, m: float, *, alpha: float, power: float = POWER) -> float:
    """Smallest |log(sd ratio)| detectable with ``power`` (normal data)."""
    return _z(alpha, power) * math.sqrt(1 / (2 * n) + 1 / (2 * m))


def mde_share(p: float, n: float, m: float, *, alpha: float, power: float = POWER) -> float:
    """Smallest change of a category's share (points) detectable with ``power``."""
    return _z(alpha, power) * math.sqrt(p * (1 - p) * (1 / n + 1 / m))


def new_category_critical(
    n: int, *, floor: float = NEW_CATEGORY_FLOOR, alpha: float, least: int = NEW_CATEGORY_LEAST
) -> int:
    """Fewest values of a never-seen category, of ``n``, that reject *share <= floor / 2* at
    ``alpha`` (one-sided binomial), and at least ``least`` (the check's minimum count).

    >>> [new_category_critical(n, alpha=0.05) for n in (200, 600, 800, 1000, 1200, 1600)]
    [5, 5, 6, 6, 7, 9]
    """
    c = max(least, 1)
    while special.bdtrc(c - 1, n, floor / 2) > alpha:
        c += 1
    return c


def mde_new_category(
    n: float,
    *,
    floor: float = NEW_CATEGORY_FLOOR,
    alpha: float,
    power: float = POWER,
) -> float:
    """Smallest share of a never-seen category reported within one window of ``n`` values
    with ``power`` by the most powerful level-``alpha`` test of *share <= floor / 2* (no
    minimum count: the limit of any test), and not less than ``floor`` (below it nothing is
    asked for)."""
    values = max(round(n), 1)
    c = new_category_critical(values, floor=floor, alpha=alpha, least=1)
    if c > values:
        return 1.0
    return max(floor, float(special.bdtri(c - 1, values, 1.0 - power)))


def best_power_new_category(
    n: int, share: float, *, floor: float = NEW_CATEGORY_FLOOR, alpha: float
) -> float:
    """The most any test on ``n`` values can reach: the probability that a category of
    ``share`` is reported within one window by the Neyman-Pearson test of *share <= floor / 2*
    at exactly ``alpha`` (randomized at its critical count; ``least`` not applied)."""
    c = new_category_critical(n, floor=floor, alpha=alpha, least=1)
    null = floor / 2.0
    spare = alpha - float(special.bdtrc(c - 1, n, null))
    at_edge = float(binom.pmf(c - 1, n, null))
    gamma = min(max(spare / at_edge, 0.0), 1.0) if at_edge > 0 else 0.0
    return float(special.bdtrc(c - 1, n, share)) + gamma * float(binom.pmf(c - 1, n, share))
