"""Findings of one window of one model version, as :class:`~driftwire.detect.detector.Detector`
asks.

:func:`drift_finding` words one :class:`~driftwire.detect.compare.Comparison` of a feature (or the
prediction) with its reference as a ``data_drift`` / ``prediction_drift`` finding.
:func:`latency_window_findings` checks a window's latency (:mod:`driftwire.detect.latency`) per
segment: it feeds each bucket's p95 to the creep detector and compares the window with the
model's trailing or seasonal reference (``detect.references``) once it holds enough
latencies, else with the drift reference's latency, or with the version's first complete
window when the reference has too few latencies.
"""

from __future__ import annotations

from typing import Any

from driftwire.alerts.alert import iso
from driftwire.alerts.finding import Finding, Headline
from driftwire.alerts.policy import Thresholds
from driftwire.detect._state import _Version
from driftwire.detect.compare import Comparison
from driftwire.detect.latency import Creep, LatencyReference, latency_findings, percentiles
from driftwire.detect.reference import Reference
from driftwire.detect.settings import DetectSettings
from driftwire.detect.window import ALL_SEGMENTS
from driftwire.detect.wording import bound_note
from driftwire.sketch.numeric import NumericSketch
from driftwire.sketch.profile import Profile
from driftwire.stats.calibrated import TEST_NAMES, describe_effect


def drift_finding(
    model: str,
    version: str,
    segment: str,
    comparison: Comparison,
    reference: Reference,
    current: Profile,
    start: int,
    end: int,
) -> Finding:
    """The drift finding of ``comparison``: ``segment`` of the window ``[start, end)``."""
    kind = "prediction_drift" if comparison.feature.startswith("prediction") else "data_drift"
    r = comparison.result
    feature = comparison.feature
    where = "all traffic" if segment == ALL_SEGMENTS else segment
    decision = comparison.decision
    if decision is not None:
        return _calibrated_finding(
            kind, model, version, segment, comparison, decision, reference, current, start, end
        )
    value_text = "n/a" if r.value is None else f"{r.value:.3g}"

    def headline(status: str, threshold: float) -> str:
        if status == "firing":
            return (
                f"{feature} of {model} {version} drifted in {where} "
                f"({r.statistic.upper()} {value_text} ≥ {threshold:g})"
            )
        return (
            f"{feature} of {model} {version} back to normal in {where} "
            f"({r.statistic.upper()} {value_text})"
        )

    reason = r.evidence.get("reason") if r.value is None else None
    description = (
        f"{r.statistic} between the window {iso(start)} – {iso(end)} ({r.n_current} events) "
        f"and the {reference.kind.replace('_', ' ')} {reference.id} ({r.n_reference} events)"
        f" is {value_text}"
        + (f" ({reason})." if reason else f"{bound_note(r.value, r.bound, comparison.warning)}.")
        + f" {reference.note}"
    ).strip()
    evidence = r.evidence
    if comparison.test is not None:  # calibrated, undecided: no p-value (too little data)
        undecided = {"rule": "calibrated", "text": f"not decided: {reason}"}
        evidence = {**evidence, "decision": undecided}
    return _finding(
        kind,
        model,
        version,
        segment,
        comparison,
        reference,
        current,
        headline,
        description,
        evidence,
    )


def _calibrated_finding(
    kind: str,
    model: str,
    version: str,
    segment: str,
    comparison: Comparison,
    decision: dict[str, Any],
    reference: Reference,
    current: Profile,
    start: int,
    end: int,
) -> Finding:
    """A drift finding decided by the calibrated rule: the score, and why, in words."""
    r = comparison.result
    feature = comparison.feature
    where = "all traffic" if segment == ALL_SEGMENTS else segment
    effect = describe_effect(decision["effect"], decision["effect_unit"])
    psi = decision.get("psi")
    psi_text = "" if psi is None else f", PSI {psi:.2g}"
    stat = TEST_NAMES[decision["statistic"]]
    critical_effect = describe_effect(decision["critical_effect"], decision["effect_unit"])

    def headline(status: str, threshold: float) -> str:
        if status == "firing":
            return (
                f"{feature} of {model} {version} drifted in {where} by {effect} "
                f"({stat} p={decision['p_value']:.2g}{psi_text})"
            )
        return f"{feature} of {model} {version} back to normal in {where} ({effect}{psi_text})"

    description = (
        f"The window {iso(start)} – {iso(end)} ({r.n_current} events) against the "
        f"{reference.kind.replace('_', ' ')} {reference.id} ({r.n_reference} events): "
        f"{decision['text']}. {stat} = {decision['value']:.4g}, its null quantile at the "
        f"cut-off {decision['null_quantile']:.4g}; critical from an effect of "
        f"{critical_effect}. {reference.note}"
    ).strip()
    evidence = {**r.evidence, "decision": decision}
    return _finding(
        kind,
        model,
        version,
        segment,
        comparison,
        reference,
        current,
        headline,
        description,
        evidence,
        confirm=decision.get("windows_to_fire"),
    )


def _finding(
    kind: str,
    model: str,
    version: str,
    segment: str,
    comparison: Comparison,
    reference: Reference,
    current: Profile,
    headline: Headline,
    description: str,
    evidence: dict[str, Any],
    confirm: int | None = None,
) -> Finding:
    """The finding of one drift comparison, worded by either rule."""
    r = comparison.result
    return Finding(
        labels={
            "kind": kind,
            "model": model,
            "model_version": version,
            "segment": segment,
            "feature": comparison.feature,
            "statistic": r.statistic,
        },
        value=comparison.value,
        thresholds=Thresholds(comparison.warning, comparison.critical),
        headline=headline,
        description=description,
        evidence=evidence,
        bound=r.bound,
        count=current.n_events,
        reference={**reference.describe(), "count": r.n_reference},
        confirm=confirm,
    )


def refusal_findings(
    model: str,
    version: str,
    family: list[tuple[str, Comparison]],
    reference: Reference,
    window: dict[str, Profile],
) -> list[Finding]:
    """One ``data_quality`` finding per segment whose reference is too small for any decision.

    The calibrated rule evaluates small references (the null widens with them) and refuses
    only one where even the most extreme window could not be significant; that refusal is an
    alert (feature ``reference``, statistic ``reference_too_small``), never silence.
    """
    refused: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    for segment, c in family:
        if c.result.evidence.get("reference_too_small"):
            refused.setdefault(segment, []).append(c.feature)
            reasons.setdefault(segment, str(c.result.evidence["reason"]))
    out: list[Finding] = []
    for segment, features in refused.items():
        where = "all traffic" if segment == ALL_SEGMENTS else segment
        subject = f"the reference of {model} {version} in {where}"
        reason = reasons[segment]

        def headline(status: str, threshold: float, subject: str = subject) -> str:
            if status == "firing":
                return f"{subject} is too small for any drift decision"
            return f"{subject} is large enough for drift decisions again"

        out.append(
            Finding(
                labels={
                    "kind": "data_quality",
                    "model": model,
                    "model_version": version,
                    "segment": segment,
                    "feature": "reference",
                    "statistic": "reference_too_small",
                },
                value=1.0,
                thresholds=Thresholds(1.0, 2.0, 0.5),
                headline=headline,
                description=(
                    f"Drift of {len(features)} features is not decided: {reason}. Publish a "
                    "larger baseline (driftwire baseline build) for this version."
                ),
                evidence={
                    "statistic": "reference_too_small",
                    "reason": reason,
                    "features": sorted(features)[:50],
                },
                consecutive=1,
                count=window[segment].n_events,
                reference={**reference.describe(), "count": reference.profile(segment).n_events},
            )
        )
    return out


def latency_window_findings(
    detect: DetectSettings,
    name: str,
    version_name: str,
    version: _Version,
    profiles: dict[str, Profile],
    window: dict[str, Profile],
    reference: Reference | None,
    end: int,
    gauges: dict[tuple[str, str, str], dict[str, float]],
    own: OwnReference = ("baseline", None, "", []),
) -> list[Finding]:
    """Latency findings of the window ending at ``end`` (``profiles``: its newest bucket).

    ``own`` is :meth:`History.latency <driftwire.detect.trailing.History.latency>` of the
    window: the trailing or seasonal reference of the model's latency, if it has one. Sets the
    window's percentiles per (model, version, segment) in ``gauges``.
    """
    lat = detect.latency
    bucket_latency: dict[str, NumericSketch] = {}
    if detect.segments:
        bucket_latency = {s: p.latency_ms for s, p in profiles.items()}
    merged: NumericSketch | None = None
    for p in profiles.values():
        merged = p.latency_ms.copy() if merged is None else merged.merge(p.latency_ms)
    if merged is not None:
        bucket_latency[ALL_SEGMENTS] = merged
    out: list[Finding] = []
    for segment, current in window.items():
        ref, described = _latency_reference(detect, name, version_name, reference, version,
                                            segment, own)  # fmt: skip
        creep = version.creep.get(segment)
        if creep is None and lat.creep:
            creep = version.creep[segment] = Creep(lat)
        sketch = bucket_latency.get(segment)
        enough = sketch is not None and sketch.count >= lat.creep_min_bucket_count
        ref_p95 = None if ref is None else ref.quantiles.get("p95")
        if creep is not None and sketch is not None and enough and ref_p95:
            creep.update(float(sketch.quantiles([0.95])[0]) / ref_p95, end)
        labels = {"model": name, "model_version": version_name, "segment": segment}
        found = latency_findings(
            current.latency_ms,
            ref,
            creep,
            lat,
            labels,
            min_count=detect.min_count,
            consecutive=detect.consecutive_windows,
        )
        for f in found:
            f.reference = described
        out.extend(found)
        key = (name, version_name, segment)
        gauges[key] = percentiles(current.latency_ms, lat.quantiles)
    return out


#: :meth:`History.latency <driftwire.detect.trailing.History.latency>`: kind, built, progress, parts
OwnReference = tuple[str, Reference | None, str, list[dict[str, Profile]]]


def _part_latency(part: dict[str, Profile], segment: str) -> NumericSketch | None:
    """One slot's latency of ``segment`` (``all``: every segment of the slot merged)."""
    profile = part.get(segment)
    if profile is not None:
        return profile.latency_ms
    if segment != ALL_SEGMENTS or not part:
        return None
    merged: NumericSketch | None = None
    for p in part.values():
        merged = p.latency_ms.copy() if merged is None else merged.merge(p.latency_ms)
    return merged


def _latency_reference(
    detect: DetectSettings,
    name: str,
    version_name: str,
    reference: Reference | None,
    version: _Version,
    segment: str,
    own: OwnReference,
) -> tuple[LatencyReference | None, dict[str, Any]]:
    """The latency reference of ``segment`` and its description for the alert.

    The model's trailing / seasonal reference when it has ``min_reference_count`` latencies in
    the segment; else the drift reference's latency if it has enough, else the first live
    window's. Built references are cached on the version until their profiles change.
    """
    need = detect.min_reference_count
    qs = detect.latency.quantiles
    kind, built, progress, parts = own
    cache = version.latency_cache
    if built is not None:
        profile = built.profiles.get(segment)
        if profile is not None and profile.latency_ms.count >= need:
            hit = cache.get(segment)
            if hit is None or hit[0] is not profile:
                sketches = [_part_latency(p, segment) for p in parts]
                kept = [s for s in sketches if s is not None]
                found: LatencyReference | None = None
                if kind == "seasonal":
                    found = LatencyReference.seasonal(kept, qs, built.id)
                if found is None:
                    found = LatencyReference.of(profile.latency_ms, qs, built.id, kept)
                hit = cache[segment] = (profile, found)
            own_ref = hit[1]
            told: dict[str, Any] = {**built.describe(), "count": own_ref.count}
            if own_ref.left_out:
                slots = own_ref.parts + own_ref.left_out
                told["note"] = (
                    f"{told.get('note', '')} Latency: {own_ref.left_out} of {slots} slots left "
                    "out, each with 20% or more of its latencies above the slots' median p95 "
                    "(an incident, not the usual level)."
                ).strip()
            return own_ref, told
    ref = _fallback_reference(detect, reference, version, segment)
    if ref is None or reference is None or ref.source != reference.id:
        described: dict[str, Any] = {
            "kind": "frozen_window",
            "id": f"first-window:{name}/{version_name}",
            "count": 0 if ref is None else ref.count,
            "note": "Latency is compared with this version's first complete window of "
            "live traffic (the drift reference has too few latencies).",
        }
    else:
        described = {**reference.describe(), "count": ref.count}
    if kind != "baseline":
        profile = None if built is None else built.profiles.get(segment)
        n = 0 if profile is None else profile.latency_ms.count
        what = "first window" if described["kind"] == "frozen_window" else "baseline"
        note = (
            f"{kind}: {progress or 'no slot yet'}, {n} latencies (needs {need}); until then the "
            f"{what} is the latency reference."
        )
        described["note"] = f"{note} {described.get('note', '')}".strip()
    return ref, described


def _fallback_reference(
    detect: DetectSettings, reference: Reference | None, version: _Version, segment: str
) -> LatencyReference | None:
    """The drift reference's latency if it has enough, else the first live window's."""
    need = detect.min_reference_count
    qs = detect.latency.quantiles
    live = version.latency_ref or {}
    for seg in dict.fromkeys((segment, ALL_SEGMENTS)):
        if reference is not None:
            profile = reference.profiles.get(seg)
            if profile is not None and profile.latency_ms.count >= need:
                key = f"baseline:{seg}"
                hit = version.latency_cache.get(key)
                if hit is None or hit[0] is not profile:
                    found = LatencyReference.of(profile.latency_ms, qs, reference.id)
                    hit = version.latency_cache[key] = (profile, found)
                return hit[1]
        mine = live.get(seg)
        if mine is not None and mine.count >= need:
            return mine
    return None
