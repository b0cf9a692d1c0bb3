"""Is a window's realized performance worse than the reference's? The drift rule, for metrics.

A metric is flagged when its worsening is both **significant** (a one-sided z-test of the
difference, ``z = worsening / sqrt(se_window^2 + se_reference^2)``, with Bonferroni over the
metrics checked together: ``p < alpha / tests``) and **relevant** (the worsening is at least the
metric's margin: absolute for proportions and AUC, relative for losses and errors). A warning
needs the warning margin, a critical the critical one. ``label_drift`` is the chi-square test
of the actual labels' distribution against the reference's, with the total variation distance
as its effect. Windows with fewer than ``min_count`` joined predictions are not judged (they
come back with ``severity`` None and ``insufficient`` set), so a window is never called worse
on a handful of labels.

>>> from driftwire.truth.interval import Estimate
>>> ref = Estimate(0.90, 0.89, 0.91, 5_000)
>>> check = proportion_check("accuracy", Estimate(0.84, 0.81, 0.87, 600), ref, tests=1)
>>> check.severity, round(check.effect, 2), check.p_value < 1e-4
('critical', 0.06, True)
>>> proportion_check("accuracy", Estimate(0.89, 0.86, 0.91, 600), ref, tests=1).severity is None
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from driftwire.stats.significance import chi2_homogeneity
from driftwire.truth.classification import ClassificationMetrics
from driftwire.truth.interval import Z95, Estimate
from driftwire.truth.regression import RegressionMetrics

__all__ = [
    "PerformanceCheck",
    "PerformanceRule",
    "classification_checks",
    "label_drift_check",
    "proportion_check",
    "regression_checks",
]


@dataclass(frozen=True, slots=True)
class PerformanceRule:
    """Significance level, minimum sample and margins (warning, critical) per metric.

    Margins of ``accuracy``, ``f1`` and ``auc`` are absolute drops; those of ``log_loss``,
    ``mae`` and ``rmse`` are relative increases; ``label_drift``'s is a total variation
    distance between the label distributions.
    """

    alpha: float = 0.001
    min_count: int = 100
    margins: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            "accuracy": (0.02, 0.05),
            "auc": (0.02, 0.05),
            "log_loss": (0.10, 0.25),
            "mae": (0.10, 0.25),
            "rmse": (0.10, 0.25),
            "label_drift": (0.05, 0.10),
        }
    )


@dataclass(frozen=True, slots=True)
class PerformanceCheck:
    """One metric of one window against the reference, and the verdict.

    ``effect`` is the worsening in the metric's margin unit (absolute or relative; for
    ``label_drift`` the total variation distance); ``severity`` is None when the rule does not
    flag it, and ``insufficient`` says why it was not judged at all.
    """

    kind: str
    metric: str
    value: float
    reference: float
    low: float
    high: float
    n: int
    effect: float
    p_value: float
    severity: str | None
    insufficient: str | None = None
    alpha: float = 0.001  # the level the p-value was held to (Bonferroni-split)


def _one_sided_p(z: float) -> float:
    return float(0.5 * special.erfc(z / math.sqrt(2.0)))


def _severity(effect: float, p: float, alpha: float, margins: tuple[float, float]) -> str | None:
    if p >= alpha or effect < margins[0]:
        return None
    return "critical" if effect >= margins[1] else "warning"


def _judge(
    metric: str,
    current: Estimate,
    reference: Estimate,
    *,
    se_current: float,
    se_reference: float,
    higher_is_better: bool,
    relative: bool,
    rule: PerformanceRule,
    tests: int,
) -> PerformanceCheck:
    why: str | None = None
    effect, p, severity = 0.0, 1.0, None
    if current.n < rule.min_count or math.isnan(current.value) or math.isnan(reference.value):
        why = f"{current.n} joined predictions < min_count {rule.min_count}"
    else:
        worsening = (
            reference.value - current.value if higher_is_better else current.value - reference.value
        )
        se = math.sqrt(se_current**2 + se_reference**2)
        p = _one_sided_p(worsening / se) if se > 0 else (0.0 if worsening > 0 else 1.0)
        scale = abs(reference.value) if relative else 1.0
        effect = worsening / scale if scale > 0 else (math.inf if worsening > 0 else 0.0)
        severity = _severity(effect, p, rule.alpha / tests, rule.margins[metric])
    return PerformanceCheck(
        "performance_degradation",
        metric,
        current.value,
        reference.value,
        current.low,
        current.high,
        current.n,
        effect,
        p,
        severity,
        why,
        alpha=rule.alpha / tests,
    )


def _proportion_se(e: Estimate) -> float:
    return math.sqrt(max(e.value * (1 - e.value), 0.0) / e.n) if e.n else math.inf


def _interval_se(e: Estimate) -> float:
    """The standard error behind a symmetric-enough 95% interval."""
    return (e.high - e.low) / (2 * Z95) if e.n > 1 else math.inf


def proportion_check(
    metric: str,
    current: Estimate,
    reference: Estimate,
    *,
    tests: int,
    rule: PerformanceRule | None = None,
) -> PerformanceCheck:
    """A proportion (accuracy) whose drop would be a degradation."""
    return _judge(
        metric,
        current,
        reference,
        se_current=_proportion_se(current),
        se_reference=_proportion_se(reference),
        higher_is_better=True,
        relative=False,
        rule=rule or PerformanceRule(),
        tests=tests,
    )


def classification_checks(
    current: ClassificationMetrics,
    reference: ClassificationMetrics,
    rule: PerformanceRule | None = None,
) -> list[PerformanceCheck]:
    """Accuracy, and where scores exist AUC and log loss, against the reference; plus the
    label distribution (``label_drift``)."""
    rule = rule or PerformanceRule()
    pairs: list[tuple[str, Estimate, Estimate]] = [
        ("accuracy", current.accuracy, reference.accuracy)
    ]
    if current.auc is not None and reference.auc is not None:
        pairs.append(("auc", current.auc, reference.auc))
    if current.log_loss is not None and reference.log_loss is not None:
        pairs.append(("log_loss", current.log_loss, reference.log_loss))
    checks = []
    for metric, cur, ref in pairs:
        if metric == "accuracy":
            checks.append(proportion_check(metric, cur, ref, tests=len(pairs), rule=rule))
            continue
        checks.append(
            _judge(
                metric,
                cur,
                ref,
                se_current=_interval_se(cur),
                se_reference=_interval_se(ref),
                higher_is_better=metric == "auc",
                relative=metric == "log_loss",
                rule=rule,
                tests=len(pairs),
            )
        )
    checks.append(label_drift_check(current, reference, rule))
    return checks


def regression_checks(
    current: RegressionMetrics,
    reference: RegressionMetrics,
    rule: PerformanceRule | None = None,
) -> list[PerformanceCheck]:
    """MAE and RMSE against the reference (relative increases)."""
    rule = rule or PerformanceRule()
    return [
        _judge(
            metric,
            cur,
            ref,
            se_current=_interval_se(cur),
            se_reference=_interval_se(ref),
            higher_is_better=False,
            relative=True,
            rule=rule,
            tests=2,
        )
        for metric, cur, ref in (
            ("mae", current.mae, reference.mae),
            ("rmse", current.rmse, reference.rmse),
        )
    ]


def label_drift_check(
    current: ClassificationMetrics,
    reference: ClassificationMetrics,
    rule: PerformanceRule | None = None,
) -> PerformanceCheck:
    """Chi-square test of the actual labels' counts; effect: total variation distance."""
    rule = rule or PerformanceRule()
    labels = sorted(current.actual_shares.keys() | reference.actual_shares.keys())
    cur = np.array([current.actual_shares.get(k, 0.0) for k in labels])
    ref = np.array([reference.actual_shares.get(k, 0.0) for k in labels])
    distance = float(0.5 * np.abs(cur - ref).sum())
    why: str | None = None
    p, severity = 1.0, None
    if current.n < rule.min_count:
        why = f"{current.n} joined predictions < min_count {rule.min_count}"
    else:
        _, _, p, _ = chi2_homogeneity(ref * reference.n, cur * current.n, labels)
        severity = _severity(distance, p, rule.alpha, rule.margins["label_drift"])
    return PerformanceCheck(
        "label_drift",
        "label_distribution",
        distance,
        0.0,
        math.nan,
        math.nan,
        current.n,
        distance,
        p,
        severity,
        why,
        alpha=rule.alpha,
    )
