"""Stage 1's pure core as both shells build it, and the metrics its counts go to.

The Kafka stage (:mod:`driftwire.stages.profile`) and the in-memory transport
(:mod:`driftwire.stages.inmemory`) wrap the same
:class:`~driftwire.profiling.partitions.ProfileCore`: :func:`profile_core` builds it from the
``profile`` settings, :func:`count_folded` and :func:`count_emitted` export what it counted
(late, future and cardinality-overflow events).
This module imports no Kafka client, so the in-memory transport does not load one.

>>> from prometheus_client import CollectorRegistry
>>> from driftwire.ops.config import Settings
>>> core = profile_core(Settings(), topic="events")
>>> core.topic, core.partitions
('events', 1)
>>> registry = CollectorRegistry()
>>> metrics = Metrics(registry)
>>> count_folded(metrics, FoldCounts(late={"churn": 3}, future={}))
>>> registry.get_sample_value("driftwire_events_late_total", {"model": "churn"})
3.0
"""

from __future__ import annotations

import logging
import time

from driftwire.ops.config import Settings
from driftwire.ops.logs import LogLimiter
from driftwire.ops.metrics import Metrics
from driftwire.profiling.catalog import ProfilerLimits
from driftwire.profiling.partitions import Emission, FoldCounts, OutRecord, ProfileCore

__all__ = ["count_emitted", "count_folded", "profile_core"]

log = logging.getLogger(__name__)

#: the config key of each cap, named in the log line when it is hit
CAP_KEYS = {
    "models": "profile.max_models",
    "versions": "profile.max_versions",
    "segments": "profile.max_segments",
    "features": "profile.max_features",
}
#: a cap that is hit is logged once, then at most every 10 minutes
OVERFLOW_LOG = LogLimiter(600.0)


def profile_core(
    settings: Settings,
    *,
    topic: str | None = None,
    partitions: int = 1,
    kind: type[ProfileCore] = ProfileCore,
) -> ProfileCore:
    """The core for ``topic`` (default: ``topics.events``) with ``partitions`` input partitions.

    ``kind`` may be a subclass of :class:`ProfileCore` (a benchmark's counting core).
    """
    p = settings.profile
    return kind(
        topic=topic or settings.topics.events,
        partitions=partitions,
        bucket_ms=int(p.bucket_seconds * 1000),
        allowed_lateness_ms=int(p.allowed_lateness_seconds * 1000),
        max_future_ms=int(p.max_future_seconds * 1000),
        idle_ms=int(p.idle_partition_seconds * 1000),
        limits=ProfilerLimits(
            max_segments=p.max_segments,
            max_features=p.max_features,
            max_versions=p.max_versions,
            max_models=p.max_models,
        ),
    )


def count_folded(metrics: Metrics, counts: FoldCounts) -> None:
    """Late and future events of one batch, per model (capped as a label)."""
    for model, n in counts.late.items():
        metrics.events_late.labels(model=metrics.model_label(model)).inc(n)
    for model, n in counts.future.items():
        metrics.events_future.labels(model=metrics.model_label(model)).inc(n)


def count_emitted(
    metrics: Metrics, emission: Emission, *, limiter: LogLimiter = OVERFLOW_LOG
) -> list[OutRecord]:
    """Cardinality overflow since the last emission; returns the records to send.

    Each cap that was hit is logged once, then at most every 10 minutes.
    """
    for what, n in emission.overflow.items():
        metrics.overflow.labels(what=what).inc(n)
        if limiter(what, now_s=time.monotonic()):
            key = CAP_KEYS.get(what, what)
            log.warning(
                f"cardinality cap {key} reached: {n} {what} values folded or dropped (see "
                f"driftwire_cardinality_overflow_total); raise {key} if this traffic is real",
                extra={"fields": {"cap": key, "folded": n}},
            )
    for what, n in emission.evictions.items():
        metrics.evictions.labels(what=what).inc(n)
    return emission.records
