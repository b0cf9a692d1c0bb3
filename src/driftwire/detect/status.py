"""What stage 2 thinks of every model right now: the status document and the firing alerts.

Pure: :meth:`~driftwire.detect.detector.Detector.status_records` hands out plain records of
its models (:class:`ModelStatus`) and conditions (:class:`ConditionStatus`); :func:`build_status`
turns them into the JSON document of ``GET /api/v1/status`` (``schemas/status.schema.json``)
and :func:`alertmanager_alerts` into the list of ``GET /api/v1/alerts`` (Alertmanager's API v2
alert shape). The evaluation time is passed in; nothing here reads a clock or does I/O.

Output is bounded: a :class:`StatusQuery` filters by model and state and pages through the
conditions (firing first) ``limit`` at a time; its ``cursor`` is the sort key of the last
condition returned, so a page does not repeat or skip a condition when others change state
in between.

>>> c = ConditionStatus(
...     key="m/1", labels={"kind": "data_drift", "model": "m", "model_version": "1",
...     "segment": "all", "feature": "age", "statistic": "ks"}, state="ok", severity=None,
...     value=0.2, warning=1.0, critical=10.0, since_ms=0)
>>> doc = build_status([], [c], StatusQuery(), now_ms=60_000)
>>> doc["counts"], doc["conditions"][0]["state"], doc["next_cursor"]
({'firing': 0, 'breaching': 0, 'insufficient_data': 0, 'ok': 1}, 'ok', None)
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from driftwire.alerts.alert import Alert, fingerprint, iso

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "STATES",
    "ConditionState",
    "ConditionStatus",
    "ModelStatus",
    "StatusQuery",
    "VersionStatus",
    "alertmanager_alerts",
    "build_status",
    "condition_state",
]

ConditionState = Literal["firing", "breaching", "insufficient_data", "ok"]
#: Every condition state, in the order the status lists them.
STATES: tuple[ConditionState, ...] = ("firing", "breaching", "insufficient_data", "ok")
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000  # the most conditions (and models) one page holds
API_VERSION = "v1"


def condition_state(value: float | None, level: str | None, firing: bool) -> ConditionState:
    """A condition's state: firing (an alert is out), breaching (over its threshold, not
    firing yet: the policy waits for K windows), insufficient_data, or ok."""
    if firing:
        return "firing"
    if value is None:
        return "insufficient_data"
    return "breaching" if level is not None else "ok"


@dataclass(frozen=True)
class VersionStatus:
    """One model version: its segments, the reference in use and the last evaluated window."""

    version: str
    segments: tuple[str, ...]
    reference: dict[str, Any] | None  # kind, id, count (... ) of the reference; None: none yet
    reference_events: dict[str, int] = field(default_factory=dict)  # per segment
    window: tuple[int, int, int] | None = None  # start ms, end ms, events


@dataclass(frozen=True)
class ModelStatus:
    model: str
    versions: tuple[VersionStatus, ...]
    evaluated_until_ms: int | None
    late_partials: int = 0


@dataclass(frozen=True)
class ConditionStatus:
    """One condition of the alert policy, as the detector last evaluated it."""

    key: str  # the policy key: model/fingerprint of the labels without severity
    labels: dict[str, str]  # without severity
    state: ConditionState
    severity: str | None  # firing severity, else the level the value reaches
    value: float | None
    warning: float
    critical: float
    since_ms: int  # the window end at which the condition entered its state
    starts_at_ms: int | None = None  # firing: when the alert started
    window: tuple[int, int, int] | None = None
    reason: str | None = None  # insufficient data: why
    suppressed_by: str | None = None  # a firing alert held back: silence:<id> / upstream_change:..
    alert: Alert | None = None  # firing: the alert as it would be emitted now

    @property
    def threshold(self) -> float:
        """The threshold of its severity (critical when firing critical, else warning)."""
        return self.critical if self.severity == "critical" else self.warning

    def sort_key(self) -> tuple[Any, ...]:
        severity = 0 if self.severity == "critical" else 1
        lab = self.labels
        return (
            STATES.index(self.state),
            severity if self.state in ("firing", "breaching") else 0,
            lab.get("model", ""),
            lab.get("model_version", ""),
            lab.get("kind", ""),
            lab.get("segment", ""),
            lab.get("feature", ""),
            lab.get("statistic", ""),
            self.key,
        )


@dataclass(frozen=True)
class StatusQuery:
    """Filters and the page of ``/api/v1/status`` and ``/api/v1/alerts``."""

    model: str | None = None
    states: tuple[ConditionState, ...] = ()  # empty: every state
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    @classmethod
    def parse(cls, params: dict[str, str]) -> StatusQuery:
        """From query parameters; ``ValueError`` naming the parameter and the fix."""
        unknown = set(params) - {"model", "state", "limit", "cursor"}
        if unknown:
            name = sorted(unknown)[0]
            raise ValueError(f"unknown parameter {name!r}: use model, state, limit or cursor")
        states: list[ConditionState] = []
        for raw in filter(None, params.get("state", "").split(",")):
            match = next((s for s in STATES if s == raw.strip()), None)
            if match is None:
                raise ValueError(f"state={raw!r} is not a state: use one of {', '.join(STATES)}")
            states.append(match)
        limit_text = params.get("limit", str(DEFAULT_LIMIT))
        try:
            limit = int(limit_text)
        except ValueError:
            raise ValueError(f"limit={limit_text!r} is not a number: use 1..{MAX_LIMIT}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit={limit} is out of range: use 1..{MAX_LIMIT}")
        cursor = params.get("cursor") or None
        if cursor is not None:
            _decode_cursor(cursor)
        return cls(params.get("model") or None, tuple(states), limit, cursor)


def _encode_cursor(key: tuple[Any, ...]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[Any, ...]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError):
        raise ValueError("cursor is not one this server returned: start without it") from None
    if not isinstance(key, list) or len(key) != 9:
        raise ValueError("cursor is not one this server returned: start without it")
    return tuple(key)


def _number(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _window(w: tuple[int, int, int] | None) -> dict[str, Any] | None:
    return None if w is None else {"start": iso(w[0]), "end": iso(w[1]), "count": w[2]}


def _condition(c: ConditionStatus) -> dict[str, Any]:
    lab = c.labels
    return {
        "id": c.key,
        "fingerprint": None if c.alert is None else c.alert.fingerprint,
        "kind": lab.get("kind", ""),
        "model": lab.get("model", ""),
        "model_version": lab.get("model_version", ""),
        "segment": lab.get("segment", ""),
        "feature": lab.get("feature"),
        "statistic": lab.get("statistic", ""),
        "labels": lab,
        "state": c.state,
        "severity": c.severity,
        "value": _number(c.value),
        "threshold": _number(c.threshold),
        "thresholds": {"warning": _number(c.warning), "critical": _number(c.critical)},
        "since": iso(c.since_ms),
        "starts_at": iso(c.starts_at_ms),
        "window": _window(c.window),
        "reason": c.reason,
        "suppressed_by": c.suppressed_by,
        "summary": None if c.alert is None else c.alert.summary,
    }


def _model(m: ModelStatus) -> dict[str, Any]:
    return {
        "model": m.model,
        "evaluated_until": iso(m.evaluated_until_ms),
        "late_partials": m.late_partials,
        "versions": [
            {
                "version": v.version,
                "segments": list(v.segments),
                "reference": v.reference,
                "reference_events": v.reference_events,
                "window": _window(v.window),
            }
            for v in m.versions
        ],
    }


def _selected(conditions: Iterable[ConditionStatus], query: StatusQuery) -> list[ConditionStatus]:
    out = [
        c
        for c in conditions
        if (query.model is None or c.labels.get("model") == query.model)
        and (not query.states or c.state in query.states)
    ]
    out.sort(key=ConditionStatus.sort_key)
    return out


def build_status(
    models: Sequence[ModelStatus],
    conditions: Iterable[ConditionStatus],
    query: StatusQuery,
    *,
    now_ms: int,
    worker: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The status document: counts, the page of conditions (firing first), the models on it.

    ``models`` lists the models on the page's conditions; the first page also lists the
    models that have no condition yet (a version still waiting for its first window).
    """
    wanted = [c for c in conditions if query.model is None or c.labels.get("model") == query.model]
    counts = {s: 0 for s in STATES}
    for c in wanted:
        counts[c.state] += 1
    selected = _selected(wanted, query)
    if query.cursor is not None:
        after = _decode_cursor(query.cursor)
        selected = [c for c in selected if list(c.sort_key()) > list(after)]
    page = selected[: query.limit]
    more = len(selected) > len(page)
    on_page = {c.labels.get("model", "") for c in page}
    with_conditions = {c.labels.get("model", "") for c in wanted}
    shown = [
        m
        for m in sorted(models, key=lambda m: m.model)
        if (query.model is None or m.model == query.model)
        and (m.model in on_page or (query.cursor is None and m.model not in with_conditions))
    ][: query.limit]
    return {
        "api_version": API_VERSION,
        "generated_at": iso(now_ms),
        "worker": worker or {},
        "filters": {"model": query.model, "state": list(query.states)},
        "counts": counts,
        "models": [_model(m) for m in shown],
        "conditions": [_condition(c) for c in page],
        "limit": query.limit,
        "next_cursor": _encode_cursor(page[-1].sort_key()) if more else None,
    }


def alertmanager_alerts(
    conditions: Iterable[ConditionStatus], query: StatusQuery
) -> tuple[list[dict[str, Any]], str | None]:
    """The firing alerts in Alertmanager's API v2 shape (``GettableAlert``), and the next
    page's cursor.

    ``status.state`` is ``active``, or ``suppressed`` for an alert held back by a silence
    (``silencedBy``) or by the upstream_change incident that groups it (``inhibitedBy``: the
    incident's fingerprint). ``endsAt`` is ``null`` while an alert fires, as on the alerts
    topic; ``updatedAt`` is the end of the window last evaluated.
    """
    only_firing = replace(query, states=("firing",))
    firing = [c for c in _selected(conditions, only_firing) if c.alert is not None]
    if query.cursor is not None:
        after = _decode_cursor(query.cursor)
        firing = [c for c in firing if list(c.sort_key()) > list(after)]
    page = firing[: query.limit]
    out: list[dict[str, Any]] = []
    for c in page:
        a = c.alert
        if a is None:  # pragma: no cover - filtered above
            continue
        held = c.suppressed_by or ""
        silenced = [held.split(":", 1)[1]] if held.startswith("silence:") else []
        inhibited = [held.split(":", 1)[1]] if held.startswith("upstream_change:") else []
        out.append(
            {
                "labels": a.labels,
                "annotations": {
                    **a.annotations,
                    "summary": a.summary,
                    "description": a.description,
                    "runbook_url": a.runbook_url,
                },
                "startsAt": iso(a.starts_at_ms),
                "endsAt": None,
                "updatedAt": iso(a.evaluated_at_ms),
                "generatorURL": a.generator_url,
                "fingerprint": fingerprint(a.labels),
                "receivers": [],
                "status": {
                    "state": "suppressed" if held else "active",
                    "silencedBy": silenced,
                    "inhibitedBy": inhibited,
                },
            }
        )
    more = len(firing) > len(page)
    return out, (_encode_cursor(page[-1].sort_key()) if more else None)
