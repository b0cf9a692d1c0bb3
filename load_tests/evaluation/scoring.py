"""Scoring a run: the alerts a user received, against the changes that were injected.

Alerts are read as a subscriber reads them, from the CloudEvents the worker puts on the alerts
topic: ``data.status``, ``data.labels`` and, for an ``upstream_change`` incident, the members
listed in ``data.evidence.members``. A *condition* is (kind, segment, feature, statistic) of
one model version; the severity is not part of it (an escalation is the same condition). A
condition is *announced* while an alert of its own fires, or while a firing incident lists it
as a member; its *episodes* are the maximal stretches of evaluations during which it is
announced (one alert a user sees, from firing to resolved).

An episode is *true* when it starts after a change of its feature began, in a scope the change
touched: the changed segments, or the aggregate over segments (segment ``all``, or the single
scope of an unsegmented model); a drift of the prediction is true after a change of a numeric
input (the prediction is computed from them) in the same scope. Data-quality and drift alerts
both count for the changed feature. Everything else is false, including any alert about a
change a detector should stay quiet on (``expected=False``).

>>> label = {"kind": "data_drift", "model": "m", "model_version": "1", "segment": "all",
...          "feature": "x", "statistic": "ks", "severity": "warning"}
>>> def event(status, hour, **labels):
...     return {"time": f"2026-01-01T{hour:02d}:00:00.000Z",
...             "data": {"status": status, "labels": {**label, **labels}, "evidence": {}}}
>>> eps = episodes([event("firing", 3), event("resolved", 5), event("firing", 5, feature="y")])
>>> [(e.condition.feature, e.start_ms - eps[0].start_ms, e.end_ms is not None) for e in eps]
[('x', 0, True), ('y', 7200000, False)]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from evaluation.streams import HOUR, START, Change, Stream
from evaluation.tables import Table

AGGREGATE = frozenset({"all", ""})  # the aggregate over segments / the one scope of a model
INCIDENT = "upstream_change"


@dataclass(frozen=True, order=True)
class Condition:
    kind: str
    model: str
    version: str
    segment: str
    feature: str
    statistic: str


@dataclass
class Episode:
    condition: Condition
    start_ms: int
    end_ms: int | None = None  # None: still announced at the end of the stream


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _condition(labels: dict[str, Any], fallback: dict[str, Any] | None = None) -> Condition:
    base = fallback or {}
    return Condition(
        kind=str(labels.get("kind", base.get("kind", ""))),
        model=str(labels.get("model", base.get("model", ""))),
        version=str(labels.get("model_version", base.get("model_version", ""))),
        segment=str(labels.get("segment", "")),
        feature=str(labels.get("feature", "")),
        statistic=str(labels.get("statistic", "")),
    )


def segment_value(segment: str) -> str:
    """``plan=free`` -> ``free``; the aggregate stays ``all`` (or empty)."""
    return segment.split("=", 1)[1] if "=" in segment else segment


def episodes(events: Iterable[dict[str, Any]]) -> list[Episode]:
    """The announcement episodes of every condition, from the alert CloudEvents in order."""
    direct: set[Condition] = set()
    incidents: dict[Condition, set[Condition]] = {}
    open_: dict[Condition, Episode] = {}
    out: list[Episode] = []
    by_time: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        by_time.setdefault(_ms(event["time"]), []).append(event)
    for t in sorted(by_time):
        for event in by_time[t]:
            data = event["data"]
            labels = data["labels"]
            cond = _condition(labels)
            firing = data["status"] == "firing"
            if cond.kind == INCIDENT:
                if firing:
                    listed = (data.get("evidence") or {}).get("members") or []
                    incidents[cond] = {_condition(m, labels) for m in listed}
                else:
                    incidents.pop(cond, None)
            elif firing:
                direct.add(cond)
            else:
                direct.discard(cond)
        now = set(direct).union(*incidents.values())
        for cond in now - open_.keys():
            open_[cond] = Episode(cond, t)
            out.append(open_[cond])
        for cond in open_.keys() - now:
            open_.pop(cond).end_ms = t
    return out


FEATURE_KINDS = frozenset({"data_drift", "data_quality", "prediction_drift"})


def change_ms(change: Change) -> int:
    return START + change.start * HOUR


def _in_scope(segment: str, change: Change, *, aggregate: bool) -> bool:
    value = segment_value(segment)
    if change.segments is None:
        return True
    return value in change.segments or (aggregate and value in AGGREGATE)


def cause(episode: Episode, table: Table, changes: tuple[Change, ...]) -> Change | None:
    """The injected change that makes ``episode`` true, or None (a false alert)."""
    cond = episode.condition
    if cond.kind not in FEATURE_KINDS:
        return None
    for change in changes:
        if not change.expected or episode.start_ms <= change_ms(change):
            continue
        moves_score = change.kind in ("location", "scale") and change.feature in table.numeric
        if cond.feature != change.feature and not (
            cond.feature.startswith("prediction") and moves_score
        ):
            continue
        if _in_scope(cond.segment, change, aggregate=True):
            return change
    return None


def announces(episode: Episode, change: Change) -> bool:
    """Whether ``episode`` announces ``change`` (its feature, in a scope that counts)."""
    cond = episode.condition
    return (
        cond.kind in ("data_drift", "data_quality")
        and cond.feature == change.feature
        and episode.start_ms > change_ms(change)
        and _in_scope(cond.segment, change, aggregate=not change.inside_only)
    )


@dataclass
class RunScore:
    """What one run of one scenario measured."""

    detections: list[tuple[Change, float | None, int | None]]  # delay in windows, in events
    true_alerts: int
    false_alerts: int
    false_by_kind: dict[str, int]
    flaps: list[float]  # fire/resolve pairs per 24 evaluations, per condition
    flap_pairs: int


def score_run(eps: list[Episode], stream: Stream, table: Table, *, window_buckets: int) -> RunScore:
    """Precision, recall, delays and flaps of one run's episodes."""
    changes = stream.design.changes
    buckets = stream.design.buckets
    window_ms = window_buckets * HOUR
    true = false = 0
    false_by_kind: dict[str, int] = {}
    by_condition: dict[Condition, list[Episode]] = {}
    for ep in eps:
        by_condition.setdefault(ep.condition, []).append(ep)
        if cause(ep, table, changes) is not None:
            true += 1
        else:
            false += 1
            false_by_kind[ep.condition.kind] = false_by_kind.get(ep.condition.kind, 0) + 1
    detections: list[tuple[Change, float | None, int | None]] = []
    for change in changes:
        if not change.expected:
            continue
        first = min((ep.start_ms for ep in eps if announces(ep, change)), default=None)
        if first is None:
            detections.append((change, None, None))
            continue
        last_bucket = (first - START) // HOUR  # buckets before the detecting window's end
        events = stream.scope_events(change.start, last_bucket, change.segments)
        detections.append((change, (first - change_ms(change)) / window_ms, events))
    flaps: list[float] = []
    pairs = 0
    for cond_eps in by_condition.values():
        ended = sum(ep.end_ms is not None for ep in cond_eps)
        pairs += ended
        caused = cause(cond_eps[0], table, changes)
        span = buckets - (caused.start if caused is not None else 0)
        flaps.append(ended * 24 / max(span, 1))
    return RunScore(detections, true, false, false_by_kind, flaps, pairs)
