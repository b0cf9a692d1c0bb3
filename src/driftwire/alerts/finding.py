"""A *finding*: one condition's value in one window, before the alert policy decides.

Every check of stage 2 (drift, data quality, latency, throughput, grouping, canary) turns a
window into findings; :class:`~driftwire.detect.detector.Detector` feeds each one's ``value`` to the
:class:`~driftwire.alerts.policy.AlertPolicy` under the key of its labels and renders the alert
events the policy decides on. A finding carries everything that alert needs (labels without
``severity``, thresholds, texts, evidence), so the checks stay pure and know nothing of
the policy or of emission.

>>> f = Finding(
...     labels={"kind": "latency_anomaly", "model": "m", "model_version": "1",
...             "segment": "all", "statistic": "p99"},
...     value=4.2, thresholds=Thresholds(3.0, 10.0),
...     headline=lambda status, threshold: f"p99 is 4.2x (threshold {threshold:g})",
... )
>>> f.level, f.reported
('warning', 4.2)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from driftwire.alerts.alert import ALERT_NAMES
from driftwire.alerts.policy import Severity, Thresholds

#: ``headline(status, threshold)``: the alert summary for ``firing`` or ``resolved``.
Headline = Callable[[str, float], str]

#: The kinds that are grouped into one ``upstream_change`` incident when many breach at once:
#: the model's inputs. Prediction drift (its output: the impact) keeps its own alerts.
GROUPED_KINDS = frozenset({"data_drift", "data_quality"})


@dataclass
class Finding:
    """One condition's outcome in one window, with what its alert would say."""

    labels: dict[str, str]  # kind, model, model_version, segment, [feature], statistic
    value: float | None  # what the policy sees; None: insufficient data
    thresholds: Thresholds
    headline: Headline
    description: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    bound: float | None = None
    shown: float | None = None  # the value reported, when it differs from ``value``
    consecutive: int | None = None  # overrides the policy's K for this condition
    confirm: int | None = None  # breaching windows needed to fire after this window, if more
    count: int = 0  # events the window's value rests on
    reference: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kind = self.labels["kind"]
        self.labels = {"alertname": ALERT_NAMES[kind], **self.labels}

    @property
    def kind(self) -> str:
        return self.labels["kind"]

    @property
    def level(self) -> Severity | None:
        """The severity the value reaches in this window (``None``: not breaching)."""
        return None if self.value is None else self.thresholds.severity(self.value)

    @property
    def reported(self) -> float | None:
        """The value for the alert and the metrics: finite or ``None``."""
        value = self.shown if self.shown is not None else self.value
        return None if value is None or not math.isfinite(value) else value

    def threshold(self, severity: str) -> float:
        return self.thresholds.critical if severity == "critical" else self.thresholds.warning
