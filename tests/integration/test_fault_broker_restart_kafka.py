"""Fault (b): the broker stopped and restarted mid-stream (a broker of the test's own, on the
same port and log directory), checked with fault (a)'s invariant: every valid event counted
exactly once in the stage-2 windows (the detector's per-bucket traffic in the detect stage's
changelog equals the in-memory run of the same input), the injected drift fires and resolves,
and no alert transition is sent twice in a row.

The input is on the broker before the worker starts and is read in small batches, so the
outage falls while both input partitions still have events to read (and none is idle): the
consumer-group session expires during it, the profile stage's partitions are revoked (its
commit after the outage can fail, and its state is then dropped and the partitions read again
from the last commit) and assigned again after the restart.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka_broker import KafkaBroker
from kafkautil import read_all
from test_fault_replay_kafka import (
    _assert_invariant,
    _in_memory_counts,
    _set,
    _wait_partials,
    _workers,
)
from test_fault_sigkill_kafka import _stream
from test_pipeline_kafka import Worker, input_topic

from driftwire.partials import Partial, decode_record

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


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.mark.timeout(300)
def test_a_broker_restart_mid_stream_counts_every_event_once(
    own_broker: KafkaBroker, topic_name: str, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap_servers
    values = _stream()
    input_topic(bootstrap, topic_name, values)
    (w,) = _workers(tmp_path, bootstrap, topic_name, "restart", "1")
    # batches of 100: the stream lasts through the outage; the session (6 s) expires in it
    _set(w, "consumer", max_batch_records=100)
    expected = _in_memory_counts(values, w.doc)
    w.start()
    try:
        deadline = time.monotonic() + 60
        while not _ready(w.port):  # both stages run (the detect stage has started)
            assert w.proc is not None and w.proc.poll() is None, w.log.read_text()[-5000:]
            assert time.monotonic() < deadline, w.log.read_text()[-5000:]
            time.sleep(0.05)
        _wait_partials(w, 4, limit_s=60)  # and a few buckets are closed
        consumed = w.metrics().get("driftwire_events_consumed_total", 0)
        own_broker.stop_process()
        time.sleep(3)  # the worker retries against a closed port
        assert w.proc is not None and w.proc.poll() is None, w.log.read_text()[-5000:]
        own_broker.restart()
        assert own_broker.bootstrap_servers == bootstrap  # same port, same log directory
        assert consumed < len(values), "the stream was read before the outage"
        w.wait_settled(limit_s=120)
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
