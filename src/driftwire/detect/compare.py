"""Compare a window's profile with a reference profile: every feature, the prediction.

The prediction is compared as two features, ``prediction.score`` (numeric) and
``prediction.label`` (categorical). Two rules decide (``detect.rule``):

**calibrated** (the default). Per feature one significance test (``detect.significance``:
KS for numeric inputs, the chi-square test of the category counts for categorical ones), its
p-value from the null distribution at the actual reference and window sizes
(:mod:`driftwire.stats.significance`), and an effect size (normalised Wasserstein in reference
sds; total-variation distance of the shares). :func:`decide_family` then takes every test of
one model version in one window (inputs x segments, the prediction included) and applies
Holm's step-down at ``detect.fdr_q`` (its first cut-off ``q / m`` is Benjamini-Hochberg's;
``q / (m c(m))``, Benjamini-Yekutieli's, when the ``all`` aggregate is tested with its
segments; ``detect.fdr`` chooses BH, BY or plain Holm instead): a test is *significant* when
its p-value is at most the cut-off, *relevant* when its effect is at least
``detect.min_effect``. Holm rather than BH's step-up because windows are evaluated every
bucket and an alert is an episode, not a window: a drift that stays discovered for a hundred
windows would, under BH, give every other test of each of those windows a cut-off of ``2 q /
m``, and over the windows one of them crosses it. A significant test fires after K
breaching windows only when it is *decisive*, its p-value at most the cut-off over
``window_buckets`` (every bucket is seen by that many overlapping windows, so one unusual
bucket makes as many looks); otherwise its breach must last ``window_buckets`` windows, past
every bucket of the window that first breached (``decision.windows_to_fire``). The
policy sees one number per condition, the decision score::

    score = effect / min_effect              if significant
            min(ratio, effect / min_effect)  otherwise (< 1)

where ``ratio`` is the statistic over its null quantile at the cut-off (< 1 when not
significant). Warning at 1 (significant and relevant), critical at ``critical_effect /
min_effect`` (significant and the effect at least the critical effect: 0.5 sd, 10 share
points), resolving below 0.8 (the policy's hysteresis: the statistic back under 80% of its
null quantile, or the effect under 80% of the minimum). The evidence's ``decision`` says so in
numbers; PSI is computed and shown beside.

Why these minimum effects: 0.05 sd is well under what the issue calls moderate drift (0.1 -
0.15 sd) and above what the sketches can resolve (the normalised Wasserstein of two k = 200
sketches of one distribution reads 0.01 - 0.03 sd at 10^4 - 10^6 events), so a 0.02 sd shift
stays quiet at any size while a 0.12 sd shift fires wherever it is significant. Two share
points is the categorical equivalent (the total-variation distance of a 0.05 sd shift of a
normal binned at deciles is about 0.02).

**fixed**. The statistics of ``detect.statistics`` (default PSI) against ``detect.thresholds``
(or the defaults of :mod:`driftwire.stats.drift`), never below ``NOISE_FACTOR`` times the
statistic's 99th percentile under "no drift" at the two sample sizes (``null_p99``), with the
``detect.min_reference_count`` guard: the rule of earlier releases.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from driftwire.detect.settings import DetectSettings
from driftwire.sketch.numeric import CategoricalSketch, NumericSketch
from driftwire.sketch.profile import Profile
from driftwire.stats.calibrated import (
    TEST_NAMES,
    FeatureTest,
    categorical_test,
    describe_effect,
    numeric_test,
    refused,
)
from driftwire.stats.drift import (
    DEFAULT_THRESHOLDS,
    DriftResult,
    categorical_drift,
    numeric_drift,
)
from driftwire.stats.significance import FdrMethod, fdr_threshold

Sketch = NumericSketch | CategoricalSketch

NOISE_FACTOR = 1.5


def noise_floor(result: DriftResult) -> float | None:
    """The smallest threshold that sampling noise alone rarely reaches at these counts."""
    p99 = result.evidence.get("null_p99")
    return None if p99 is None else NOISE_FACTOR * float(p99)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One statistic of one feature, with the thresholds that apply to it in this window.

    Under the calibrated rule ``test`` is the feature's significance test, and after
    :func:`decide_family` ``score`` is the decision score and ``decision`` its explanation.
    """

    feature: str
    result: DriftResult
    warning: float
    critical: float
    test: FeatureTest | None = None
    score: float | None = None
    decision: dict[str, Any] | None = None

    @property
    def value(self) -> float | None:
        """What the policy sees: the decision score (calibrated) or the statistic (fixed)."""
        return self.result.value if self.test is None else self.score


def _sides(reference: Profile, current: Profile) -> Iterator[tuple[str, Sketch, Sketch]]:
    for name in sorted(set(reference.features) & set(current.features)):
        yield name, reference.features[name], current.features[name]
    yield "prediction.score", reference.prediction_score, current.prediction_score
    yield "prediction.label", reference.prediction_label, current.prediction_label


def compare_profiles(
    reference: Profile,
    current: Profile,
    settings: DetectSettings,
    *,
    cache: dict[str, dict[str, Any]] | None = None,
) -> list[Comparison]:
    """Every configured statistic of every shared feature, reference vs current.

    ``cache`` (per feature name) keeps what depends on the reference alone; the caller keeps it
    with the reference (:attr:`driftwire.detect.reference.Reference.derived`). Calibrated
    comparisons come back undecided: :func:`decide_family` decides them together.
    """
    out: list[Comparison] = []
    for name, ref, cur in _sides(reference, current):
        feature_cache = None if cache is None else cache.setdefault(name, {})
        out += compare_sketches(name, ref, cur, settings, cache=feature_cache)
    return out


def compare_sketches(
    name: str,
    ref: Sketch,
    cur: Sketch,
    settings: DetectSettings,
    *,
    cache: dict[str, Any] | None = None,
) -> list[Comparison]:
    """Every configured statistic of one feature ``name``, reference sketch vs current."""
    if settings.rule == "calibrated":
        return _calibrated(name, ref, cur, settings, cache)
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


def _calibrated(
    name: str, ref: Sketch, cur: Sketch, settings: DetectSettings, cache: dict[str, Any] | None
) -> list[Comparison]:
    overrides = settings.features.get(name, {})
    out: list[Comparison] = []
    if isinstance(ref, NumericSketch) and isinstance(cur, NumericSketch):
        if ref.count == 0 and cur.count == 0:
            return []
        names = overrides.get("significance", settings.significance.get("numeric", ["ks"]))
        for statistic in names:
            test = numeric_test(
                ref.quantile_sketch,
                cur.quantile_sketch,
                statistic,
                min_count=settings.min_count,
                sketch_error=settings.ks_sketch_error,
                reference_cache=cache,
            )
            out.append(_undecided(name, test, "numeric", settings))
    elif isinstance(ref, CategoricalSketch) and isinstance(cur, CategoricalSketch):
        if ref.count == 0 and cur.count == 0:
            return []
        names = overrides.get("significance", settings.significance.get("categorical", ["chi2"]))
        for statistic in names:
            test = categorical_test(
                ref.counts,
                ref.other,
                cur.counts,
                cur.other,
                statistic,
                min_count=settings.min_count,
            )
            out.append(_undecided(name, test, "categorical", settings))
    return out


def _effects(name: str, kind: str, settings: DetectSettings) -> tuple[float, float]:
    overrides = settings.features.get(name, {})
    low = float(overrides.get("min_effect", settings.min_effect.get(kind, 0.05)))
    high = float(overrides.get("critical_effect", settings.critical_effect.get(kind, 0.5)))
    return low, max(low, high)


def _undecided(name: str, test: FeatureTest, kind: str, settings: DetectSettings) -> Comparison:
    low, high = _effects(name, kind, settings)
    return Comparison(name, test.result, 1.0, high / low, test)


#: how the evidence's text names each procedure
FDR_NAMES = {"bh": "BH", "by": "BY", "holm": "Holm", "holm_by": "Holm/BY"}


def fdr_method(settings: DetectSettings, segments: set[str], aggregate: str) -> FdrMethod:
    """The procedure for a family whose tests cover ``segments`` (``aggregate``: the all
    segment): as configured, or with ``auto`` Holm's step-down, at q / c(m) (BY's first
    cut-off) when the aggregate is tested with its segments."""
    if settings.fdr != "auto":
        return settings.fdr
    return "holm_by" if aggregate in segments and len(segments) > 1 else "holm"


def decide_family(
    family: list[tuple[str, Comparison]], settings: DetectSettings, *, aggregate: str = "all"
) -> list[tuple[str, Comparison]]:
    """Decide every calibrated comparison of one model version's window together.

    ``family``: (segment, comparison) pairs; fixed-rule comparisons pass through unchanged.
    The FDR cut-off is taken over every calibrated test with a p-value; then each gets its
    decision score and explanation (see the module docstring).
    """
    tested = [(s, c.test) for s, c in family if c.test is not None and c.test.p_value is not None]
    if not tested:
        return family
    method = fdr_method(settings, {s for s, _ in tested}, aggregate)
    q = settings.fdr_q
    # a test whose most extreme outcome could not reach the cut-off it would need alone
    # (q / m) is refused: its reference is too small for any decision
    alone = fdr_threshold([1.0] * len(tested), q, method)
    p_values = [t.p_value for _, t in tested if t.p_value is not None and t.p_min <= alone]
    cutoff = fdr_threshold(p_values, q, method)
    out: list[tuple[str, Comparison]] = []
    m = len(p_values)
    for segment, c in family:
        t = c.test
        if t is None or t.p_value is None:
            out.append((segment, c))
        elif t.p_min > alone:
            no = refused(t, alone)
            out.append((segment, replace(c, test=no, result=no.result)))
        else:
            out.append((segment, _decided(c, t, cutoff, method, q, m, settings)))
    return out


def _decided(
    c: Comparison,
    t: FeatureTest,
    cutoff: float,
    method: str,
    q: float,
    m: int,
    settings: DetectSettings,
) -> Comparison:
    if t.p_value is None or t.tested is None or t.effect is None:
        return c
    kind = "numeric" if t.effect_unit == "sd" else "categorical"
    low, high = _effects(c.feature, kind, settings)
    null_q = t.null_quantile(cutoff)
    ratio = t.tested / null_q if null_q > 0 else float("inf")
    significant = t.p_value <= cutoff
    relevant = t.effect >= low
    # one bucket is seen by window_buckets overlapping windows: K breaching windows fire only
    # when the latest is beyond the cut-off over those looks, else the breach must outlast
    # every bucket of its first window
    looks = max(settings.window_buckets, 1)
    decisive = significant and t.p_value <= cutoff / looks
    consecutive = settings.consecutive_windows
    windows_to_fire = consecutive if decisive else max(consecutive, looks)
    effect_ratio = t.effect / low
    below_one = math.nextafter(1.0, 0.0)
    score = effect_ratio if significant else min(ratio, effect_ratio, below_one)
    name = TEST_NAMES[t.statistic]
    verdict = "<=" if significant else ">"
    fdr = FDR_NAMES.get(method, method)
    effect_text = describe_effect(t.effect, t.effect_unit)
    text = (
        f"calibrated: {name} p={t.p_value:.2g} {verdict} {fdr} cut-off {cutoff:.2g} at "
        f"q={q:g} over {m} tests; effect {effect_text} "
        f"{'>=' if relevant else '<'} {describe_effect(low, t.effect_unit)}"
    )
    decision = {
        "rule": "calibrated",
        "text": text,
        "statistic": t.statistic,
        "value": t.value,
        "tested": t.tested,
        "null_quantile": null_q,
        "p_value": t.p_value,
        "cutoff": cutoff,
        "fdr": method,
        "q": q,
        "tests": m,
        "significant": significant,
        "effect": t.effect,
        "effect_unit": t.effect_unit,
        "min_effect": low,
        "critical_effect": high,
        "relevant": relevant,
        "decisive_cutoff": cutoff / looks,
        "decisive": decisive,
        "windows_to_fire": windows_to_fire,
        "psi": t.shown.get("psi"),
        "magnitude": {k: v for k, v in t.shown.items() if k != "psi"},
        "null": dict(t.null),
    }
    return replace(c, score=score, decision=decision, warning=1.0, critical=high / low)
