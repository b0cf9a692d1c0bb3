"""A principal with exactly the ACLs the README lists runs the whole worker over SASL_SSL."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import LEAST_PASSWORD, LEAST_USER, PROCESS_USERS, SecureKafka
from kafka_acls import Acl, create_acls
from kafkautil import create_topics, read_all
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
    exactly_once: bool = True,
) -> list[Acl]:
    """What ``driftwire worker`` needs with pre-created topics (``topics.create: false``);
    ``group`` is ``consumer.group_id``, the detect stage's Faust app is ``<group>-detect``.
    ``exactly_once`` (``processing.guarantee``, the default) adds the transactional ids of
    stage 1."""
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
        # stage 1's exactly-once producers (the default guarantee)
        (
            Acl("TRANSACTIONAL_ID", "{events}-lp-eos-", "WRITE", prefixed=True),
            "Write and Describe on transactional id prefix {events}-lp-eos- (stage 1's "
            "exactly-once producers): grant them, or set processing.guarantee: at_least_once ",
        ),
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
        "transactional-id-write",
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
    assert last.startswith(expected), done.stderr[-5000:]
    assert says.format(events=topic_name) in last, last
    assert "Traceback" not in done.stderr
    # nor an error line about a refusal nobody looked at (a broken transaction's waiter)
    assert "never retrieved" not in done.stderr, done.stderr[-5000:]


# -- the other processes: a bridge, baseline publishing, the producer library -------------------


def bridge_acls(*, alerts: str, dead_letter: str, group: str) -> list[Acl]:
    """What ``driftwire bridge TARGET`` needs with pre-created topics: ``group`` is
    ``<bridges.group_id_prefix>-<target>``, ``dead_letter`` ``bridges.dead_letter``
    (default ``<topics.alerts>.dlq``)."""
    return [
        Acl("TOPIC", alerts, "READ"),
        Acl("TOPIC", alerts, "DESCRIBE"),
        Acl("GROUP", group, "READ"),
        Acl("TOPIC", dead_letter, "WRITE"),
        Acl("TOPIC", dead_letter, "DESCRIBE"),
    ]


def baseline_publish_acls(*, baselines: str) -> list[Acl]:
    """What ``driftwire baseline build --publish`` needs with the baselines topic in place."""
    return [Acl("TOPIC", baselines, "WRITE"), Acl("TOPIC", baselines, "DESCRIBE")]


def producer_acls(*, events: str) -> list[Acl]:
    """What the producer library (``InferenceLogger``, idempotent) needs."""
    return [Acl("TOPIC", events, "WRITE"), Acl("TOPIC", events, "DESCRIBE")]


def test_the_readme_lists_the_acls_of_the_other_processes() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    defaults = Settings()
    alerts = defaults.topics.alerts
    group = f"{defaults.bridges.group_id_prefix}-webhook"
    expected = {
        "User:driftwire-bridge": bridge_acls(
            alerts=alerts, dead_letter=f"{alerts}.dlq", group=group
        ),
        "User:driftwire-baseline": baseline_publish_acls(baselines=defaults.topics.baselines),
        "User:model-server": producer_acls(events=defaults.topics.events),
    }
    for principal, acls in expected.items():
        for acl in acls:
            assert acl.command(principal) in docs, (principal, acl)


def _sasl_as(secure: SecureKafka, tmp: Path, user: str) -> dict[str, Any]:
    (tmp / "pw").write_text(LEAST_PASSWORD)
    kafka = secure.sasl_settings(tmp / "unused")
    kafka.update(sasl_username=user, sasl_password_file=str(tmp / "pw"))
    return kafka


def _grant(secure: SecureKafka, user: str, acls: list[Acl], dropped: Acl | None) -> None:
    if dropped is not None:
        acls.remove(dropped)
    asyncio.run(create_acls(secure.admin, f"User:{user}", acls))


def _no_traceback_one_line(code: int, stderr: str, principal: str, says: str) -> None:
    assert code == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"driftwire: Kafka: {principal} is not authorized: it needs "), last
    assert says in last, last


def _run_bridge(
    secure: SecureKafka, tmp: Path, topic: str, *, until_delivered: bool
) -> tuple[int, str, int]:
    """``driftwire bridge webhook`` as PROCESS_USERS["bridge"] on the alerts topic ``topic``
    (two firing alerts; the receiver refuses the first for good, so the bridge dead-letters
    it, and takes the second): returns its exit code, its output and the number of alerts
    delivered. Stopped with SIGTERM once the alert arrived when
    ``until_delivered``, else left to end by itself."""
    from aiohttp import web

    sys.path.insert(0, str(Path(__file__).parents[1] / "bridges"))  # the bridge tests' helpers
    from test_bridges import make_alert, send_alerts

    received: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        if len(received) == 1:
            return web.Response(status=400)  # refused for good: the bridge dead-letters it
        arrived.set()
        return web.Response(status=200)

    async def scenario() -> tuple[int, str, int]:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        config = tmp / "bridge.yaml"
        doc = {
            "kafka": _sasl_as(secure, tmp, PROCESS_USERS["bridge"]),
            "topics": {"alerts": topic, "create": False},
            "http": {"host": "127.0.0.1"},
            "bridges": {"group_id_prefix": topic, "http_port": 0, "webhook_url": url},
        }
        config.write_text(yaml.safe_dump(doc))
        alerts = [make_alert(feature="age"), make_alert(feature="income")]
        await send_alerts(secure.admin, topic, alerts)
        log = tmp / "bridge.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "driftwire.cli.command", "bridge", "webhook"),
                *("--config", str(config)),
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        try:
            waits = {asyncio.create_task(proc.wait())}
            if until_delivered:
                waits.add(asyncio.create_task(arrived.wait()))
            await asyncio.wait(waits, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        finally:
            if proc.returncode is None:
                proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
            await runner.cleanup()
        assert proc.returncode is not None
        output = await asyncio.to_thread(log.read_text)
        return proc.returncode, output, max(0, len(received) - 1)

    return asyncio.run(scenario())


def _bridge_topics(secure: SecureKafka, topic: str) -> list[Acl]:
    asyncio.run(create_topics(secure.admin, [topic, f"{topic}.dlq"]))
    return bridge_acls(alerts=topic, dead_letter=f"{topic}.dlq", group=f"{topic}-webhook")


@pytest.mark.kafka
@pytest.mark.timeout(120)
def test_the_listed_acls_are_enough_for_a_bridge(
    secure_kafka: SecureKafka, topic_name: str, tmp_path: Path
) -> None:
    _grant(secure_kafka, PROCESS_USERS["bridge"], _bridge_topics(secure_kafka, topic_name), None)
    code, output, delivered = _run_bridge(secure_kafka, tmp_path, topic_name, until_delivered=True)
    assert (code, delivered) == (0, 1), output[-3000:]
    dead = asyncio.run(read_all(secure_kafka.admin, f"{topic_name}.dlq"))
    assert len(dead) == 1  # the refused alert, dead-lettered by the bridge's principal


@pytest.mark.kafka
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("dropped", "says"),
    [
        (Acl("TOPIC", "{t}", "READ"), "Read and Describe on topic {t} "),
        (Acl("GROUP", "{t}-webhook", "READ"), "Read on group {t}-webhook "),
        (Acl("TOPIC", "{t}.dlq", "WRITE"), "Write and Describe on topic {t}.dlq "),
    ],
    ids=["alerts-read", "group-read", "dead-letter-write"],
)
def test_a_missing_acl_ends_a_bridge_with_one_line_naming_it(
    secure_kafka: SecureKafka, topic_name: str, tmp_path: Path, dropped: Acl, says: str
) -> None:
    missing = Acl(dropped.resource, dropped.name.format(t=topic_name), dropped.operation)
    acls = _bridge_topics(secure_kafka, topic_name)
    _grant(secure_kafka, PROCESS_USERS["bridge"], acls, missing)
    code, output, delivered = _run_bridge(secure_kafka, tmp_path, topic_name, until_delivered=False)
    principal = f"User:{PROCESS_USERS['bridge']}"
    _no_traceback_one_line(code, output, principal, says.format(t=topic_name))
    assert delivered == 0


def _publish(secure: SecureKafka, tmp: Path, topic: str) -> subprocess.CompletedProcess[str]:
    """``driftwire baseline build --publish`` as PROCESS_USERS["baseline"] to ``topic``."""
    train = tmp / "train.csv"
    rows = [f"{i % 7},{i % 3 / 3:.3f}" for i in range(400)]
    train.write_text("tenure,score\n" + "\n".join(rows) + "\n")
    config = tmp / "c.yaml"
    kafka = _sasl_as(secure, tmp, PROCESS_USERS["baseline"])
    config.write_text(yaml.safe_dump({"kafka": kafka, "topics": {"baselines": topic}}))
    return subprocess.run(
        [
            *(sys.executable, "-m", "driftwire.cli.command", "baseline", "build", str(train)),
            *("--model", "churn", "--model-version", "1.4.2", "--prediction-column", "score"),
            *("-o", str(tmp / "b.dwb"), "--publish", "--config", str(config)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.kafka
@pytest.mark.timeout(90)
@pytest.mark.parametrize("dropped", [None, "WRITE"], ids=["all", "write"])
def test_baseline_publishing_needs_exactly_its_listed_acls(
    secure_kafka: SecureKafka, topic_name: str, tmp_path: Path, dropped: str | None
) -> None:
    """The baselines topic pre-exists (compacted, as the worker creates it): then
    ``topics.create`` (default true) needs no Create."""
    from driftwire.ops.topics import baselines_spec

    settings = Settings.model_validate({"topics": {"baselines": topic_name}})
    spec = baselines_spec(settings)
    asyncio.run(_create_compacted(secure_kafka.admin, topic_name, dict(spec.configs)))
    acls = baseline_publish_acls(baselines=topic_name)
    missing = None if dropped is None else Acl("TOPIC", topic_name, dropped)
    _grant(secure_kafka, PROCESS_USERS["baseline"], acls, missing)
    done = _publish(secure_kafka, tmp_path, topic_name)
    records = asyncio.run(read_all(secure_kafka.admin, topic_name))
    if dropped is None:
        assert done.returncode == 0, done.stderr[-3000:]
        assert [r.key for r in records] == [b"churn/1.4.2"]
        return
    principal = f"User:{PROCESS_USERS['baseline']}"
    _no_traceback_one_line(
        done.returncode, done.stderr, principal, f"Write and Describe on topic {topic_name} "
    )
    assert records == []


@pytest.mark.kafka
@pytest.mark.timeout(90)
def test_a_refused_baseline_publish_leaves_no_producer_open(
    secure_kafka: SecureKafka, topic_name: str, tmp_path: Path
) -> None:
    """Without Write on any topic the idempotent producer's start is refused; the publisher
    stopped only a producer that had started, so asyncio said "Unclosed AIOKafkaProducer"
    when it was collected, after the one line (in one CI run, at the command's exit)."""
    from driftwire.cli.baseline import publish
    from driftwire.errors import TransportError
    from driftwire.offline.baseline import BaselineSpec, build_baseline
    from driftwire.ops.config import load_settings
    from driftwire.ops.topics import baselines_spec

    config = tmp_path / "c.yaml"
    kafka = _sasl_as(secure_kafka, tmp_path, PROCESS_USERS["baseline"])
    config.write_text(yaml.safe_dump({"kafka": kafka, "topics": {"baselines": topic_name}}))
    settings = load_settings(config, env={})
    spec = baselines_spec(settings)
    asyncio.run(_create_compacted(secure_kafka.admin, topic_name, dict(spec.configs)))
    acls = baseline_publish_acls(baselines=topic_name)
    _grant(secure_kafka, PROCESS_USERS["baseline"], acls, Acl("TOPIC", topic_name, "WRITE"))
    train = tmp_path / "train.csv"
    train.write_text("tenure,score\n" + "\n".join(f"{i % 7},0.5" for i in range(400)) + "\n")
    spec_b = BaselineSpec("churn", "1.4.2", prediction_column="score")
    reference = build_baseline(train, spec_b, created_ms=0)
    reported: list[str] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: reported.append(str(context.get("message")))
        )
        with pytest.raises(TransportError, match="is not authorized"):
            await publish(settings, reference)
        gc.collect()

    asyncio.run(scenario())
    assert not [m for m in reported if "Unclosed" in m], reported


async def _create_compacted(bootstrap: str, name: str, configs: dict[str, str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()


@pytest.mark.kafka
@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("dropped", "user"),
    [(None, "producer"), ("WRITE", "producer"), ("WRITE", "producer-new")],
    # "write": the principal may write to another topic, so the broker gives the idempotent
    # producer its id and refuses the batches; "write-anywhere": it may write nowhere, so the
    # broker refuses the producer's id itself (ClusterAuthorizationFailed)
    ids=["all", "write", "write-anywhere"],
)
def test_the_producer_library_needs_exactly_its_listed_acls(
    secure_kafka: SecureKafka,
    topic_name: str,
    tmp_path: Path,
    dropped: str | None,
    user: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from driftwire.producer import InferenceLogger, KafkaSecurity

    asyncio.run(create_topics(secure_kafka.admin, [topic_name]))
    missing = None if dropped is None else Acl("TOPIC", topic_name, dropped)
    acls = producer_acls(events=topic_name)
    if user == "producer":  # whatever ran before on this broker: Write on some other topic
        acls.append(Acl("TOPIC", f"{topic_name}.other", "WRITE"))
    _grant(secure_kafka, PROCESS_USERS[user], acls, missing)
    security = KafkaSecurity(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=PROCESS_USERS[user],
        sasl_password=LEAST_PASSWORD,
        ssl_cafile=str(secure_kafka.ca),
    )
    caplog.set_level("WARNING", logger="driftwire.producer")
    logger = InferenceLogger(secure_kafka.sasl_ssl, topic=topic_name, security=security)
    try:
        for i in range(200):
            logger.log(
                model="churn", model_version="1", features={"i": i}, prediction=0.5, latency_ms=1
            )
    finally:
        stats = logger.close(timeout=20)
    records = asyncio.run(read_all(secure_kafka.admin, topic_name))
    if dropped is None:
        assert (stats.sent, stats.failed, len(records)) == (200, 0, 200), stats
        return
    assert (stats.sent, stats.failed, len(records)) == (0, 200, 0), stats
    principal = f"User:{PROCESS_USERS[user]}"
    lines = [r.getMessage() for r in caplog.records if "not authorized" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    expected = f"Kafka: {principal} is not authorized: it needs "
    assert lines[0].startswith(expected), lines[0]
    assert f"Write and Describe on topic {topic_name} " in lines[0], lines[0]
    assert not any(r.exc_info for r in caplog.records)
