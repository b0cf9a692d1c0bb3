"""Fault (f) on the real broker: a flood of random names through the profile stage.

20,000 events, half of a real model and half with random model, version, segment and feature
names, produced to three partitions and profiled by the Kafka profile stage with small caps.
Every valid event is in exactly one place (a partial on the topic, or dropped and counted by
the models cap), the real model keeps its segments and features, the caps' overflow is
counted, and the stage's metrics stay under the series bound the caps imply.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import numpy as np
import orjson
import pytest
from kafkautil import create_topics, produce, read_all
from prometheus_client import CollectorRegistry

from driftwire.ops.config import Settings
from driftwire.ops.health import Readiness
from driftwire.ops.metrics import Metrics
from driftwire.partials import Partial, decode_record
from driftwire.stages.profile import ProfileStage
from driftwire.stages.profile_core import profile_core

pytestmark = pytest.mark.kafka

PARTITIONS = 3
EVENTS = 20_000
CAPS = {"max_models": 10, "max_versions": 2, "max_segments": 4, "max_features": 8}
#: samples of the profile stage's metrics: no label of theirs comes from event data except the
#: late/future counters' model label, capped at 100 + __other__ (2 samples each: _total and
#: _created); the rest are fixed sets (reasons, caps, results, phases, the lag per partition)
#: and the histogram buckets, about 100 samples
SERIES_BOUND = 100 + 2 * 2 * 101


def flood(start_ms: int) -> list[bytes]:
    rng = np.random.default_rng(11)

    def name(prefix: str) -> str:
        return f"{prefix}{rng.integers(1 << 40):x}"

    out = []
    for i in range(EVENTS):
        t = start_ms + i * 5
        if i % 2 == 0:
            event = {
                "model": "churn",
                "model_version": "1",
                "segment": {"region": ["eu", "us"][i % 4 // 2]},
                "features": {"age": float(rng.normal(40, 5)), "plan": "gold"},
            }
        else:
            # the first events of every partition name recurring models, so that the models
            # the cap admits (the first seen, whichever partition is read first) overflow
            # their own version, segment and feature caps too
            recurring = i < 300 or rng.random() >= 0.5
            event = {
                "model": f"m{rng.integers(30)}" if recurring else name("m"),
                "model_version": name("v"),
                "segment": {name("k"): name("s")},
                "features": {name("f"): 1.0 for _ in range(4)},
            }
        event.update(timestamp=t, prediction=0.5, latency_ms=10.0)
        out.append(orjson.dumps(event))
    return out


def test_a_cardinality_flood_through_the_profile_stage_keeps_to_its_caps(
    kafka_bootstrap: str, topic_name: str
) -> None:
    settings = Settings.model_validate(
        {
            "kafka": {"bootstrap_servers": kafka_bootstrap},
            "topics": {
                "events": topic_name,
                "partials": f"{topic_name}.partials",
                "alerts": f"{topic_name}.alerts",
                "baselines": f"{topic_name}.baselines",
            },
            "consumer": {"group_id": f"{topic_name}-profile", "fetch_timeout_ms": 200},
            "profile": {"idle_partition_seconds": 1, **CAPS},
            "http": {"host": "127.0.0.1", "port": 0},
        }
    )
    registry = CollectorRegistry()
    values = flood(int(time.time() * 1000) - EVENTS * 5)
    most_series = 0

    async def scenario() -> None:
        nonlocal most_series
        await create_topics(kafka_bootstrap, [topic_name], PARTITIONS)
        await produce(kafka_bootstrap, topic_name, values, partitions=PARTITIONS)
        stage = ProfileStage(settings, profile_core(settings), Metrics(registry), Readiness())
        stop = asyncio.Event()
        task = asyncio.create_task(stage.run(stop))
        deadline = time.monotonic() + 90
        consumed = {"topic": topic_name}
        while (registry.get_sample_value("driftwire_events_consumed_total", consumed) or 0) < (
            EVENTS
        ):
            assert not task.done() and time.monotonic() < deadline
            most_series = max(most_series, sum(len(m.samples) for m in registry.collect()))
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.5)  # the idle partitions close their buckets
        stop.set()
        await asyncio.wait_for(task, timeout=60)
        most_series = max(most_series, sum(len(m.samples) for m in registry.collect()))

    asyncio.run(scenario())
    seen: dict[str, Partial] = {}
    for record in asyncio.run(read_all(kafka_bootstrap, settings.topics.partials)):
        rec = decode_record(record.value)
        if isinstance(rec, Partial):
            seen.setdefault(rec.id, rec)
    events: dict[str, int] = defaultdict(int)
    segments: set[str] = set()
    for partial in seen.values():
        events[partial.model] += partial.events
        if partial.model == "churn":
            segments.update(partial.segments)

    def overflow(what: str) -> float:
        value = registry.get_sample_value("driftwire_cardinality_overflow_total", {"what": what})
        return value or 0.0

    folded = {w: overflow(w) for w in ("models", "versions", "segments", "features")}
    print(f"samples: at most {most_series} (bound {SERIES_BOUND}); overflow {folded}")
    assert events["churn"] == EVENTS // 2 and segments == {"region=eu", "region=us"}
    assert sum(events.values()) + overflow("models") == EVENTS  # each event in one place
    assert all(overflow(what) > 0 for what in ("models", "versions", "segments", "features"))
    assert most_series <= SERIES_BOUND, most_series
