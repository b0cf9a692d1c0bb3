"""Topics driftwire writes get the documented configs from every entry point, and existing
ones are checked: a short retention is warned about, a baselines topic that is not compacted
is refused with one line. Against the session broker, which auto-creates topics with its
defaults (``cleanup.policy=delete``, 7 days) as a default cluster does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import kafka_broker
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from driftwire.ops.config import load_settings
from driftwire.ops.topics import (
    ALERTS_RETENTION_MS,
    DEAD_LETTER_RETENTION_MS,
    PARTIALS_RETENTION_MS,
    ensure_topics,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


async def _configs(bootstrap: str, names: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, n, None) for n in names]
        out: dict[str, dict[str, str]] = {}
        for response in await admin.describe_configs(resources):
            for _e, _m, _t, name, entries in response.resources:
                out[name] = {e[0]: e[1] for e in entries}
        return out
    finally:
        await admin.close()


def _env(bootstrap: str, topic: str) -> dict[str, str]:
    return {
        "DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTWIRE_TOPICS_EVENTS": f"{topic}-events",
        "DRIFTWIRE_TOPICS_PARTIALS": f"{topic}-partials",
        "DRIFTWIRE_TOPICS_ALERTS": f"{topic}-alerts",
        "DRIFTWIRE_TOPICS_BASELINES": f"{topic}-baselines",
        "DRIFTWIRE_TOPICS_REPLICATION_FACTOR": "1",
        "DRIFTWIRE_TOPICS_PARTIALS_PARTITIONS": "2",
    }


def test_the_worker_creates_its_topics_with_the_documented_configs(
    kafka_bootstrap: str, topic_name: str
) -> None:
    settings = load_settings(None, env=_env(kafka_bootstrap, topic_name))
    created = asyncio.run(ensure_topics(settings))
    t = settings.topics
    assert sorted(created) == sorted([t.dead_letter_topic, t.partials, t.alerts, t.baselines])
    found = asyncio.run(_configs(kafka_bootstrap, created))
    assert found[t.dead_letter_topic]["retention.ms"] == str(DEAD_LETTER_RETENTION_MS)
    assert found[t.partials]["retention.ms"] == str(PARTIALS_RETENTION_MS)
    assert found[t.alerts]["retention.ms"] == str(ALERTS_RETENTION_MS)
    assert found[t.baselines]["cleanup.policy"] == "compact"


def test_baseline_publish_before_any_worker_creates_a_compacted_topic(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    data = tmp_path / "train.csv"
    data.write_text("x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(200)))
    env = {**os.environ, **_env(kafka_bootstrap, topic_name)}
    args = ["baseline", "build", str(data), "--model", "m", "--model-version", "1"]
    args += ["--output", str(tmp_path / "b.dwb"), "--publish"]
    proc = subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    found = asyncio.run(_configs(kafka_bootstrap, [f"{topic_name}-baselines"]))
    assert found[f"{topic_name}-baselines"]["cleanup.policy"] == "compact"


def test_an_alerts_topic_with_the_brokers_7_days_is_warned_about_once(
    kafka_bootstrap: str, topic_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(None, env=_env(kafka_bootstrap, topic_name))
    kafka_broker.create_topic(
        kafka_bootstrap, settings.topics.alerts, 3, {"retention.ms": str(7 * 86_400_000)}
    )
    with caplog.at_level(logging.WARNING, logger="driftwire.ops.topics"):
        created = asyncio.run(ensure_topics(settings))
    assert settings.topics.alerts not in created
    warnings = [r.getMessage() for r in caplog.records if r.name == "driftwire.ops.topics"]
    assert warnings == [
        f"topic {settings.topics.alerts} (topics.alerts) keeps records 7 days "
        "(retention.ms=604800000), shorter than the 30 days driftwire expects; raise it: "
        f"kafka-configs.sh --alter --entity-type topics --entity-name {settings.topics.alerts} "
        f"--add-config retention.ms={ALERTS_RETENTION_MS}"
    ]


def test_a_worker_refuses_a_baselines_topic_that_is_not_compacted_in_one_line(
    kafka_bootstrap: str, topic_name: str
) -> None:
    baselines = f"{topic_name}-baselines"
    kafka_broker.create_topic(kafka_bootstrap, baselines, 1, {"cleanup.policy": "delete"})
    env = {**os.environ, **_env(kafka_bootstrap, topic_name), "DRIFTWIRE_HTTP_PORT": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"driftwire: config error at 'topics.baselines': topic {baselines} (topics.baselines) "
        "has cleanup.policy=delete, but it must be compacted (its records would expire after "
        "retention.ms); fix: kafka-configs.sh --alter --entity-type topics --entity-name "
        f"{baselines} --add-config cleanup.policy=compact"
    ]
