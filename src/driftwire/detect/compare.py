"""Compare a window's profile with a reference profile: every feature, the prediction.

For each feature both sides know (of the same kind), the statistics configured for it
(``detect.features.<name>.statistics``) or for its kind (``detect.statistics``, default PSI
for both kinds: the convention users know and tune) are computed, with the thresholds of
``detect.thresholds`` or the defaults of :mod:`driftwire.stats.drift`. Decisions use the estimate;
the sketch error bound travels with it into the alert (the binned statistics' bounds are
worst cases over every bin at once and are far wider than the errors seen in practice).
The prediction is compared as two features, ``prediction.score`` (numeric) and
``prediction.label`` (categorical).

The threshold a value is held against is never below ``NOISE_FACTOR`` times the statistic's
99th percentile under "no drift" at the two sample sizes (``null_p99`` in the evidence, from
the chi-square or Kolmogorov approximation). 1.5 x p99 is about the 99.99th percentile of
both (chi-square with 9 degrees of freedom: 33.7 vs 21.7; Kolmogorov: 2.33 vs 1.63), so with
a few hundred (segment, feature, statistic) tests per window, sampling noise alone fires
about once in a hundred windows before the K-consecutive rule, while at large counts the
configured threshold rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from driftwire.detect.settings import DetectSettings
from driftwire.sketch.numeric import CategoricalSketch, NumericSketch
from driftwire.sketch.profile import Profile
from driftwire.stats.drift import (
    DEFAULT_THRESHOLDS,
    DriftResult,
    categorical_drift,
    numeric_drift,
)

Sketch = NumericSketch | CategoricalSketch

NOISE_FACTOR = 1.5


def noise_floor(result: DriftResult) -> float | None:
    """The smallest threshold that sampling noise alone rarely reaches at these counts."""
    p99 = result.evidence.get("null_p99")
    return None if p99 is None else NOISE_FACTOR * float(p99)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One statistic of one feature, with the thresholds that apply to it in this window."""

    feature: str
    result: DriftResult
    warning: float
    critical: float


def _sides(reference: Profile, current: Profile) -> Iterator[tuple[str, Sketch, Sketch]]:
    for name in sorted(set(reference.features) & set(current.features)):
        yield name, reference.features[name], current.features[name]
    yield "prediction.score", reference.prediction_score, current.prediction_score
    yield "prediction.label", reference.prediction_label, current.prediction_label


def compare_profiles(
    reference: Profile, current: Profile, settings: DetectSettings
) -> list[Comparison]:
    """Every configured statistic of every shared feature, reference vs current."""
    out: list[Comparison] = []
    for name, ref, cur in _sides(reference, current):
        out += compare_sketches(name, ref, cur, settings)
    return out


def compare_sketches(
    name: str, ref: Sketch, cur: Sketch, settings: DetectSettings
) -> list[Comparison]:
    """Every configured statistic of one feature ``name``, reference sketch vs current."""
    overrides = settings.features.get(name, {})
    if isinstance(ref, NumericSketch) and isinstance(cur, NumericSketch):
        if ref.count == 0 and cur.count == 0:
            return []  # e.g. a model without scores
        stats = overrides.get("statistics", settings.statistics.get("numeric"))
        results = numeric_drift(
            ref.quantile_sketch,
            cur.quantile_sketch,
            statistics=stats,
            min_count=settings.min_count,
            min_reference_count=settings.min_reference_count,
        )
    elif isinstance(ref, CategoricalSketch) and isinstance(cur, CategoricalSketch):
        if ref.count == 0 and cur.count == 0:
            return []
        stats = overrides.get("statistics", settings.statistics.get("categorical"))
        results = categorical_drift(
            ref.counts,
            ref.other,
            cur.counts,
            cur.other,
            statistics=stats,
            min_count=settings.min_count,
            min_reference_count=settings.min_reference_count,
        )
    else:
        return []  # a kind mismatch is a data-quality matter, not a drift
    out: list[Comparison] = []
    for statistic, result in results.items():
        warning, critical = settings.thresholds.get(statistic, DEFAULT_THRESHOLDS[statistic])
        floor = noise_floor(result)
        if floor is not None:
            warning, critical = max(warning, floor), max(critical, floor)
        out.append(Comparison(name, result, warning, critical))
    return out
