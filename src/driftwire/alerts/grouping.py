"""Grouping: many breaching inputs of one model version in one window are one incident.

When at least ``detect.group_min_features`` distinct features of one model version breach
(data drift or data quality, at warning level or above, in any segment) in the same window,
or, if ``detect.group_min_segments`` is set, at least that many segments do, the cause is
rarely that many independent drifts: it is an upstream change (a pipeline bug, a schema or
unit change, a new traffic source). One ``upstream_change`` alert then lists every breaching
(feature, segment) condition with its value, threshold, severity and the fingerprint its own
alert has, sorted by how far each is past its threshold. While the incident fires, the
members' own alert emissions are held back (their policy states keep running and stay
visible in the metrics); the incident announces them instead: it is re-sent with the same
fingerprint when members join or leave, and its resolution lists every member it had
(:mod:`driftwire.alerts.incident`). Members still firing when the incident resolves are
emitted then.
Members are also held back while the incident breaches but has not reached its K windows
yet, so that members breaching one window earlier than the incident do not slip out as
separate alerts; should the incident not fire after all, they are emitted a window later.

One feature drifting in every segment is not an incident by default: it is one feature's
drift, and its ``all`` condition already says "everywhere"; set ``group_min_segments`` to
fold such breaches too. Prediction drift is not a member: it is the model's output, the alert
that states the impact, and keeps its own alerts.

The incident's value is its *score*: the larger of ``features / group_min_features`` and
``segments / group_min_segments``; it breaches at 1 and follows the same policy as every
condition (K consecutive windows; hysteresis: it resolves below 0.8). It is critical when a
member is.

>>> from driftwire.alerts.policy import Thresholds
>>> def drift(feature, segment, value):
...     return Finding(labels={"kind": "data_drift", "model": "m", "model_version": "1",
...                            "segment": segment, "feature": feature, "statistic": "psi"},
...                    value=value, thresholds=Thresholds(0.1, 0.25), headline=str)
>>> found = [drift(f, s, 0.3) for f in "abc" for s in ("all", "region=eu")]
>>> g = group_finding(found, {"model": "m", "model_version": "1"}, min_features=3)
>>> g.value, g.level, g.evidence["features"]
(1.0, 'critical', {'a': 2, 'b': 2, 'c': 2})
"""

from __future__ import annotations

import math
from typing import Any

from driftwire.alerts.finding import GROUPED_KINDS, Finding
from driftwire.alerts.incident import MAX_MEMBERS, member_entry, ranked
from driftwire.alerts.policy import Thresholds


def members(findings: list[Finding]) -> list[Finding]:
    """The breaching findings that count towards an incident."""
    return [f for f in findings if f.kind in GROUPED_KINDS and f.level is not None]


def group_finding(
    findings: list[Finding],
    labels: dict[str, str],
    *,
    min_features: int,
    min_segments: int = 0,
    count: int = 0,
    reference: dict[str, Any] | None = None,
) -> Finding:
    """The ``upstream_change`` finding of one model version's window."""
    breaching = members(findings)
    pairs = {(f.labels.get("feature", ""), f.labels["segment"]) for f in breaching}
    critical = any(f.level == "critical" for f in breaching)
    features: dict[str, int] = {}
    for feature, _ in sorted(pairs):
        features[feature] = features.get(feature, 0) + 1
    segments = sorted({s for _, s in pairs if s != "all"})
    score = 0.0
    if min_features:
        score = len(features) / min_features
    if min_segments:
        score = max(score, len(segments) / min_segments)

    listed = ranked([member_entry(f, f.level) for f in breaching])[:MAX_MEMBERS]
    who = f"{labels['model']} {labels['model_version']}"
    nf, ns = len(features), len(segments)
    limits = " or ".join(
        text
        for text, on in (
            (f"{min_features} features", min_features),
            (f"{min_segments} segments", min_segments),
        )
        if on
    )

    def text(status: str, threshold: float) -> str:
        if status == "firing":
            return (
                f"upstream change suspected for {who}: {nf} features breach at once in "
                f"{ns} segments ({len(pairs)} conditions; ≥ {limits})"
            )
        return f"upstream change of {who} over ({nf} features breach in {ns} segments)"

    top = ", ".join(f"{m['feature']}@{m['segment']} {m['statistic']}" for m in listed[:5])
    names = ", ".join(sorted(features))
    return Finding(
        labels={
            **labels,
            "kind": "upstream_change",
            "segment": "all",
            "statistic": "breaching_inputs",
        },
        value=score,
        thresholds=Thresholds(1.0, 1.0 if critical else math.inf, 0.8),
        headline=text,
        description=(
            f"{len(pairs)} (feature, segment) conditions of {who} breach in the same window: "
            f"{nf} features ({names[:300]}) in {ns} segments. Many inputs at once point to one "
            f"upstream cause: check the feature pipeline and recent deployments. Largest: "
            f"{top}. The members' own alerts are held back while this incident fires. The value "
            f"is max(features / {min_features or '-'}, segments / {min_segments or '-'})."
        ),
        evidence={
            "members": listed,
            "member_count": len(breaching),
            "features": features,
            "segments": segments,
        },
        count=count,
        reference=reference or {},
    )
