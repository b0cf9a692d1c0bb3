"""Stage 2's pure core: partials in, windows merged, compared with references, alerts out.

Per model it keeps, for every version, the profiles of the last ``window_buckets`` evaluated
buckets per segment, plus the buckets still being assembled from partials. A bucket is
evaluated once :class:`~driftwire.detect.completeness.Completeness` says every input partition has
passed it (or the grace period ran out). The window (merge of the last N buckets) of every
segment, and of all traffic (segment ``all``), is checked; a model without real segments has
only ``all``, so that each condition is evaluated once
(:func:`~driftwire.detect.reference.segmented`):

* drift of every feature and of the prediction against the version's reference (a published
  baseline if there is one, else the first complete window of the version, frozen), via
  :func:`~driftwire.detect.compare.compare_profiles`;
* data quality of every feature against the same reference (:mod:`driftwire.detect.quality`);
* latency percentiles, spikes and creep (:mod:`driftwire.detect.latency`);
* the version's event rate, including buckets in which it sent nothing while other traffic
  flowed (:mod:`driftwire.detect.throughput`);
* after every version's window: each newer live version against the one it replaces over the
  same window, and the retirement of versions silent for long (:mod:`driftwire.detect.canary`).

Each check yields :class:`~driftwire.alerts.finding.Finding` s (the drift and latency ones are
worded in ``driftwire.detect._window_findings``). The decision step
(``driftwire.detect._decisions``) feeds them to the :class:`~driftwire.alerts.policy.AlertPolicy`,
groups many breaching drift / quality conditions into one ``upstream_change`` incident,
applies silences, cross-references drift with data quality and renders the alerts. What is
kept per model, and its snapshot, is in ``driftwire.detect._state``.

The Faust app and the in-memory transport are both thin shells around :class:`Detector`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from driftwire.alerts.alert import Alert
from driftwire.alerts.finding import Finding
from driftwire.alerts.policy import AlertPolicy
from driftwire.alerts.settings import AlertSettings
from driftwire.detect._decisions import Decisions, condition_key
from driftwire.detect._parts import (
    BUCKET,
    PENDING,
    PartsOutbox,
    bucket_key,
    frozen_key,
    parse_part_key,
    pending_generation,
    pending_key,
)
from driftwire.detect._state import _Model, _Version, model_snapshot, restored_model
from driftwire.detect._window_findings import (
    drift_finding,
    latency_window_findings,
    refusal_findings,
)
from driftwire.detect.baseline_match import BaselineMatcher, BaselineNotice
from driftwire.detect.canary import (
    Outputs,
    Pair,
    comparison_findings,
    comparison_over,
    outputs,
    predecessors,
)
from driftwire.detect.compare import Comparison, compare_profiles, decide_family
from driftwire.detect.completeness import Completeness
from driftwire.detect.intake import EvaluationFailure, partial_profiles
from driftwire.detect.latency import LatencyReference
from driftwire.detect.quality import quality_findings
from driftwire.detect.reference import Reference, ReferenceStore, SmallReference
from driftwire.detect.samples import ConditionSample, LatencySample, ReferenceSample
from driftwire.detect.settings import DetectSettings
from driftwire.detect.status import (
    ConditionStatus,
    ModelStatus,
    VersionStatus,
    condition_state,
)
from driftwire.detect.throughput import throughput_findings
from driftwire.detect.trailing import History, decode_slot, is_slot_key
from driftwire.detect.window import ALL_SEGMENTS, detection_window
from driftwire.detect.wording import attributed
from driftwire.errors import FormatError
from driftwire.partials import Partial, Watermark, is_replay, record_merged
from driftwire.sketch.categorical import CategoricalSketch
from driftwire.sketch.profile import Profile

#: Why a latency percentile is not judged, when its window has min_count events.
_LATENCY_TOO_FEW = (
    "too few latencies above the percentile in the window or its reference "
    "(detect.latency.min_tail_events={})"
)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


@dataclass
class Evaluation:
    """What one bucket's evaluation produced, for metrics and for callers."""

    model: str
    model_version: str
    bucket_end_ms: int
    results: list[Comparison] = field(default_factory=list)
    insufficient: int = 0
    #: the segment of each of ``results`` (aligned), ``all`` for all traffic
    segments: list[str] = field(default_factory=list)
    start_ms: int = 0
    #: the window's profiles and the reference profile each segment was compared with
    window: dict[str, Profile] = field(default_factory=dict, repr=False)
    reference_profiles: dict[str, Profile] = field(default_factory=dict, repr=False)
    reference: Reference | None = field(default=None, repr=False)


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
            consecutive=detect.consecutive_windows,
            renotify_ms=int(alerts.renotify_seconds * 1000),
            resolve_windows=detect.resolve_windows,
            resolve_ratio=detect.resolve_ratio,
        )
        self._conditions: dict[str, Finding] = {}  # condition key -> its latest finding
        self._decisions = Decisions(self.policy, self._conditions, detect, alerts)
        self._latency: dict[tuple[str, str, str], dict[str, float]] = {}
        # per model: latency gauge key -> end of the last window that had its segment
        self._latency_seen: dict[str, dict[tuple[str, str, str], int]] = {}
        self._history = History(detect, bucket_ms=bucket_ms)  # trailing / seasonal references
        self._parts = PartsOutbox(bucket_ms)  # window buckets and frozen references to store
        self._changed: set[str] = set()  # models whose state changed beyond completeness
        # reference events per segment of every (model, version) evaluated, for the gauges;
        # small references are reported once per (model, version, reference)
        self._reference_sizes: dict[tuple[str, str], dict[str, int]] = {}
        self._small_seen: set[tuple[str, str, str]] = set()
        self._small_new: list[SmallReference] = []
        self._late_new: dict[str, int] = {}  # late partials per model since the last take
        self._failures: list[EvaluationFailure] = []  # evaluations that raised, since the take
        # per (model, version): the last evaluated window (start, end, events) and the
        # reference it was compared with, for the status
        self._windows: dict[tuple[str, str], tuple[int, int, int]] = {}
        # (model, version) -> (end, merged profiles) of the window just evaluated, for the
        # canary comparison of the same bucket (not kept past it)
        self._merged: dict[tuple[str, str], tuple[int, dict[str, Profile]]] = {}
        self._reference_used: dict[tuple[str, str], dict[str, Any]] = {}
        # per (model, version): the last window evaluated against a reference, for the report
        self._last_evaluations: dict[tuple[str, str], Evaluation] = {}
        self._baselines = BaselineMatcher(
            bucket_ms=bucket_ms, after_buckets=detect.unmatched_baseline_buckets
        )

    def reconfigure(self, detect: DetectSettings, alerts: AlertSettings) -> None:
        """Take reloaded settings (thresholds, per-feature overrides, silences, re-sends).

        Only the settings that may change live differ (``driftwire.ops.reload`` keeps the
        rest): thresholds apply from the next evaluated window, silences from the next
        decision; a firing condition keeps its state.
        """
        self._d = detect
        self._a = alerts
        self.policy.renotify_ms = int(alerts.renotify_seconds * 1000)
        self._decisions.reconfigure(detect, alerts)

    # -- input -----------------------------------------------------------------------------

    def on_partial(self, partial: Partial, now_ms: int) -> list[Alert]:
        """Merge ``partial`` into its bucket. One whose profiles do not deserialize, do not
        add up to its ``events`` or cannot merge with the bucket's raises
        :class:`~driftwire.detect.intake.InvalidPartial` before anything is changed; a replay
        of a partial already merged (of any shape) is dropped."""
        known = self._models.get(partial.model)
        if known is not None and is_replay(partial, known.seen_ids, known.spans):
            return []  # a replay of a partial already merged (of any shape)
        pending = None
        if known is not None and partial.model_version in known.versions:
            pending = known.versions[partial.model_version].pending.get(partial.bucket_start_ms)
        profiles = partial_profiles(partial, pending)
        model = self._model(partial.model)
        record_merged(partial, model.seen_ids, model.spans)
        if model.evaluated_until is not None and partial.bucket_end_ms <= model.evaluated_until:
            model.late_partials += 1
            self._late_new[partial.model] = self._late_new.get(partial.model, 0) + 1
            return []
        version = model.versions.setdefault(partial.model_version, _Version())
        slot = version.pending.setdefault(partial.bucket_start_ms, {})
        for segment, profile in profiles.items():
            if segment in slot:
                slot[segment].merge(profile)
            else:
                slot[segment] = profile
        self._parts.pending(partial.model, partial.model_version, partial.bucket_start_ms)
        start = partial.bucket_start_ms
        model.traffic[start] = model.traffic.get(start, 0) + partial.events
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
            self._advance_isolated(name, model, now_ms, out)
        self._retire_isolated(out)
        return out

    def tick(self, now_ms: int) -> list[Alert]:
        """Evaluate buckets whose grace period ran out; call it every few seconds."""
        out: list[Alert] = []
        for name, model in self._models.items():
            self._advance_isolated(name, model, now_ms, out)
        self._retire_isolated(out)
        return out

    # -- failures ----------------------------------------------------------------------------

    def _advance_isolated(self, name: str, model: _Model, now_ms: int, out: list[Alert]) -> None:
        """:meth:`_advance` one model; an error is kept for :meth:`take_failures`, and the
        alerts of the models (and buckets) evaluated before it stay in ``out``."""
        try:
            self._advance(name, model, now_ms, out)
        except Exception as exc:
            self._failures.append(EvaluationFailure(name, None, _describe(exc)))

    def _retire_isolated(self, out: list[Alert]) -> None:
        try:
            out.extend(self._retire_models())
        except Exception as exc:
            self._failures.append(EvaluationFailure("", None, _describe(exc)))

    def take_failures(self) -> list[EvaluationFailure]:
        """Evaluations that raised since the last call (the shell counts and logs them)."""
        out, self._failures = self._failures, []
        return out

    # -- retirement --------------------------------------------------------------------------

    @staticmethod
    def _newest(model: _Model) -> int:
        """Start of the newest bucket in which ``model`` had events (or was evaluated)."""
        newest = [last for _, last in model.ledger.seen.values()]
        newest += [b for v in model.versions.values() for b in v.pending]
        if model.last_bucket is not None and not newest:
            newest.append(model.last_bucket)
        return max(newest, default=-(2**62))

    def _retire_models(self) -> list[Alert]:
        """Forget models silent for ``retire_after_buckets`` while others sent, and those
        beyond ``max_models`` (seen longest ago first); their firing alerts resolve once."""
        if not self._models:
            return []
        newest = {name: self._newest(m) for name, m in self._models.items()}
        latest = max(newest.values())
        n = self._d.retire_after_buckets
        reasons: dict[str, str] = {}
        if n:
            for name, last in newest.items():
                if latest - last >= n * self._bucket_ms:
                    reasons[name] = f"retired (no events for {n} buckets while others sent)"
        cap = self._d.max_models
        kept = sorted((last, name) for name, last in newest.items() if name not in reasons)
        for _, name in kept[: max(0, len(kept) - cap)]:
            reasons[name] = f"retired (more than detect.max_models={cap} models)"
        out: list[Alert] = []
        for name, why in sorted(reasons.items()):
            out.extend(self._retire_model(name, why))
        return out

    def _retire_model(self, name: str, why: str) -> list[Alert]:
        model = self._models[name]
        end = model.evaluated_until if model.evaluated_until is not None else 0
        start = end - self._d.window_buckets * self._bucket_ms
        stale = list(self._decisions.last_data.get(name, {}))
        prefix = f"{name}/"
        stale += [k for k in self._conditions if k.startswith(prefix) and k not in stale]
        ended = {k: f"{name} {why}" for k in stale if k in self._conditions}
        out = self._decisions.close(model.muted, ended, start, end, model.incidents)
        for version_name in list(model.versions):
            self._drop_version(name, model, version_name)
        for key in [k for k in self._policy_keys() if k.startswith(prefix)]:
            self.policy.forget(key)  # restored conditions never evaluated since
        self._history.forget(name)
        self._decisions.last_data.pop(name, None)
        self._latency_seen.pop(name, None)
        del self._models[name]
        self._changed.add(name)
        return out

    def _policy_keys(self) -> list[str]:
        return list(self.policy.to_state())

    def _drop_version(self, name: str, model: _Model, version_name: str) -> None:
        """Forget a retired version's state, stored parts, slots and gauges."""
        version = model.versions.pop(version_name, None)
        for b in [] if version is None else version.buckets:
            self._parts.bucket(name, version_name, b)  # deleted with the version
        if version is not None:
            for b in list(version.pending_gen):
                self._parts.pending_gone(name, version_name, version, b)
        self._parts.frozen(name, version_name)
        model.ledger.forget(version_name)
        self._history.forget(name, version_name)
        for gauge in [k for k in self._latency if k[:2] == (name, version_name)]:
            del self._latency[gauge]
            self._latency_seen.get(name, {}).pop(gauge, None)
        self._reference_sizes.pop((name, version_name), None)
        self._windows.pop((name, version_name), None)
        self._reference_used.pop((name, version_name), None)
        self._last_evaluations.pop((name, version_name), None)

    # -- evaluation ------------------------------------------------------------------------

    def _model(self, name: str) -> _Model:
        model = self._models.get(name)
        if model is None:
            grace_ms = int(self._d.grace_seconds * 1000)
            model = _Model(Completeness(grace_ms=grace_ms))
            # a new model inherits what is known of the input partitions
            for other in self._models.values():
                model.completeness = other.completeness.for_new_model(grace_ms)
                break
            self._models[name] = model
        return model

    def _advance(self, name: str, model: _Model, now_ms: int, out: list[Alert]) -> None:
        """Evaluate the buckets of ``name`` that are complete, adding their alerts to ``out``.

        A bucket whose evaluation raises is dropped (it would raise again) and kept for
        :meth:`take_failures`; the buckets after it are evaluated as usual."""
        until = model.completeness.complete_until(now_ms)
        if until is None:
            return
        b_ms = self._bucket_ms
        due = {b for v in model.versions.values() for b in v.pending if b + b_ms <= until}
        if model.last_bucket is not None and self._d.throughput.enabled:
            # buckets in which none of the model's versions sent anything: still evaluated,
            # so that "no data" can be seen (bounded after a long gap)
            last = (until // b_ms - 1) * b_ms
            horizon = self._d.throughput.reference_buckets + self._d.window_buckets
            first = max(model.last_bucket + b_ms, last - horizon * b_ms)
            due.update(range(first, last + 1, b_ms))
        for bucket in sorted(due):
            try:
                self._evaluate_bucket(name, model, bucket, out)
            except Exception as exc:
                self._failures.append(EvaluationFailure(name, bucket + b_ms, _describe(exc)))
                for version_name, version in model.versions.items():
                    version.pending.pop(bucket, None)
                    self._parts.pending_gone(name, version_name, version, bucket)
            if model.last_bucket is None or bucket > model.last_bucket:
                model.last_bucket = bucket
        if model.evaluated_until is None or until > model.evaluated_until:
            out.extend(self._expire(name, model, until))
            model.evaluated_until = until
            self._changed.add(name)
            horizon = until - (self._d.window_buckets + 1) * b_ms
            model.seen_ids = {k: v for k, v in model.seen_ids.items() if v > horizon}
            model.spans = {k: v for k, v in model.spans.items() if v[2] > horizon}
            keep = until - (self._d.window_buckets + 2) * b_ms
            model.traffic = {b: n for b, n in model.traffic.items() if b >= keep}

    def _expire(self, name: str, model: _Model, until: int) -> list[Alert]:
        """Forget the conditions of ``name`` without data for ``detect.stale_windows``
        windows, resolving the firing ones once (they never fire again by themselves), and
        the latency gauges of segments that left the window as long ago."""
        n = self._d.stale_windows
        if n == 0:
            return []
        horizon = until - (n + 1) * self._bucket_ms
        gauges = self._latency_seen.get(name, {})
        for key in [k for k, end in gauges.items() if end <= horizon]:
            del gauges[key]
            self._latency.pop(key, None)
        stale = self._decisions.stale(name, horizon)
        if not stale:
            return []
        why = f"stopped receiving data (no window with enough events for {n} buckets)"
        end = until
        start = end - self._d.window_buckets * self._bucket_ms
        out = self._decisions.close(
            model.muted, dict.fromkeys(stale, why), start, end, model.incidents
        )
        model.compared.difference_update(stale)
        return out

    def _traffic(self, bucket: int) -> int:
        """Events of every model this detector owns in ``bucket``."""
        return sum(m.traffic.get(bucket, 0) for m in self._models.values())

    def _evaluate_bucket(self, name: str, model: _Model, bucket: int, out: list[Alert]) -> None:
        """Evaluate every version of ``name`` at ``bucket``; alerts go to ``out`` as each
        version is decided, so an error in one keeps those of the versions before it."""
        end = bucket + self._bucket_ms
        start = end - self._d.window_buckets * self._bucket_ms
        for version_name, version in model.versions.items():
            pending = version.pending.pop(bucket, None)
            self._parts.pending_gone(name, version_name, version, bucket)
            # segments in their sorted order, not the order the partials happened to arrive
            # in: every merge over segments (all traffic, the window) then runs in one order
            profiles = None if pending is None else dict(sorted(pending.items()))
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
                self._prune(name, version_name, version, end)
            self._windows[(name, version_name)] = (start, end, events)
            self._baselines.evaluated(end)
            if reference is not None:
                self._reference_used[(name, version_name)] = reference.describe()
            out.extend(
                self._decisions.decide(
                    model.muted, labels, findings, reference, events, start, end, model.incidents
                )
            )
        out.extend(self._versions(name, model, bucket))

    def _prune(self, name: str, version_name: str, version: _Version, end: int) -> None:
        n = self._d.window_buckets
        for old in [b for b in version.buckets if b <= end - (n + 1) * self._bucket_ms]:
            del version.buckets[old]
            self._parts.bucket(name, version_name, old)  # gone: deleted from the store

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
        self._parts.bucket(name, version_name, bucket)
        self._history.add(name, version_name, bucket, profiles)
        self._prune(name, version_name, version, end)
        segments = self._d.segments
        span = detection_window(
            version.buckets, end_ms=end, size=n, bucket_ms=self._bucket_ms, segments=segments
        )
        window, complete = span.profiles, span.complete
        self._merged[(name, version_name)] = (end, window)
        lat = self._d.latency
        if version.latency_ref is None and complete:
            version.latency_ref = {
                s: LatencyReference.of(p.latency_ms, lat.quantiles, "first window")
                for s, p in window.items()
            }
        reference = self._refs.get(name, version_name) or version.frozen
        if lat.enabled:
            own = self._history.latency(name, version_name, end - n * self._bucket_ms, end)
            findings += latency_window_findings(
                self._d,
                name,
                version_name,
                version,
                profiles,
                window,
                reference,
                end,
                self._latency,
                own,
            )
            seen = self._latency_seen.setdefault(name, {})
            for segment in window:
                seen[(name, version_name, segment)] = end
        events = window[ALL_SEGMENTS].n_events
        if reference is None:
            if complete:
                version.frozen = Reference.frozen(name, version_name, window, end)
                self._baselines.frozen(name, version_name, self._refs.keys())
                self._parts.frozen(name, version_name)
            return None, events
        self._note_reference(name, version_name, reference, window)
        start = end - n * self._bucket_ms
        evaluation = Evaluation(name, version_name, end, start_ms=start, window=window)
        choice = self._history.choose(name, version_name, reference, start, end)
        evaluation.reference = choice.reference(ALL_SEGMENTS)
        # every test of the window first: the calibrated rule decides them as one family
        family: list[tuple[str, Comparison]] = []
        for segment, current in window.items():
            ref_profile = choice.profile(segment)  # per feature from its configured reference
            evaluation.reference_profiles[segment] = ref_profile
            cache = choice.reference(segment).cache(segment)
            for comparison in compare_profiles(ref_profile, current, self._d, cache=cache):
                family.append((segment, comparison))
        family = decide_family(family, self._d, aggregate=ALL_SEGMENTS)
        findings += refusal_findings(
            name, version_name, family, choice.reference(ALL_SEGMENTS), window
        )
        for segment, comparison in family:
            evaluation.results.append(comparison)
            evaluation.segments.append(segment)
            if comparison.result.value is None:
                evaluation.insufficient += 1
            findings.append(
                drift_finding(
                    name,
                    version_name,
                    segment,
                    comparison,
                    choice.reference(segment, comparison.feature),
                    window[segment],
                    start,
                    end,
                )
            )
        for segment, current in window.items():
            if self._d.quality.enabled:
                base = choice.reference(segment)  # the model's reference, not per feature
                labels = {"model": name, "model_version": version_name, "segment": segment}
                described = {**base.describe(), "count": base.profile(segment).n_events}
                self._count_new_categories(
                    version, segment, base.profile(segment), profiles, bucket
                )
                for f in quality_findings(
                    base.profile(segment),
                    current,
                    self._d.quality,
                    labels,
                    min_count=self._d.min_count,
                    min_reference_count=self._d.min_reference_count,
                    also=self._decisions.firing_features(labels, "data_quality"),
                    new_categories=version.new_categories,
                ):
                    f.reference = described
                    findings.append(f)
        if len(window) > 1:  # segmented: the all aggregate names the segments driving it
            findings[:] = attributed(findings)
        self._last_evaluations[(name, version_name)] = evaluation
        if self._on_evaluation is not None:
            self._on_evaluation(evaluation)
        return choice.reference(ALL_SEGMENTS), events

    def _count_new_categories(
        self,
        version: _Version,
        segment: str,
        reference: Profile,
        profiles: dict[str, Profile],
        bucket: int,
    ) -> None:
        """Count this bucket's never-seen categories of ``segment`` since they first appeared
        (:mod:`driftwire.detect.new_categories`); ``all`` counts every segment's."""
        q = self._d.quality
        new_for_ms = q.new_category_windows * self._d.window_buckets * self._bucket_ms
        if segment == ALL_SEGMENTS:
            parts = list(profiles.values())
        else:
            parts = [profiles[segment]] if segment in profiles else []
        for feature, sketch in reference.features.items():
            if not isinstance(sketch, CategoricalSketch):
                continue
            bucket_sketches = [
                s for s in (p.feature(feature) for p in parts) if isinstance(s, CategoricalSketch)
            ]
            version.new_categories.observe(
                segment,
                feature,
                sketch,
                bucket_sketches,
                bucket,
                new_for_ms=new_for_ms,
                cap=q.new_category_max_tracked,
            )
        version.new_categories.forget_before(
            bucket - new_for_ms - self._d.window_buckets * self._bucket_ms
        )

    def _note_reference(
        self, name: str, version_name: str, reference: Reference, window: dict[str, Profile]
    ) -> None:
        """Keep the reference's events per window segment; note a small reference once."""
        need = self._d.min_reference_count
        sizes = {s: reference.profile(s).n_events for s in window}
        self._reference_sizes[(name, version_name)] = sizes
        small = {s: n for s, n in sizes.items() if n < need}
        seen = (name, version_name, reference.id)
        if small and seen not in self._small_seen:
            self._small_seen.add(seen)
            self._small_new.append(
                SmallReference(name, version_name, reference.kind, reference.id, small, need)
            )

    # -- versions: canary comparisons and retirement (driftwire.detect.canary) -------------------

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
        why_retired = f"retired (no events for {n} buckets while others sent)"
        reasons = dict.fromkeys(retired, why_retired)
        cap = self._d.max_versions
        if len(model.versions) - len(retired) > cap:  # the versions seen longest ago go
            kept = [v for v in model.versions if v not in reasons]
            kept.sort(key=lambda v: (ledger.seen.get(v, (-1, -1))[1], v))
            for version_name in kept[: len(kept) - cap]:
                reasons[version_name] = f"retired (more than detect.max_versions={cap} versions)"
        for version_name, why_version in reasons.items():
            self._drop_version(name, model, version_name)
            why = f"{name} {version_name} {why_version}"
            prefix = f"{name}/"
            for key, f in self._conditions.items():
                if key.startswith(prefix) and f.labels.get("model_version") == version_name:
                    ended[key] = why
        live = {v for v, st in model.versions.items() if any(b >= start for b in st.buckets)}
        pairs = predecessors(ledger, live) if self._d.canary.enabled else {}
        for key in model.compared:
            why_over = comparison_over(self._conditions[key], pairs, live)
            if why_over is not None:
                ended.setdefault(key, why_over)
        out = self._decisions.close(model.muted, ended, start, end, model.incidents)
        model.compared.difference_update(ended)
        windows = {
            v: self._outputs(name, model, v, start, end) for v in pairs.keys() | pairs.values()
        }
        for v in model.versions:
            self._merged.pop((name, v), None)
        for canary, previous in pairs.items():
            pair = Pair(name, canary, previous, ledger.first(canary), ledger.first(previous))
            findings = comparison_findings(
                pair, windows[canary], windows[previous], self._d, start=start, end=end
            )
            model.compared.update(condition_key(name, f) for f in findings)
            labels = {"model": name, "model_version": canary}
            out.extend(self._decisions.decide(model.muted, labels, findings, None, 0, start, end))
        return out

    def _outputs(
        self, name: str, model: _Model, version: str, start: int, end: int
    ) -> dict[str, Outputs]:
        """The window's output sketches of ``version``: those of the window it was just
        evaluated over when there is one (the same merges in the same order: its buckets are
        kept in ascending order), else merged from its buckets."""
        kept = [b for b in model.versions[version].buckets if b >= start]
        made = self._merged.get((name, version))
        if made is not None and made[0] == end and kept == sorted(kept):
            # in the order outputs() makes: the first segment, all traffic, the other segments
            keys = list(made[1])
            if len(keys) > 1:
                keys.insert(1, keys.pop())  # the window has all traffic last
            return {key: Outputs.of(made[1][key]) for key in keys}
        return outputs(
            (model.versions[version].buckets[b] for b in kept), segments=self._d.segments
        )

    # -- state -----------------------------------------------------------------------------

    def condition_samples(self) -> Iterator[ConditionSample]:
        """Latest value, thresholds and firing severity of every condition (for metrics)."""
        firing = self.policy.firing()
        for key, f in self._conditions.items():
            yield f.labels, f.reported, f.thresholds.warning, f.thresholds.critical, firing.get(key)

    def status_records(self) -> tuple[list[ModelStatus], list[ConditionStatus]]:
        """Every model and condition as last evaluated, for :func:`~driftwire.detect.status.
        build_status`. Conditions appear once evaluated (after a restart: at the next window;
        the firing state itself is restored)."""
        models: list[ModelStatus] = []
        for name, m in self._models.items():
            versions = []
            for v, st in sorted(m.versions.items()):
                latest = st.buckets[max(st.buckets)] if st.buckets else {}
                versions.append(
                    VersionStatus(
                        v,
                        tuple(sorted(latest)),
                        self._reference_used.get((name, v)),
                        dict(self._reference_sizes.get((name, v), {})),
                        self._windows.get((name, v)),
                    )
                )
            models.append(ModelStatus(name, tuple(versions), m.evaluated_until, m.late_partials))
        firing = self.policy.firing()
        conditions: list[ConditionStatus] = []
        for key, f in self._conditions.items():
            labels = f.labels
            model = self._models.get(labels["model"])
            window = self._windows.get((labels["model"], labels["model_version"]))
            severity = firing.get(key)
            state = condition_state(f.value, f.level, severity is not None)
            since = self._decisions.since.get(key)
            alert = None
            if severity is not None:
                start, end = (window[0], window[1]) if window else (0, since[1] if since else 0)
                alert = self._decisions.firing_alert(key, f, severity, start, end)
            reason = None
            if f.value is None:
                need = self._d.min_count
                reason = str(
                    f.evidence.get("reason")
                    or (
                        f"the window has {f.count} events, fewer than min_count={need}"
                        if f.count < need
                        else _LATENCY_TOO_FEW.format(self._d.latency.min_tail_events)
                        if f.kind == "latency_anomaly"
                        else f"not enough data for this {f.kind} check"
                    )
                )
            conditions.append(
                ConditionStatus(
                    key=key,
                    labels=labels,
                    state=state,
                    severity=severity or f.level,
                    value=f.reported,
                    warning=f.thresholds.warning,
                    critical=f.thresholds.critical,
                    since_ms=since[1] if since is not None else (window[1] if window else 0),
                    starts_at_ms=self.policy.starts_at(key),
                    window=window,
                    reason=reason,
                    suppressed_by=None if model is None else model.muted.get(key),
                    alert=alert,
                )
            )
        return models, conditions

    def last_evaluation(self, model: str, version: str) -> Evaluation | None:
        """The last window of ``model`` ``version`` evaluated against a reference (its
        profiles, reference profiles and decided comparisons), ``None`` before the first."""
        return self._last_evaluations.get((model, version))

    def evaluated_versions(self, model: str) -> list[str]:
        """Versions of ``model`` with an evaluated window, newest window first."""
        found = [(e.bucket_end_ms, v) for (m, v), e in self._last_evaluations.items() if m == model]
        return [v for _, v in sorted(found, reverse=True)]

    def check_baselines(
        self, owns: Callable[[str], bool] = lambda model: True, *, final: bool = False
    ) -> None:
        """Look for loaded baselines whose model sends nothing here
        (:class:`~driftwire.detect.baseline_match.BaselineMatcher`); ``owns(model)``: this
        detector would see the model's partials; ``final``: the stream ended."""
        self._baselines.check(self._refs.keys(), self._models, owns, final=final)

    def unmatched_baselines(self) -> list[tuple[str, str]]:
        """Baselines found unmatched by the last :meth:`check_baselines`."""
        return self._baselines.unmatched

    def take_baseline_notices(self) -> list[BaselineNotice]:
        """Unmatched baselines and models frozen while similar names have baselines, once."""
        return self._baselines.take()

    def latency_samples(self) -> Iterator[LatencySample]:
        """The latest window's latency percentiles (ms) per (model, version, segment)."""
        for (model, version, segment), quantiles in self._latency.items():
            labels = {"model": model, "model_version": version, "segment": segment}
            yield labels, quantiles

    def reference_samples(self) -> Iterator[ReferenceSample]:
        """Events of the reference profile each evaluated segment is compared with, and
        whether that is below ``detect.min_reference_count`` (for metrics)."""
        need = self._d.min_reference_count
        for (model, version), sizes in self._reference_sizes.items():
            for segment, n in sizes.items():
                labels = {"model": model, "model_version": version, "segment": segment}
                yield labels, n, n < need

    def take_small_references(self) -> list[SmallReference]:
        """References found too small since the last call, each once per (model, version,
        reference): the shell logs them."""
        out, self._small_new = self._small_new, []
        return out

    def take_late_partials(self) -> dict[str, int]:
        """Partials per model that arrived for buckets already evaluated (not merged) since
        the last call: the shell counts them in a metric."""
        out, self._late_new = self._late_new, {}
        return out

    def take_changed(self) -> set[str]:
        """Models whose state changed since the last call (a partial merged, buckets evaluated).

        A watermark that completes nothing changes only what is known of the input partitions,
        which the next watermarks restore after a restart: the shell need not persist it at once.
        """
        changed, self._changed = self._changed, set()
        return changed

    def stored_parts(self) -> list[tuple[str, bytes, bytes | None]]:
        """``(model, key, bytes)`` of the state stored apart from :meth:`snapshot`, made or
        dropped since the last call: closed slot profiles of trailing / seasonal references,
        evaluated window buckets, frozen references, and a new generation of each pending
        bucket merged into (the replaced generations are deleted by the next call). The shell
        stores each under ``key`` (``None``: delete it), before the snapshot that names it, and
        writes the snapshots of :meth:`take_changed` right after."""
        return self._history.drain() + self._parts.drain(self._models)

    def discard_stored_parts(self) -> None:
        """For a shell that stores no state (the in-memory pipeline): forget the parts
        :meth:`stored_parts` would hand out, which would otherwise pile up bucket after
        bucket, unencoded."""
        self._history.discard()
        self._parts.discard()

    def part_keys(self, model: str) -> list[bytes]:
        """Keys of the stored parts ``model`` needs after :meth:`restore`."""
        m = self._models.get(model)
        if m is None:
            return []
        keys = [] if m.last_bucket is None else self._history.keys(model, m.versions, m.last_bucket)
        for v, st in m.versions.items():
            keys += [bucket_key(model, v, b) for b in sorted(st.unloaded)]
            keys += [
                pending_key(model, v, b, gen)
                for b, gen in sorted(st.pending_gen.items())
                if gen and b not in st.pending
            ]
            if st.frozen is None and st.frozen_id is not None:
                keys.append(frozen_key(model, v))
        return keys

    def load_part(self, key: bytes, blob: bytes) -> None:
        """Take back one stored part (:meth:`stored_parts` handed it out)."""
        if is_slot_key(key):
            self._history.load(key, blob)
            return
        kind, model, version, start = parse_part_key(key)
        m = self._models.get(model)
        st = None if m is None else m.versions.get(version)
        if st is None:
            return
        if kind == BUCKET:
            found, bucket_ms, profiles = decode_slot(blob)
            if (found, bucket_ms) != (start, self._bucket_ms):
                raise FormatError(f"bucket {key!r} holds {bucket_ms} ms from {found}")
            st.buckets[start] = profiles
            st.unloaded.discard(start)
            return
        if kind == PENDING:
            found, bucket_ms, profiles = decode_slot(blob)
            if (found, bucket_ms) != (start, self._bucket_ms):
                raise FormatError(f"pending bucket {key!r} holds {bucket_ms} ms from {found}")
            if st.pending_gen.get(start) == pending_generation(key) and start not in st.pending:
                st.pending[start] = profiles
            return
        frozen = Reference.from_bytes(blob)
        if frozen.id == st.frozen_id:
            st.frozen = frozen

    def snapshot(self, model: str) -> dict[str, Any]:
        """Everything needed to resume ``model`` after a restart (JSON-able, bytes as hex)."""
        m = self._models.get(model)
        if m is None:
            return {}
        return model_snapshot(model, m, self.policy)

    def restore(self, model: str, state: dict[str, Any]) -> None:
        """Resume ``model`` from what :meth:`snapshot` returned."""
        if not state:
            return
        m = self._models[model] = restored_model(state, self._d)
        for v, st in m.versions.items():  # a snapshot of the earlier layout held them inline
            for b in st.buckets:
                self._parts.bucket(model, v, b)
            for b in st.pending:  # inline (earlier layout): stored apart from now on
                self._parts.pending(model, v, b)
            if st.frozen is not None:
                self._parts.frozen(model, v)
        self.policy.load_state({**self.policy.to_state(), **state["policy"]})
