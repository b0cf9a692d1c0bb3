"""Fault (b): the broker stopped and restarted mid-stream (a broker of the test's own, on the
same port and log directory), checked with fault (a)'s invariant: every valid event counted
exactly once in the stage-2 windows (the detector's per-bucket traffic in the detect stage's
changelog equals the in-memory run of the same input), the injected drift fires and resolves,
and no alert transition is sent twice in a row.

The first half of the stream is read, both input partitions go idle (their last buckets close,
their idle watermarks go out), the broker goes away and comes back (the group session expires,
the partitions are revoked and assigned again), and then the second half arrives. Stage 2 does
not wait for an idle partition: unless the profile stage reports a partition active again
before the partials of the partition it reads first, stage 2 evaluates the next buckets
without the other and sets its partials aside as late (half the events of every bucket after
the outage were missing so, before the fix).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka_broker import KafkaBroker
from kafkautil import produce, read_all
from test_fault_replay_kafka import (
    _assert_invariant,
    _in_memory_counts,
    _set,
    _workers,
)
from test_fault_sigkill_kafka import _stream
from test_pipeline_kafka import PARTITIONS, Worker, input_topic

from driftwire.decode.decoder import decode_batch
from driftwire.partials import Partial, Watermark, decode_record

pytestmark = pytest.mark.kafka

MINUTE = 60_000


@pytest.fixture
def own_broker() -> Iterator[KafkaBroker]:
    """A broker of this test's own: it is stopped and restarted mid-stream."""
    broker = KafkaBroker()
    try:
        broker.start()
    except RuntimeError as exc:
        pytest.fail(f"could not start the Kafka test broker:\n{exc}", pytrace=False)
    try:
        yield broker
    finally:
        broker.stop()


def _partials_sent(bootstrap: str, w: Worker) -> dict[tuple[int, int], list[tuple[int, int, int]]]:
    """(input partition, bucket minute) -> (first offset, last offset, events) of every
    partial on the partials topic, to tell a loss in stage 1 from one in stage 2."""
    out: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    partials = str(w.doc["topics"]["partials"])  # type: ignore[index]
    for record in asyncio.run(read_all(bootstrap, partials)):
        p = decode_record(record.value)
        if isinstance(p, Partial):
            key = (p.partition, (p.bucket_start_ms // MINUTE) % 60)
            out.setdefault(key, []).append((p.first_offset, p.last_offset, p.events))
    return dict(sorted(out.items()))


def _read(w: Worker) -> float:
    return w.metrics().get("driftwire_events_consumed_total", 0.0)


def _idle(bootstrap: str, w: Worker) -> set[int]:
    """Input partitions whose latest watermark on the partials topic says idle."""
    latest: dict[int, bool] = {}
    partials = str(w.doc["topics"]["partials"])  # type: ignore[index]
    for record in asyncio.run(read_all(bootstrap, partials)):
        mark = decode_record(record.value)
        if isinstance(mark, Watermark):
            latest[mark.partition] = mark.idle
    return {p for p, idle in latest.items() if idle}


@pytest.mark.timeout(600)
def test_a_broker_restart_mid_stream_counts_every_event_once(
    own_broker: KafkaBroker, topic_name: str, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap_servers
    values = _stream()
    # the second half starts a bucket and keeps the round-robin layout
    half = len(values) // 2
    assert half % PARTITIONS == 0
    assert int(decode_batch(values[half : half + 1]).timestamp_ms[0]) % MINUTE == 0
    input_topic(bootstrap, topic_name, values[:half])
    (w,) = _workers(tmp_path, bootstrap, topic_name, "restart", "1")
    _set(w, "profile", idle_partition_seconds=2)
    expected = _in_memory_counts(values, w.doc)
    w.start()
    try:
        deadline = time.monotonic() + 120
        while not (w.ready() and _read(w) == half):  # both stages run, half is read
            assert w.proc is not None and w.proc.poll() is None, w.log.read_text()[-5000:]
            assert time.monotonic() < deadline, w.log.read_text()[-5000:]
            time.sleep(0.1)
        while _idle(bootstrap, w) != set(range(PARTITIONS)):  # both partitions go idle
            assert time.monotonic() < deadline, w.log.read_text()[-5000:]
            time.sleep(0.2)
        own_broker.stop_process()
        time.sleep(3)  # the outage: the worker retries against a closed port
        assert w.proc is not None and w.proc.poll() is None, w.log.read_text()[-5000:]
        own_broker.restart()
        assert own_broker.bootstrap_servers == bootstrap  # same port, same log directory
        asyncio.run(produce(bootstrap, topic_name, values[half:], partitions=PARTITIONS))
        w.wait_settled(limit_s=300)  # a loaded machine evaluates the windows slowly
        seen = w.metrics()
    finally:
        if w.proc is not None and w.proc.poll() is None:
            assert w.stop() == 0, w.log.read_text()[-5000:]
    try:
        _assert_invariant(bootstrap, w, expected, seen)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\npartials sent: {_partials_sent(bootstrap, w)}") from exc
    # the outage was felt: the group lost the worker, and its partitions were revoked
    assert "partitions revoked:" in w.log.read_text(), w.log.read_text()[-5000:]
