"""Drift gauges stay within their caps, and a slow scrape does not stall the event loop."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from driftwire.detect.samples import ConditionSample
from driftwire.ops.health import HealthServer, Readiness
from driftwire.ops.metrics import DriftScoreCollector, Metrics


def conditions(versions: int, per_version: int, firing_every: int) -> list[ConditionSample]:
    out: list[ConditionSample] = []
    for v in range(versions):
        for i in range(per_version):
            labels = {
                "kind": "data_drift",
                "model": "churn",
                "model_version": str(v),
                "segment": "all",
                "feature": f"f{i}",
                "statistic": "psi",
            }
            firing = "warning" if i % firing_every == 0 else None
            out.append((labels, i / per_version, 0.1, 0.25, firing))
    return out


def series(registry: CollectorRegistry, name: str) -> list[dict[str, str]]:
    return [s.labels for m in registry.collect() for s in m.samples if s.name == name]


def test_drift_gauges_keep_to_the_per_version_and_total_caps() -> None:
    samples = conditions(versions=3, per_version=50, firing_every=10)
    registry = CollectorRegistry()
    collector = DriftScoreCollector(lambda: samples, max_per_version=10, max_total=25)
    registry.register(collector)
    scores = series(registry, "driftwire_drift_score")
    assert len(scores) == 25
    assert len(series(registry, "driftwire_drift_threshold")) == 50
    assert registry.get_sample_value("driftwire_drift_conditions_omitted") == 150 - 25
    # the firing conditions (5 per version) are kept first, then the highest values
    kept = {(s["model_version"], s["feature"]) for s in scores}
    assert {(str(v), f"f{i}") for v in range(3) for i in range(0, 50, 10)} <= kept
    assert ("0", "f49") in kept and ("0", "f1") not in kept
    # every firing condition is still counted in the alerts gauge
    firing = {"kind": "data_drift", "severity": "warning"}
    assert registry.get_sample_value("driftwire_alerts_firing", firing) == 15


def test_without_caps_reached_nothing_is_omitted() -> None:
    samples = conditions(versions=2, per_version=5, firing_every=2)
    registry = CollectorRegistry()
    registry.register(DriftScoreCollector(lambda: samples))
    assert len(series(registry, "driftwire_drift_score")) == 10
    assert registry.get_sample_value("driftwire_drift_conditions_omitted") == 0


class SlowCollector:
    """A collector that takes ``seconds`` to collect, like a page of a million series."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def collect(self) -> Iterator[Metric]:
        time.sleep(self.seconds)
        yield GaugeMetricFamily("slow_gauge", "slow", value=1.0)


def test_a_slow_scrape_does_not_stall_the_event_loop() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    registry.register(SlowCollector(0.5))
    snapshots: list[float] = []
    metrics.before_scrape.append(lambda: snapshots.append(time.monotonic()))

    async def scenario() -> tuple[float, bytes]:
        server = HealthServer(registry, Readiness(), before_scrape=metrics.before_scrape)
        await server.start("127.0.0.1", 0)
        try:
            url = f"http://127.0.0.1:{server.port}/metrics"
            scrape = asyncio.create_task(asyncio.to_thread(_get, url))
            worst = 0.0
            last = time.monotonic()
            while not scrape.done():  # a stage's loop: ticks every 10 ms
                await asyncio.sleep(0.01)
                now = time.monotonic()
                worst = max(worst, now - last)
                last = now
            return worst, await scrape
        finally:
            await server.stop()

    worst, body = asyncio.run(scenario())
    assert b"slow_gauge 1.0" in body and len(snapshots) == 1
    assert worst < 0.2, f"the loop stood still for {worst:.3f} s during a 0.5 s scrape"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


def test_the_model_label_cap_lets_todays_models_push_out_junk_seen_long_ago() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_models=2)
    for name in ("junk1", "junk2"):
        metrics.events_late.labels(model=metrics.model_label(name, now=0)).inc()
    flood = metrics.model_label("junk3", now=1)  # within the keep time: folded
    today = metrics.model_label("churn", now=3_600)
    metrics.events_late.labels(model=today).inc(5)
    assert (flood, today) == ("__other__", "churn")
    models = {s["model"] for s in series(registry, "driftwire_events_late_total")}
    assert models == {"junk2", "churn"}
    assert registry.get_sample_value("driftwire_events_late_total", {"model": "churn"}) == 5
