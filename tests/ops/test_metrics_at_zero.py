"""Counters whose label values are known in advance exist at 0 from the start, so that
``rate()`` / ``increase()`` and alerting rules see the first increment and dashboards show 0
rather than "no data"."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from driftwire.alerts.alert import ALERT_NAMES
from driftwire.decode.decoder import REASONS
from driftwire.ops.config import Settings
from driftwire.ops.health import Readiness
from driftwire.ops.metrics import DetectMetrics, Metrics
from driftwire.stages.profile import ProfileStage
from driftwire.stages.profile_core import profile_core


def test_a_fresh_worker_exports_every_known_series_at_zero() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    DetectMetrics(registry)
    settings = Settings()
    ProfileStage(settings, profile_core(settings), metrics, Readiness())  # nothing started
    value = registry.get_sample_value
    for reason in REASONS:
        assert value("driftwire_events_invalid_total", {"reason": reason}) == 0.0, reason
    for kind in ALERT_NAMES:
        for status in ("firing", "resolved"):
            assert value("driftwire_alerts_produced_total", {"kind": kind, "status": status}) == 0
    assert value("driftwire_dead_letters_produced_total") == 0
    for result in ("ok", "failed"):
        assert value("driftwire_offset_commits_total", {"result": result}) == 0
    for result in ("loaded", "removed", "invalid"):
        assert value("driftwire_baselines_total", {"result": result}) == 0
    for kind in ("partial", "watermark", "malformed", "failed"):
        assert value("driftwire_detect_records_total", {"type": kind}) == 0
