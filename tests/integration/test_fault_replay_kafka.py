"""Faults against the real broker, each checked with fault (a)'s invariant: every valid event
counted exactly once in the stage-2 windows (the detector's per-bucket traffic in the detect
stage's changelog equals the in-memory run of the same input), no alert transition lost (the
injected drift fires and resolves) and none sent twice in a row.

* a SIGKILL whose replay reads the input in other batch boundaries (partial ids and contents
  must not depend on them);
* (c) a rebalance while partials are in flight: a second worker joins mid-stream, then leaves
  gracefully.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from kafka_broker import create_topic
from test_fault_sigkill_kafka import GRACE_S, SEGMENT, _stream, _window_counts
from test_pipeline_kafka import PARTITIONS, Worker, alerts_of, input_topic

from driftwire.decode.decoder import decode_batch
from driftwire.ops.config import Settings
from driftwire.partials import Partial, decode_record
from driftwire.stages.detect._table import changelog_topic
from driftwire.stages.profile_core import profile_core

pytestmark = pytest.mark.kafka

MINUTE = 60_000


def _disordered(values: list[bytes], block: int = 7) -> list[bytes]:
    """The stream with every block of ``block`` events reversed: with no allowed lateness,
    events just behind a bucket boundary are late or not depending on the order alone."""
    out: list[bytes] = []
    for i in range(0, len(values), block):
        out += values[i : i + block][::-1]
    return out


def _in_memory_counts(values: list[bytes], doc: dict[str, object]) -> Counter[tuple[str, int]]:
    """Events per (model, bucket start) the profile core folds from the same input, partition
    by partition as the producer laid it out (round-robin), in one batch each."""
    settings = Settings.model_validate({k: doc[k] for k in ("profile",)})
    core = profile_core(settings, topic="events", partitions=PARTITIONS)
    now_ms = int(time.time() * 1000)
    out: Counter[tuple[str, int]] = Counter()
    for p in range(PARTITIONS):
        core.assign(p, None)
        mine = values[p::PARTITIONS]
        batch = decode_batch(mine)
        offsets = np.arange(len(mine), dtype=np.int64)[batch.index]
        core.process(p, batch, offsets, now_ms)
        for record in core.due(now_ms).records + core.flush(p).records:
            partial = decode_record(record.value)
            if isinstance(partial, Partial):
                out[partial.model, partial.bucket_start_ms] += partial.events
    return out


def _workers(tmp: Path, bootstrap: str, topic: str, run: str, *names: str) -> list[Worker]:
    out = []
    for name in names:
        (tmp / name).mkdir()
        w = Worker(tmp / name, bootstrap, topic, run)
        # longer than a failover or a broker restart (see test_fault_sigkill_kafka)
        w.doc["detect"] = {**w.doc["detect"], "grace_seconds": GRACE_S}  # type: ignore[dict-item]
        w.config.write_text(yaml.safe_dump(w.doc))
        out.append(w)
    # the changelog the counts are read from, without compaction (every snapshot is read)
    group = str(out[0].doc["consumer"]["group_id"])  # type: ignore[index]
    create_topic(
        bootstrap,
        changelog_topic(f"{group}-detect"),
        2,
        {"cleanup.policy": "delete", "max.message.bytes": str(16 * 2**20)},
    )
    return out


def _set(w: Worker, section: str, **values: object) -> None:
    w.doc[section] = {**w.doc.get(section, {}), **values}  # type: ignore[dict-item]
    w.config.write_text(yaml.safe_dump(w.doc))


def _wait_partials(w: Worker, n: int, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while w.metrics().get("driftwire_partials_produced_total", 0) < n:
        assert w.proc is not None and w.proc.poll() is None, w.log.read_text()[-5000:]
        assert time.monotonic() < deadline, w.log.read_text()[-5000:]
        time.sleep(0.05)


def _assert_invariant(
    bootstrap: str, w: Worker, expected: Counter[tuple[str, int]], seen: dict[str, float]
) -> None:
    group = str(w.doc["consumer"]["group_id"])  # type: ignore[index]
    counts = _window_counts(bootstrap, changelog_topic(f"{group}-detect"))
    missing = {k: (n, counts.get(k)) for k, n in expected.items() if counts.get(k) != n}
    extra = {k: n for k, n in counts.items() if k not in expected}
    late = seen.get("driftwire_detect_late_partials_total")
    assert not missing and not extra, (sorted(missing.items()), extra, f"late partials {late}")
    alerts = [e["data"] for e in alerts_of(bootstrap, w.alerts_topic)]
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


@pytest.mark.timeout(600)
def test_a_sigkill_replayed_in_other_batches_counts_every_event_once(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    values = _disordered(_stream())
    input_topic(kafka_bootstrap, topic_name, values)
    (w,) = _workers(tmp_path, kafka_bootstrap, topic_name, "replay", "1")
    _set(w, "profile", allowed_lateness_seconds=0)
    _set(w, "consumer", max_batch_records=3000)  # the first attempt: large batches
    expected = _in_memory_counts(values, w.doc)
    assert sum(expected.values()) < len(decode_batch(values).index), "no late events"
    w.start()
    try:
        _wait_partials(w, 20)
        assert w.stop(signal.SIGKILL) == -signal.SIGKILL
        # the replay: other batch boundaries (61 is prime: no boundary lines up with the
        # first attempt's, nor with the reversed blocks of 7)
        _set(w, "consumer", max_batch_records=61)
        w.start()
        w.wait_settled(limit_s=300)
        seen = w.metrics()
    finally:
        if w.proc is not None and w.proc.poll() is None:
            assert w.stop() == 0, w.log.read_text()[-5000:]
    _assert_invariant(kafka_bootstrap, w, expected, seen)


@pytest.mark.timeout(600)
def test_a_rebalance_with_partials_in_flight_counts_every_event_once(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    values = _stream()
    input_topic(kafka_bootstrap, topic_name, values)
    one, two = _workers(tmp_path, kafka_bootstrap, topic_name, "join", "1", "2")
    for w in (one, two):
        _set(w, "consumer", max_batch_records=100)  # the stream lasts through the rebalances
    expected = _in_memory_counts(values, one.doc)
    one.start()
    try:
        _wait_partials(one, 5)
        two.start()  # joins: every partition is revoked while one sends partials
        deadline = time.monotonic() + 120
        # two holds partitions once the rebalance is over (on a fast machine one may have
        # read the whole stream by then, so two's consumed count can stay 0)
        while two.metrics().get("driftwire_assigned_partitions", 0) == 0:
            assert time.monotonic() < deadline, two.log.read_text()[-5000:]
            assert one.proc is not None and one.proc.poll() is None, one.log.read_text()[-5000:]
            time.sleep(0.05)
        assert two.stop() == 0, two.log.read_text()[-5000:]  # leaves: another rebalance
        one.wait_settled(limit_s=300)
        seen = one.metrics()
    finally:
        for w in (one, two):
            if w.proc is not None and w.proc.poll() is None:
                w.stop()
    _assert_invariant(kafka_bootstrap, one, expected, seen)
