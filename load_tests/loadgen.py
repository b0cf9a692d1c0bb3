"""Load generator: N inference events to a Kafka topic, at a target rate or as fast as possible.

Deterministic from a seed (driftwire.offline.generator), with configurable models, versions,
features,
segments, and an optional drift or latency spike at a given minute of event time.

    python load_tests/loadgen.py --bootstrap 127.0.0.1:9092 --topic inference-events \\
        --events 1000000 --rate 0 --partitions 4 --drift income:40 --latency-spike 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from driftwire.offline.generator import REGIONS, TIERS, Change, StreamSpec, generate

MINUTE = 60_000


@dataclass(frozen=True)
class LoadReport:
    events: int
    bytes: int
    seconds: float
    topic: str
    partitions: int

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def build_spec(
    *,
    events: int,
    seed: int = 1,
    models: int = 1,
    versions: int = 1,
    numeric: int = 8,
    categorical: int = 4,
    segments: int = 8,
    events_per_second: float = 1000.0,
    drift: tuple[str, int] | None = None,
    latency_spike: int | None = None,
    drift_segment: str | None = None,
    start_ms: int | None = None,
    changes: Sequence[Change] = (),
) -> list[StreamSpec]:
    """One spec per model; segments = regions x tiers, as many as asked for.

    ``drift`` and ``latency_spike`` are minutes after ``start_ms`` (default: the generator's
    start, 2026-01-01T00:00Z); ``changes`` are added as they are (absolute event times).
    """
    regions = tuple(REGIONS) + tuple(f"r{i}" for i in range(max(0, segments - 8)))
    n_regions = max(1, min(len(regions), (segments + 1) // 2))
    tiers = TIERS if segments > 1 else TIERS[:1]
    start = StreamSpec(events=1).start_ms if start_ms is None else start_ms
    injected: list[Change] = []
    if drift is not None:
        injected.append(Change(drift[0], start + drift[1] * MINUTE, 1.5, drift_segment))
    if latency_spike is not None:
        injected.append(Change("latency", start + latency_spike * MINUTE, 10.0))
    injected.extend(changes)
    per_model = events // models
    return [
        StreamSpec(
            events=per_model,
            seed=seed + m,
            model="churn" if m == 0 else f"model{m}",
            versions=tuple(f"1.{v}.0" for v in range(versions)),
            start_ms=start,
            events_per_second=events_per_second / models,
            numeric_features=numeric,
            categorical_features=categorical,
            regions=regions[:n_regions],
            tiers=tiers,
            changes=tuple(injected),
        )
        for m in range(models)
    ]


async def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def produce(
    bootstrap: str,
    topic: str,
    specs: list[StreamSpec],
    *,
    rate: float = 0.0,
    partitions: int = 1,
) -> LoadReport:
    """Send the events of ``specs`` (interleaved) to ``topic``; ``rate`` 0 = as fast as possible.

    Events go round-robin over the partitions (event i to partition ``i % partitions``), in
    batches the producer sends as they are (no per-event send and future).
    """
    await ensure_topic(bootstrap, topic, partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        max_batch_size=512 * 1024,
        compression_type=None,
        acks=1,
    )
    await producer.start()
    sent = size = 0
    started = time.perf_counter()
    try:
        streams = [generate(s) for s in specs]
        builders = [producer.create_batch() for _ in range(partitions)]
        pending: list[asyncio.Future[object]] = []

        async def ship(p: int) -> None:
            if builders[p].record_count():
                pending.append(await producer.send_batch(builders[p], topic, partition=p))
                builders[p] = producer.create_batch()

        i = 0
        while streams:
            for stream in list(streams):
                chunk = list(islice(stream, 1000))
                if not chunk:
                    streams.remove(stream)
                    continue
                for value in chunk:
                    p = i % partitions
                    if builders[p].append(key=None, value=value, timestamp=None) is None:
                        await ship(p)  # full
                        builders[p].append(key=None, value=value, timestamp=None)
                    i += 1
                    size += len(value)
                sent += len(chunk)
                if rate > 0:
                    for p in range(partitions):  # paced: what is due goes out now
                        await ship(p)
                    ahead = sent / rate - (time.perf_counter() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            if len(pending) > 64:
                await asyncio.gather(*pending)
                pending.clear()
        for p in range(partitions):
            await ship(p)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return LoadReport(sent, size, time.perf_counter() - started, topic, partitions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", default="inference-events")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s, 0 = unthrottled")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--models", type=int, default=1)
    parser.add_argument("--versions", type=int, default=1)
    parser.add_argument("--numeric", type=int, default=8)
    parser.add_argument("--categorical", type=int, default=4)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument(
        "--event-rate",
        type=float,
        default=1000.0,
        help="events per second of event time (spacing of timestamps)",
    )
    parser.add_argument("--drift", help="FEATURE:MINUTE, e.g. income:40")
    parser.add_argument(
        "--drift-segment", help="limit the drift to one segment, e.g. region=eu,tier=gold"
    )
    parser.add_argument("--latency-spike", type=int, help="minute of a 10x latency spike")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    drift = None
    if args.drift:
        name, minute = args.drift.split(":")
        drift = (name, int(minute))
    specs = build_spec(
        events=args.events,
        seed=args.seed,
        models=args.models,
        versions=args.versions,
        numeric=args.numeric,
        categorical=args.categorical,
        segments=args.segments,
        events_per_second=args.event_rate,
        drift=drift,
        latency_spike=args.latency_spike,
        drift_segment=args.drift_segment,
    )
    report = asyncio.run(
        produce(args.bootstrap, args.topic, specs, rate=args.rate, partitions=args.partitions)
    )
    json.dump(
        {
            "events": report.events,
            "bytes": report.bytes,
            "seconds": round(report.seconds, 3),
            "events_per_second": round(report.events_per_second),
            "topic": report.topic,
            "partitions": report.partitions,
        },
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
