"""A cardinality cap that is hit is counted every time and logged once (then every 10 minutes)."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from driftwire.ops.logs import LogLimiter
from driftwire.ops.metrics import Metrics
from driftwire.profiling.partitions import Emission
from driftwire.stages.profile_core import count_emitted


def test_a_cap_that_is_hit_is_counted_each_time_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    limiter = LogLimiter(600.0)
    with caplog.at_level(logging.WARNING, logger="driftwire.stages.profile_core"):
        for _ in range(3):
            emission = Emission([], {"segments": 4}, {"segments": 1})
            count_emitted(metrics, emission, limiter=limiter)
    overflow = {"what": "segments"}
    assert registry.get_sample_value("driftwire_cardinality_overflow_total", overflow) == 12
    assert registry.get_sample_value("driftwire_cardinality_evictions_total", overflow) == 3
    [record] = caplog.records
    assert "profile.max_segments" in record.getMessage()
