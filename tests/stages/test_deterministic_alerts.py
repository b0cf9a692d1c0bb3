"""The same input gives byte-identical alerts: in one process and across processes.

The stream has a drift in one segment that starts and ends, an upstream change (three features
of all traffic at once: one incident, re-sent as members join) and a latency anomaly. Every
alert is compared as encoded for the alerts topic (key, CloudEvent bytes and ``ce_*``
headers); the CloudEvent's ``id`` and ``time`` derive from the evaluation time (event time),
so nothing is normalised. Two processes with different ``PYTHONHASHSEED`` must agree too, so
no result may depend on set or dict order of strings, on a clock or on an unseeded RNG.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

import driftwire
from driftwire.alerts.alert import encode
from driftwire.offline.generator import Change, StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.stages.inmemory import InMemoryPipeline

MINUTE = 60_000
START = StreamSpec(events=1).start_ms

Encoded = list[tuple[bytes, bytes, list[tuple[str, bytes]]]]


def scenario() -> StreamSpec:
    t = START + 25 * MINUTE
    return StreamSpec(
        events=30_000,
        seed=7,
        events_per_second=10.0,  # 50 minutes, 600 events per 1-minute bucket
        changes=(
            Change("income", START + 20 * MINUTE, 1.5, "region=eu,tier=gold", START + 40 * MINUTE),
            *(Change(f, t, 2.0) for f in ("age", "tenure_days", "sessions_7d")),
            Change("latency", t, 6.0, "region=us,tier=gold"),
        ),
    )


def encoded_alerts() -> Encoded:
    settings = Settings.model_validate(
        {"detect": {"window_buckets": 5, "min_count": 200, "min_reference_count": 400}}
    )
    pipeline = InMemoryPipeline(settings)
    return [encode(a, "driftwire-test") for a in pipeline.run(generate(scenario()))]


def _dumps(alerts: Encoded) -> bytes:
    return orjson.dumps(
        [[k.decode(), v.decode(), [[n, h.decode()] for n, h in hs]] for k, v, hs in alerts]
    )


def _loads(raw: bytes) -> Encoded:
    return [
        (k.encode(), v.encode(), [(n, h.encode()) for n, h in hs]) for k, v, hs in orjson.loads(raw)
    ]


@pytest.fixture(scope="module")
def reference_run() -> Encoded:
    return encoded_alerts()


def test_the_scenario_has_a_drift_that_resolves_an_incident_and_a_latency_anomaly(
    reference_run: Encoded,
) -> None:
    seen = Counter(
        (e["data"]["labels"]["kind"], e["data"]["status"])
        for e in (orjson.loads(v) for _, v, _ in reference_run)
    )
    assert seen[("data_drift", "firing")] >= 1
    assert seen[("data_drift", "resolved")] >= 1
    assert seen[("upstream_change", "firing")] >= 2  # fired, then re-sent as members joined
    assert seen[("latency_anomaly", "firing")] >= 1


def test_two_fresh_pipelines_give_byte_identical_alerts(reference_run: Encoded) -> None:
    assert reference_run
    assert encoded_alerts() == reference_run


def test_two_processes_with_other_hash_seeds_give_byte_identical_alerts(
    reference_run: Encoded,
) -> None:
    src = str(Path(driftwire.__file__).parents[1])
    path = os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])
    children = [
        subprocess.Popen(
            [sys.executable, __file__],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path, "PYTHONHASHSEED": seed},
        )
        for seed in ("1", "4242")
    ]
    outputs = []
    for child in children:
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0
        outputs.append(_loads(out))
    assert outputs[0]
    assert outputs[0] == outputs[1]
    assert outputs[0] == reference_run  # and this process agrees


if __name__ == "__main__":  # the child of the cross-process test
    sys.stdout.buffer.write(_dumps(encoded_alerts()))
