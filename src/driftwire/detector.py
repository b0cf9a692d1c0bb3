"""Stage 2's pure core: partials in, windows merged, compared with references, alerts out.

Per model it keeps, for every version, the profiles of the last ``window_buckets`` evaluated
buckets per segment, plus the buckets still being assembled from partials. A bucket is
evaluated once :class:`~driftwire.completeness.Completeness` says every input partition has
passed it (or the grace period ran out). The window (merge of the last N buckets) of every
segment, and of all traffic (segment ``all``), is checked:

* drift of every feature and of the prediction against the version's reference (a published
  baseline if there is one, else the first complete window of the version, frozen), via
  :func:`~driftwire.scoring.compare_profiles`;
* data quality of every feature against the same reference (:mod:`driftwire.quality`);
* latency percentiles, spikes and creep (:mod:`driftwire.latency`);
* the version's event rate, including buckets in which it sent nothing while other traffic
  flowed (:mod:`driftwire.throughput`);
* after every version's window: each newer live version against the one it replaces over the
  same window, and the retirement of versions silent for long (:mod:`driftwire.canary`).

Each check yields :class:`~driftwire.findings.Finding` s; each is a condition of the
:class:`~driftwire.policy.AlertPolicy`, keyed by its labels. Then, per model version and
window: many breaching drift / quality conditions make one ``upstream_change`` incident
(:mod:`driftwire.grouping`) that holds back its members' emissions; silences from the config
(:mod:`driftwire.silences`) hold back what they match; a drift alert on a feature whose data
quality breaches in the same window says so and names the quality alert's fingerprint.
A held-back alert that is still firing when the hold ends is emitted then; one that resolved
meanwhile is never announced.

The Faust app and the in-memory transport are both thin shells around :class:`Detector`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from driftwire.alerts import Alert, fingerprint, iso
from driftwire.canary import (
    Pair,
    VersionLedger,
    comparison_findings,
    comparison_over,
    outputs,
    predecessors,
)
from driftwire.completeness import Completeness
from driftwire.config import AlertSettings, DetectSettings
from driftwire.findings import GROUPED_KINDS, Finding
from driftwire.grouping import group_finding
from driftwire.history import History
from driftwire.latency import Creep, LatencyReference, latency_findings, percentiles
from driftwire.metrics import ConditionSample, LatencySample
from driftwire.partials import Partial, Watermark
from driftwire.policy import AlertPolicy, Thresholds, Transition
from driftwire.profile import Profile
from driftwire.quality import quality_findings
from driftwire.reference import Reference, ReferenceStore
from driftwire.scoring import Comparison, compare_profiles
from driftwire.silences import silenced_by
from driftwire.sketches import NumericSketch
from driftwire.throughput import RateState, throughput_findings

ALL_SEGMENTS = "all"


@dataclass
class Evaluation:
    """What one bucket's evaluation produced, for metrics and for callers."""

    model: str
    model_version: str
    bucket_end_ms: int
    results: list[Comparison] = field(default_factory=list)
    insufficient: int = 0


@dataclass
class _Version:
    buckets: dict[int, dict[str, Profile]] = field(default_factory=dict)  # evaluated, last N
    pending: dict[int, dict[str, Profile]] = field(default_factory=dict)  # being assembled
    frozen: Reference | None = None
    rate: RateState = field(default_factory=RateState)
    latency_ref: dict[str, LatencyReference] | None = None  # first complete window's latency
    creep: dict[str, Creep] = field(default_factory=dict)  # per segment
    # snapshot cache (not persisted): evaluated buckets and the frozen reference never change
    encoded: dict[int, dict[str, str]] = field(default_factory=dict)
    frozen_state: dict[str, Any] | None = None


@dataclass
class _Model:
    completeness: Completeness
    versions: dict[str, _Version] = field(default_factory=dict)
    seen_ids: dict[str, int] = field(default_factory=dict)  # partial id -> bucket end
    evaluated_until: int | None = None
    late_partials: int = 0
    traffic: dict[int, int] = field(default_factory=dict)  # bucket start -> events, any version
    last_bucket: int | None = None  # start of the newest evaluated bucket
    muted: dict[str, str] = field(default_factory=dict)  # condition key -> why it is held back
    ledger: VersionLedger = field(default_factory=VersionLedger)  # first / last seen per version
    compared: set[str] = field(default_factory=set)  # version_comparison keys (not persisted)


@dataclass
class _Keyed:
    key: str
    finding: Finding
    transitions: list[Transition]


class Detector:
    """Merges partials into windows and turns comparisons into alerts. Pure and synchronous."""

    def __init__(
        self,
        detect: DetectSettings,
        alerts: AlertSettings,
        references: ReferenceStore,
        *,
        bucket_ms: int,
        on_evaluation: Callable[[Evaluation], None] | None = None,
    ) -> None:
        self._d = detect
        self._a = alerts
        self._refs = references
        self._bucket_ms = bucket_ms
        self._on_evaluation = on_evaluation
        self._models: dict[str, _Model] = {}
        self.policy = AlertPolicy(
            consecutive=detect.consecutive_windows, renotify_ms=int(alerts.renotify_seconds * 1000)
        )
        self._silences = tuple(s.build() for s in alerts.silences)
        self._conditions: dict[str, Finding] = {}
        self._latency: dict[tuple[str, str, str], dict[str, float]] = {}
        self._history = History(detect, bucket_ms=bucket_ms)  # trailing / seasonal references
        self._changed: set[str] = set()  # models whose state changed beyond completeness

    # -- input -----------------------------------------------------------------------------

    def on_partial(self, partial: Partial, now_ms: int) -> list[Alert]:
        model = self._model(partial.model)
        if partial.id in model.seen_ids:
            return []  # a replay of a partial already merged
        model.seen_ids[partial.id] = partial.bucket_end_ms
        if model.evaluated_until is not None and partial.bucket_end_ms <= model.evaluated_until:
            model.late_partials += 1
            return []
        version = model.versions.setdefault(partial.model_version, _Version())
        slot = version.pending.setdefault(partial.bucket_start_ms, {})
        events = 0
        for segment, blob in partial.segments.items():
            profile = Profile.from_bytes(blob)
            events += profile.n_events
            if segment in slot:
                slot[segment].merge(profile)
            else:
                slot[segment] = profile
        start = partial.bucket_start_ms
        model.traffic[start] = model.traffic.get(start, 0) + events
        self._changed.add(partial.model)
        return []

    def on_watermark(self, mark: Watermark, now_ms: int) -> list[Alert]:
        out: list[Alert] = []
        for name, model in self._models.items():
            model.completeness.observe(
                partition=mark.partition,
                partitions=mark.partitions,
                watermark_ms=mark.watermark_ms,
                idle=mark.idle,
                now_ms=now_ms,
            )
            out.extend(self._advance(name, model, now_ms))
        return out

    def tick(self, now_ms: int) -> list[Alert]:
        """Evaluate buckets whose grace period ran out; call it every few seconds."""
        out: list[Alert] = []
        for name, model in self._models.items():
            out.extend(self._advance(name, model, now_ms))
        return out

    # -- evaluation ------------------------------------------------------------------------

    def _model(self, name: str) -> _Model:
        model = self._models.get(name)
        if model is None:
            grace_ms = int(self._d.grace_seconds * 1000)
            model = _Model(Completeness(grace_ms=grace_ms))
            # a new model inherits what is known of the input partitions
            for other in self._models.values():
                model.completeness = Completeness.from_state(
                    grace_ms, other.completeness.to_state()
                )
                model.completeness._complete = None
                break
            self._models[name] = model
        return model

    def _advance(self, name: str, model: _Model, now_ms: int) -> list[Alert]:
        until = model.completeness.complete_until(now_ms)
        if until is None:
            return []
        b_ms = self._bucket_ms
        due = {b for v in model.versions.values() for b in v.pending if b + b_ms <= until}
        if model.last_bucket is not None and self._d.throughput.enabled:
            # buckets in which none of the model's versions sent anything: still evaluated,
            # so that "no data" can be seen (bounded after a long gap)
            last = (until // b_ms - 1) * b_ms
            horizon = self._d.throughput.reference_buckets + self._d.window_buckets
            first = max(model.last_bucket + b_ms, last - horizon * b_ms)
            due.update(range(first, last + 1, b_ms))
        out: list[Alert] = []
        for bucket in sorted(due):
            out.extend(self._evaluate_bucket(name, model, bucket))
            if model.last_bucket is None or bucket > model.last_bucket:
                model.last_bucket = bucket
        if model.evaluated_until is None or until > model.evaluated_until:
            model.evaluated_until = until
            self._changed.add(name)
            horizon = until - (self._d.window_buckets + 1) * b_ms
            model.seen_ids = {k: v for k, v in model.seen_ids.items() if v > horizon}
            keep = until - (self._d.window_buckets + 2) * b_ms
            model.traffic = {b: n for b, n in model.traffic.items() if b >= keep}
        return out

    def _traffic(self, bucket: int) -> int:
        """Events of every model this detector owns in ``bucket``."""
        return sum(m.traffic.get(bucket, 0) for m in self._models.values())

    def _evaluate_bucket(self, name: str, model: _Model, bucket: int) -> list[Alert]:
        out: list[Alert] = []
        end = bucket + self._bucket_ms
        start = end - self._d.window_buckets * self._bucket_ms
        for version_name, version in model.versions.items():
            profiles = version.pending.pop(bucket, None)
            count = sum(p.n_events for p in profiles.values()) if profiles else 0
            labels = {"model": name, "model_version": version_name}
            findings: list[Finding] = []
            if self._d.throughput.enabled:
                flowing = self._traffic(bucket) - count > 0
                findings += throughput_findings(
                    version.rate,
                    count,
                    flowing,
                    self._d.throughput,
                    labels,
                    window_buckets=self._d.window_buckets,
                    min_count=self._d.min_count,
                )
            reference: Reference | None = None
            events = 0
            if profiles is not None:
                reference, events = self._evaluate_window(
                    name, version_name, version, profiles, bucket, findings
                )
            else:
                self._prune(version, end)
            out.extend(self._decide(model, labels, findings, reference, events, start, end))
        out.extend(self._versions(name, model, bucket))
        return out

    def _prune(self, version: _Version, end: int) -> None:
        n = self._d.window_buckets
        for old in [b for b in version.buckets if b <= end - (n + 1) * self._bucket_ms]:
            del version.buckets[old]
            version.encoded.pop(old, None)

    def _evaluate_window(
        self,
        name: str,
        version_name: str,
        version: _Version,
        profiles: dict[str, Profile],
        bucket: int,
        findings: list[Finding],
    ) -> tuple[Reference | None, int]:
        """Drift, quality and latency findings of the window ending with ``bucket``.

        Returns the reference used (``None`` while there is none) and the window's events.
        """
        end = bucket + self._bucket_ms
        n = self._d.window_buckets
        version.buckets[bucket] = profiles
        self._history.add(name, version_name, bucket, profiles)
        self._prune(version, end)
        window = self._window(version, end)
        complete = self._complete_window(version, end)
        lat = self._d.latency
        if version.latency_ref is None and complete:
            version.latency_ref = {
                s: LatencyReference.of(p.latency_ms, lat.quantiles, "first window")
                for s, p in window.items()
            }
        reference = self._refs.get(name, version_name) or version.frozen
        if lat.enabled:
            findings += self._latency_findings(
                name, version_name, version, profiles, window, reference, end
            )
        events = window[ALL_SEGMENTS].n_events
        if reference is None:
            if complete:
                version.frozen = Reference.frozen(name, version_name, window, end)
            return None, events
        evaluation = Evaluation(name, version_name, end)
        start = end - n * self._bucket_ms
        choice = self._history.choose(name, version_name, reference, start, end)
        for segment, current in window.items():
            ref_profile = choice.profile(segment)  # per feature from its configured reference
            for comparison in compare_profiles(ref_profile, current, self._d):
                evaluation.results.append(comparison)
                if comparison.result.value is None:
                    evaluation.insufficient += 1
                findings.append(
                    self._drift_finding(
                        name,
                        version_name,
                        segment,
                        comparison,
                        choice.reference(segment, comparison.feature),
                        current,
                        start,
                        end,
                    )
                )
            if self._d.quality.enabled:
                base = choice.reference(segment)  # the model's reference, not per feature
                labels = {"model": name, "model_version": version_name, "segment": segment}
                described = {**base.describe(), "count": base.profile(segment).n_events}
                for f in quality_findings(
                    base.profile(segment),
                    current,
                    self._d.quality,
                    labels,
                    min_count=self._d.min_count,
                    min_reference_count=self._d.min_reference_count,
                    also=self._firing_features(labels, "data_quality"),
                ):
                    f.reference = described
                    findings.append(f)
        if self._on_evaluation is not None:
            self._on_evaluation(evaluation)
        return choice.reference(ALL_SEGMENTS), events

    def _latency_findings(
        self,
        name: str,
        version_name: str,
        version: _Version,
        profiles: dict[str, Profile],
        window: dict[str, Profile],
        reference: Reference | None,
        end: int,
    ) -> list[Finding]:
        lat = self._d.latency
        bucket_latency: dict[str, NumericSketch] = {}
        if self._d.segments:
            bucket_latency = {s: p.latency_ms for s, p in profiles.items()}
        merged: NumericSketch | None = None
        for p in profiles.values():
            merged = p.latency_ms.copy() if merged is None else merged.merge(p.latency_ms)
        if merged is not None:
            bucket_latency[ALL_SEGMENTS] = merged
        out: list[Finding] = []
        for segment, current in window.items():
            creep = version.creep.get(segment)
            if creep is None and lat.creep:
                creep = version.creep[segment] = Creep(lat)
            sketch = bucket_latency.get(segment)
            enough = sketch is not None and sketch.count >= lat.creep_min_bucket_count
            if creep is not None and sketch is not None and enough:
                creep.update(float(sketch.quantiles([0.95])[0]), end)
            ref = self._latency_reference(reference, version, segment)
            labels = {"model": name, "model_version": version_name, "segment": segment}
            found = latency_findings(
                current.latency_ms,
                ref,
                creep,
                lat,
                labels,
                min_count=self._d.min_count,
                consecutive=self._d.consecutive_windows,
            )
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
            for f in found:
                f.reference = described
            out.extend(found)
            key = (name, version_name, segment)
            self._latency[key] = percentiles(current.latency_ms, lat.quantiles)
        return out

    def _latency_reference(
        self, reference: Reference | None, version: _Version, segment: str
    ) -> LatencyReference | None:
        """The drift reference's latency if it has enough, else the first live window's."""
        need = self._d.min_reference_count
        qs = self._d.latency.quantiles
        live = version.latency_ref or {}
        for seg in dict.fromkeys((segment, ALL_SEGMENTS)):
            if reference is not None:
                profile = reference.profiles.get(seg)
                if profile is not None and profile.latency_ms.count >= need:
                    return LatencyReference.of(profile.latency_ms, qs, reference.id)
            mine = live.get(seg)
            if mine is not None and mine.count >= need:
                return mine
        return None

    def _complete_window(self, version: _Version, end: int) -> bool:
        n = self._d.window_buckets
        first = end - n * self._bucket_ms
        return min(version.buckets) <= first and len(version.buckets) >= n

    def _window(self, version: _Version, end: int) -> dict[str, Profile]:
        """Merge the last N buckets per segment, plus all segments together as ``all``."""
        first = end - self._d.window_buckets * self._bucket_ms
        merged: dict[str, Profile] = {}
        total: Profile | None = None
        for bucket in sorted(b for b in version.buckets if b >= first):
            for segment, profile in version.buckets[bucket].items():
                if segment in merged:
                    merged[segment].merge(profile)
                else:
                    merged[segment] = profile.copy()
                if total is None:
                    total = profile.copy()
                else:
                    total.merge(profile)
        if not self._d.segments:
            merged = {}
        if total is not None:
            merged[ALL_SEGMENTS] = total
        return merged

    def _drift_finding(
        self,
        model: str,
        version: str,
        segment: str,
        comparison: Comparison,
        reference: Reference,
        current: Profile,
        start: int,
        end: int,
    ) -> Finding:
        kind = "prediction_drift" if comparison.feature.startswith("prediction") else "data_drift"
        r = comparison.result
        feature = comparison.feature
        where = "all traffic" if segment == ALL_SEGMENTS else segment
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

        description = (
            f"{r.statistic} between the window {iso(start)} – {iso(end)} ({r.n_current} events) "
            f"and the {reference.kind.replace('_', ' ')} {reference.id} ({r.n_reference} events)"
            f" is {value_text} (error bound ±{r.bound:.2g}). {reference.note}"
        ).strip()
        return Finding(
            labels={
                "kind": kind,
                "model": model,
                "model_version": version,
                "segment": segment,
                "feature": feature,
                "statistic": r.statistic,
            },
            value=r.value,
            thresholds=Thresholds(comparison.warning, comparison.critical),
            headline=headline,
            description=description,
            evidence=r.evidence,
            bound=r.bound,
            count=current.n_events,
            reference={**reference.describe(), "count": r.n_reference},
        )

    # -- versions: canary comparisons and retirement (driftwire.canary) -------------------

    def _versions(self, name: str, model: _Model, bucket: int) -> list[Alert]:
        """Retire silent versions, end stale comparisons, compare canaries in this window."""
        end = bucket + self._bucket_ms
        start = end - self._d.window_buckets * self._bucket_ms
        ledger = model.ledger
        for version_name, version in model.versions.items():
            if bucket in version.buckets:
                ledger.observe(version_name, bucket)
            elif version_name not in ledger.seen:  # restored from a snapshot without a ledger
                for b in version.buckets:
                    ledger.observe(version_name, b)
        ended: dict[str, str] = {}
        n = self._d.retire_after_buckets
        retired = ledger.retired(n * self._bucket_ms)
        for version_name in retired:
            del model.versions[version_name]
            ledger.forget(version_name)
            why = f"{name} {version_name} retired (no events for {n} buckets while others sent)"
            prefix = f"{name}/"
            for key, f in self._conditions.items():
                if key.startswith(prefix) and f.labels["model_version"] == version_name:
                    ended[key] = why
            for gauge in [k for k in self._latency if k[:2] == (name, version_name)]:
                del self._latency[gauge]
        live = {v for v, st in model.versions.items() if any(b >= start for b in st.buckets)}
        pairs = predecessors(ledger, live) if self._d.canary.enabled else {}
        for key in model.compared:
            why_over = comparison_over(self._conditions[key], pairs, live)
            if why_over is not None:
                ended.setdefault(key, why_over)
        out = self._end(model, ended, start, end)
        windows = {
            v: outputs(
                (p for b, p in model.versions[v].buckets.items() if b >= start),
                segments=self._d.segments,
            )
            for v in pairs.keys() | pairs.values()
        }
        for canary, previous in pairs.items():
            pair = Pair(name, canary, previous, ledger.first(canary), ledger.first(previous))
            findings = comparison_findings(
                pair, windows[canary], windows[previous], self._d, start=start, end=end
            )
            model.compared.update(_key(name, f) for f in findings)
            labels = {"model": name, "model_version": canary}
            out.extend(self._decide(model, labels, findings, None, 0, start, end))
        return out

    def _end(self, model: _Model, ended: dict[str, str], start: int, end: int) -> list[Alert]:
        """Forget conditions no longer evaluated (key -> why); resolve announced alerts once."""
        if not ended:
            return []
        firing = self.policy.firing()
        out: list[Alert] = []
        for key, why in ended.items():
            f = self._conditions.pop(key)
            starts = self.policy.starts_at(key)
            self.policy.forget(key)
            model.compared.discard(key)
            severity = firing.get(key)
            if model.muted.pop(key, None) is not None or severity is None or starts is None:
                continue  # not firing, or never announced
            summary = f"{why}; closing: {f.headline('firing', f.threshold(severity))}"

            def closed(status: str, threshold: float, text: str = summary) -> str:
                return text

            gone = replace(f, headline=closed)
            t = Transition(key, "resolved", severity, starts, end)
            out.append(self._render(gone, t, {}, start, end))
        return out

    # -- decisions -------------------------------------------------------------------------

    def _firing_features(self, labels: dict[str, str], kind: str) -> set[str]:
        """Features with a firing condition of ``kind`` in this (model, version, segment)."""
        firing = self.policy.firing()
        prefix = f"{labels['model']}/"
        out: set[str] = set()
        for key, f in self._conditions.items():
            if key in firing and key.startswith(prefix) and f.kind == kind:
                fl = f.labels
                if (
                    fl["model_version"] == labels["model_version"]
                    and fl["segment"] == labels["segment"]
                ):
                    out.add(fl.get("feature", ""))
        out.discard("")
        return out

    def _decide(
        self,
        model: _Model,
        labels: dict[str, str],
        findings: list[Finding],
        reference: Reference | None,
        events: int,
        start: int,
        end: int,
    ) -> list[Alert]:
        """Feed the policy, group, cross-reference, apply silences, render the alerts."""
        name = labels["model"]
        keyed: list[_Keyed] = []
        for f in findings:
            key = _key(name, f)
            transitions = self.policy.observe(
                key, f.value, f.thresholds, now_ms=end, consecutive=f.consecutive
            )
            self._conditions[key] = f
            keyed.append(_Keyed(key, f, transitions))
        group_key: str | None = None
        if (self._d.group_min_features or self._d.group_min_segments) and reference is not None:
            g = group_finding(
                findings,
                labels,
                min_features=self._d.group_min_features,
                min_segments=self._d.group_min_segments,
                count=events,
                reference=reference.describe(),
            )
            group_key = f"{name}/{fingerprint(g.labels)}"
            transitions = self.policy.observe(group_key, g.value, g.thresholds, now_ms=end)
            self._conditions[group_key] = g
            keyed.append(_Keyed(group_key, g, transitions))
        firing = self.policy.firing()
        group = None  # the incident's fingerprint while it fires, or breaches towards firing
        if group_key is not None:
            incident = self._conditions[group_key]
            severity = firing.get(group_key) or incident.level
            if severity is not None:
                group = fingerprint({**incident.labels, "severity": severity})
        quality = self._quality_index(keyed, firing)

        def held(f: Finding, severity: str) -> str | None:
            silence = silenced_by(self._silences, {**f.labels, "severity": severity}, end)
            if silence is not None:
                return f"silence:{silence}"
            if group is not None and f.kind in GROUPED_KINDS:
                return f"upstream_change:{group}"
            return None

        out: list[Alert] = []
        for k in keyed:
            escalation = len(k.transitions) == 2  # resolved warning, firing critical
            for t in k.transitions:
                if t.status == "resolved":
                    if model.muted.pop(k.key, None) is None:
                        out.append(self._render(k.finding, t, quality, start, end, escalation))
                    continue
                why = held(k.finding, t.severity)
                if why is not None:
                    if not t.renotify:  # a renotify of an announced alert is just skipped
                        model.muted[k.key] = why
                    continue
                model.muted.pop(k.key, None)
                out.append(self._render(k.finding, t, quality, start, end))
        # held-back alerts still firing whose hold is over are announced now
        for k in keyed:
            if k.key not in model.muted:
                continue
            severity = firing.get(k.key)
            if severity is None:
                del model.muted[k.key]
                continue
            if held(k.finding, severity) is None:
                del model.muted[k.key]
                starts = self.policy.starts_at(k.key) or end
                t = Transition(k.key, "firing", severity, starts, None)
                out.append(self._render(k.finding, t, quality, start, end))
        return out

    @staticmethod
    def _quality_index(
        keyed: list[_Keyed], firing: dict[str, Any]
    ) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Data-quality conditions breaching or firing now, by (segment, feature)."""
        index: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for k in keyed:
            f = k.finding
            severity = firing.get(k.key) or f.level
            if f.kind != "data_quality" or severity is None:
                continue
            index.setdefault((f.labels["segment"], f.labels["feature"]), []).append(
                {
                    "fingerprint": fingerprint({**f.labels, "severity": severity}),
                    "statistic": f.labels["statistic"],
                    "value": f.reported,
                    "threshold": f.threshold(severity),
                    "severity": severity,
                    "status": "firing" if k.key in firing else "breaching",
                }
            )
        return index

    def _render(
        self,
        f: Finding,
        t: Transition,
        quality: dict[tuple[str, str], list[dict[str, Any]]],
        start: int,
        end: int,
        escalation: bool = False,
    ) -> Alert:
        full = {**f.labels, "severity": t.severity}
        threshold = f.threshold(t.severity)
        summary = f.headline(t.status, threshold)
        if escalation:
            summary = (
                f"{f.headline('firing', f.thresholds.critical)} (escalated: this warning alert "
                "is replaced by a critical one)"
            )
        evidence = dict(f.evidence)
        annotations = dict(f.annotations)
        if f.kind in ("data_drift", "prediction_drift") and t.status == "firing":
            related = quality.get((f.labels["segment"], f.labels.get("feature", "")))
            if related:
                evidence["data_quality"] = related
                first = related[0]
                annotations["data_quality"] = (
                    f"Coincides with a data-quality {first['status']} condition on this feature "
                    f"({first['statistic']} {first['value']:.3g}): alert fingerprint "
                    f"{first['fingerprint']}. The drift may be a symptom of bad data upstream."
                    if first["value"] is not None
                    else f"Coincides with data-quality alert {first['fingerprint']}."
                )
        return Alert(
            labels=full,
            status=t.status,
            summary=summary,
            description=f.description,
            runbook_url=self._a.runbook_url,
            generator_url=self._a.generator_url_template.format_map(_Labels(full)),
            starts_at_ms=t.starts_at_ms,
            ends_at_ms=t.ends_at_ms,
            evaluated_at_ms=end,
            value=f.reported,
            threshold=threshold if math.isfinite(threshold) else None,
            bound=f.bound,
            window={"start": iso(start), "end": iso(end), "count": f.count},
            reference=f.reference,
            evidence=evidence,
            annotations=annotations,
        )

    # -- state -----------------------------------------------------------------------------

    def condition_samples(self) -> Iterator[ConditionSample]:
        """Latest value, thresholds and firing severity of every condition (for metrics)."""
        firing = self.policy.firing()
        for key, f in self._conditions.items():
            yield f.labels, f.reported, f.thresholds.warning, f.thresholds.critical, firing.get(key)

    def latency_samples(self) -> Iterator[LatencySample]:
        """The latest window's latency percentiles (ms) per (model, version, segment)."""
        for (model, version, segment), quantiles in self._latency.items():
            labels = {"model": model, "model_version": version, "segment": segment}
            yield labels, quantiles

    def take_changed(self) -> set[str]:
        """Models whose state changed since the last call (a partial merged, buckets evaluated).

        A watermark that completes nothing changes only what is known of the input partitions,
        which the next watermarks restore after a restart: the shell need not persist it at once.
        """
        changed, self._changed = self._changed, set()
        return changed

    def closed_slots(self) -> list[tuple[str, bytes, bytes | None]]:
        """``(model, key, bytes)`` of every slot profile closed since the last call, for the
        shell to store under ``key`` (``None``: expired, delete it). Not in :meth:`snapshot`."""
        return self._history.drain()

    def slot_keys(self, model: str) -> list[bytes]:
        """Keys of the stored slot profiles ``model``'s references may need (after restore)."""
        m = self._models.get(model)
        if m is None or m.last_bucket is None:
            return []
        return self._history.keys(model, m.versions, m.last_bucket)

    def load_slot(self, key: bytes, blob: bytes) -> None:
        """Take back one stored slot profile (:meth:`closed_slots` wrote it)."""
        self._history.load(key, blob)

    def snapshot(self, model: str) -> dict[str, Any]:
        """Everything needed to resume ``model`` after a restart (JSON-able, bytes as hex)."""
        m = self._models.get(model)
        if m is None:
            return {}
        return {
            "versions": {
                v: {
                    "buckets": {str(b): _encoded(st, b) for b in st.buckets},
                    "pending": {
                        str(b): {s: p.to_bytes().hex() for s, p in segs.items()}
                        for b, segs in st.pending.items()
                    },
                    "frozen": _frozen_state(st),
                    "rate": st.rate.to_state(),
                    "latency_ref": None
                    if st.latency_ref is None
                    else {s: r.to_state() for s, r in st.latency_ref.items()},
                    "creep": {s: c.to_state() for s, c in st.creep.items()},
                }
                for v, st in m.versions.items()
            },
            "seen_ids": m.seen_ids,
            "completeness": m.completeness.to_state(),
            "evaluated_until": m.evaluated_until,
            "traffic": {str(b): n for b, n in m.traffic.items()},
            "last_bucket": m.last_bucket,
            "muted": m.muted,
            "ledger": m.ledger.to_state(),
            "policy": {
                k: v for k, v in self.policy.to_state().items() if k.startswith(f"{model}/")
            },
        }

    def restore(self, model: str, state: dict[str, Any]) -> None:
        if not state:
            return
        m = _Model(
            seen_ids=dict(state["seen_ids"]),
            completeness=Completeness.from_state(
                int(self._d.grace_seconds * 1000), state["completeness"]
            ),
            evaluated_until=state["evaluated_until"],
            traffic={int(b): int(n) for b, n in state.get("traffic", {}).items()},
            last_bucket=state.get("last_bucket"),
            muted=dict(state.get("muted", {})),
            ledger=VersionLedger.from_state(state.get("ledger", {})),
        )
        for v, st in state["versions"].items():
            latency_ref = st.get("latency_ref")
            m.versions[v] = _Version(
                buckets={
                    int(b): {s: Profile.from_bytes(bytes.fromhex(h)) for s, h in segs.items()}
                    for b, segs in st["buckets"].items()
                },
                pending={
                    int(b): {s: Profile.from_bytes(bytes.fromhex(h)) for s, h in segs.items()}
                    for b, segs in st["pending"].items()
                },
                frozen=Reference.from_state(st["frozen"]) if st["frozen"] else None,
                rate=RateState.from_state(st["rate"]) if "rate" in st else RateState(),
                latency_ref=None
                if latency_ref is None
                else {s: LatencyReference.from_state(r) for s, r in latency_ref.items()},
                creep={
                    s: Creep.from_state(self._d.latency, c) for s, c in st.get("creep", {}).items()
                },
            )
        self._models[model] = m
        self.policy.load_state({**self.policy.to_state(), **state["policy"]})


def _encoded(version: _Version, bucket: int) -> dict[str, str]:
    """An evaluated bucket's profiles as hex, encoded once (they never change)."""
    hexed = version.encoded.get(bucket)
    if hexed is None:
        hexed = {s: p.to_bytes().hex() for s, p in version.buckets[bucket].items()}
        version.encoded[bucket] = hexed
    return hexed


def _frozen_state(version: _Version) -> dict[str, Any] | None:
    """The frozen reference's state, encoded once (it never changes)."""
    if version.frozen is None:
        return None
    if version.frozen_state is None or version.frozen_state["id"] != version.frozen.id:
        version.frozen_state = version.frozen.to_state()
    return version.frozen_state


def _key(model: str, f: Finding) -> str:
    """The policy key of a condition: its model and the fingerprint of its labels."""
    return f"{model}/{fingerprint(f.labels)}"


class _Labels(dict[str, str]):
    """Labels for ``str.format_map``: a label an alert does not have formats as empty."""

    def __missing__(self, key: str) -> str:
        return ""
