"""The ground-truth stage against the real broker: predictions and labels from the producer
library in, exact join accounting, a performance alert on concept drift, a rebuild on restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from kafkautil import create_topics, read_all
from prometheus_client import CollectorRegistry
from spawn import free_port

from driftwire.detect.reference import Reference
from driftwire.ops.config import Settings
from driftwire.ops.truth_metrics import TruthMetrics
from driftwire.producer import InferenceLogger
from driftwire.stages.truth import TruthStage, read_sent_alerts

SECOND = 1_000
RATE = 100  # predictions per second of event time
SECONDS = 60
DRIFT_FROM = 30  # seconds: from here a third of the outcomes flip


Record = tuple[int, int, dict[str, object]]


def stream(
    seconds: int = SECONDS,
    drift_until: int | None = None,
    *,
    slow_flips: bool = False,
    ago_s: int = 3_600,
) -> tuple[list[Record], int]:
    """Predictions and their labels (80%, 1-3 s later) in event-time order, and the event
    time the drift starts at (it lasts to ``drift_until`` seconds, else to the end). With
    ``slow_flips`` the label of a flipped outcome comes 8-12 s later. The stream starts
    ``ago_s`` seconds ago."""
    rng = np.random.default_rng(5)
    base = int(time.time() * 1000) - ago_s * SECOND
    records: list[Record] = []
    for k in range(RATE * seconds):
        t = base + k * SECOND // RATE
        score = float(rng.random())
        actual = bool(rng.random() < score)
        drifted = RATE * DRIFT_FROM <= k < RATE * (drift_until or seconds)
        delay = (SECOND, 3 * SECOND)
        if drifted and rng.random() < 1 / 3:
            actual = not actual
            delay = (8 * SECOND, 12 * SECOND) if slow_flips else delay
        records.append((t, 2 * k, {"event_id": f"e{k}", "t": t, "score": score}))
        if rng.random() < 0.8:
            observed = t + int(rng.integers(*delay))
            label = {"event_id": f"e{k}", "actual": actual, "t": observed, "t0": t}
            records.append((observed, 2 * k + 1, label))
    records.sort(key=lambda r: (r[0], r[1]))
    return records, base + DRIFT_FROM * SECOND


def send(bootstrap: str, events: str, labels: str, records: list[Record]) -> tuple[int, int]:
    """Through the producer library; returns (predictions, labels) sent."""
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
    return sent[0], sent[1]


def publish(bootstrap: str, events: str, labels: str) -> tuple[int, int, int]:
    """The whole stream; returns (predictions, labels) sent and the drift's start."""
    records, drift_ms = stream()
    return (*send(bootstrap, events, labels, records), drift_ms)


def settings_for(bootstrap: str, events: str, labels: str, alerts: str, group: str) -> Settings:
    return Settings.model_validate(settings_doc(bootstrap, events, labels, alerts, group))


def settings_doc(
    bootstrap: str, events: str, labels: str, alerts: str, group: str
) -> dict[str, object]:
    return {
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
    # the rebuild judges the same windows and emits their transitions again; the alerts topic
    # holds them already, so none is sent twice
    assert (again.alerts_sent, len(replayed)) == (0, len(emitted))
    assert again.alerts_withheld > 0


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
    # the realized side is exported per judgement age: here the first (4 s after the window)
    judged = {**series, "age": "4s"}
    error = registry.get_sample_value("driftwire_performance_estimate_error", judged)
    assert error is not None and 0.05 < error < 0.35


@pytest.mark.kafka
@pytest.mark.timeout(120)
def test_a_window_judged_again_fires_what_its_slow_labels_reveal(
    kafka_bootstrap: str, topic_name: str
) -> None:
    """From 30 s to 40 s a third of the outcomes flip, and their labels come 8-12 s after their
    predictions, published only after the stage has judged those windows 4 s after their end
    (they looked as good as the reference then). Judged again 20 s after their end, with those
    labels in, the windows fire; the age's gauges hold the value on every label joined."""
    events, labels, alerts = (f"{topic_name}-{x}" for x in ("events", "labels", "alerts"))
    asyncio.run(create_topics(kafka_bootstrap, [events, labels], partitions=2))
    asyncio.run(create_topics(kafka_bootstrap, [alerts, f"{labels}.dlq"]))
    records, drift_ms = stream(drift_until=40, slow_flips=True, ago_s=200)
    split = drift_ms + 20 * SECOND  # 50 s into the stream
    slow = [r for r in records if "actual" in r[2] and r[0] - r[2]["t0"] >= 8 * SECOND]
    first = [r for r in records if r[0] < split and r not in slow]
    rest = [r for r in records if r[0] >= split and r not in slow]
    doc = settings_doc(kafka_bootstrap, events, labels, alerts, f"{topic_name}-truth")
    truth = doc["truth"]
    assert isinstance(truth, dict)
    truth |= {"horizon_seconds": 300, "rejudge_after_seconds": [20]}
    registry = CollectorRegistry()
    stage = TruthStage(Settings.model_validate(doc), TruthMetrics(registry))

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(stage.run(stop))
        target = 0
        try:
            for part in (first, sorted(slow + rest, key=lambda r: (r[0], r[1]))):
                sent = await asyncio.to_thread(send, kafka_bootstrap, events, labels, part)
                target += sum(sent)
                counts = stage.tracker.join.counts
                deadline = time.monotonic() + 60
                while counts.predictions + counts.labels < target:
                    assert time.monotonic() < deadline and not task.done(), (counts, sent, target)
                    await asyncio.sleep(0.2)
                    counts = stage.tracker.join.counts
        finally:
            stop.set()
            await task

    asyncio.run(run())
    emitted = [
        orjson.loads(r.value)["data"] for r in asyncio.run(read_all(kafka_bootstrap, alerts))
    ]
    accuracy = [
        e
        for e in emitted
        if e["labels"]["statistic"] == "accuracy"
        and e["labels"]["kind"] == "performance_degradation"
    ]
    assert accuracy and accuracy[0]["status"] == "firing", emitted
    # fired by the judgement 20 s after the window, never by the first (4 s)
    assert {e["evidence"]["judged_after_seconds"] for e in accuracy} == {20}
    assert drift_ms < parse_ms(accuracy[0]["window"]["end"]) <= drift_ms + 5 * SECOND
    assert "judged 20s after it closed" in accuracy[0]["annotations"]["summary"]
    series = {"model": "churn", "model_version": "1", "segment": "all"}
    judged = stage.tracker.judged[("churn", "1", "all")]
    assert judged.keys() == {4 * SECOND, 20 * SECOND}
    for age, j in judged.items():
        at_age = {**series, "age": f"{age // SECOND}s"}
        value = registry.get_sample_value("driftwire_performance", {**at_age, "metric": "accuracy"})
        assert value == j.metrics["accuracy"][0]
        completeness = registry.get_sample_value("driftwire_label_completeness_ratio", at_age)
        assert completeness == j.completeness


@pytest.mark.kafka
@pytest.mark.timeout(60)
def test_the_alerts_read_back_reads_only_the_rebuild_span(
    kafka_bootstrap: str, topic_name: str
) -> None:
    """A restart reads back the alerts topic's records from the rebuild's start on, not the
    topic's whole retention: a transition sent before it is not held, one after it is."""
    alerts = f"{topic_name}-alerts"
    asyncio.run(create_topics(kafka_bootstrap, [alerts], partitions=2))
    settings = settings_for(kafka_bootstrap, "e", "l", alerts, f"{topic_name}-truth")
    span = TruthStage.rebuild_span_ms(settings.truth.tracker_settings())
    # horizon 2 h, 5 s windows, judged again 1 h after they end and at the horizon (2 h)
    assert span == (7_200 + 5 + 7_200) * SECOND
    now = int(time.time() * 1000)
    since = now - span

    def record(fingerprint: str, kind: str, at_ms: int) -> bytes:
        data = {"status": "firing", "fingerprint": fingerprint, "labels": {"kind": kind}}
        stamp = datetime.fromtimestamp(at_ms / 1000).astimezone().isoformat()
        return orjson.dumps({"time": stamp, "data": data})

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for fingerprint, kind, at, partition in (
                ("old", "performance_degradation", since - 60 * SECOND, 0),
                ("old-too", "label_drift", since - 1, 1),
                ("recent", "performance_degradation", since + 60 * SECOND, 0),
                ("recent-too", "estimated_performance", now, 1),
                ("drift", "data_drift", now, 1),  # not the truth stage's kind
            ):
                await producer.send_and_wait(
                    alerts, record(fingerprint, kind, at), partition=partition, timestamp_ms=at
                )
        finally:
            await producer.stop()

    asyncio.run(produce())
    sent = asyncio.run(read_sent_alerts(settings, since))
    assert sent.held == 2
    assert not sent.admit("recent", "firing", now)  # held: not sent twice
    assert not sent.admit("recent-too", "firing", now + 1)
    assert sent.admit("old", "firing", now)  # before the span: not read back
    assert sent.admit("old-too", "firing", now)


class TruthWorker:
    """``driftwire worker --stage truth`` as a subprocess, with its metrics port."""

    def __init__(self, tmp: Path, doc: dict[str, object]) -> None:
        self.port = free_port()
        doc["http"] = {"host": "127.0.0.1", "port": self.port}
        self.config = tmp / "truth.yaml"
        self.config.write_text(yaml.safe_dump(doc))
        self.log = tmp / "truth.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> TruthWorker:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "driftwire.cli.command", "worker", "--stage", "truth",
                 "--config", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def records(self) -> dict[str, float]:
        """``driftwire_truth_records_total`` by outcome ({} while the port does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
                body = r.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in body.splitlines():
            if line.startswith('driftwire_truth_records_total{outcome="'):
                outcome = line.split('"', 2)[1]
                out[outcome] = float(line.rsplit(" ", 1)[1])
        return out

    def wait_read(self, expected: int, limit_s: float = 120) -> dict[str, float]:
        assert self.proc is not None
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-5000:]
            counts = self.records()
            if counts.get("predictions", 0) + counts.get("labels", 0) >= expected:
                return counts
            time.sleep(0.2)
        raise AssertionError(f"not read in {limit_s} s: {self.records()}")


def transitions(bootstrap: str, topic: str) -> list[tuple[str, str]]:
    """(fingerprint, status) of every record of the alerts topic, in its order."""
    return [
        (e["data"]["fingerprint"], e["data"]["status"])
        for e in (orjson.loads(r.value) for r in asyncio.run(read_all(bootstrap, topic)))
    ]


@pytest.mark.kafka
@pytest.mark.timeout(400)
def test_a_worker_killed_mid_stream_neither_resends_nor_loses_an_alert(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    """SIGKILL once the first alerts are out and part of the stream is still to come; the
    restarted worker rebuilds from the topics. Its join accounting is that of one
    uninterrupted run, and the alerts topic holds every transition of that run, with no
    fingerprint at the same status twice in a row."""
    events, labels, alerts, alone = (
        f"{topic_name}-{x}" for x in ("events", "labels", "alerts", "alerts-uninterrupted")
    )
    asyncio.run(create_topics(kafka_bootstrap, [events, labels], partitions=2))
    asyncio.run(create_topics(kafka_bootstrap, [alerts, alone, f"{labels}.dlq"]))
    # the drift fires before the kill and ends after it: the restarted worker must send the
    # resolutions, and not the firings again
    records, drift_ms = stream(seconds=100, drift_until=60)
    cut = drift_ms + 25 * SECOND
    first = [r for r in records if r[0] < cut]
    rest = [r for r in records if r[0] >= cut]
    doc = settings_doc(kafka_bootstrap, events, labels, alerts, f"{topic_name}-truth")

    n_first = sum(send(kafka_bootstrap, events, labels, first))
    with TruthWorker(tmp_path, doc) as worker:
        deadline = time.monotonic() + 120
        while not transitions(kafka_bootstrap, alerts):
            assert time.monotonic() < deadline, worker.log.read_text()[-5000:]
            assert worker.proc is not None and worker.proc.poll() is None
            time.sleep(0.2)
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGKILL)
        assert worker.proc.wait(30) == -signal.SIGKILL
    before_kill = transitions(kafka_bootstrap, alerts)
    n_rest = sum(send(kafka_bootstrap, events, labels, rest))

    uninterrupted_settings = settings_for(
        kafka_bootstrap, events, labels, alone, f"{topic_name}-truth-uninterrupted"
    )
    with TruthWorker(tmp_path, doc) as worker:
        # the uninterrupted run meanwhile: the restarted worker waits for the killed member's
        # session to end before the group assigns it anything
        stage = TruthStage(uninterrupted_settings, TruthMetrics(CollectorRegistry()))
        asyncio.run(run_until_read(stage, n_first + n_rest))
        counts = stage.tracker.join.counts.as_dict()
        reference = transitions(kafka_bootstrap, alone)
        assert reference and len(reference) == stage.alerts_sent

        restarted = worker.wait_read(n_first + n_rest)
        # the judging of the last windows follows the last records read: until the topic
        # holds the uninterrupted run's transitions (or a minute), then a while for repeats
        deadline = time.monotonic() + 60
        while not set(reference) <= set(transitions(kafka_bootstrap, alerts)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        time.sleep(3)
        assert worker.records() == restarted
    interrupted = transitions(kafka_bootstrap, alerts)

    for outcome in ("predictions", "labels", "joined", "orphan_labels", "late_labels",
                    "expired", "duplicate_predictions", "duplicate_labels"):  # fmt: skip
        assert restarted[outcome] == counts[outcome], (outcome, restarted, counts)
    assert counts["joined"] == counts["labels"] > 0

    # what the killed worker sent is the beginning of the topic, and nothing of it repeats
    assert interrupted[: len(before_kill)] == before_kill
    after_kill = interrupted[len(before_kill) :]
    assert ("resolved" in {s for _, s in after_kill}) and "resolved" not in {
        s for _, s in before_kill
    }, (before_kill, after_kill)
    last: dict[str, str] = {}
    for fp, status in interrupted:
        assert last.get(fp) != status, (fp, status, interrupted)
        last[fp] = status
    assert set(reference) <= set(interrupted), (reference, interrupted)
