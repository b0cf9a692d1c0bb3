"""Stage 1 against the real broker: counting, dead letters, commits, crash safety."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from aiokafka import TopicPartition
from kafkautil import committed, create_topics, end_offsets, produce, read_all
from prometheus_client import CollectorRegistry
from spawn import free_port

from driftwire.decode.decoder import decode_batch
from driftwire.offline.generator import MALFORMED, StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.ops.health import Readiness
from driftwire.ops.metrics import Metrics
from driftwire.partials import Partial, admit_partial, decode_record
from driftwire.profiling.partitions import Resume
from driftwire.stages.profile import ProfileStage
from driftwire.stages.profile_core import profile_core

pytestmark = pytest.mark.kafka

EXPECTED_REASON = dict(MALFORMED)
PARTITIONS = 3


def settings_dict(bootstrap: str, topic: str, **profile: float) -> dict[str, object]:
    return {
        "kafka": {"bootstrap_servers": bootstrap},
        "topics": {
            "events": topic,
            "partials": f"{topic}.partials",
            "alerts": f"{topic}.alerts",
            "baselines": f"{topic}.baselines",
        },
        "consumer": {"group_id": f"{topic}-profile", "fetch_timeout_ms": 200},
        "profile": {"idle_partition_seconds": 1, **profile},
        "http": {"host": "127.0.0.1", "port": 0},
    }


def assert_one_content_per_partial_id(records: list) -> None:
    """A replayed partial may be sent again, but with the same offsets always the same bytes."""
    contents: dict[tuple[str, int], set[bytes]] = defaultdict(set)
    for record in records:
        rec = decode_record(record.value)
        if isinstance(rec, Partial):
            contents[rec.id, rec.last_offset].add(record.value)
    assert all(len(c) == 1 for c in contents.values()), "a partial id sent with two contents"


def partial_events_by_partition(records: list) -> dict[int, int]:
    """Events in the partials stage 2 merges (replays dropped as it drops them)."""
    ids: dict[str, int] = {}
    spans: dict[str, dict[str, list[int]]] = defaultdict(dict)  # per model, as stage 2
    totals: dict[int, int] = defaultdict(int)
    for record in records:
        rec = decode_record(record.value)
        if isinstance(rec, Partial) and admit_partial(rec, ids, spans[rec.model]):
            totals[rec.partition] += rec.events
    return dict(totals)


def valid_by_partition(values: list[bytes]) -> dict[int, int]:
    """Valid events per partition for values produced round-robin."""
    totals: dict[int, int] = defaultdict(int)
    accepted = decode_batch(values).index
    for i in accepted.tolist():
        totals[i % PARTITIONS] += 1
    return dict(totals)


async def _run_until_consumed(settings: Settings, total: int, registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    stage = ProfileStage(settings, profile_core(settings), metrics, Readiness())
    stop = asyncio.Event()
    task = asyncio.create_task(stage.run(stop))
    deadline = time.monotonic() + 90
    topic = settings.topics.events
    while (
        registry.get_sample_value("driftwire_events_consumed_total", {"topic": topic}) or 0
    ) < total:
        if task.done() or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.5)  # let the idle partitions close their buckets
    stop.set()
    await asyncio.wait_for(task, timeout=60)


def test_counts_every_valid_event_once_and_dead_letters_the_rest(
    kafka_bootstrap: str, topic_name: str
) -> None:
    values = list(generate(StreamSpec(events=20_000, seed=3, malformed_ratio=0.02)))
    malformed = [i for i, v in enumerate(values) if v in EXPECTED_REASON]
    assert 300 < len(malformed) < 500  # about 2% of them, in six ways
    settings = Settings.model_validate(settings_dict(kafka_bootstrap, topic_name))
    registry = CollectorRegistry()

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name], PARTITIONS)
        await produce(kafka_bootstrap, topic_name, values, partitions=PARTITIONS)
        await _run_until_consumed(settings, len(values), registry)

    asyncio.run(scenario())

    partials = asyncio.run(read_all(kafka_bootstrap, settings.topics.partials))
    assert partial_events_by_partition(partials) == valid_by_partition(values)

    dead = asyncio.run(read_all(kafka_bootstrap, settings.topics.dead_letter_topic))
    assert len(dead) == len(malformed)
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["__driftwire.errors.reason"] == EXPECTED_REASON[record.value]
        partition = int(headers["__driftwire.errors.partition"])
        offset = int(headers["__driftwire.errors.offset"])
        assert headers["__driftwire.errors.topic"] == topic_name
        assert headers["__driftwire.errors.consumer.group"] == settings.consumer.group_id
        assert values[offset * PARTITIONS + partition] == record.value  # round-robin layout
    invalid = sum(
        registry.get_sample_value("driftwire_events_invalid_total", {"reason": r}) or 0
        for r in set(EXPECTED_REASON.values())
    )
    assert invalid == len(malformed)
    assert registry.get_sample_value("driftwire_dead_letters_produced_total") == len(malformed)

    ends = asyncio.run(end_offsets(kafka_bootstrap, topic_name))
    commits = asyncio.run(
        committed(kafka_bootstrap, settings.consumer.group_id, topic_name, PARTITIONS)
    )
    assert commits == ends


def _lag_is_zero(port: int) -> bool:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return False
    lags = [
        float(line.rsplit(" ", 1)[1])
        for line in text.decode().splitlines()
        if line.startswith("driftwire_consumer_lag{")
    ]
    return len(lags) == PARTITIONS and all(v == 0 for v in lags)


def _start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "driftwire.cli.command",
                "worker",
                "--stage",
                "profile",
                "--config",
                str(config),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def test_sigkill_mid_stream_loses_nothing_and_never_commits_ahead(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    """``at_least_once``: a commit never runs ahead of acknowledged partials, and after a
    SIGKILL every event is in a partial at least once. (The same with ``exactly_once``, the
    default, counts exactly once: ``test_exactly_once_kafka.py``.)"""
    values = list(generate(StreamSpec(events=24_000, seed=5, malformed_ratio=0.02)))
    half = len(values) // 2
    port = free_port()
    doc = settings_dict(kafka_bootstrap, topic_name, bucket_seconds=10, allowed_lateness_seconds=0)
    doc["http"] = {"host": "127.0.0.1", "port": port}
    doc["processing"] = {"guarantee": "at_least_once"}
    doc["consumer"] = {**doc["consumer"], "max_batch_records": 100}  # type: ignore[dict-item]
    config = tmp_path / "driftwire.yaml"
    config.write_text(yaml.safe_dump(doc))
    settings = Settings.model_validate(doc)
    group = settings.consumer.group_id
    log = tmp_path / "worker.log"

    asyncio.run(create_topics(kafka_bootstrap, [topic_name], PARTITIONS))
    asyncio.run(produce(kafka_bootstrap, topic_name, values[:half], partitions=PARTITIONS))
    first = _start_worker(config, log)
    try:
        deadline = time.monotonic() + 60
        while not any(
            asyncio.run(committed(kafka_bootstrap, group, topic_name, PARTITIONS)).values()
        ):
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the first worker never committed"
            time.sleep(0.3)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)

    # what the killed worker committed must already be covered by acknowledged partials
    commits = asyncio.run(committed(kafka_bootstrap, group, topic_name, PARTITIONS))
    partials = asyncio.run(read_all(kafka_bootstrap, settings.topics.partials))
    covered: dict[int, int] = defaultdict(lambda: -1)
    for record in partials:
        rec = decode_record(record.value)
        if isinstance(rec, Partial):
            covered[rec.partition] = max(covered[rec.partition], rec.last_offset)
    for partition, offset in commits.items():
        produced_valid = [
            i for i in decode_batch(values[:half]).index.tolist() if i % PARTITIONS == partition
        ]
        before = [i // PARTITIONS for i in produced_valid if i // PARTITIONS < offset]
        assert not before or max(before) <= covered[partition], (partition, offset)

    asyncio.run(produce(kafka_bootstrap, topic_name, values[half:], partitions=PARTITIONS))
    second = _start_worker(config, log)
    try:
        deadline = time.monotonic() + 90
        while not _lag_is_zero(port):
            assert second.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the second worker did not catch up"
            time.sleep(0.3)
        time.sleep(1.5)  # idle partitions close their buckets
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, log.read_text()

    partials = asyncio.run(read_all(kafka_bootstrap, settings.topics.partials))
    counted = partial_events_by_partition(partials)
    expected = {}
    # offsets restart per produce call; recompute the round-robin layout of both halves
    for chunk in (values[:half], values[half:]):
        for p, n in valid_by_partition(chunk).items():
            expected[p] = expected.get(p, 0) + n
    for partition, n in expected.items():
        assert counted.get(partition, 0) >= n  # at least once
    dead = asyncio.run(read_all(kafka_bootstrap, settings.topics.dead_letter_topic))
    assert {r.value for r in dead} == {v for v in values if v in EXPECTED_REASON}
    assert len(dead) >= sum(v in EXPECTED_REASON for v in values)
    ends = asyncio.run(end_offsets(kafka_bootstrap, topic_name))
    assert asyncio.run(committed(kafka_bootstrap, group, topic_name, PARTITIONS)) == ends


# -- rebalances --------------------------------------------------------------------------


class _SlowResume(ProfileStage):
    """Reads the resume points slowly, as a loaded coordinator would answer them.

    aiokafka activates a new assignment before ``on_partitions_assigned`` runs, and runs the
    listener in the coordinator's task while the stage's loop keeps calling ``getmany``.
    ``fetched_meanwhile`` is how far the consumer had read while the listener was waiting.
    """

    fetched_meanwhile = 0

    async def _committed(self, partitions: list[TopicPartition]) -> dict[TopicPartition, Resume]:
        await asyncio.sleep(3)
        assert self._consumer is not None
        for tp in partitions:
            self.fetched_meanwhile += await self._consumer.position(tp)
        return await super()._committed(partitions)


def test_records_of_a_new_partition_wait_for_its_resume_point(
    kafka_bootstrap: str, topic_name: str
) -> None:
    values = list(generate(StreamSpec(events=6_000, seed=11, malformed_ratio=0.01)))
    settings = Settings.model_validate(settings_dict(kafka_bootstrap, topic_name))
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    stage = _SlowResume(settings, profile_core(settings), metrics, Readiness())

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name], PARTITIONS)
        await produce(kafka_bootstrap, topic_name, values, partitions=PARTITIONS)
        stop = asyncio.Event()
        task = asyncio.create_task(stage.run(stop))
        deadline = time.monotonic() + 90
        while (
            registry.get_sample_value("driftwire_events_consumed_total", {"topic": topic_name}) or 0
        ) < len(values):
            if task.done() or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.wait_for(task, timeout=60)  # raises what the loop raised

    asyncio.run(scenario())

    # getmany did return records of the new partitions while the listener was still waiting ...
    assert stage.fetched_meanwhile > 0
    # ... and they were folded with their partition's state, once each
    partials = asyncio.run(read_all(kafka_bootstrap, settings.topics.partials))
    assert partial_events_by_partition(partials) == valid_by_partition(values)
    ends = asyncio.run(end_offsets(kafka_bootstrap, topic_name))
    commits = asyncio.run(
        committed(kafka_bootstrap, settings.consumer.group_id, topic_name, PARTITIONS)
    )
    assert commits == ends


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_member_joining_and_leaving_mid_stream_counts_every_event_exactly_once(
    kafka_bootstrap: str, topic_name: str
) -> None:
    """Two members of one group; the second joins and leaves while events are produced.

    Every rebalance revokes every partition (eager protocol): the members flush their open
    buckets, wait for the acknowledgements and commit with the resume metadata before the
    partitions move. So, over all partials read back, distinct ids count every valid event
    exactly once, no id is ever sent with two contents, and the group ends fully committed.
    """
    chunk = 300 * PARTITIONS  # a multiple of the partitions keeps the round-robin layout
    values = list(generate(StreamSpec(events=60 * chunk, seed=17, malformed_ratio=0.01)))
    doc = settings_dict(kafka_bootstrap, topic_name, bucket_seconds=5, allowed_lateness_seconds=0)
    doc["consumer"] = {**doc["consumer"], "max_batch_records": 200}  # type: ignore[dict-item]
    settings = Settings.model_validate(doc)
    group = settings.consumer.group_id
    registries = {"a": CollectorRegistry(), "b": CollectorRegistry()}
    readiness = {"a": Readiness(), "b": Readiness()}
    produced = 0

    def start(name: str) -> tuple[asyncio.Event, asyncio.Task[None]]:
        metrics = Metrics(registries[name])
        stage = ProfileStage(settings, profile_core(settings), metrics, readiness[name])
        stop = asyncio.Event()
        return stop, asyncio.create_task(stage.run(stop), name=f"member-{name}")

    def consumed(name: str) -> float:
        return _sample(registries[name], "driftwire_events_consumed_total", topic=topic_name)

    async def wait_for(what: str, ready: Callable[[], bool], *tasks: asyncio.Task[None]) -> None:
        deadline = time.monotonic() + 60
        while not ready():
            for task in tasks:
                if task.done():
                    task.result()  # raises what the member raised
                    pytest.fail(f"a member stopped while waiting for: {what}")
            assert time.monotonic() < deadline, f"timed out waiting for: {what}"
            await asyncio.sleep(0.2)

    async def scenario() -> None:
        nonlocal produced
        await create_topics(kafka_bootstrap, [topic_name], PARTITIONS)
        producing = asyncio.Event()
        producing.set()

        async def feed() -> None:
            nonlocal produced
            while producing.is_set() and produced < len(values):
                batch = values[produced : produced + chunk]
                await produce(kafka_bootstrap, topic_name, batch, partitions=PARTITIONS)
                produced += len(batch)
                await asyncio.sleep(0.2)

        feeder = asyncio.create_task(feed())
        stop_a, a = start("a")
        await wait_for(
            "member a commits",
            lambda: _sample(registries["a"], "driftwire_offset_commits_total", result="ok") > 0,
            a,
            feeder,
        )
        stop_b, b = start("b")
        # b joined: a gave up some partitions, b read events from them
        await wait_for("member b consumes", lambda: consumed("b") > 0, a, b, feeder)
        await wait_for(
            "a rebalance away from a", lambda: 0 < readiness["a"].assigned < PARTITIONS, a, b
        )
        mark = produced
        await wait_for("more events while b is a member", lambda: produced > mark, a, b, feeder)
        stop_b.set()
        await asyncio.wait_for(b, timeout=60)  # b flushes, commits and leaves the group
        await wait_for(
            "member a owns every partition again",
            lambda: readiness["a"].assigned == PARTITIONS,
            a,
            feeder,
        )
        mark = produced
        await wait_for("more events after b left", lambda: produced >= mark + 2 * chunk, a, feeder)
        producing.clear()
        await feeder
        assert produced < len(values), "the stream ran out before the scenario ended"

        def caught_up() -> bool:
            lags = [
                registries["a"].get_sample_value(
                    "driftwire_consumer_lag",
                    {"consumergroup": group, "topic": topic_name, "partition": str(p)},
                )
                for p in range(PARTITIONS)
            ]
            return all(lag == 0 for lag in lags)

        await wait_for("member a catches up", caught_up, a)
        await asyncio.sleep(1.5)  # idle partitions close their buckets
        stop_a.set()
        await asyncio.wait_for(a, timeout=60)

    asyncio.run(asyncio.wait_for(scenario(), timeout=150))

    # both members took part, across three assignments of member a
    assert consumed("b") > 0
    assert _sample(registries["a"], "driftwire_rebalances_total", phase="assigned") >= 3
    assert _sample(registries["b"], "driftwire_offset_commits_total", result="ok") > 0

    records = asyncio.run(read_all(kafka_bootstrap, settings.topics.partials))
    assert_one_content_per_partial_id(records)
    assert partial_events_by_partition(records) == valid_by_partition(values[:produced])

    ends = asyncio.run(end_offsets(kafka_bootstrap, topic_name))
    assert sum(ends.values()) == produced
    assert asyncio.run(committed(kafka_bootstrap, group, topic_name, PARTITIONS)) == ends


class _Evicted(ProfileStage):
    """Loses its group membership once, just before a commit.

    As when a heartbeat finds that the session expired: aiokafka forgets the member id and
    starts a rejoin in the coordinator's task (whose listener revokes the partitions) while
    the loop's commit really fails (``CommitFailedError``: the broker no longer knows the
    member). Partials flushed on that revoke would be covered by no commit, and the next owner
    would emit their events again under other ids.
    """

    evicted_at: float | None = None

    async def _settle(self, *, force: bool) -> None:
        due = force or self._clock() - self._last_commit_s >= 1.0
        if due and self.evicted_at is None and self._inflight:
            assert self._consumer is not None
            self.evicted_at = time.monotonic()
            self._consumer._coordinator.reset_generation()
        await super()._settle(force=force)


def test_a_commit_failed_by_a_lost_membership_loses_and_doubles_nothing(
    kafka_bootstrap: str, topic_name: str
) -> None:
    """``at_least_once``: the consumer's own commit refused after an eviction. (With
    ``exactly_once`` offsets go into the transaction, and a lost partition's producer is
    fenced by its new owner instead.)"""
    chunk = 300 * PARTITIONS
    values = list(generate(StreamSpec(events=12 * chunk, seed=23, malformed_ratio=0.01)))
    doc = settings_dict(kafka_bootstrap, topic_name, bucket_seconds=5, allowed_lateness_seconds=0)
    doc["processing"] = {"guarantee": "at_least_once"}
    doc["consumer"] = {**doc["consumer"], "max_batch_records": 200, "session_timeout_ms": 6000}  # type: ignore[dict-item]
    settings = Settings.model_validate(doc)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    stage = _Evicted(settings, profile_core(settings), metrics, Readiness())

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name], PARTITIONS)
        await produce(kafka_bootstrap, topic_name, values, partitions=PARTITIONS)
        stop = asyncio.Event()
        task = asyncio.create_task(stage.run(stop))
        deadline = time.monotonic() + 90
        while not (
            _sample(registry, "driftwire_offset_commits_total", result="failed") > 0
            and _sample(registry, "driftwire_rebalances_total", phase="assigned") >= 2
            and all(
                registry.get_sample_value(
                    "driftwire_consumer_lag",
                    {
                        "consumergroup": settings.consumer.group_id,
                        "topic": topic_name,
                        "partition": str(p),
                    },
                )
                == 0
                for p in range(PARTITIONS)
            )
        ):
            if task.done():
                task.result()
                pytest.fail("the stage stopped early")
            assert time.monotonic() < deadline, "the stage did not recover and catch up"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.wait_for(task, timeout=60)

    asyncio.run(scenario())

    assert stage.evicted_at is not None
    records = asyncio.run(read_all(kafka_bootstrap, settings.topics.partials))
    assert_one_content_per_partial_id(records)
    assert partial_events_by_partition(records) == valid_by_partition(values)
    ends = asyncio.run(end_offsets(kafka_bootstrap, topic_name))
    commits = asyncio.run(
        committed(kafka_bootstrap, settings.consumer.group_id, topic_name, PARTITIONS)
    )
    assert commits == ends
