"""The profile stage's intake alone: aiokafka's ``getmany`` against driftwire's batch-wise one.

The same topic (the pipeline benchmark's events: 12 features x 8 segments x 2 versions, about
430 bytes each, 4 partitions) is read to its end by a fresh consumer without a group, again and
again, each way in turn:

* ``getmany``: ``AIOKafkaConsumer.getmany`` and what the profile stage did with its records
  before decoding (the values as a list, the offsets as an int64 array);
* ``intake``: :class:`~driftwire.stages._fetch.RecordIntake`, with the compiled CRC check of
  fetched batches when the extension has it (``batch_crcs``);
* ``intake_aiokafka_crc``: the same intake with aiokafka checking every batch's CRC.

CPU seconds of this process (the fetcher's background task included) from the first batch in
hand to the last, per million events; the median and every round are printed and written as
JSON (``--json``). Uses a local broker (``tools/kafka_broker.py``) unless
``KAFKA_BOOTSTRAP_SERVERS`` names one.

    python load_tests/bench_intake.py [--events 200000] [--rounds 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
import uuid
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from driftwire.ops.config import ConsumerSettings
from driftwire.stages._fetch import RecordIntake, batch_crcs, intake_problem

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import kafka_broker
import loadgen

PARTITIONS = 4
MAX_RECORDS = ConsumerSettings().max_batch_records  # what the profile stage asks for
FETCH_BYTES = 4 * 1024 * 1024  # the profile stage's max_partition_fetch_bytes
WAYS = ("getmany", "intake", "intake_aiokafka_crc")
_VALUE = attrgetter("value")
_OFFSET = attrgetter("offset")


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def read_once(bootstrap: str, topic: str, total: int, way: str) -> float:
    """CPU seconds per million events to read ``topic`` to its end one ``way``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=FETCH_BYTES,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        intake = None
        if way != "getmany":
            problem = intake_problem(consumer)
            if problem is not None:
                raise SystemExit(f"the intake cannot read with this aiokafka: {problem}")
            intake = RecordIntake(consumer, compiled_crc=way == "intake")
        n = 0
        cpu0 = 0.0
        deadline = time.monotonic() + 120
        while n < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{way} read {n} of {total} events")
            if intake is None:
                data: dict[Any, Any] = await consumer.getmany(
                    timeout_ms=500, max_records=MAX_RECORDS
                )
            else:
                data = await intake.getmany(timeout_ms=500, max_records=MAX_RECORDS)
            if data and not cpu0:
                cpu0 = cpu_s()
            for records in data.values():
                if intake is None:  # the profile stage before the intake
                    values = [r.value for r in records]
                    offsets = np.fromiter((r.offset for r in records), np.int64, len(records))
                else:
                    values = list(map(_VALUE, records))
                    offsets = np.fromiter(map(_OFFSET, records), np.int64, len(records))
                n += len(values) + 0 * len(offsets)
        return (cpu_s() - cpu0) / n * 1e6
    finally:
        await consumer.stop()


async def bench(bootstrap: str, events: int, rounds: int) -> dict[str, Any]:
    topic = f"bench-intake-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    specs = loadgen.build_spec(
        events=events, seed=7, versions=2, numeric=8, categorical=4, segments=8
    )
    report = await loadgen.produce(bootstrap, topic, specs, partitions=PARTITIONS)
    runs: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(rounds):
        for way in WAYS:
            runs[way].append(round(await read_once(bootstrap, topic, report.events, way), 3))
            print(f"{way}: {runs[way][-1]} CPU-s per million events", file=sys.stderr)
    median = {way: statistics.median(v) for way, v in runs.items()}
    return {
        "events": report.events,
        "bytes_per_event": round(report.bytes / max(1, report.events)),
        "compiled_crc": batch_crcs is not None,
        "load": os.getloadavg(),
        "cpu_s_per_million_events": runs,
        "median": median,
        "intake_over_getmany": round(median["intake"] / median["getmany"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    broker = None if external else kafka_broker.KafkaBroker().start()
    try:
        bootstrap = external or broker.bootstrap_servers  # type: ignore[union-attr]
        result = asyncio.run(bench(bootstrap, args.events, args.rounds))
    finally:
        if broker is not None:
            broker.stop()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
