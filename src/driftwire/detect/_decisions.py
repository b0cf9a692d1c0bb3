"""The decision step of :class:`~driftwire.detect.detector.Detector`: findings in, alerts out.

Each :class:`~driftwire.alerts.finding.Finding` is a condition of the
:class:`~driftwire.alerts.policy.AlertPolicy`, keyed by its model and the fingerprint of its labels.
Per model version and window, :class:`Decisions` feeds the findings to the policy; many
breaching drift / quality conditions make one ``upstream_change`` incident
(:mod:`driftwire.alerts.grouping`) that holds back its members' emissions; silences from the config
(:mod:`driftwire.alerts.silences`) hold back what they match; a drift alert on a feature whose data
quality breaches in the same window says so and names the quality alert's fingerprint.
A held-back alert that is still firing and breaching when the hold ends is emitted then; one
that resolved meanwhile, or that only the resolve hysteresis keeps firing, is never announced.
Held-back alerts are recorded in the model's ``muted`` map (condition key -> why), which the
detector persists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from driftwire.alerts.alert import Alert, fingerprint, iso, report_url
from driftwire.alerts.finding import GROUPED_KINDS, Finding
from driftwire.alerts.grouping import group_finding
from driftwire.alerts.incident import Membership, incident_finding, member_entry
from driftwire.alerts.policy import AlertPolicy, Severity, Transition
from driftwire.alerts.settings import AlertSettings
from driftwire.alerts.silences import silenced_by
from driftwire.detect.reference import Reference
from driftwire.detect.settings import DetectSettings
from driftwire.detect.status import condition_state


@dataclass
class _Keyed:
    key: str
    finding: Finding
    transitions: list[Transition]
    resolved: Finding | None = None  # what a resolution says, when it differs (an incident)


class Decisions:
    """Turns findings into alerts through the policy, grouping, silences and muting.

    ``policy`` and ``conditions`` (condition key -> latest finding) are the detector's: the
    decision step updates them, the detector reads them.
    """

    def __init__(
        self,
        policy: AlertPolicy,
        conditions: dict[str, Finding],
        detect: DetectSettings,
        alerts: AlertSettings,
    ) -> None:
        self._policy = policy
        self._conditions = conditions
        self._d = detect
        self._a = alerts
        self._silences = tuple(s.build() for s in alerts.silences)
        # per model: condition key -> end of the last window in which it had data (a value)
        self.last_data: dict[str, dict[str, int]] = {}
        # condition key -> (state, window end at which it entered it), for the status
        self.since: dict[str, tuple[str, int]] = {}

    def reconfigure(self, detect: DetectSettings, alerts: AlertSettings) -> None:
        """Take reloaded settings: thresholds apply from the next window, silences at once."""
        self._d = detect
        self._a = alerts
        self._silences = tuple(s.build() for s in alerts.silences)

    def firing_alert(self, key: str, f: Finding, severity: Severity, start: int, end: int) -> Alert:
        """The alert of a firing condition as it would be emitted now (for the status)."""
        starts = self._policy.starts_at(key)
        t = Transition(key, "firing", severity, end if starts is None else starts, None)
        return self._render(f, t, {}, start, end)

    def firing_features(self, labels: dict[str, str], kind: str) -> set[str]:
        """Features with a firing condition of ``kind`` in this (model, version, segment)."""
        firing = self._policy.firing()
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

    def decide(
        self,
        muted: dict[str, str],
        labels: dict[str, str],
        findings: list[Finding],
        reference: Reference | None,
        events: int,
        start: int,
        end: int,
        incidents: dict[str, dict[str, Any]] | None = None,
    ) -> list[Alert]:
        """Feed the policy, group, cross-reference, apply silences, render the alerts.

        ``muted`` is the model's map of held-back alerts (condition key -> why);
        ``incidents`` its map of incident memberships (incident key -> state).
        """
        if incidents is None:
            incidents = {}
        name = labels["model"]
        last_data = self.last_data.setdefault(name, {})
        keyed: list[_Keyed] = []
        for f in findings:
            key = condition_key(name, f)
            transitions = self._policy.observe(
                key,
                f.value,
                f.thresholds,
                now_ms=end,
                consecutive=f.consecutive,
                confirm=f.confirm,
            )
            self._conditions[key] = f
            if f.value is not None or key not in last_data:
                last_data[key] = end
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
            transitions = self._policy.observe(group_key, g.value, g.thresholds, now_ms=end)
            self._conditions[group_key] = g
            if g.value is not None or group_key not in last_data:
                last_data[group_key] = end
            keyed.append(_Keyed(group_key, g, transitions))
        firing = self._policy.firing()
        for k in keyed:
            state = condition_state(k.finding.value, k.finding.level, k.key in firing)
            seen = self.since.get(k.key)
            if seen is None or seen[0] != state:
                self.since[k.key] = (state, end)
        if group_key is not None:
            self._follow(incidents, keyed[-1], keyed, firing)
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
                    if muted.pop(k.key, None) is None:
                        said = k.resolved or k.finding
                        out.append(self._render(said, t, quality, start, end, escalation))
                    continue
                why = held(k.finding, t.severity)
                if why is not None:
                    if not t.renotify:  # a renotify of an announced alert is just skipped
                        muted[k.key] = why
                    continue
                muted.pop(k.key, None)
                out.append(self._render(k.finding, t, quality, start, end))
        # held-back alerts still firing whose hold is over are announced now, if they still
        # breach: one that only the resolve hysteresis holds stays muted and resolves unsaid
        for k in keyed:
            if k.key not in muted:
                continue
            severity = firing.get(k.key)
            if severity is None:
                del muted[k.key]
                continue
            if held(k.finding, severity) is None and k.finding.level is not None:
                del muted[k.key]
                starts = self._policy.starts_at(k.key) or end
                t = Transition(k.key, "firing", severity, starts, None)
                out.append(self._render(k.finding, t, quality, start, end))
        return out

    def _follow(
        self,
        incidents: dict[str, dict[str, Any]],
        incident: _Keyed,
        keyed: list[_Keyed],
        firing: dict[str, Any],
    ) -> None:
        """Keep the incident's membership; re-send it when members joined or left."""
        key = incident.key
        current = {
            k.key: member_entry(k.finding, firing.get(k.key))
            for k in keyed
            if k.finding.kind in GROUPED_KINDS and (k.key in firing or k.finding.level)
        }
        state = incidents.get(key)
        m = Membership.from_state(state) if state is not None else None
        fired = any(t.status == "firing" and not t.renotify for t in incident.transitions)
        ended = any(t.status == "resolved" for t in incident.transitions)
        if ended and m is not None:
            incident.resolved = incident_finding(incident.finding, m, resolved=True)
        if fired:
            m = Membership(ever=m.ever if m is not None else {})
            m.start(current)
        elif key in firing:
            if m is None:  # firing since before memberships were kept: announced as it is
                m = Membership()
                m.start(current)
            elif m.follow(current, firing={k for k in current if k in firing}) and not any(
                t.renotify for t in incident.transitions
            ):
                starts = self._policy.starts_at(key)
                severity = firing[key]
                incident.transitions.append(
                    Transition(key, "firing", severity, starts or 0, None, renotify=True)
                )
        if key in firing and m is not None:
            incidents[key] = m.to_state()
            incident.finding = incident_finding(incident.finding, m)
        else:
            incidents.pop(key, None)

    def stale(self, model: str, horizon_ms: int) -> list[str]:
        """Conditions of ``model`` whose last window with data ended at or before
        ``horizon_ms``."""
        seen = self.last_data.get(model, {})
        return [key for key, end in seen.items() if end <= horizon_ms and key in self._conditions]

    def close(
        self,
        muted: dict[str, str],
        ended: dict[str, str],
        start: int,
        end: int,
        incidents: dict[str, dict[str, Any]] | None = None,
    ) -> list[Alert]:
        """Forget conditions no longer evaluated (key -> why); resolve announced alerts once."""
        if not ended:
            return []
        firing = self._policy.firing()
        out: list[Alert] = []
        for key, why in ended.items():
            f = self._conditions.pop(key)
            self.since.pop(key, None)
            self.last_data.get(key.rsplit("/", 1)[0], {}).pop(key, None)
            state = (incidents or {}).pop(key, None)
            if state is not None:  # an incident's resolution lists every member it had
                f = incident_finding(f, Membership.from_state(state), resolved=True)
            starts = self._policy.starts_at(key)
            self._policy.forget(key)
            severity = firing.get(key)
            if muted.pop(key, None) is not None or severity is None or starts is None:
                continue  # not firing, or never announced
            summary = f"{why}; closing: {f.headline('firing', f.threshold(severity))}"

            def closed(status: str, threshold: float, text: str = summary) -> str:
                return text

            gone = replace(
                f, headline=closed, annotations={**f.annotations, "resolved_reason": why}
            )
            t = Transition(key, "resolved", severity, starts, end)
            out.append(self._render(gone, t, {}, start, end))
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
            generator_url=(
                report_url(
                    self._a.generator_url_base, full["model"], full.get("model_version", ""), end
                )
                if self._a.generator_url_base
                else self._a.generator_url_template.format_map(_Labels(full))
            ),
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


def condition_key(model: str, f: Finding) -> str:
    """The policy key of a condition: its model and the fingerprint of its labels."""
    return f"{model}/{fingerprint(f.labels)}"


class _Labels(dict[str, str]):
    """Labels for ``str.format_map``: a label an alert does not have formats as empty."""

    def __missing__(self, key: str) -> str:
        return ""
