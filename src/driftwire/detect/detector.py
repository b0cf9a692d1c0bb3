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
from driftwire.detect._parts import BUCKET, PartsOutbox, bucket_key, frozen_key, parse_part_key
from driftwire.detect._state import _Model, _Version, model_snapshot, restored_model
from driftwire.detect._window_findings import (
    drift_finding,
    latency_window_findings,
    refusal_findings,
)
from driftwire.detect.canary import (
    Pair,
    comparison_findings,
    comparison_over,
    outputs,
    predecessors,
)
from driftwire.detect.compare import Comparison, compare_profiles, decide_family
from driftwire.detect.completeness import Completeness
from driftwire.detect.latency import LatencyReference
from driftwire.detect.quality import quality_findings
from driftwire.detect.reference import Reference, ReferenceStore, SmallReference
from driftwire.detect.samples import ConditionSample, LatencySample, ReferenceSample
from driftwire.detect.settings import DetectSettings
from driftwire.detect.throughput import throughput_findings
from driftwire.detect.trailing import History, decode_slot, is_slot_key
from driftwire.detect.window import ALL_SEGMENTS, detection_window
from driftwire.detect.wording import attributed
from driftwire.errors import FormatError
from driftwire.partials import Partial, Watermark
from driftwire.sketch.profile import Profile


@dataclass
class Evaluation:
    """What one bucket's evaluation produced, for metrics and for callers."""

    model: str
    model_version: str
    bucket_end_ms: int
    results: list[Comparison] = field(default_factory=list)
    insufficient: int = 0


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
        self._history = History(detect, bucket_ms=bucket_ms)  # trailing / seasonal references
        self._parts = PartsOutbox(bucket_ms)  # window buckets and frozen references to store
        self._changed: set[str] = set()  # models whose state changed beyond completeness
        # reference events per segment of every (model, version) evaluated, for the gauges;
        # small references are reported once per (model, version, reference)
        self._reference_sizes: dict[tuple[str, str], dict[str, int]] = {}
        self._small_seen: set[tuple[str, str, str]] = set()
        self._small_new: list[SmallReference] = []
        self._late_new: dict[str, int] = {}  # late partials per model since the last take

    # -- input -----------------------------------------------------------------------------

    def on_partial(self, partial: Partial, now_ms: int) -> list[Alert]:
        model = self._model(partial.model)
        if partial.id in model.seen_ids:
            return []  # a replay of a partial already merged
        model.seen_ids[partial.id] = partial.bucket_end_ms
        if model.evaluated_until is not None and partial.bucket_end_ms <= model.evaluated_until:
            model.late_partials += 1
            self._late_new[partial.model] = self._late_new.get(partial.model, 0) + 1
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
                model.completeness = other.completeness.for_new_model(grace_ms)
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
            pending = version.pending.pop(bucket, None)
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
            out.extend(
                self._decisions.decide(
                    model.muted, labels, findings, reference, events, start, end, model.incidents
                )
            )
        out.extend(self._versions(name, model, bucket))
        return out

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
        events = window[ALL_SEGMENTS].n_events
        if reference is None:
            if complete:
                version.frozen = Reference.frozen(name, version_name, window, end)
                self._parts.frozen(name, version_name)
            return None, events
        self._note_reference(name, version_name, reference, window)
        evaluation = Evaluation(name, version_name, end)
        start = end - n * self._bucket_ms
        choice = self._history.choose(name, version_name, reference, start, end)
        # every test of the window first: the calibrated rule decides them as one family
        family: list[tuple[str, Comparison]] = []
        for segment, current in window.items():
            ref_profile = choice.profile(segment)  # per feature from its configured reference
            cache = choice.reference(segment).cache(segment)
            for comparison in compare_profiles(ref_profile, current, self._d, cache=cache):
                family.append((segment, comparison))
        family = decide_family(family, self._d, aggregate=ALL_SEGMENTS)
        findings += refusal_findings(
            name, version_name, family, choice.reference(ALL_SEGMENTS), window
        )
        for segment, comparison in family:
            evaluation.results.append(comparison)
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
                for f in quality_findings(
                    base.profile(segment),
                    current,
                    self._d.quality,
                    labels,
                    min_count=self._d.min_count,
                    min_reference_count=self._d.min_reference_count,
                    also=self._decisions.firing_features(labels, "data_quality"),
                ):
                    f.reference = described
                    findings.append(f)
        if len(window) > 1:  # segmented: the all aggregate names the segments driving it
            findings[:] = attributed(findings)
        if self._on_evaluation is not None:
            self._on_evaluation(evaluation)
        return choice.reference(ALL_SEGMENTS), events

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
        for version_name in retired:
            for b in model.versions.pop(version_name).buckets:
                self._parts.bucket(name, version_name, b)  # deleted with the version
            self._parts.frozen(name, version_name)
            ledger.forget(version_name)
            why = f"{name} {version_name} retired (no events for {n} buckets while others sent)"
            prefix = f"{name}/"
            for key, f in self._conditions.items():
                if key.startswith(prefix) and f.labels["model_version"] == version_name:
                    ended[key] = why
            for gauge in [k for k in self._latency if k[:2] == (name, version_name)]:
                del self._latency[gauge]
            self._reference_sizes.pop((name, version_name), None)
        live = {v for v, st in model.versions.items() if any(b >= start for b in st.buckets)}
        pairs = predecessors(ledger, live) if self._d.canary.enabled else {}
        for key in model.compared:
            why_over = comparison_over(self._conditions[key], pairs, live)
            if why_over is not None:
                ended.setdefault(key, why_over)
        out = self._decisions.close(model.muted, ended, start, end, model.incidents)
        model.compared.difference_update(ended)
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
            model.compared.update(condition_key(name, f) for f in findings)
            labels = {"model": name, "model_version": canary}
            out.extend(self._decisions.decide(model.muted, labels, findings, None, 0, start, end))
        return out

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
        evaluated window buckets, frozen references. The shell stores each under ``key``
        (``None``: delete it), before the snapshot that names it."""
        return self._history.drain() + self._parts.drain(self._models)

    def part_keys(self, model: str) -> list[bytes]:
        """Keys of the stored parts ``model`` needs after :meth:`restore`."""
        m = self._models.get(model)
        if m is None:
            return []
        keys = [] if m.last_bucket is None else self._history.keys(model, m.versions, m.last_bucket)
        for v, st in m.versions.items():
            keys += [bucket_key(model, v, b) for b in sorted(st.unloaded)]
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
            if st.frozen is not None:
                self._parts.frozen(model, v)
        self.policy.load_state({**self.policy.to_state(), **state["policy"]})
