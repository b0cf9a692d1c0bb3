"""Fault (a): SIGKILL of one of two workers mid-stream, against the real broker.

Invariant: every valid event is counted exactly once in the stage-2 windows (the detector's
per-bucket traffic in the model snapshots of the detect stage's changelog equals the valid events
of the input per bucket), and no alert transition is sent twice in a row.

Stage 2's grace period is set longer than a failover: with the 2 s of the other pipeline tests,
one run in about eight evaluated the first 16 buckets before the killed member's input partition
had reported at all (stage 2 stops waiting for a partition that never reported once the grace
is over) and set that partition's partials aside as late.
"""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
import pytest
import yaml
from kafka_broker import create_topic
from kafkautil import read_all
from test_pipeline_kafka import START, Worker, alerts_of, input_topic

from driftwire.decode.decoder import decode_batch
from driftwire.offline.generator import Change, StreamSpec, generate
from driftwire.partials import Partial, decode_record
from driftwire.stages.detect._table import changelog_topic

pytestmark = pytest.mark.kafka

MINUTE = 60_000
GRACE_S = 30
SEGMENT = "region=eu,tier=gold"


def _stream() -> list[bytes]:
    change = Change("income", START + 20 * MINUTE, 1.5, SEGMENT, end_ms=START + 35 * MINUTE)
    spec = StreamSpec(events=24_000, seed=5, events_per_second=24_000 / 3000, changes=(change,))
    return list(generate(spec))


def _expected_counts(values: list[bytes]) -> Counter[tuple[str, int]]:
    """Valid events per (model, bucket start): what the windows must hold."""
    batch = decode_batch(values)
    starts = (batch.timestamp_ms // MINUTE * MINUTE).tolist()
    return Counter(zip(batch.model, starts, strict=True))


def _window_counts(bootstrap: str, topic: str) -> Counter[tuple[str, int]]:
    """Events per (model, bucket start) merged by stage 2: the detector's per-bucket traffic in
    the model snapshots of its changelog (it only grows as partials merge, and is pruned once
    a bucket is old, so its largest value over the snapshots is the bucket's count)."""
    out: Counter[tuple[str, int]] = Counter()
    for record in asyncio.run(read_all(bootstrap, topic)):
        if record.value is None or b"\x00" in record.key:
            continue  # a deletion, a stored part or an outbox
        doc = orjson.loads(record.value)
        for start, n in doc["state"]["traffic"].items():
            key = (doc["model"], int(start))
            out[key] = max(out[key], int(n))
    return out


def _assigned(worker: Worker) -> set[int]:
    """The input partitions the worker's profile stage holds, by its last log line on it."""
    held: set[int] = set()
    for line in worker.log.read_text().splitlines():
        if line.startswith("{") and '"partitions assigned:' in line:
            held = set(orjson.loads(line)["partitions"])
    return held


def _has_produced(worker: Worker, bootstrap: str, n: int) -> bool:
    """The worker has produced ``n`` partials: its metrics say so, or the partials topic
    holds ``n`` of an input partition it holds (a scrape can be slow on a loaded machine)."""
    if worker.metrics().get("driftwire_partials_produced_total", 0) >= n:
        return True
    held = _assigned(worker)
    if not held:
        return False
    topic = str(worker.doc["topics"]["partials"])  # type: ignore[index]
    records = asyncio.run(read_all(bootstrap, topic))
    partials = [decode_record(r.value) for r in records if r.value is not None]
    return sum(isinstance(p, Partial) and p.partition in held for p in partials) >= n


def _diagnosis(one: Worker, two: Worker) -> str:
    """What worker one was doing: its /metrics answer, its threads' stacks (SIGUSR1) and
    both workers' logs."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{one.port}/metrics", timeout=10) as r:
            page = r.read().decode()
            answer = "\n".join(x for x in page.splitlines() if x.startswith("driftwire_"))
    except OSError as exc:
        answer = f"no answer: {exc!r}"
    if one.proc is not None and one.proc.poll() is None:
        one.proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
    return (
        f"worker one /metrics: {answer[-3000:]}\n--- worker one log:\n"
        f"{one.log.read_text()[-12000:]}\n--- worker two log:\n{two.log.read_text()[-4000:]}"
    )


@pytest.mark.timeout(900)
def test_sigkill_of_one_of_two_workers_counts_every_event_once(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    values = _stream()
    input_topic(kafka_bootstrap, topic_name, values)
    for name in ("1", "2"):  # same group and topics, own config, port, log and data dir
        (tmp_path / name).mkdir()
    one, two = (Worker(tmp_path / n, kafka_bootstrap, topic_name, "pair") for n in ("1", "2"))
    for w in (one, two):
        # Stage 2 waits this long for an input partition that has not reported yet: longer
        # than a failover (session timeout 6 s, then the survivor re-reads the partition)
        w.doc["detect"] = {**w.doc["detect"], "grace_seconds": GRACE_S}  # type: ignore[dict-item]
        w.config.write_text(yaml.safe_dump(w.doc))
    # the changelog the counts are read from, created first without compaction: the test
    # reads every snapshot ever written, and the broker would compact the older ones away
    group = str(two.doc["consumer"]["group_id"])  # type: ignore[index]
    create_topic(
        kafka_bootstrap,
        changelog_topic(f"{group}-detect"),
        2,
        {"cleanup.policy": "delete", "max.message.bytes": str(16 * 2**20)},
    )
    one.start()
    two.start()
    try:
        deadline = time.monotonic() + 120
        while not _has_produced(one, kafka_bootstrap, 10):
            if time.monotonic() > deadline:
                raise AssertionError(_diagnosis(one, two))
            time.sleep(0.5)
        assert one.stop(signal.SIGKILL) == -signal.SIGKILL
        two.wait_settled(limit_s=300)
        seen = two.metrics()
    finally:
        if one.proc is not None and one.proc.poll() is None:
            one.stop()
        assert two.stop() == 0, two.log.read_text()[-5000:]

    counts = _window_counts(kafka_bootstrap, changelog_topic(f"{group}-detect"))
    expected = _expected_counts(values)
    missing = {k: (n, counts.get(k)) for k, n in expected.items() if counts.get(k) != n}
    extra = {k: n for k, n in counts.items() if k not in expected}
    late = seen.get("driftwire_detect_late_partials_total")
    assert not missing and not extra, (sorted(missing.items()), extra, f"late partials {late}")

    alerts = [e["data"] for e in alerts_of(kafka_bootstrap, two.alerts_topic)]
    last: dict[str, str] = {}
    for d in alerts:
        assert last.get(d["fingerprint"]) != d["status"], f"{d['labels']} {d['status']} twice"
        last[d["fingerprint"]] = d["status"]
    injected = {
        d["status"]
        for d in alerts
        if (d["labels"].get("feature"), d["labels"]["segment"]) == ("income", SEGMENT)
    }
    assert injected == {"firing", "resolved"}
