"""Fault injection against the real broker: nothing lost, nothing duplicated.

Each test breaks one thing the service depends on and checks the same invariant: the alerts on
the alerts topic are exactly those of the in-memory run of the same input (no transition lost,
none sent twice, same order).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import NotEnoughReplicasError
from kafka_broker import create_topic
from kafkautil import committed, create_topics, produce, read_all
from prometheus_client import CollectorRegistry
from test_detect_stage import (
    Running,
    _Oracle,
    _produce,
    _read_all,
    _real_settings,
    _split,
    _stream,
    _to_topic,
    _until,
)
from test_profile_stage import _run_until_consumed, settings_dict

from driftwire.offline.generator import StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.ops.health import Readiness
from driftwire.ops.metrics import Metrics
from driftwire.partials import Partial, decode_record
from driftwire.sketch.profile import Profile
from driftwire.stages.detect.stage import DetectStage, FaustOptions
from driftwire.stages.profile import ProfileStage
from driftwire.stages.profile_core import profile_core


async def _set_topic_config(bootstrap: str, topic: str, config: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, config)])
    finally:
        await admin.close()


def _transitions(records: list[Any]) -> list[tuple[str, str]]:
    out = []
    for r in records:
        data = orjson.loads(r.value)["data"]
        out.append((data["fingerprint"], data["status"]))
    return out


def _no_repeats(transitions: list[tuple[str, str]]) -> None:
    last: dict[str, str] = {}
    for fingerprint, status in transitions:
        assert last.get(fingerprint) != status, f"{fingerprint} sent {status} twice in a row"
        last[fingerprint] = status


@pytest.mark.kafka
@pytest.mark.timeout(240)
def test_alerts_the_broker_rejects_once_are_sent_after_the_restart(
    kafka_bootstrap: str, topic_name: str
) -> None:
    """(d) The alerts producer fails once: the broker rejects every alert while the alerts
    topic's ``max.message.bytes`` is too small. The stage stops; once the topic accepts them
    again, the restarted stage sends the firing and resolved transitions it could not."""
    s = _real_settings(kafka_bootstrap, topic_name)
    t = s.topics
    create_topic(kafka_bootstrap, t.partials, 2)
    create_topic(kafka_bootstrap, t.alerts, 1, {"max.message.bytes": "200"})
    oracle = _Oracle(s)
    expected = list(oracle.run(generate(_stream(3, income_shift_from=6))))
    statuses = [a.status for a in expected]
    assert "firing" in statuses and "resolved" in statuses  # the scenario is worth checking
    expected_ids = [a.cloudevent(s.alerts.source)["id"] for a in expected]
    # the first part ends after the drift fired and resolved: both transitions fail to send
    first, *rest = _split(oracle.records, [12])
    assert rest

    def stage() -> tuple[DetectStage, CollectorRegistry]:
        registry = CollectorRegistry()
        options = FaustOptions(stop_timeout_s=20, alert_timeout_s=10)
        return DetectStage.from_settings(s, Metrics(registry), Readiness(), options=options), (
            registry
        )

    async def scenario() -> None:
        failing, registry = stage()
        run = Running(failing)
        try:
            await run.ready(partitions=2)
            await _produce(kafka_bootstrap, _to_topic(t.partials, first, 2))
            await _until(run.task.done, "the stage to stop on the rejected alert", limit=60)
            with pytest.raises(Exception, match="detect stage failed"):
                run.task.result()
            assert (registry.get_sample_value("driftwire_alerts_failed_total") or 0) >= 1
        finally:
            await run.close() if not run.task.done() else None
        assert await _read_all(kafka_bootstrap, t.alerts, want=1, limit=2.0) == []

        await _set_topic_config(kafka_bootstrap, t.alerts, {"max.message.bytes": "1048588"})
        restarted, registry = stage()
        run = Running(restarted)
        try:
            await run.ready(partitions=2)
            await _produce(kafka_bootstrap, _to_topic(t.partials, [r for c in rest for r in c], 2))
            got: list[Any] = []

            async def all_alerts() -> None:
                got[:] = await _read_all(kafka_bootstrap, t.alerts, want=len(expected), limit=5)

            deadline = asyncio.get_running_loop().time() + 60
            while len(got) < len(expected) and asyncio.get_running_loop().time() < deadline:
                await all_alerts()
            await asyncio.sleep(3.0)  # anything sent twice would arrive by now
            await all_alerts()
        finally:
            await run.close()
        _no_repeats(_transitions(got))
        assert [orjson.loads(r.value)["id"] for r in got] == expected_ids
        assert registry.get_sample_value("driftwire_alerts_pending", {"partition": "0"}) in (
            0.0,
            None,
        )

    asyncio.run(scenario())


# -- output over the record limit: split, truncated, never a crash loop

WIDE_FEATURES = 600
WIDE_EVENTS = 3000


def _wide_events(seed: int) -> list[bytes]:
    """One model, one segment, one bucket: 600 numeric features over 3,000 events (its profile
    is ~0.9 MB, over 1.2 MB once base64-encoded in a partial)."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(WIDE_EVENTS, WIDE_FEATURES)).round(6)
    start = 1_767_225_600_000
    return [
        orjson.dumps(
            {
                "timestamp": start + i * 10,
                "model": "wide",
                "model_version": "1",
                "features": {f"f{j:03d}": float(v) for j, v in enumerate(row)},
                "prediction": 0.5,
                "latency_ms": 3.0,
            }
        )
        for i, row in enumerate(values)
    ]


@pytest.mark.kafka
@pytest.mark.timeout(240)
def test_a_segment_over_the_record_limit_is_split_and_a_huge_dead_letter_truncated(
    kafka_bootstrap: str, topic_name: str
) -> None:
    """Item 1: one segment's profile over ``max.request.size`` goes out as parts of its
    features (stage 2 merges them back), and a ~1 MiB invalid record is dead-lettered with its
    value cut and headers saying so; the stage neither fails nor replays."""
    settings = Settings.model_validate(
        settings_dict(kafka_bootstrap, topic_name, max_features=1000)
    )
    events = _wide_events(5)
    huge = b'{"model": "' + b"m" * 1_040_000 + b'"}'  # over max_event_bytes: a dead letter
    registry = CollectorRegistry()

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name], 1)
        await produce(kafka_bootstrap, topic_name, [*events[:1500], huge, *events[1500:]])
        await _run_until_consumed(settings, len(events) + 1, registry)

    asyncio.run(scenario())

    records = asyncio.run(read_all(kafka_bootstrap, settings.topics.partials))
    partials = [p for r in records if isinstance(p := decode_record(r.value), Partial)]
    assert len(partials) > 1 and all(len(r.value) < 1_000_000 for r in records)
    assert len({p.id for p in partials}) == len(partials)
    merged: Profile | None = None
    for p in partials:
        assert list(p.segments) == [""]  # no segment dimensions
        part = Profile.from_bytes(p.segments[""])
        merged = part if merged is None else merged.merge(part)
    assert merged is not None
    assert merged.n_events == WIDE_EVENTS == sum(p.events for p in partials)
    assert sorted(merged.features) == [f"f{j:03d}" for j in range(WIDE_FEATURES)]
    assert {merged.feature(name).count for name in merged.features} == {WIDE_EVENTS}  # type: ignore[union-attr]

    dead = asyncio.run(read_all(kafka_bootstrap, settings.topics.dead_letter_topic))
    assert len(dead) == 1
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers["__driftwire.errors.reason"] == "oversized"
    assert headers["__driftwire.errors.value.truncated"] == "true"
    assert int(headers["__driftwire.errors.value.original.bytes"]) == len(huge)
    assert huge.startswith(dead[0].value) and len(dead[0].value) < len(huge)
    assert registry.get_sample_value("driftwire_dead_letters_truncated_total") == 1


# -- a revoke waiting while partials fail: no commit past them


@pytest.mark.kafka
@pytest.mark.timeout(240)
def test_a_revoke_waiting_on_failed_partials_commits_nothing_past_them(
    kafka_bootstrap: str, topic_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 8: the broker holds the acknowledgements of the partials (their futures stay open;
    the producer is wrapped at the I/O edge, every other call goes to the real broker) while
    the stage waits for them, holding the lock. A second member joins: the revoke waits for the
    lock. Then the sends fail: the waiting revoke must not commit past them."""
    settings = Settings.model_validate(
        settings_dict(kafka_bootstrap, topic_name, bucket_seconds=5, allowed_lateness_seconds=0)
    )
    values = list(generate(StreamSpec(events=3000, seed=7, events_per_second=50.0)))
    registry = CollectorRegistry()
    group = settings.consumer.group_id
    create_topic(kafka_bootstrap, topic_name, 1)
    create_topic(kafka_bootstrap, settings.topics.partials, 1)

    def revoked() -> float:
        return registry.get_sample_value("driftwire_rebalances_total", {"phase": "revoked"}) or 0

    async def scenario() -> None:
        await produce(kafka_bootstrap, topic_name, values)
        held: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        send = AIOKafkaProducer.send

        async def holding_partials(
            producer: AIOKafkaProducer, topic: str, *args: Any, **kwargs: Any
        ) -> Any:
            if topic == settings.topics.partials:
                return held  # sent, never acknowledged until the test says so
            return await send(producer, topic, *args, **kwargs)

        # before the stage creates its producer, so that no partial is ever really sent
        monkeypatch.setattr(AIOKafkaProducer, "send", holding_partials)
        stage = ProfileStage(settings, profile_core(settings), Metrics(registry), Readiness())
        stop = asyncio.Event()
        task = asyncio.create_task(stage.run(stop))
        await _until(
            lambda: (
                (
                    registry.get_sample_value(
                        "driftwire_events_consumed_total", {"topic": topic_name}
                    )
                    or 0
                )
                > 0
            ),
            "the first batch",
        )
        await asyncio.sleep(1.5)  # the stage now waits for the held acknowledgements
        other = AIOKafkaConsumer(
            topic_name, bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
        )
        await other.start()  # joining the group revokes the partition from the stage
        try:
            reader = asyncio.create_task(other.getmany(timeout_ms=60_000))
            await _until(lambda: revoked() >= 1, "the revoke")
            await asyncio.sleep(0.5)
            assert not task.done()
            held.set_exception(NotEnoughReplicasError())
            await _until(task.done, "the stage to fail on the refused partials", limit=60)
            with pytest.raises(NotEnoughReplicasError):
                task.result()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        finally:
            await other.stop()
        assert await committed(kafka_bootstrap, group, topic_name, 1) == {}
        # partials were sent, none acknowledged: the counter of acknowledged output stays 0
        assert registry.get_sample_value("driftwire_partials_produced_total") == 0

    asyncio.run(scenario())
