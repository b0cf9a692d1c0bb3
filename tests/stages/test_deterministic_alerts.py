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

import numpy as np
import orjson
import pytest

import driftwire
from driftwire.alerts.alert import encode
from driftwire.decode.decoder import decode_batch
from driftwire.decode.limits import DecoderLimits
from driftwire.detect.detector import Detector
from driftwire.detect.reference import ReferenceStore
from driftwire.offline.generator import Change, StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.partials import Partial, Watermark, decode_record
from driftwire.stages.inmemory import InMemoryPipeline
from driftwire.stages.profile_core import profile_core

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


SETTINGS = Settings.model_validate(
    {"detect": {"window_buckets": 5, "min_count": 200, "min_reference_count": 400}}
)


def encoded_alerts() -> Encoded:
    pipeline = InMemoryPipeline(SETTINGS)
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


def partials_of_two_partitions() -> list[list[bytes]]:
    """Stage 1's records (partials, then watermarks) of two input partitions that hold
    different segments, as producers keyed by region would fill them: eu and us in one,
    apac and latam in the other."""
    settings = SETTINGS
    core = profile_core(settings, topic="events", partitions=2)
    limits = DecoderLimits(
        max_event_bytes=settings.profile.max_event_bytes,
        max_features=settings.profile.max_features,
    )
    values = list(generate(scenario()))
    west = [orjson.loads(v)["segment"]["region"] in ("eu", "us") for v in values]
    records: list[list[bytes]] = [[], []]
    for partition in (0, 1):
        core.assign(partition, None)
        mine = [v for v, w in zip(values, west, strict=True) if w == (partition == 0)]
        for first in range(0, len(mine), 2000):
            chunk = mine[first : first + 2000]
            batch = decode_batch(chunk, limits)
            offsets = np.arange(first, first + len(chunk), dtype=np.int64)
            core.process(partition, batch, offsets[batch.index], None)
            core.note_position(partition, first + len(chunk))
            records[partition] += [out.value for out in core.due(None).records]
        records[partition] += [out.value for out in core.flush(partition).records]
        end = core.max_event_time(partition)
        assert end is not None
        mark = Watermark("events", partition, 2, end + 1, idle=False)
        records[partition].append(mark.encode())
    return records


def detect(records: list[list[bytes]], order: list[int]) -> Encoded:
    """Stage 2 fed each partition's records in their order, the partitions interleaved by
    ``order`` (the partition each next record comes from)."""
    detector = Detector(SETTINGS.detect, SETTINGS.alerts, ReferenceStore(), bucket_ms=60_000)
    position = [0, 0]
    alerts = []
    for partition in order:
        record = decode_record(records[partition][position[partition]])
        position[partition] += 1
        if isinstance(record, Partial):
            alerts += detector.on_partial(record, 0)
        else:
            alerts += detector.on_watermark(record, 0)
    assert position == [len(r) for r in records]
    return [encode(a, "driftwire-test") for a in alerts]


def test_the_arrival_order_of_two_partitions_partials_does_not_change_the_alerts() -> None:
    records = partials_of_two_partitions()
    counts = [len(r) for r in records]
    west_first = detect(records, [0] * counts[0] + [1] * counts[1])
    east_first = detect(records, [1] * counts[1] + [0] * counts[0])
    rng = np.random.default_rng(5)
    shuffled = detect(records, rng.permutation([0] * counts[0] + [1] * counts[1]).tolist())
    assert west_first
    assert east_first == west_first
    assert shuffled == west_first


if __name__ == "__main__":  # the child of the cross-process test
    sys.stdout.buffer.write(_dumps(encoded_alerts()))
