"""The limit: the smallest change any test could detect at the configured α and these sizes.

Two-sample tests at level α, power 1 - β (``POWER`` = 0.8 here), n window events against m
reference events, effect in the column's standard deviations:

* location (two-sample z-test on means): ``MDE = (z_{1-α/2} + z_{power}) * sqrt(1/n + 1/m)`` sd;
* scale (log of the sd ratio, normal data: se ≈ sqrt(1/(2n) + 1/(2m))):
  ``MDE = (z_{1-α/2} + z_{power}) * sqrt(1/(2n) + 1/(2m))`` in log(sd ratio);
* share of one category (two proportions at the reference share p):
  ``MDE = (z_{1-α/2} + z_{power}) * sqrt(p (1 - p) (1/n + 1/m))`` share points;
* a never-seen category has no reference share to test against: its limit is the relevance
  floor the issue sets (0.5% of a window's traffic).

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy.stats import norm

POWER = 0.8
ASSUMED_Q = 0.05
NEW_CATEGORY_FLOOR = 0.005  # issue 14, item 6: an unseen category with >= 0.5% of a window


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
