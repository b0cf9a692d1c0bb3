"""PagerDuty Events API v2: ``trigger`` for a firing alert, ``resolve`` for a resolved one.

``dedup_key`` is the alert's fingerprint (a hash of its labels), so the firing and the
resolved event of one alert address the same incident, and a trigger sent twice (a replay)
does not open a second one. ``payload.severity`` maps driftwire's severity through
``bridges.pagerduty_severity`` (critical -> critical, warning -> warning, else info).

>>> from driftwire.bridges._alert import AlertEvent
>>> labels = {"alertname": "DriftwireDataDrift", "kind": "data_drift", "severity": "warning",
...           "model": "churn", "model_version": "1.4.2"}
>>> alert = AlertEvent({"source": "driftwire-prod", "data": {}}, "firing", "9c1e", labels,
...                    {"summary": "income drifted"}, "2026-11-22T15:00:00.000Z", None)
>>> event = pagerduty_event(alert, routing_key="k" * 32, severities={"warning": "warning"})
>>> event["event_action"], event["dedup_key"], event["payload"]["severity"]
('trigger', '9c1e', 'warning')
>>> resolved = AlertEvent({}, "resolved", "9c1e", labels, {}, "2026-11-22T15:00:00Z", None)
>>> pagerduty_event(resolved, routing_key="k", severities={})["event_action"]
'resolve'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from driftwire.bridges._alert import AlertEvent
from driftwire.bridges._delivery import Request

SUMMARY_LIMIT = 1024  # characters, as PagerDuty documents
MAX_EVENT_BYTES = 512 * 1024  # PagerDuty's limit for one event
DETAIL_KEYS = ("value", "threshold", "bound", "window", "reference", "evidence")


def _links(alert: AlertEvent) -> list[dict[str, str]]:
    links = []
    for href, text in ((alert.runbook_url, "Runbook"), (alert.generator_url, "Dashboard")):
        if href.startswith(("http://", "https://")):
            links.append({"href": href, "text": text})
    return links


def pagerduty_event(
    alert: AlertEvent,
    *,
    routing_key: str,
    severities: Mapping[str, str],
    source: str | None = None,
) -> dict[str, Any]:
    """The Events API v2 body for one alert emission."""
    if not alert.firing:
        return {
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": alert.fingerprint,
        }
    model = alert.labels.get("model", "")
    details: dict[str, Any] = {
        "labels": alert.labels,
        "description": alert.annotations.get("description", ""),
        "runbook_url": alert.runbook_url,
        "dashboard_url": alert.generator_url,
        "fingerprint": alert.fingerprint,
        "starts_at": alert.starts_at,
        **{key: alert.data[key] for key in DETAIL_KEYS if key in alert.data},
    }
    payload: dict[str, Any] = {
        "summary": alert.summary[:SUMMARY_LIMIT],
        "source": source or alert.source,
        "severity": severities.get(alert.severity, "info"),
        "timestamp": alert.event.get("time") or alert.starts_at,
        "component": model,
        "group": f"{model} {alert.labels.get('model_version', '')}".strip(),
        "class": alert.kind,
        "custom_details": details,
    }
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.fingerprint,
        "payload": payload,
        "client": "driftwire",
        "links": _links(alert),
    }
    if alert.generator_url.startswith(("http://", "https://")):
        event["client_url"] = alert.generator_url
    if len(orjson.dumps(event)) > MAX_EVENT_BYTES:
        details.pop("evidence", None)
        details["evidence_dropped"] = "over PagerDuty's 512 KB event limit"
    return event


class PagerDutyTarget:
    """Triggers and resolves PagerDuty incidents."""

    name = "pagerduty"
    resend_interval_s: float | None = None

    def __init__(
        self,
        url: str,
        *,
        routing_key: str,
        severities: Mapping[str, str],
        source: str | None = None,
    ) -> None:
        self.url = url
        self._routing_key = routing_key
        self._severities = dict(severities)
        self._source = source

    def render(self, alert: AlertEvent, now_ms: int) -> list[Request]:
        event = pagerduty_event(
            alert, routing_key=self._routing_key, severities=self._severities, source=self._source
        )
        headers = {"Content-Type": "application/json"}
        return [Request(self.url, orjson.dumps(event), headers, (self._routing_key,))]

    def resend(self, alerts: Sequence[AlertEvent], now_ms: int) -> list[Request]:
        return []
