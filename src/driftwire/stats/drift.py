"""Drift statistics between a current window and its reference, computed from sketches.

The public face of :mod:`driftwire.stats.numeric` (KLL quantile sketches: KS, PSI,
normalised Wasserstein, Jensen–Shannon, Hellinger) and :mod:`driftwire.stats.categorical`
(category counts plus ``other``: PSI, Jensen–Shannon, Hellinger, chi-square / Cramér's V,
L-infinity, unseen-category share). Every result carries its value, an error ``bound`` against
the same statistic computed exactly on the raw events (0 when the inputs are exact), an
informational p-value where one exists, both counts, a status, and evidence a person can read.

Defaults (all overridable per call, so per feature by the caller):

=============  ==================  ==========================================================
statistic      warning / critical  reading
=============  ==================  ==========================================================
psi            0.10 / 0.25         industry convention (10 bins at reference deciles)
ks             0.13 / 0.20         max CDF gap; = PSI 0.1 / 0.25 for a normal mean shift
wasserstein    0.30 / 0.50         mean transport distance in reference SDs (IQR / 1.349)
js             0.13 / 0.21         JS distance base 2 on the PSI bins / categories
hellinger      0.11 / 0.18         Hellinger distance on the same bins
cramers_v      0.15 / 0.25         chi-square effect size at equal sample sizes
linf           0.10 / 0.20         largest share change of one category
unseen_share   0.01 / 0.05         window share of never-seen categories
=============  ==================  ==========================================================

``min_count`` = 200 window events and ``min_reference_count`` = 1000 reference events;
below either, ``status="insufficient_data"`` and ``value=None``. Each result's evidence also
carries ``null_p99`` where a chi-square or Kolmogorov approximation gives one: the value the
statistic stays below in 99% of windows when nothing drifted, at these counts.

>>> import datasketches, numpy as np
>>> rng = np.random.default_rng(1)
>>> ref, cur = datasketches.kll_doubles_sketch(200), datasketches.kll_doubles_sketch(200)
>>> ref.update(rng.normal(size=5000)); cur.update(rng.normal(0.5, size=2000))
>>> r = compute("ks", ref, cur)
>>> r.status, 0.15 < r.value < 0.3, r.bound < 0.035   # exact D = 0.217
('ok', True, True)
>>> compute("unseen_share", ({"a": 900, "b": 300}, 0), {"a": 150, "c": 50}, min_count=100).value
0.25
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftwire.errors import InputError
from driftwire.stats._common import (
    CATEGORICAL_STATISTICS,
    DEFAULT_BINS,
    DEFAULT_MIN_COUNT,
    DEFAULT_MIN_REFERENCE_COUNT,
    DEFAULT_STATISTICS,
    DEFAULT_THRESHOLDS,
    NUMERIC_STATISTICS,
    PSI_FLOOR,
    DriftResult,
    Status,
    binned_value,
)
from driftwire.stats.categorical import OTHER, AlignedCounts, align_counts, categorical_drift
from driftwire.stats.numeric import (
    DEFAULT_GRID,
    ROBUST_SD_IQR,
    numeric_drift,
    reference_edges,
    reference_scale,
)

__all__ = [
    "CATEGORICAL_STATISTICS",
    "DEFAULT_BINS",
    "DEFAULT_GRID",
    "DEFAULT_MIN_COUNT",
    "DEFAULT_MIN_REFERENCE_COUNT",
    "DEFAULT_STATISTICS",
    "DEFAULT_THRESHOLDS",
    "NUMERIC_STATISTICS",
    "OTHER",
    "PSI_FLOOR",
    "ROBUST_SD_IQR",
    "AlignedCounts",
    "DriftResult",
    "Status",
    "align_counts",
    "binned_value",
    "categorical_drift",
    "compute",
    "numeric_drift",
    "reference_edges",
    "reference_scale",
]

Categorical = tuple[Mapping[str, int], int] | Mapping[str, int]


def _categorical(side: Any, role: str) -> tuple[Mapping[str, int], int]:
    if isinstance(side, Mapping):
        return side, 0
    if isinstance(side, tuple) and len(side) == 2 and isinstance(side[0], Mapping):
        return side[0], int(side[1])
    raise InputError(
        f"{role}: expected a KLL sketch, a Mapping of category counts or a "
        f"(counts, other) tuple, got {type(side).__name__}"
    )


def compute(statistic: str, reference: Any, current: Any, **options: Any) -> DriftResult:
    """One statistic between ``reference`` and ``current``.

    Both are KLL sketches (numeric) or both categorical: a ``Mapping[str, int]`` of counts or a
    ``(counts, other)`` tuple. ``options`` are those of :func:`numeric_drift` /
    :func:`categorical_drift` (``bins``, ``min_count``, ``min_reference_count``, ``grid``).
    """
    if hasattr(reference, "get_cdf") or hasattr(current, "get_cdf"):
        return numeric_drift(reference, current, [statistic], **options)[statistic]
    ref_counts, ref_other = _categorical(reference, "reference")
    cur_counts, cur_other = _categorical(current, "current")
    return categorical_drift(ref_counts, ref_other, cur_counts, cur_other, [statistic], **options)[
        statistic
    ]
