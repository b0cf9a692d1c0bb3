"""A worker whose detect stage fails mid-run ends, against the real broker: within a bounded
time, with exit code 1 and one line naming the failure, and ``/healthz`` answers 503 from
the failure until the process is gone (a supervisor that only watches ``/healthz`` restarts
it too).

The failure is a real one: a record on the partials topic that stage 2 refuses must be
dead-lettered, and the dead-letter topic (created beforehand with ``max.message.bytes`` 64)
refuses the dead letter, so stage 2 stops rather than lose the record.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kafka_broker import create_topic
from kafkautil import produce
from test_pipeline_kafka import START, Worker, input_topic

from driftwire.offline.generator import StreamSpec, generate

pytestmark = pytest.mark.kafka

#: What the worker may take from the failure to its exit: the profile stage's stop bound
#: (``consumer.shutdown_timeout_seconds``, 5 here) and the detect stage's (30 s), with
#: room; it usually takes a second or two.
EXIT_BOUND_S = 5 + 30 + 5


def _healthz(port: int) -> tuple[int, dict[str, object]] | None:
    """(status, body) of ``/healthz``, or None once nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None


@pytest.mark.timeout(120)
def test_a_detect_stage_failing_mid_run_ends_the_worker_within_a_bound(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    assert START > 0
    input_topic(kafka_bootstrap, topic_name, list(generate(StreamSpec(events=2000, seed=3))))
    create_topic(kafka_bootstrap, f"{topic_name}.dlq", 1, {"max.message.bytes": "64"})
    w = Worker(tmp_path, kafka_bootstrap, topic_name, "fail")
    w.doc["consumer"]["shutdown_timeout_seconds"] = 5  # type: ignore[index]
    w.config.write_text(__import__("yaml").safe_dump(w.doc))
    w.start()
    assert w.proc is not None
    deadline = time.monotonic() + 60
    while not w.ready():  # both stages running
        assert w.proc.poll() is None, w.log.read_text()[-5000:]
        assert time.monotonic() < deadline, w.log.read_text()[-5000:]
        time.sleep(0.1)
    health = _healthz(w.port)
    assert health is not None and health[0] == 200, health
    partials = str(w.doc["topics"]["partials"])  # type: ignore[index]
    asyncio.run(produce(kafka_bootstrap, partials, [b"not a partial"], partitions=1))
    failed_at = time.monotonic()
    answers: list[tuple[int, dict[str, object]]] = []
    while w.proc.poll() is None:
        assert time.monotonic() - failed_at < EXIT_BOUND_S + 30, (
            f"the worker did not exit; /healthz said {answers[-3:]}\n{w.log.read_text()[-5000:]}"
        )
        answer = _healthz(w.port)
        if answer is not None:
            answers.append(answer)
        time.sleep(0.05)
    took = time.monotonic() - failed_at
    log = w.log.read_text()
    assert w.proc.returncode == 1, log[-5000:]
    assert took < EXIT_BOUND_S, f"exited after {took:.1f} s\n{log[-5000:]}"
    # /healthz never said ok once the stage had failed: 503 "failed" until nothing answered
    after = [a for a in answers if a[0] != 200 or a[1].get("status") != "ok"]
    assert after, f"the worker exited before /healthz was asked again ({answers})"
    first = answers.index(after[0])
    assert all(a[0] == 503 and a[1]["status"] == "failed" for a in answers[first:]), answers
    assert str(after[0][1]["reason"]).startswith("detect stage failed: "), after[0]
    # one line says why, and none of ours carries a traceback
    lines = [x for x in log.splitlines() if "stopping the worker (exit code 1)" in x]
    assert len(lines) == 1, lines
    assert "detect stage failed: MessageSizeTooLargeError" in lines[0], lines[0]
    ours = [x for x in log.splitlines() if '"logger":"driftwire.' in x]
    assert not [x for x in ours if "Traceback" in x], log[-5000:]
