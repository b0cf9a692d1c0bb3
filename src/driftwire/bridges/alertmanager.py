"""Alertmanager: ``POST /api/v2/alerts`` with labels, annotations, startsAt, endsAt, generatorURL.

Alertmanager expects clients to re-send firing alerts (Prometheus does every minute) and
resolves an alert by itself once its ``endsAt`` has passed. So a firing alert goes out with
``endsAt`` = now + 4 x ``alertmanager_resend_seconds`` and is re-sent every
``alertmanager_resend_seconds`` while it fires: if the bridge stops, the alert expires within
four intervals rather than firing forever; a restarted Alertmanager (without storage) gets
every firing alert back within one interval. A resolved alert goes out once with ``endsAt`` =
its resolve time (never later than now, so that it clears at once).

>>> from driftwire.bridges._alert import AlertEvent
>>> event = {"data": {"generatorURL": "http://grafana/d/x", "value": 0.41, "threshold": 0.25}}
>>> alert = AlertEvent(event, "resolved", "fp", {"alertname": "A", "segment": ""},
...                    {"summary": "s"}, "2026-11-22T15:00:00Z", "2026-11-22T15:10:00Z")
>>> am = alertmanager_alert(alert, now_ms=1795446000000, resend_s=60)
>>> am["labels"], am["endsAt"], am["annotations"]["value"]
({'alertname': 'A'}, '2026-11-22T15:10:00.000Z', '0.41')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from driftwire.alerts.alert import iso
from driftwire.bridges._alert import AlertEvent, epoch_ms
from driftwire.bridges._delivery import Request

RESEND_CHUNK = 200
VALID_FOR_RESENDS = 4


def _number(value: float) -> str:
    return f"{value:.6g}"


def alertmanager_alert(alert: AlertEvent, *, now_ms: int, resend_s: float) -> dict[str, Any]:
    """One alert in Alertmanager's ``postableAlert`` shape."""
    labels = {k: v for k, v in alert.labels.items() if v != ""}  # empty = absent
    annotations = {k: v for k, v in alert.annotations.items() if v != ""}
    for key in ("value", "threshold"):
        number = alert.number(key)
        if number is not None:
            annotations.setdefault(key, _number(number))
    starts = epoch_ms(alert.starts_at)
    if alert.firing:
        ends = max(now_ms + int(VALID_FOR_RESENDS * resend_s * 1000), starts + 1)
    else:
        ends = min(epoch_ms(alert.ends_at) if alert.ends_at else now_ms, now_ms)
        starts = min(starts, ends)
    body: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": iso(starts),
        "endsAt": iso(ends),
    }
    if alert.generator_url:
        body["generatorURL"] = alert.generator_url
    return body


class AlertmanagerTarget:
    """Posts every alert and re-sends the firing ones."""

    name = "alertmanager"

    def __init__(self, base_url: str, *, resend_s: float) -> None:
        self.url = base_url.rstrip("/") + "/api/v2/alerts"
        self._resend_s = resend_s
        self.resend_interval_s: float | None = resend_s

    def render(self, alert: AlertEvent, now_ms: int) -> list[Request]:
        body = [alertmanager_alert(alert, now_ms=now_ms, resend_s=self._resend_s)]
        return [Request(self.url, orjson.dumps(body), {"Content-Type": "application/json"})]

    def resend(self, alerts: Sequence[AlertEvent], now_ms: int) -> list[Request]:
        bodies = [alertmanager_alert(a, now_ms=now_ms, resend_s=self._resend_s) for a in alerts]
        return [
            Request(
                self.url,
                orjson.dumps(bodies[i : i + RESEND_CHUNK]),
                {"Content-Type": "application/json"},
            )
            for i in range(0, len(bodies), RESEND_CHUNK)
        ]
