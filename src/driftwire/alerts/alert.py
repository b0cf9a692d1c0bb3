"""Alert events: CloudEvents 1.0 in structured JSON mode whose data speaks Alertmanager.

The fingerprint is a hash of the labels only, so it is stable from firing to resolved; it is
the Kafka key (firing and resolved events of one alert stay ordered in one partition) and
the de-duplication key for receivers (PagerDuty's ``dedup_key``). The CloudEvents ``id`` is
derived from (fingerprint, status, evaluation time): unique per emission and the same when a
replay emits the same event again, so consumers can drop exact duplicates by id.

>>> labels = {"alertname": "DriftwireDataDrift", "kind": "data_drift", "severity": "critical",
...           "model": "churn", "model_version": "1", "segment": "all", "feature": "age",
...           "statistic": "psi"}
>>> fingerprint(labels) == fingerprint(dict(reversed(list(labels.items()))))
True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson

SPEC_VERSION = "1.0"
SCHEMA_URL = "https://driftwire.dev/schemas/alert.schema.json"

ALERT_NAMES = {
    "data_drift": "DriftwireDataDrift",
    "prediction_drift": "DriftwirePredictionDrift",
    "data_quality": "DriftwireDataQuality",
    "latency_anomaly": "DriftwireLatencyAnomaly",
    "throughput": "DriftwireThroughput",
    "upstream_change": "DriftwireUpstreamChange",
    "version_comparison": "DriftwireVersionComparison",
    "performance_degradation": "DriftwirePerformanceDegradation",
    "label_drift": "DriftwireLabelDrift",
    "estimated_performance": "DriftwireEstimatedPerformance",
}


def fingerprint(labels: dict[str, str]) -> str:
    """Hex digest (16 chars) of the sorted labels."""
    raw = orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()[:16]


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as an RFC 3339 UTC timestamp with milliseconds."""
    if ms is None:
        return None
    t = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def report_url(base: str, model: str, version: str, window_end_ms: int) -> str:
    """The worker's drift report of one model version's window (``GET /report``).

    >>> report_url("http://driftwire:8080/", "churn", "1.4 beta", 1_800_000_000_000)
    'http://driftwire:8080/report?model=churn&version=1.4+beta&window_end=2027-01-15T08%3A00%3A00.000Z'
    """
    query = urlencode({"model": model, "version": version, "window_end": iso(window_end_ms)})
    return f"{base.rstrip('/')}/report?{query}"


@dataclass(frozen=True)
class Alert:
    """One alert emission, before it is encoded."""

    labels: dict[str, str]
    status: str
    summary: str
    description: str
    runbook_url: str
    generator_url: str
    starts_at_ms: int
    ends_at_ms: int | None
    evaluated_at_ms: int
    value: float | None
    threshold: float | None
    bound: float | None
    window: dict[str, Any]
    reference: dict[str, Any]
    evidence: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)  # beyond summary, description

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def kind(self) -> str:
        return self.labels["kind"]

    def cloudevent(self, source: str) -> dict[str, Any]:
        """The structured-mode CloudEvent of this emission."""
        fp = self.fingerprint
        emission = f"{fp}:{self.status}:{self.evaluated_at_ms}".encode()
        subject = "/".join(
            self.labels.get(k, "")
            for k in ("model", "model_version", "feature")
            if k in self.labels
        )
        return {
            "specversion": SPEC_VERSION,
            "id": hashlib.sha256(emission).hexdigest()[:32],
            "source": source,
            "type": f"io.driftwire.alert.{self.kind}.v1",
            "subject": subject,
            "time": iso(self.evaluated_at_ms),
            "datacontenttype": "application/json",
            "dataschema": SCHEMA_URL,
            "data": {
                "status": self.status,
                "fingerprint": fp,
                "labels": self.labels,
                "annotations": {
                    **self.annotations,
                    "summary": self.summary,
                    "description": self.description,
                    "runbook_url": self.runbook_url,
                },
                "startsAt": iso(self.starts_at_ms),
                "endsAt": iso(self.ends_at_ms),
                "generatorURL": self.generator_url,
                "value": self.value,
                "threshold": self.threshold,
                "bound": self.bound,
                "window": self.window,
                "reference": self.reference,
                "evidence": self.evidence,
            },
        }


def encode(alert: Alert, source: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Kafka key, value and CloudEvents binding headers (``ce_*``) of one alert emission."""
    event = alert.cloudevent(source)
    headers = [
        (f"ce_{k}", str(event[k]).encode())
        for k in ("specversion", "id", "source", "type", "subject", "time", "dataschema")
    ]
    headers.append(("content-type", b"application/cloudevents+json; charset=UTF-8"))
    return alert.fingerprint.encode(), orjson.dumps(event), headers
