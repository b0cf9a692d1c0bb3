"""Exactly-once stage 1 (``processing.guarantee: exactly_once``) against the real broker.

The worker is SIGKILLed while events still arrive, then started again. Invariants: the
partials topic, read ``read_committed``, holds every valid event in exactly one partial (the
events of the committed partials per model and bucket equal the input's, and no partial id
appears twice), and stage 2's windows count every valid event exactly once.

With ``at_least_once`` the same run leaves on the partials topic the partials the killed
worker had sent after its last commit *and* their replay (stage 2 drops the replay by id).
"""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import yaml
from aiokafka.structs import OffsetAndMetadata
from kafka_broker import create_topic
from kafkautil import committed, create_topics, produce, read_all
from test_fault_sigkill_kafka import _expected_counts, _stream, _window_counts
from test_pipeline_kafka import PARTITIONS, Worker

from driftwire.stages.detect._table import changelog_topic
from driftwire.stages.profile_txn import PartitionTransactions

pytestmark = pytest.mark.kafka

GRACE_S = 30
CHUNKS = 40
CHUNK_PAUSE_S = 0.5


def _feed(bootstrap: str, topic: str, values: list[bytes], done: threading.Event) -> None:
    """Produce ``values`` in :data:`CHUNKS` chunks, :data:`CHUNK_PAUSE_S` apart (about 20 s),
    so the worker is killed mid-stream."""
    size = -(-len(values) // CHUNKS)
    try:
        for i in range(0, len(values), size):
            asyncio.run(produce(bootstrap, topic, values[i : i + size], partitions=PARTITIONS))
            time.sleep(CHUNK_PAUSE_S)
    finally:
        done.set()


def _committed_partials(bootstrap: str, topic: str) -> tuple[Counter[tuple[str, int]], list[str]]:
    """Events per (model, bucket start) in the committed partials, and their ids."""
    events: Counter[tuple[str, int]] = Counter()
    ids: list[str] = []
    for r in asyncio.run(read_all(bootstrap, topic, isolation_level="read_committed")):
        doc = orjson.loads(r.value)
        if doc["type"] != "partial":
            continue
        ids.append(doc["id"])
        events[(doc["model"], int(doc["bucket"]["start_ms"]))] += int(doc["events"])
    return events, ids


def _last_data_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Per partition, one past the last committed record (transaction markers follow it)."""
    out: dict[int, int] = {}
    for r in asyncio.run(read_all(bootstrap, topic, isolation_level="read_committed")):
        out[r.partition] = max(out.get(r.partition, 0), r.offset + 1)
    return out


def _wait_settled(worker: Worker, partials: str, limit_s: float, events: int) -> None:
    """Stage 1 caught up and its committed partials hold all ``events`` (the last bucket is
    flushed once its partitions go idle, after the input is read), stage 2 has committed past
    every committed partials record, and evaluations have stopped changing for 4 s. (Stage 2's
    committed offset stays below the topic's end by the last transaction marker, so
    ``Worker.wait_settled`` does not apply.)"""
    assert worker.proc is not None
    group = f"{worker.doc['consumer']['group_id']}-detect"  # type: ignore[index]
    deadline = time.monotonic() + limit_s
    last, stable_since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        assert worker.proc.poll() is None, worker.log.read_text()[-5000:]
        m = worker.metrics()
        evaluated = m.get("driftwire_windows_evaluated_total", 0.0)
        if evaluated != last:
            last, stable_since = evaluated, time.monotonic()
        caught_up = (
            m.get("driftwire_assigned_partitions") == PARTITIONS
            and m.get("driftwire_consumer_lag") == 0
        )
        if (
            caught_up
            and evaluated > 0
            and time.monotonic() - stable_since > 4
            and sum(_committed_partials(worker.bootstrap, partials)[0].values()) >= events
        ):
            ends = _last_data_offsets(worker.bootstrap, partials)
            done = asyncio.run(committed(worker.bootstrap, group, partials, 2))
            if all(done.get(p, 0) >= end for p, end in ends.items()):
                return
        time.sleep(0.5)
    raise AssertionError(f"worker did not settle: {worker.metrics()}\n{worker.log.read_text()}")


@pytest.mark.timeout(900)
def test_sigkill_and_restart_with_exactly_once_leaves_no_duplicate_partial(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    values = _stream()
    expected = _expected_counts(values)
    asyncio.run(create_topics(kafka_bootstrap, [topic_name], PARTITIONS))
    worker = Worker(tmp_path, kafka_bootstrap, topic_name, "eos")
    worker.doc["processing"] = {"guarantee": "exactly_once"}
    worker.doc["detect"] = {**worker.doc["detect"], "grace_seconds": GRACE_S}  # type: ignore[dict-item]
    # idleness must not close a bucket between two chunks of the feed
    worker.doc["profile"] = {"idle_partition_seconds": 5}
    worker.config.write_text(yaml.safe_dump(worker.doc))
    partials = str(worker.doc["topics"]["partials"])  # type: ignore[index]
    group = str(worker.doc["consumer"]["group_id"])  # type: ignore[index]
    create_topic(  # every snapshot stays readable (no compaction), as in the SIGKILL test
        kafka_bootstrap,
        changelog_topic(f"{group}-detect"),
        2,
        {"cleanup.policy": "delete", "max.message.bytes": str(16 * 2**20)},
    )
    fed = threading.Event()
    feeder = threading.Thread(
        target=_feed, args=(kafka_bootstrap, topic_name, values, fed), daemon=True
    )
    worker.start()
    try:
        feeder.start()
        deadline = time.monotonic() + 120
        while worker.metrics().get("driftwire_partials_produced_total", 0) < 10:
            assert time.monotonic() < deadline, worker.log.read_text()[-5000:]
            assert not fed.is_set(), "the feed ended before the kill: slow it down"
            time.sleep(0.05)
        assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
        worker.start()
        feeder.join(timeout=120)
        assert fed.is_set()
        _wait_settled(worker, partials, limit_s=150, events=expected.total())
    finally:
        if worker.proc is not None and worker.proc.poll() is None:
            assert worker.stop() == 0, worker.log.read_text()[-5000:]

    events, ids = _committed_partials(kafka_bootstrap, partials)
    twice = [i for i, n in Counter(ids).items() if n > 1]
    assert not twice, f"{len(twice)} partials committed twice"
    wrong = {k: (n, events.get(k)) for k, n in expected.items() if events.get(k) != n}
    assert not wrong and set(events) <= set(expected), sorted(wrong.items())[:10]

    counts = _window_counts(kafka_bootstrap, changelog_topic(f"{group}-detect"))
    missing = {k: (n, counts.get(k)) for k, n in expected.items() if counts.get(k) != n}
    extra = {k: n for k, n in counts.items() if k not in expected}
    assert not missing and not extra, (sorted(missing.items())[:10], extra)


@pytest.mark.timeout(120)
def test_a_zombie_is_fenced_and_a_restarted_member_is_not(
    kafka_bootstrap: str, topic_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The transactional id names the input partition, so whoever registers it last owns it.

    A member that lost partition 0 without knowing it (a zombie: its session expired while it
    still works) has an acknowledged, uncommitted record in its transaction; the new owner
    registers the id, which aborts that transaction, and the zombie's commit is refused
    (fenced: it drops the partition). The new owner commits; then a member restarted after a
    SIGKILL registers the same id again and commits too: nobody is fenced for ever. Read
    ``read_committed``, the output holds exactly the two owners' records, and the group's
    offset is the last owner's. The fenced producer's error is retrieved when it is dropped:
    asyncio does not log it as never retrieved (whose traceback, formatted on Python 3.11.7,
    left the interpreter's AST state broken: pytest then crashed at the end of the session)."""
    out = f"{topic_name}.out"
    group = f"{topic_name}-group"

    def member() -> PartitionTransactions:
        return PartitionTransactions(
            {"bootstrap_servers": kafka_bootstrap}, group=group, topic=topic_name, timeout_ms=60_000
        )

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name, out], 1)
        zombie, owner, restarted = member(), member(), member()
        try:
            await zombie.open(0)
            await (await zombie.send(0, out, b"zombie"))  # acknowledged, not committed
            await owner.open(0)  # registers the id: aborts the zombie's transaction
            await (await owner.send(0, out, b"owner"))
            assert await owner.commit(0, OffsetAndMetadata(5, ""))
            assert not await zombie.commit(0, OffsetAndMetadata(9, ""))  # fenced
            assert not zombie.owns(0)
            await restarted.open(0)  # the same id once more, after the owner died
            await (await restarted.send(0, out, b"restarted"))
            assert await restarted.commit(0, OffsetAndMetadata(7, ""))
        finally:
            for m in (zombie, owner, restarted):
                await m.close_all()

    asyncio.run(scenario())
    gc.collect()  # a future whose exception nobody retrieved is logged when collected
    unretrieved = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert not unretrieved, [r.getMessage()[:300] for r in unretrieved]
    values = [r.value for r in asyncio.run(read_all(kafka_bootstrap, out))]
    assert values == [b"owner", b"restarted"]
    uncommitted = asyncio.run(read_all(kafka_bootstrap, out, isolation_level="read_uncommitted"))
    assert sorted(r.value for r in uncommitted) == [b"owner", b"restarted", b"zombie"]
    assert asyncio.run(committed(kafka_bootstrap, group, topic_name, 1)) == {0: 7}
