"""The ground-truth stage against the real broker: predictions and labels from the producer
library in, exact join accounting, a performance alert on concept drift, a rebuild on restart."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import yaml
from kafkautil import create_topics, read_all
from prometheus_client import CollectorRegistry

from driftwire.detect.reference import Reference
from driftwire.ops.config import Settings
from driftwire.ops.truth_metrics import TruthMetrics
from driftwire.producer import InferenceLogger
from driftwire.stages.truth import TruthStage

SECOND = 1_000
RATE = 100  # predictions per second of event time
SECONDS = 60
DRIFT_FROM = 30  # seconds: from here a third of the outcomes flip


def publish(bootstrap: str, events: str, labels: str) -> tuple[int, int, int]:
    """Predictions and their labels (80%, 1-3 s later) in event-time order; returns
    (predictions, labels) sent and the event time the drift starts at."""
    rng = np.random.default_rng(5)
    base = int(time.time() * 1000) - 3_600 * SECOND
    records: list[tuple[int, int, dict[str, object]]] = []
    for k in range(RATE * SECONDS):
        t = base + k * SECOND // RATE
        score = float(rng.random())
        actual = bool(rng.random() < score)
        if k >= RATE * DRIFT_FROM and rng.random() < 1 / 3:
            actual = not actual
        records.append((t, 2 * k, {"event_id": f"e{k}", "t": t, "score": score}))
        if rng.random() < 0.8:
            observed = t + int(rng.integers(SECOND, 3 * SECOND))
            records.append(
                (observed, 2 * k + 1, {"event_id": f"e{k}", "actual": actual, "t": observed})
            )
    records.sort(key=lambda r: (r[0], r[1]))
    logger = InferenceLogger(  # a queue for the whole stream: none of it may be shed
        bootstrap, topic=events, labels_topic=labels, linger_ms=20, max_queue_events=50_000
    )
    sent = [0, 0]
    for _, _, r in records:
        if "actual" in r:
            assert logger.log_ground_truth(
                event_id=str(r["event_id"]),
                model="churn",
                actual=bool(r["actual"]),
                observed_at=int(r["t"]),  # type: ignore[call-overload]
            )
            sent[1] += 1
        else:
            logger.log(
                model="churn",
                model_version="1",
                features={"x": 1.0},
                prediction=float(r["score"]),
                latency_ms=1.0,  # type: ignore[arg-type]
                event_id=str(r["event_id"]),
                timestamp=int(r["t"]),  # type: ignore[call-overload]
            )
            sent[0] += 1
    stats = logger.close(60)
    assert (stats.sent, stats.failed, stats.dropped) == (sum(sent), 0, 0)
    return sent[0], sent[1], base + DRIFT_FROM * SECOND


def settings_for(bootstrap: str, events: str, labels: str, alerts: str, group: str) -> Settings:
    return Settings.model_validate(
        {
            "kafka": {"bootstrap_servers": bootstrap},
            "topics": {"events": events, "labels": labels, "alerts": alerts},
            "consumer": {"fetch_timeout_ms": 200, "session_timeout_ms": 6_000},
            "truth": {
                "enabled": True,
                "group_id": group,
                "bucket_seconds": 1,
                "window_seconds": 5,
                "horizon_seconds": 7_200,
                "evaluation_delay_seconds": 4,
                "reference_count": 1_500,
            },
        }
    )


def parse_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


async def run_until_read(stage: TruthStage, expected: int, limit_s: float = 90) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(stage.run(stop))
    deadline = time.monotonic() + limit_s
    counts = stage.tracker.join.counts
    while time.monotonic() < deadline and not task.done():
        counts = stage.tracker.join.counts
        if counts.predictions + counts.labels >= expected:
            break
        await asyncio.sleep(0.2)
    stop.set()
    await task
    assert counts.predictions + counts.labels == expected, counts


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_labels_join_their_predictions_and_concept_drift_alerts(
    kafka_bootstrap: str, topic_name: str
) -> None:
    events, labels, alerts = (f"{topic_name}-{x}" for x in ("events", "labels", "alerts"))
    asyncio.run(create_topics(kafka_bootstrap, [events, labels], partitions=2))
    asyncio.run(create_topics(kafka_bootstrap, [alerts, f"{labels}.dlq"]))
    n_predictions, n_labels, drift_ms = publish(kafka_bootstrap, events, labels)
    settings = settings_for(kafka_bootstrap, events, labels, alerts, f"{topic_name}-truth")

    registry = CollectorRegistry()
    stage = TruthStage(settings, TruthMetrics(registry))
    asyncio.run(run_until_read(stage, n_predictions + n_labels))
    counts = stage.tracker.join.counts
    # every label arrived 1-3 s after its prediction, inside the horizon: all join
    assert (counts.predictions, counts.labels, counts.joined) == (n_predictions, n_labels, n_labels)
    assert counts.late_labels == counts.orphan_labels == counts.duplicate_labels == 0
    assert (
        registry.get_sample_value("driftwire_truth_records_total", {"outcome": "joined"})
        == n_labels
    )

    emitted = [orjson.loads(r.value) for r in asyncio.run(read_all(kafka_bootstrap, alerts))]
    assert len(emitted) == stage.alerts_sent
    accuracy = [e for e in emitted if e["data"]["labels"]["statistic"] == "accuracy"]
    tr = stage.tracker
    assert accuracy and accuracy[0]["data"]["status"] == "firing", (
        stage.alerts_sent,
        len(tr.references),
        tr.clock_ms,
        drift_ms,
        tr.latest,
    )
    assert accuracy[0]["data"]["labels"]["kind"] == "performance_degradation"
    # nothing fires on the stationary first half: every alert's window holds drifted
    # predictions, and the first accuracy alert comes within three windows of the drift (it
    # needs two breaching windows in a row)
    ends = [parse_ms(e["data"]["window"]["end"]) for e in emitted]
    assert all(end > drift_ms for end in ends), [
        (
            e["data"]["labels"],
            e["data"]["status"],
            e["data"]["window"],
            e["data"]["value"],
            drift_ms,
        )
        for e in emitted
        if parse_ms(e["data"]["window"]["end"]) <= drift_ms
    ]
    assert parse_ms(accuracy[0]["data"]["window"]["end"]) <= drift_ms + 15 * SECOND

    # a restart rebuilds from the topics: the same records join again, exactly
    again = TruthStage(settings, TruthMetrics(CollectorRegistry()))
    asyncio.run(run_until_read(again, n_predictions + n_labels))
    assert again.tracker.join.counts == counts
    replayed = [orjson.loads(r.value) for r in asyncio.run(read_all(kafka_bootstrap, alerts))]
    t = again.tracker
    assert len(replayed) == len(emitted) + again.alerts_sent and again.alerts_sent > 0, (
        len(t.references),
        t.clock_ms,
        t.latest,
    )
    # the rebuild judges the same windows; its alerts repeat the first run's conditions (the
    # ids are equal where the two topics' records interleaved as before)
    conditions = {(e["data"]["labels"]["statistic"], e["data"]["status"]) for e in emitted}
    again_conditions = {
        (e["data"]["labels"]["statistic"], e["data"]["status"]) for e in replayed[len(emitted) :]
    }
    assert ("accuracy", "firing") in again_conditions and again_conditions <= conditions


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_a_published_baseline_with_reference_performance_is_the_reference(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    """``baseline build --target-column --publish`` puts the reference's realized performance
    on the baselines topic; the stage reads it before its first fetch, judges every window
    against it (nothing is frozen), names it in the alerts, and exports the estimate of each
    window beside the realized value."""
    events, labels, alerts, baselines = (
        f"{topic_name}-{x}" for x in ("events", "labels", "alerts", "baselines")
    )
    asyncio.run(create_topics(kafka_bootstrap, [events, labels], partitions=2))
    asyncio.run(create_topics(kafka_bootstrap, [alerts, f"{labels}.dlq"]))
    # the reference: the same calibrated model without drift, 20,000 rows with the truth
    rng = np.random.default_rng(8)
    score = rng.random(20_000)
    table = tmp_path / "validation.csv"
    pacsv.write_csv(
        pa.table({"x": rng.normal(size=score.size), "score": score,
                  "outcome": rng.random(score.size) < score}),
        table,
    )  # fmt: skip
    settings = settings_for(kafka_bootstrap, events, labels, alerts, f"{topic_name}-truth")
    settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"baselines": baselines})}
    )
    config = tmp_path / "worker.yaml"
    config.write_text(
        yaml.safe_dump(
            {"kafka": {"bootstrap_servers": kafka_bootstrap}, "topics": {"baselines": baselines}}
        )
    )
    built = subprocess.run(
        [
            sys.executable, "-m", "driftwire.cli.command", "baseline", "build", str(table),
            "--model", "churn", "--model-version", "1", "--prediction-column", "score",
            "--target-column", "outcome", "--publish", "-c", str(config),
            "-o", str(tmp_path / "b.dwb"),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    baseline_id = Reference.from_bytes((tmp_path / "b.dwb").read_bytes()).id
    n_predictions, n_labels, drift_ms = publish(kafka_bootstrap, events, labels)

    registry = CollectorRegistry()
    stage = TruthStage(settings, TruthMetrics(registry))
    asyncio.run(run_until_read(stage, n_predictions + n_labels))
    assert stage.tracker.references == {}  # nothing frozen: the baseline is the reference
    assert registry.get_sample_value("driftwire_truth_baselines_with_performance") == 1
    emitted = [orjson.loads(r.value) for r in asyncio.run(read_all(kafka_bootstrap, alerts))]
    accuracy = [
        e["data"]
        for e in emitted
        if e["data"]["labels"]["statistic"] == "accuracy"
        and e["data"]["labels"]["kind"] == "performance_degradation"
    ]
    assert accuracy and accuracy[0]["status"] == "firing"
    assert accuracy[0]["reference"] == {
        "kind": "baseline", "id": baseline_id, "count": 20_000,
        "note": "the baseline's realized performance on segment all",
    }  # fmt: skip
    assert drift_ms < parse_ms(accuracy[0]["window"]["end"]) <= drift_ms + 15 * SECOND
    # concept drift: the scores do not move, so the estimate stays at the reference's 0.75
    # and does not alert; it sits above the realized accuracy (about 0.58 once drifted)
    assert not [e for e in emitted if e["data"]["labels"]["kind"] == "estimated_performance"]
    series = {"model": "churn", "model_version": "1", "segment": "all", "metric": "accuracy"}
    estimated = registry.get_sample_value("driftwire_performance_estimated", series)
    assert estimated is not None and abs(estimated - 0.75) < 0.06
    error = registry.get_sample_value("driftwire_performance_estimate_error", series)
    assert error is not None and 0.05 < error < 0.35
