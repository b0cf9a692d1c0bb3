"""Fault injection against the real broker: nothing lost, nothing duplicated.

Each test breaks one thing the service depends on and checks the same invariant: the alerts on
the alerts topic are exactly those of the in-memory run of the same input (no transition lost,
none sent twice, same order).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from kafka_broker import create_topic
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

from driftwire.offline.generator import generate
from driftwire.ops.health import Readiness
from driftwire.ops.metrics import Metrics
from driftwire.stages.detect.stage import DetectStage, FaustOptions


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
