"""Exactly-once is the default: a broker that cannot give stage 1 transactions ends the worker
with one line naming the fix, instead of a silent hang.

The broker here is this test's own single node left with Kafka's default
``transaction.state.log.replication.factor`` (3) and ``min.isr`` (2): it cannot create
``__transaction_state``, so it answers every transactional producer's FindCoordinator with
COORDINATOR_NOT_AVAILABLE, which aiokafka retries for ever. (A missing transactional-id ACL is
tested with the other ACLs in ``test_least_privilege.py``.)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import kafka_broker
import orjson
import pytest
from kafkautil import create_topics, produce
from spawn import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

COORDINATOR_TIMEOUT_S = 4


@pytest.fixture(scope="module")
def broker_without_transactions() -> Iterator[kafka_broker.KafkaBroker]:
    broker = kafka_broker.KafkaBroker(
        extra_properties={
            "transaction.state.log.replication.factor": "3",
            "transaction.state.log.min.isr": "2",
        }
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _event(i: int) -> bytes:
    return orjson.dumps(
        {
            "timestamp": int(time.time() * 1000) + i,
            "model": "m",
            "model_version": "1",
            "features": {"x": float(i)},
            "prediction": 0.5,
            "latency_ms": 3.0,
        }
    )


PROFILE_WORKER = [sys.executable, "-m", "driftwire.cli.command", "worker", "--stage", "profile"]


def _worker_env(bootstrap: str, topic: str, port: int, **env: str) -> dict[str, str]:
    """The environment of a profile-stage worker on ``topic``, serving ``/metrics`` on ``port``."""
    return {
        **os.environ,
        "DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTWIRE_TOPICS_EVENTS": topic,
        "DRIFTWIRE_CONSUMER_GROUP_ID": f"g-{topic}",
        "DRIFTWIRE_CONSUMER_SHUTDOWN_TIMEOUT_SECONDS": "5",
        "DRIFTWIRE_HTTP_PORT": str(port),
        "DRIFTWIRE_TOPICS_REPLICATION_FACTOR": "1",
        **env,
    }


def _run_worker(
    bootstrap: str, topic: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        PROFILE_WORKER,
        env=_worker_env(bootstrap, topic, free_port(), **env),
        capture_output=True,
        text=True,
        timeout=90,
    )
    return done, time.monotonic() - started


def test_a_broker_without_a_transaction_coordinator_ends_the_worker_with_one_line(
    broker_without_transactions: kafka_broker.KafkaBroker, topic_name: str
) -> None:
    bootstrap = broker_without_transactions.bootstrap_servers
    asyncio.run(create_topics(bootstrap, [topic_name], partitions=2))
    asyncio.run(produce(bootstrap, topic_name, [_event(i) for i in range(20)], partitions=2))
    done, took = _run_worker(
        bootstrap,
        topic_name,
        DRIFTWIRE_PROCESSING_COORDINATOR_TIMEOUT_SECONDS=str(COORDINATOR_TIMEOUT_S),
    )
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "driftwire: Kafka: no transaction coordinator answered for transactional id "
        f"g-{topic_name}-eos-{topic_name}-"
    ), last
    assert f"within {COORDINATOR_TIMEOUT_S} s (processing.coordinator_timeout_seconds)" in last
    assert "set processing.guarantee: at_least_once" in last, last
    assert "transaction.state.log.replication.factor=1" in last, last
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert took < 60, took


def test_the_same_broker_serves_at_least_once(
    broker_without_transactions: kafka_broker.KafkaBroker, topic_name: str, tmp_path: Path
) -> None:
    """The fix the line names works: with ``at_least_once`` stage 1 runs on this broker (it
    consumes the events and stops cleanly on SIGTERM)."""
    bootstrap = broker_without_transactions.bootstrap_servers
    asyncio.run(create_topics(bootstrap, [topic_name], partitions=2))
    asyncio.run(produce(bootstrap, topic_name, [_event(i) for i in range(20)], partitions=2))
    port = free_port()
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            PROFILE_WORKER,
            env=_worker_env(
                bootstrap,
                topic_name,
                port,
                DRIFTWIRE_PROCESSING_GUARANTEE="at_least_once",
                DRIFTWIRE_PROCESSING_COORDINATOR_TIMEOUT_SECONDS=str(COORDINATOR_TIMEOUT_S),
            ),
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 60
        while _metric(port, "driftwire_events_consumed_total") < 20:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the events were not consumed"
            time.sleep(0.2)
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body = r.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith((name + "{", name + " "))
    )
