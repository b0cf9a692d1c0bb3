"""What the detector reports of its conditions at a metrics scrape: plain tuples, no metrics.

:meth:`~driftwire.detect.detector.Detector.condition_samples` and
:meth:`~driftwire.detect.detector.Detector.latency_samples` yield these; the metrics module
(``driftwire.ops.metrics``) turns them into gauges at scrape time. They live with the detector
so that the detector needs nothing from the metrics module.
"""

from __future__ import annotations

__all__ = ["ConditionSample", "LatencySample", "ReferenceSample"]

#: ``(labels, latest value or None, warning threshold, critical threshold, firing severity or
#: None)`` of one condition (a feature's drift, a quality check, ...).
ConditionSample = tuple[dict[str, str], float | None, float, float, str | None]

#: ``(labels, {"p99": milliseconds, ...})``: the latest window's latency percentiles of one
#: (model, version, segment).
LatencySample = tuple[dict[str, str], dict[str, float]]

#: ``(labels {model, model_version, segment}, reference events, below min_reference_count)``
ReferenceSample = tuple[dict[str, str], int, bool]
