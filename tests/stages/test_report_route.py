"""``GET /report`` on the worker's HTTP server, opened from an alert's generatorURL in a real
browser (Debian's ``chromium`` through Playwright, as ``tests/offline/test_report.py``), and the
detector's notices about baselines that match no model."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from browserutil import CURRENT_RGB, REFERENCE_RGB, browse, ink
from prometheus_client import CollectorRegistry

from driftwire.alerts.alert import iso, report_url
from driftwire.detect.reference import ReferenceStore
from driftwire.offline.event_baseline import build_event_baseline
from driftwire.offline.generator import Change, StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.ops.health import HealthServer, Readiness
from driftwire.ops.metrics import Metrics
from driftwire.stages.detect._slots import _Slot
from driftwire.stages.detect.stage import DetectStage
from driftwire.stages.detect.status_api import StatusApi
from driftwire.stages.inmemory import InMemoryPipeline

MINUTE = 60_000
BASE = "http://driftwire.example:8080"


def _store(model: str = "churn") -> ReferenceStore:
    logged = list(generate(StreamSpec(events=20_000, seed=3)))
    if model != "churn":
        logged = [v.replace(b'"churn"', f'"{model}"'.encode()) for v in logged]
    store = ReferenceStore()
    store.put(build_event_baseline(iter([logged]), created_ms=0, source="logged").reference)
    return store


def _drifted_stage(settings: Settings) -> tuple[DetectStage, InMemoryPipeline]:
    """A detect stage whose one partition's detector has seen 30 minutes of ``churn`` 1.4.2
    with ``age`` shifted 3 sd from minute 10, against a baseline from logged events."""
    start = StreamSpec(events=1).start_ms
    today = StreamSpec(
        events=24_000,
        seed=9,
        events_per_second=24_000 / 1800,
        changes=(Change("age", start + 10 * MINUTE, 3.0),),
    )
    pipeline = InMemoryPipeline(settings, _store())
    list(pipeline.run(generate(today)))
    stage = DetectStage.from_settings(settings, Metrics(CollectorRegistry()), Readiness())
    stage._slots[0] = _Slot(pipeline.detector)  # noqa: SLF001  (the partition it owns)
    return stage, pipeline


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def _serve(stage: DetectStage | None, use: Any) -> Any:
    api = StatusApi(lambda: stage, worker=lambda: {"stage": "all"}, clock=lambda: 1.8e9)
    server = HealthServer(CollectorRegistry(), Readiness(), api.routes())
    await server.start("127.0.0.1", 0)
    try:
        assert server.port is not None
        return await asyncio.to_thread(use, server.port)
    finally:
        await server.stop()


def test_an_alerts_generator_url_opens_the_workers_report_in_a_browser() -> None:
    settings = Settings.model_validate({"alerts": {"generator_url_base": BASE + "/"}})
    stage, pipeline = _drifted_stage(settings)
    _, conditions = stage.status_records()
    firing = [c.alert for c in conditions if c.alert is not None]
    assert firing and {a.labels["feature"] for a in firing} == {"age"}
    last = pipeline.detector.last_evaluation("churn", "1.4.2")
    assert last is not None
    for alert in firing:  # every alert links to its model version's window
        assert alert.generator_url == report_url(BASE, "churn", "1.4.2", last.bucket_end_ms)
    link = urlsplit(firing[0].generator_url)
    assert (link.scheme, link.netloc, link.path) == ("http", "driftwire.example:8080", "/report")
    assert parse_qs(link.query) == {
        "model": ["churn"], "version": ["1.4.2"], "window_end": [iso(last.bucket_end_ms)],
    }  # fmt: skip

    def use(port: int) -> dict[str, Any]:
        seen = browse(f"http://127.0.0.1:{port}{link.path}?{link.query}")
        seen["no_version"] = _get(port, "/report?model=churn")
        seen["passed"] = _get(port, "/report?model=churn&version=1.4.2&window_end=2020-01-01")
        seen["unknown"] = _get(port, "/report?model=chrun&version=1.4.2")
        seen["no_model"] = _get(port, "/report")
        return seen

    seen = asyncio.run(_serve(stage, use))
    assert seen["status"] == 200 and seen["errors"] == []
    assert "churn 1.4.2" in seen["text"]
    assert "the worker's live state" in seen["text"]
    assert all(a.summary in seen["text"] for a in firing)  # the alerts firing now
    assert len(seen["boxes"]) == 126  # 14 inputs x (8 segments + all), as driftwire report
    shot = seen["shot"]
    scale = shot.width / 1400
    for x, y, w, h in seen["boxes"]:
        plot = shot.crop(
            (round(x * scale), round(y * scale), round((x + w) * scale), round((y + h) * scale))
        )
        area = plot.width * plot.height
        assert ink(plot, REFERENCE_RGB) > 0.01 * area
        assert ink(plot, CURRENT_RGB) > 0.01 * area
    code, page = seen["no_version"]  # the version evaluated most recently
    assert code == 200 and "churn 1.4.2" in page
    code, page = seen["passed"]
    assert code == 200 and "the window ending 2020-01-01 has passed" in page
    assert seen["unknown"] == (
        404,
        "no window of chrun 1.4.2 was evaluated against a reference by this worker yet (it "
        "owns partials partitions [0]; a model lives on one worker, GET /api/v1/status on "
        "each lists its models)\n",
    )
    assert seen["no_model"] == (
        400,
        "add ?model=NAME (and &version=VERSION): GET /api/v1/status lists the models\n",
    )


def test_without_a_base_the_generator_url_is_the_template() -> None:
    settings = Settings()
    pipeline = InMemoryPipeline(settings, _store())
    start = StreamSpec(events=1).start_ms
    spec = StreamSpec(
        events=12_000,
        seed=9,
        events_per_second=12_000 / 1200,
        changes=(Change("age", start + 5 * MINUTE, 3.0),),
    )
    alerts = list(pipeline.run(generate(spec)))
    assert alerts
    assert {a.generator_url for a in alerts} == {
        "http://localhost:3000/d/driftwire-model?var-model=churn&var-version=1.4.2"
    }


def test_a_profile_only_worker_serves_no_report() -> None:
    code, body = asyncio.run(_serve(None, lambda port: _get(port, "/report?model=churn")))
    assert code == 404 and "runs no detect stage" in body


def _typo_pipeline(settings: Settings) -> InMemoryPipeline:
    return InMemoryPipeline(settings, _store("chrun"), batch_size=200)


def test_a_baseline_for_a_model_without_events_is_reported_after_n_buckets() -> None:
    settings = Settings.model_validate({"detect": {"unmatched_baseline_buckets": 4}})
    pipeline = _typo_pipeline(settings)
    spec = StreamSpec(events=6_000, seed=5, events_per_second=200 / 60)  # 200 per bucket
    notices: list[tuple[int, Any]] = []
    values = list(generate(spec))
    for i in range(0, len(values), 200):
        pipeline.feed(values[i : i + 200])
        notices += [(i // 200, n) for n in pipeline.stats.baseline_notices]
        pipeline.stats.baseline_notices.clear()
        if not notices:
            assert pipeline.detector.unmatched_baselines() == []
    pipeline.finish()
    assert pipeline.stats.baseline_notices == []  # each reported once
    (frozen_at, frozen), (unmatched_at, unmatched) = notices
    assert (frozen.kind, frozen.model, frozen.similar) == ("similar", "churn", ("chrun 1.4.2",))
    assert (unmatched.kind, unmatched.model, unmatched.similar) == (
        "unmatched",
        "chrun",
        ("churn",),
    )
    assert unmatched.buckets == 4  # one bucket per batch: reported at the 4th, not before
    assert "while 4 buckets were evaluated since it was loaded" in unmatched.message
    assert pipeline.detector.unmatched_baselines() == [("chrun", "1.4.2")]
    assert frozen_at <= unmatched_at


def test_a_matched_baseline_gives_no_notice() -> None:
    settings = Settings.model_validate({"detect": {"unmatched_baseline_buckets": 2}})
    pipeline = InMemoryPipeline(settings, _store(), batch_size=200)
    list(pipeline.run(generate(StreamSpec(events=6_000, seed=5, events_per_second=200 / 60))))
    assert pipeline.stats.baseline_notices == []
    assert pipeline.detector.unmatched_baselines() == []


def test_notices_are_plain_json_fields() -> None:
    pipeline = _typo_pipeline(Settings())
    list(pipeline.run(generate(StreamSpec(events=2_000, seed=5, events_per_second=200 / 60))))
    fields = [n.fields() for n in pipeline.stats.baseline_notices]
    assert orjson.loads(orjson.dumps(fields)) == [
        {"model": "churn", "model_version": "1.4.2", "similar": ["chrun 1.4.2"]},
        {"model": "chrun", "model_version": "1.4.2", "similar": ["churn"]},
    ]
