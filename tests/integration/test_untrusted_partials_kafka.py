"""Untrusted partials through the real broker: bad records written onto the partials topic in
the middle of a valid stream (garbage bytes, a schema violation, a watermark ten years ahead,
a partial ten years ahead, a partial whose sketch does not deserialize, a watermark and a
partial naming an input partition the events topic does not have) are dead-lettered with their
reasons and counted exactly, and the valid stream's windows and alerts are exactly those
of the in-memory pipeline fed the valid stream alone."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import orjson
import pytest
from kafka_broker import create_topic
from kafkautil import read_all
from prometheus_client import CollectorRegistry
from test_detect_stage import (
    MINUTE,
    START_MS,
    Running,
    _ce_ids,
    _Oracle,
    _processed_at_least,
    _produce,
    _read_all,
    _real_settings,
    _run,
    _split,
    _stream,
    _to_topic,
)

from driftwire.offline.generator import generate
from driftwire.ops.health import Readiness
from driftwire.ops.metrics import Metrics
from driftwire.partials import REJECT_REASONS, Partial, Watermark, decode_record
from driftwire.sketch.numeric import SketchParams
from driftwire.sketch.profile import Profile
from driftwire.stages.detect.stage import DetectStage, FaustOptions, partition_of

TEN_YEARS_MS = 10 * 365 * 86_400_000


@pytest.mark.kafka
@pytest.mark.timeout(240)
def test_bad_partials_are_dead_lettered_and_change_nothing(
    kafka_bootstrap: str, topic_name: str
) -> None:
    s = _real_settings(kafka_bootstrap, topic_name)
    t = s.topics
    create_topic(kafka_bootstrap, t.partials, 2)
    create_topic(kafka_bootstrap, t.alerts, 1)
    create_topic(kafka_bootstrap, t.dead_letter_topic, 1)
    create_topic(kafka_bootstrap, t.events, 1)  # stage 2 asks the broker how many it has
    oracle = _Oracle(s)
    expected = list(oracle.run(generate(_stream(3, income_shift_from=6))))
    assert "firing" in [a.status for a in expected]  # the scenario is worth checking
    expected_ids = [a.cloudevent(s.alerts.source)["id"] for a in expected]
    before, after = _split(oracle.records, [5])  # bad records once minute 5 is complete
    valid_before = _to_topic(t.partials, before, 2)
    valid_after = _to_topic(t.partials, after, 2)
    topic = oracle.core.topic
    bad_sketch = Partial(
        topic, 0, 10**6, 10**6 + 9, START_MS + 7 * MINUTE, START_MS + 8 * MINUTE,
        "churn", "1", events=5, segments={"": b"\x00 not a profile"},
    )  # fmt: skip
    far = START_MS + TEN_YEARS_MS
    ahead = Partial(
        topic, 0, 10**6, 10**6 + 9, far, far + MINUTE, "churn", "1", events=0, segments={}
    )
    schema = orjson.loads(Watermark(topic, 0, 1, START_MS).encode())
    schema["watermark_ms"] = "soon"
    future_mark = Watermark(topic, 0, 1, far).encode()
    # schema-valid, but the events topic has one partition: admitted, this low watermark of a
    # partition that never reports again would hold every later bucket back for ever
    ghost_mark = Watermark(topic, 3, 4, START_MS).encode()
    ghost = Partial(
        topic, 1, 0, 9, START_MS + 7 * MINUTE, START_MS + 8 * MINUTE, "churn", "1", 0, {}
    )
    bad = [
        (t.partials, b"churn", b"\x00\xffgarbage", 0),
        (t.partials, None, orjson.dumps(schema), 1),
        (t.partials, None, future_mark, 0),  # stage 1 broadcasts a watermark: both copies
        (t.partials, None, future_mark, 1),
        (t.partials, b"churn", ahead.encode(), None),
        (t.partials, b"churn", bad_sketch.encode(), None),
        (t.partials, None, ghost_mark, 0),
        (t.partials, None, ghost_mark, 1),
        (t.partials, b"churn", ghost.encode(), None),
    ]
    want = Counter(
        {
            "malformed": 1,
            "schema": 1,
            "future_watermark": 2,
            "future_bucket": 1,
            "sketch": 1,
            "source": 3,
        }
    )

    async def scenario() -> None:
        registry = CollectorRegistry()
        stage = DetectStage.from_settings(
            s, Metrics(registry), Readiness(), options=FaustOptions(stop_timeout_s=20)
        )
        run = Running(stage)
        try:
            await run.ready(partitions=2)
            produced = [*valid_before, *bad, *valid_after]
            await _produce(kafka_bootstrap, produced)
            await _processed_at_least(registry, len(produced))
            windows = stage.status_records()
        finally:
            await run.close()
        counted = {
            reason: registry.get_sample_value(
                "driftwire_detect_invalid_partials_total", {"reason": reason}
            )
            for reason in REJECT_REASONS
        }
        assert counted == {reason: float(want[reason]) for reason in REJECT_REASONS}
        assert registry.get_sample_value("driftwire_detect_evaluation_failures_total") == 0
        letters = await read_all(kafka_bootstrap, t.dead_letter_topic, limit_s=10.0)
        reasons = Counter(dict(r.headers)["__driftwire.errors.reason"].decode() for r in letters)
        assert reasons == want
        for letter in letters:
            headers = dict(letter.headers)
            assert headers["__driftwire.errors.stage"] == b"detect"
            assert headers["__driftwire.errors.topic"] == t.partials.encode()
            assert headers["__driftwire.errors.exception.message"]
        assert sorted(r.value for r in letters) == sorted(v for _, _, v, _ in bad)
        alerts = await _read_all(kafka_bootstrap, t.alerts, want=len(expected) + 1, limit=5.0)
        assert _ce_ids(alerts) == expected_ids  # none lost, none added, same order
        assert windows == oracle.detector.status_records()  # windows, evaluated_until

    _run(scenario)


def _profile(n: int, start_ms: int, params: SketchParams | None = None) -> bytes:
    profile = Profile(params, start_ms=start_ms, end_ms=start_ms + MINUTE)
    profile.update([{"age": float(i)} for i in range(n)])
    return profile.to_bytes()


@pytest.mark.kafka
@pytest.mark.timeout(240)
def test_a_model_whose_evaluation_raises_keeps_the_others_alerts(
    kafka_bootstrap: str, topic_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="driftwire.stages.detect.stage")
    s = _real_settings(kafka_bootstrap, topic_name)
    t = s.topics
    create_topic(kafka_bootstrap, t.partials, 2)
    create_topic(kafka_bootstrap, t.alerts, 1)
    create_topic(kafka_bootstrap, t.dead_letter_topic, 1)
    oracle = _Oracle(s)
    expected = list(oracle.run(generate(_stream(3, income_shift_from=6))))
    expected_ids = [a.cloudevent(s.alerts.source)["id"] for a in expected]
    # a model in churn's partition (so in its detector, and before it) whose buckets were
    # profiled with sketch parameters that alternate: evaluating each window after its first
    # raises, in the same calls that evaluate churn
    broken = next(
        m
        for m in (f"a-broken-{i}" for i in range(100))
        if partition_of(m, 2) == partition_of("churn", 2)
    )
    topic = oracle.core.topic
    partials = [
        Partial(
            topic, 0, 10 * i, 10 * i + 9, START_MS + i * MINUTE, START_MS + (i + 1) * MINUTE,
            broken, "1", 10,
            {"": _profile(10, START_MS + i * MINUTE, SketchParams(k=100) if i % 2 else None)},
        )
        for i in range(15)
    ]  # fmt: skip
    first = [(t.partials, broken.encode(), p.encode(), None) for p in partials]

    async def scenario() -> None:
        registry = CollectorRegistry()
        stage = DetectStage.from_settings(
            s, Metrics(registry), Readiness(), options=FaustOptions(stop_timeout_s=20)
        )
        run = Running(stage)
        try:
            await run.ready(partitions=2)
            produced = [*first, *_to_topic(t.partials, oracle.records, 2)]
            await _produce(kafka_bootstrap, produced)
            await _processed_at_least(registry, len(produced))
        finally:
            await run.close()
        # every window of the model the last watermark completes, but its first
        last_mark = decode_record(oracle.records[-1][1])
        assert isinstance(last_mark, Watermark)
        evaluated = sum(p.bucket_end_ms <= last_mark.watermark_ms for p in partials)
        failures = registry.get_sample_value("driftwire_detect_evaluation_failures_total")
        assert failures == evaluated - 1
        assert registry.get_sample_value("driftwire_detect_records_total", {"type": "failed"}) == 0
        alerts = await _read_all(kafka_bootstrap, t.alerts, want=len(expected) + 20, limit=5.0)
        churn = [a for a in alerts if orjson.loads(a.value)["data"]["labels"]["model"] == "churn"]
        assert _ce_ids(churn) == expected_ids
        logged = [r for r in caplog.records if "evaluating a model failed" in r.getMessage()]
        assert len(logged) == 1

    _run(scenario)


async def _described(admin: Any, topic: str, partitions: int) -> None:
    """Wait until the broker describes ``topic`` with ``partitions`` (its metadata caught up)."""
    for _ in range(100):
        if topic in await admin.list_topics():
            (found,) = await admin.describe_topics([topic])
            if len(found["partitions"]) == partitions:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{topic} not described with {partitions} partitions")


@pytest.mark.kafka
@pytest.mark.timeout(60)
def test_the_input_partition_count_follows_the_broker(
    kafka_bootstrap: str, topic_name: str
) -> None:
    """The bound comes from the broker: unknown while the events topic does not exist, then its
    count; a topic that grew is learnt by the next refresh, or by a recheck (a record naming a
    partition beyond the count), which asks at most once every ``recheck_s``."""
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

    from driftwire.stages.detect._inputs import InputPartitions

    events = f"{topic_name}-events"
    now = [0.0]
    inputs = InputPartitions(
        {"bootstrap_servers": kafka_bootstrap}, events, clock=lambda: now[0], recheck_s=5.0
    )

    async def scenario() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        await inputs.start()
        try:
            assert inputs.count is None  # not created by asking either
            await admin.create_topics([NewTopic(events, 1, 1)])
            await _described(admin, events, 1)
            assert not await inputs.recheck()  # asked at start, within recheck_s
            now[0] = 5.0
            assert await inputs.recheck()
            assert inputs.count == 1
            await admin.create_partitions({events: NewPartitions(3)})
            await _described(admin, events, 3)
            now[0] = 6.0
            assert not await inputs.recheck()  # rate-limited: a flood asks once per 5 s
            await inputs.refresh_if_due()  # not due for 60 s
            assert inputs.count == 1
            now[0] = 65.0
            await inputs.refresh_if_due()
            assert inputs.count == 3
        finally:
            await inputs.close()
            await admin.close()

    _run(scenario)
