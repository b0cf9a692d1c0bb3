"""Start-up, readiness and liveness of the profile stage against a real broker.

One worker (the profile stage) is followed through a life: started before its input topic
exists (it waits visibly and is not ready), the topic created (picked up within seconds, ready
once partitions are assigned, both logged), events consumed, the broker stopped (not ready
again, logged), then SIGTERM with the broker gone (it exits within
``consumer.shutdown_timeout_seconds``). The broker is this test's own (with topic
auto-creation off, as on a production cluster), because it is stopped halfway.

And a stage whose loop hangs inside a batch is seen as stuck after
``http.liveness_timeout_seconds`` (the watchdog judged only between batches before), and still
stops within its bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import kafka_broker
import orjson
import pytest
from kafkautil import create_topics, produce
from prometheus_client import CollectorRegistry
from spawn import free_port

from driftwire.cli.worker import DETECT_STOP_S, SIGNAL_MARGIN_S
from driftwire.ops.config import Settings
from driftwire.ops.health import Readiness
from driftwire.ops.metrics import Metrics
from driftwire.stages.profile import ProfileStage
from driftwire.stages.profile_core import profile_core

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

SHUTDOWN_S = 5
EVENTS = 60


@pytest.fixture
def own_broker() -> Iterator[kafka_broker.KafkaBroker]:
    broker = kafka_broker.KafkaBroker(extra_properties={"auto.create.topics.enable": "false"})
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class Worker:
    """``driftwire worker`` as a subprocess, its JSON log lines collected as they come."""

    def __init__(self, env: dict[str, str], stage: str = "profile") -> None:
        self.port = int(env["DRIFTWIRE_HTTP_PORT"])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "driftwire.cli.command", "worker", "--stage", stage],
            env={**os.environ, **env},
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        if self.proc.stderr is None:
            return
        for line in self.proc.stderr:
            self.raw.append(line)
            with contextlib.suppress(orjson.JSONDecodeError):
                self.lines.append(orjson.loads(line))

    def messages(self, start: str) -> list[dict[str, Any]]:
        return [e for e in list(self.lines) if str(e.get("message", "")).startswith(start)]

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def readyz(self) -> tuple[int, dict[str, Any]]:
        status, body = self.get("/readyz")
        return status, (orjson.loads(body) if body else {})

    def metric(self, name: str) -> float:
        _, body = self.get("/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def wait_for(what: str, check: Callable[[], bool], limit_s: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > limit_s:
            raise AssertionError(f"not within {limit_s} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def _events(n: int) -> list[bytes]:
    now_ms = int(time.time() * 1000)
    return [
        orjson.dumps(
            {
                "timestamp": now_ms + i,
                "model": "m",
                "model_version": "1",
                "features": {"x": float(i)},
                "prediction": 0.5,
                "latency_ms": 3.0,
            }
        )
        for i in range(n)
    ]


def test_worker_waits_for_its_topic_is_ready_when_assigned_and_stops_in_bounds(
    own_broker: kafka_broker.KafkaBroker, topic_name: str
) -> None:
    bootstrap = own_broker.bootstrap_servers
    worker = Worker(
        {
            "DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DRIFTWIRE_TOPICS_EVENTS": topic_name,
            "DRIFTWIRE_CONSUMER_GROUP_ID": f"g-{topic_name}",
            "DRIFTWIRE_CONSUMER_SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_S),
            "DRIFTWIRE_HTTP_PORT": str(free_port()),
            "DRIFTWIRE_TOPICS_REPLICATION_FACTOR": "1",
        }
    )
    try:
        waiting = f"input topic {topic_name} does not exist (topics.events); waiting for it"
        wait_for("the wait logged", lambda: bool(worker.messages(waiting)), 60)
        status, body = worker.readyz()
        assert status == 503
        assert body["waiting_for"] == {"profile": f"input topic {topic_name} to exist"}
        wait_for("the wait logged again", lambda: len(worker.messages(waiting)) >= 2, 10)

        asyncio.run(create_topics(bootstrap, [topic_name], partitions=2))
        created = time.monotonic()
        found = f"input topic {topic_name} exists now; joining the consumer group"
        wait_for("the topic picked up", lambda: bool(worker.messages(found)), 10)
        assert time.monotonic() - created < 3  # looked for every second, not every 5 minutes
        assigned = f"partitions assigned: {topic_name}[0,1]"
        wait_for("the assignment logged", lambda: bool(worker.messages(assigned)), 30)
        wait_for("ready", lambda: worker.readyz()[0] == 200, 10)
        assert worker.readyz()[1]["waiting_for"] == {}

        asyncio.run(produce(bootstrap, topic_name, _events(EVENTS), partitions=2))
        wait_for(
            "events consumed",
            lambda: worker.metric("driftwire_events_consumed_total") == EVENTS,
            30,
        )

        own_broker.stop()
        wait_for("not ready without the broker", lambda: worker.readyz()[0] == 503, 20)
        assert worker.readyz()[1]["broker_reachable"] is False
        lost = f"Kafka broker unreachable at {bootstrap}; not ready until it answers"
        assert len(worker.messages(lost)) == 1

        worker.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        worker.proc.wait(timeout=SHUTDOWN_S + 25)
        took = time.monotonic() - signalled
        assert took < SHUTDOWN_S + 5, took
        assert "Traceback" not in "".join(worker.raw)
        assert worker.messages("stopping: ")  # says what was not finished in time
    finally:
        worker.stop()


def test_sigterm_with_a_frozen_broker_ends_both_stages_within_the_bound(
    own_broker: kafka_broker.KafkaBroker, topic_name: str
) -> None:
    """A broker that stops answering (SIGSTOP: connections open, no replies) is the worst
    case for a stop: every client waits for its request timeouts. The worker still ends
    within its stop bound, with no traceback from a client thread that outlived the loop
    (the Faust app's consumer thread printed "Event loop is closed" tracebacks and held
    the process 10 s longer)."""
    bootstrap = own_broker.bootstrap_servers
    asyncio.run(create_topics(bootstrap, [topic_name], partitions=2))
    worker = Worker(
        {
            "DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DRIFTWIRE_TOPICS_EVENTS": topic_name,
            "DRIFTWIRE_CONSUMER_SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_S),
            "DRIFTWIRE_HTTP_PORT": str(free_port()),
            "DRIFTWIRE_TOPICS_REPLICATION_FACTOR": "1",
        },
        stage="all",
    )
    frozen = False
    try:
        wait_for("both stages started", lambda: bool(worker.messages("detect stage started")), 90)
        assert own_broker.pid is not None
        os.kill(own_broker.pid, signal.SIGSTOP)
        frozen = True
        worker.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        worker.proc.wait(timeout=SHUTDOWN_S + DETECT_STOP_S + SIGNAL_MARGIN_S + 30)
        took = time.monotonic() - signalled
        assert took < SHUTDOWN_S + DETECT_STOP_S + SIGNAL_MARGIN_S + 2, took
        worker.stop()  # collects the rest of its output
        assert "Traceback" not in "".join(worker.raw), "".join(worker.raw)[-3000:]
        assert worker.messages("worker stopped")
    finally:
        if frozen:
            os.kill(own_broker.pid or 0, signal.SIGCONT)
        worker.stop()


class _HangingBatch(ProfileStage):
    """A profile stage whose handling of the first records never finishes, as a commit, a send
    or a rebalance listener waiting on a broker that never answers would."""

    async def _process(self, *args: Any, **kwargs: Any) -> None:
        await super()._process(*args, **kwargs)
        await asyncio.Event().wait()


def test_a_loop_blocked_in_a_batch_is_seen_as_stuck_and_stops_in_bounds(
    kafka_bootstrap: str, topic_name: str
) -> None:
    timeout_s, shutdown_s = 2.0, 2.0
    settings = Settings.model_validate(
        {
            "kafka": {"bootstrap_servers": kafka_bootstrap},
            "topics": {
                "events": topic_name,
                "partials": f"{topic_name}.partials",
                "alerts": f"{topic_name}.alerts",
                "baselines": f"{topic_name}.baselines",
            },
            "consumer": {
                "group_id": f"{topic_name}-profile",
                "fetch_timeout_ms": 200,
                "shutdown_timeout_seconds": shutdown_s,
            },
            "http": {"liveness_timeout_seconds": timeout_s},
        }
    )
    registry = CollectorRegistry()
    readiness = Readiness()
    stage = _HangingBatch(settings, profile_core(settings), Metrics(registry), readiness)

    async def scenario() -> tuple[float, float]:
        await create_topics(kafka_bootstrap, [topic_name, f"{topic_name}.partials"])
        await produce(kafka_bootstrap, topic_name, _events(EVENTS))
        stop = asyncio.Event()
        task = asyncio.create_task(stage.run(stop))
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not registry.get_sample_value(
            "driftwire_events_consumed_total", {"topic": topic_name}
        ):
            assert not task.done() and loop.time() - started < 60, "no records read"
            await asyncio.sleep(0.1)
        blocked = loop.time()
        while not readiness.stuck:
            assert loop.time() - blocked < timeout_s + 5, "a hanging batch not seen as stuck"
            await asyncio.sleep(0.1)
        seen = loop.time() - blocked
        stop.set()  # what the worker's watchdog does when it sees stuck
        stopped = loop.time()
        await asyncio.wait_for(task, timeout=60)
        return seen, loop.time() - stopped

    seen, stopping = asyncio.run(scenario())
    assert timeout_s <= seen < timeout_s + 2.5
    assert stopping < 2 * shutdown_s + 3 * ProfileStage.CLOSE_MIN_S + 1
