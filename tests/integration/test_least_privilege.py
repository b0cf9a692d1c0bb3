"""A principal with exactly the ACLs the README lists runs the whole worker over SASL_SSL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import LEAST_PASSWORD, LEAST_USER, SecureKafka
from kafka_acls import Acl, create_acls
from kafkautil import create_topics
from test_pipeline_kafka import Worker, input_topic
from test_secured_kafka import _events, _run_worker

from driftwire.ops.config import Settings
from driftwire.stages.profile_txn import transactional_id


def worker_acls(
    *,
    events: str,
    dead_letter: str,
    partials: str,
    baselines: str,
    alerts: str,
    group: str,
    exactly_once: bool = False,
) -> list[Acl]:
    """What ``driftwire worker`` needs with pre-created topics (``topics.create: false``);
    ``group`` is ``consumer.group_id``, the detect stage's Faust app is ``<group>-detect``.
    ``exactly_once`` (``processing.guarantee``) adds the transactional ids of stage 1."""
    transactional = [
        Acl("TRANSACTIONAL_ID", f"{group}-eos-", "WRITE", prefixed=True),
        Acl("TRANSACTIONAL_ID", f"{group}-eos-", "DESCRIBE", prefixed=True),
    ]
    return (transactional if exactly_once else []) + [
        Acl("TOPIC", events, "READ"),
        Acl("TOPIC", events, "DESCRIBE"),
        Acl("TOPIC", dead_letter, "WRITE"),
        Acl("TOPIC", dead_letter, "DESCRIBE"),
        Acl("TOPIC", partials, "WRITE"),  # stage 1 writes, stage 2 reads
        Acl("TOPIC", partials, "READ"),
        Acl("TOPIC", partials, "DESCRIBE"),
        Acl("TOPIC", baselines, "READ"),
        Acl("TOPIC", baselines, "DESCRIBE"),
        Acl("TOPIC", alerts, "WRITE"),
        Acl("TOPIC", alerts, "DESCRIBE"),
        Acl("GROUP", group, "READ"),  # stage 1's consumer group
        # the Faust app: its group, its state changelog and its internal topics
        Acl("GROUP", f"{group}-detect", "READ", prefixed=True),
        Acl("TOPIC", f"{group}-detect", "READ", prefixed=True),
        Acl("TOPIC", f"{group}-detect", "WRITE", prefixed=True),
        Acl("TOPIC", f"{group}-detect", "CREATE", prefixed=True),
        Acl("TOPIC", f"{group}-detect", "DESCRIBE", prefixed=True),
    ]


def test_the_transactional_ids_match_the_acl_prefix() -> None:
    """The ids stage 1 registers with exactly-once lie under the prefix the ACLs name."""
    prefix = worker_acls(
        events="e",
        dead_letter="d",
        partials="p",
        baselines="b",
        alerts="a",
        group="g",
        exactly_once=True,
    )[0].name
    assert transactional_id("g", "e", 7).startswith(prefix)


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at_least_once", "exactly_once"])
def test_the_readme_lists_these_acls_for_the_default_names(exactly_once: bool) -> None:
    readme = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    defaults = Settings()
    acls = worker_acls(
        events=defaults.topics.events,
        dead_letter=defaults.topics.dead_letter_topic,
        partials=defaults.topics.partials,
        baselines=defaults.topics.baselines,
        alerts=defaults.topics.alerts,
        group=defaults.consumer.group_id,
        exactly_once=exactly_once,
    )
    for acl in acls:
        assert acl.command("User:driftwire") in readme, acl


@pytest.mark.kafka
@pytest.mark.timeout(400)
@pytest.mark.parametrize("exactly_once", [False, True], ids=["at_least_once", "exactly_once"])
def test_the_listed_acls_are_enough_for_the_whole_worker(
    secure_kafka: SecureKafka, topic_name: str, tmp_path: Path, exactly_once: bool
) -> None:
    run = "lp"
    topics = [f"{topic_name}.{run}.{t}" for t in ("alerts", "baselines")]
    asyncio.run(create_topics(secure_kafka.admin, [*topics, f"{topic_name}.dlq"]))
    asyncio.run(create_topics(secure_kafka.admin, [f"{topic_name}.{run}.partials"], 2))
    principal = f"User:{LEAST_USER}"
    acls = worker_acls(
        events=topic_name,
        dead_letter=f"{topic_name}.dlq",
        partials=f"{topic_name}.{run}.partials",
        baselines=f"{topic_name}.{run}.baselines",
        alerts=f"{topic_name}.{run}.alerts",
        group=f"{topic_name}-{run}",  # what test_pipeline_kafka.Worker configures
        exactly_once=exactly_once,
    )
    asyncio.run(create_acls(secure_kafka.admin, principal, acls))
    (tmp_path / "pw").write_text(LEAST_PASSWORD)
    kafka = secure_kafka.sasl_settings(tmp_path / "unused")
    kafka.update(sasl_username=LEAST_USER, sasl_password_file=str(tmp_path / "pw"))
    guarantee = "exactly_once" if exactly_once else "at_least_once"
    _run_worker(
        secure_kafka, tmp_path, topic_name, run, kafka, create_topics=False, guarantee=guarantee
    )


@pytest.mark.kafka
@pytest.mark.timeout(200)
@pytest.mark.parametrize(
    ("dropped", "says"),
    [
        (Acl("TOPIC", "{events}", "READ"), "Read and Describe on topic {events} "),
        (Acl("TOPIC", "{events}.dlq", "WRITE"), "Write and Describe on topic {events}.dlq "),
        (Acl("GROUP", "{events}-lp", "READ"), "Read on group {events}-lp "),
        # the detect stage's Faust app, which would wait or carry on without its state
        (
            Acl("GROUP", "{events}-lp-detect", "READ", prefixed=True),
            "Read on group {events}-lp-detect (the detect stage's Faust app: the prefixed "
            "ACLs on {events}-lp-detect) ",
        ),
        (
            Acl("TOPIC", "{events}-lp-detect", "CREATE", prefixed=True),
            "Create on topic {events}-lp-detect-detector-changelog (the detect stage's ",
        ),
        (
            Acl("TOPIC", "{events}-lp-detect", "READ", prefixed=True),
            "Read on topic {events}-lp-detect-detector-changelog (the detect stage's ",
        ),
        (
            Acl("TOPIC", "{events}-lp-detect", "WRITE", prefixed=True),
            "Write on topic {events}-lp-detect-detector-changelog (the detect stage's ",
        ),
    ],
    ids=[
        "events-read",
        "dead-letter-write",
        "group-read",
        "faust-group-read",
        "faust-topics-create",
        "faust-topics-read",
        "faust-topics-write",
    ],
)
def test_a_missing_acl_ends_the_worker_with_one_line_naming_it(
    secure_kafka: SecureKafka, topic_name: str, tmp_path: Path, dropped: Acl, says: str
) -> None:
    run = "lp"
    topics = [f"{topic_name}.{run}.{t}" for t in ("alerts", "baselines")]
    asyncio.run(create_topics(secure_kafka.admin, [*topics, f"{topic_name}.dlq"]))
    asyncio.run(create_topics(secure_kafka.admin, [f"{topic_name}.{run}.partials"], 2))
    acls = worker_acls(
        events=topic_name,
        dead_letter=f"{topic_name}.dlq",
        partials=f"{topic_name}.{run}.partials",
        baselines=f"{topic_name}.{run}.baselines",
        alerts=f"{topic_name}.{run}.alerts",
        group=f"{topic_name}-{run}",
    )
    missing = Acl(
        dropped.resource,
        dropped.name.format(events=topic_name),
        dropped.operation,
        prefixed=dropped.prefixed,
    )
    acls.remove(missing)
    principal = f"User:{LEAST_USER}"
    asyncio.run(create_acls(secure_kafka.admin, principal, acls))
    input_topic(secure_kafka.admin, topic_name, [b"{not json", *_events()[:2000]])
    (tmp_path / "pw").write_text(LEAST_PASSWORD)
    kafka = secure_kafka.sasl_settings(tmp_path / "unused")
    kafka.update(sasl_username=LEAST_USER, sasl_password_file=str(tmp_path / "pw"))
    worker = Worker(tmp_path, secure_kafka.admin, topic_name, run)
    worker.doc["kafka"] = kafka
    worker.doc["topics"]["create"] = False  # type: ignore[index]
    worker.config.write_text(yaml.safe_dump(worker.doc))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", "worker", "--config", str(worker.config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert time.monotonic() - started < 90
    last = done.stderr.strip().splitlines()[-1]
    expected = f"driftwire: Kafka: {principal} is not authorized: it needs "
    assert last.startswith(expected), last
    assert says.format(events=topic_name) in last, last
    assert "Traceback" not in done.stderr
