"""Performance checks as :class:`~driftwire.alerts.finding.Finding` objects, for the alert policy.

The decision score follows the calibrated drift rule's convention: the worsening over the
metric's warning margin when significant (so the policy's warning threshold is 1 and its
critical threshold the ratio of the margins), and below 1 when not, so one
:class:`~driftwire.alerts.policy.AlertPolicy` with its hysteresis handles drift and
performance alike. The alert says the metric, the window's value and interval, the
reference's value, how complete the window's labels are, and the test behind the verdict.

>>> from driftwire.truth.compare import PerformanceCheck, PerformanceRule
>>> check = PerformanceCheck("performance_degradation", "accuracy", 0.84, 0.90, 0.81, 0.87,
...                          600, 0.06, 1e-5, "critical", alpha=0.01 / 3)
>>> f = performance_finding(check, model="churn", model_version="1", segment="all",
...                         completeness=0.62, rule=PerformanceRule())
>>> f.level, f.labels["alertname"]
('critical', 'DriftwirePerformanceDegradation')
>>> f.headline("firing", 1.0)
'accuracy 0.84 (0.81-0.87) vs 0.9 on the reference, on 600 labelled predictions (62% of the window)'
"""

from __future__ import annotations

import math

from driftwire.alerts.finding import Finding
from driftwire.alerts.policy import Thresholds
from driftwire.truth.compare import PerformanceCheck, PerformanceRule
from driftwire.truth.estimate import EstimatedPerformance
from driftwire.truth.staged_policy import age_label

__all__ = ["estimate_finding", "performance_finding"]

_BELOW_ONE = math.nextafter(1.0, 0.0)


def _score(check: PerformanceCheck, warning: float) -> float | None:
    if check.insufficient is not None:
        return None
    ratio = check.effect / warning if warning > 0 else math.inf
    return ratio if check.p_value < check.alpha else min(ratio, _BELOW_ONE)


def performance_finding(
    check: PerformanceCheck,
    *,
    model: str,
    model_version: str,
    segment: str,
    completeness: float,
    rule: PerformanceRule,
    age_ms: int | None = None,
) -> Finding:
    """A ``performance_degradation`` or ``label_drift`` finding of one window, judged
    ``age_ms`` after the window ended (said in the summary when given)."""
    warning, critical = rule.margins["label_drift" if check.kind == "label_drift" else check.metric]
    share = f"{completeness:.0%} of the window"
    if age_ms is not None:
        share += f", judged {age_label(age_ms)} after it closed"

    def headline(status: str, threshold: float) -> str:
        if check.kind == "label_drift":
            return (
                f"the actual labels' distribution moved by {check.effect:.2f} (total variation), "
                f"on {check.n} labelled predictions ({share})"
            )
        return (
            f"{check.metric} {check.value:.3g} ({check.low:.3g}-{check.high:.3g}) vs "
            f"{check.reference:.3g} on the reference, on {check.n} labelled predictions ({share})"
        )

    return Finding(
        labels={
            "kind": check.kind,
            "model": model,
            "model_version": model_version,
            "segment": segment,
            "statistic": check.metric,
        },
        value=_score(check, warning),
        thresholds=Thresholds(1.0, critical / warning),
        headline=headline,
        description=(
            f"one-sided test p={check.p_value:.2g} (alpha {check.alpha:.2g}); worsening "
            f"{check.effect:.3g} against a margin of {warning:g} (critical {critical:g})"
            if check.insufficient is None
            else f"not judged: {check.insufficient}"
        ),
        evidence={
            "value": check.value,
            "interval": [check.low, check.high],
            "reference": check.reference,
            "effect": check.effect,
            "p_value": check.p_value,
            "labelled": check.n,
            "completeness": completeness,
            **({} if age_ms is None else {"judged_after_seconds": age_ms / 1000}),
        },
        shown=check.value,
        count=check.n,
    )


def estimate_finding(
    estimate: EstimatedPerformance,
    reference_accuracy: float,
    *,
    model: str,
    model_version: str,
    segment: str,
    rule: PerformanceRule,
    min_count: int,
) -> Finding:
    """An ``estimated_performance`` finding: the expected accuracy's drop from the reference's
    realized one, against the accuracy margins (no labels: relevance only, on ``min_count``)."""
    warning, critical = rule.margins["accuracy"]
    drop = reference_accuracy - estimate.accuracy
    value = None if estimate.n < min_count or math.isnan(drop) else drop / warning

    def headline(status: str, threshold: float) -> str:
        return (
            f"estimated accuracy {estimate.accuracy:.3g} vs {reference_accuracy:.3g} on the "
            f"reference (an estimate from {estimate.n} predictions' scores, before labels)"
        )

    return Finding(
        labels={
            "kind": "estimated_performance",
            "model": model,
            "model_version": model_version,
            "segment": segment,
            "statistic": "accuracy",
        },
        value=value,
        thresholds=Thresholds(1.0, critical / warning),
        headline=headline,
        description=(
            "confidence-based estimate: right while the scores mean what they meant on the "
            f"reference; {estimate.outside_reference_share:.0%} of the window's scores lie "
            "beyond the reference's central 99%"
        ),
        evidence={
            "estimated": {
                "accuracy": estimate.accuracy,
                "precision": estimate.precision,
                "recall": estimate.recall,
                "f1": estimate.f1,
                "auc": estimate.auc,
            },
            "reference_accuracy": reference_accuracy,
            "outside_reference_share": estimate.outside_reference_share,
        },
        shown=estimate.accuracy,
        count=estimate.n,
    )
