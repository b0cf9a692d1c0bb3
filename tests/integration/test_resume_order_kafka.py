"""A partition reported idle that resumes: its watermark reaches the partials topic before
another partition's partials, with a producer per input partition (exactly-once).

Stage 2 does not wait for an idle partition, so if the partials of partition 0 (read first)
reach a partials partition before partition 1 says it is active again, stage 2 evaluates
their buckets without partition 1 and sets its partials aside as late. With one producer the
order of sends is the order of the log; with a transactional producer per input partition it
is not: each producer sends its batches on its own, and a transaction's first batch waits for
``AddPartitionsToTxn``. The fault test of a broker restart lost half of every bucket so when
stage 1's producers batched more than aiokafka's 16 KiB.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
from kafkautil import create_topics, produce, read_all
from prometheus_client import CollectorRegistry
from test_profile_stage import settings_dict

from driftwire.offline.generator import StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.ops.health import Readiness
from driftwire.ops.metrics import Metrics
from driftwire.partials import Partial, Watermark, decode_record
from driftwire.stages.profile import ProfileStage
from driftwire.stages.profile_core import profile_core

pytestmark = pytest.mark.kafka

DELAY_S = 1.0
_DELAYED: set[asyncio.Task[None]] = set()  # the delayed sends, held until they are done


class _SlowSecondProducer(ProfileStage):
    """Input partition 1's records reach the broker a second after they are sent, as when its
    producer's transaction coordinator answers slowly; the others' at once."""

    async def _send(
        self, source: int, topic: str, value: bytes | None, **options: Any
    ) -> asyncio.Future[object]:
        send = super()._send
        if source != 1:
            return await send(source, topic, value, **options)
        acknowledged: asyncio.Future[object] = asyncio.get_running_loop().create_future()

        async def later() -> None:
            await asyncio.sleep(DELAY_S)
            fut = await send(source, topic, value, **options)
            try:
                acknowledged.set_result(await fut)
            except Exception as exc:  # handed to whoever awaits the send
                acknowledged.set_exception(exc)

        task = asyncio.create_task(later())
        _DELAYED.add(task)
        task.add_done_callback(_DELAYED.discard)
        return acknowledged


async def _run(stage: ProfileStage, registry: CollectorRegistry, topic: str, total: int) -> None:
    """Run ``stage`` until it has read ``total`` events and its partitions went idle."""
    stop = asyncio.Event()
    task = asyncio.create_task(stage.run(stop))
    deadline = time.monotonic() + 90
    while (registry.get_sample_value("driftwire_events_consumed_total", {"topic": topic}) or 0) < (
        total
    ):
        assert not task.done(), task.result()
        assert time.monotonic() < deadline, "the profile stage did not read its input"
        await asyncio.sleep(0.2)
    await asyncio.sleep(2.5)  # idle_partition_seconds (1) and a delayed send (1)
    stop.set()
    await asyncio.wait_for(task, timeout=60)


def _after(records: Sequence[object], partials_ends: dict[int, int]) -> dict[int, list[object]]:
    """Per partials partition, the decoded records at or after ``partials_ends``."""
    out: dict[int, list[object]] = {}
    for r in records:
        if r.offset >= partials_ends.get(r.partition, 0):  # type: ignore[attr-defined]
            out.setdefault(r.partition, []).append(decode_record(r.value))  # type: ignore[attr-defined]
    return out


@pytest.mark.timeout(180)
def test_a_resumed_partitions_watermark_precedes_the_partials_of_another_producer(
    kafka_bootstrap: str, topic_name: str
) -> None:
    spec = StreamSpec(events=2_400, seed=8, events_per_second=4)  # ten minutes
    values = list(generate(spec))
    first, second = values[:1_200], values[1_200:]
    settings = Settings.model_validate(settings_dict(kafka_bootstrap, topic_name))
    assert settings.processing.guarantee == "exactly_once"
    partials_topic = settings.topics.partials

    async def scenario() -> dict[int, list[object]]:
        await create_topics(kafka_bootstrap, [topic_name], 2)
        await produce(kafka_bootstrap, topic_name, first, partitions=2)
        registry = CollectorRegistry()
        stage = ProfileStage(settings, profile_core(settings), Metrics(registry), Readiness())
        await _run(stage, registry, topic_name, len(first))  # both partitions go idle
        ends: dict[int, int] = {}
        for r in await read_all(kafka_bootstrap, partials_topic):
            ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
        # the second five minutes to partition 0 only: partition 1 stays where it was idle
        await produce(kafka_bootstrap, topic_name, second, partitions=1)
        registry = CollectorRegistry()
        slow = _SlowSecondProducer(settings, profile_core(settings), Metrics(registry), Readiness())
        await _run(slow, registry, topic_name, len(second))
        return _after(await read_all(kafka_bootstrap, partials_topic), ends)

    by_partials_partition = asyncio.run(scenario())
    assert by_partials_partition, "the second run wrote nothing to the partials topic"
    for partials_partition, records in by_partials_partition.items():
        active = [
            i
            for i, r in enumerate(records)
            if isinstance(r, Watermark) and r.partition == 1 and not r.idle
        ]
        partials_0 = [
            i for i, r in enumerate(records) if isinstance(r, Partial) and r.partition == 0
        ]
        assert active, f"partials partition {partials_partition}: partition 1 never active"
        if partials_0:
            assert active[0] < partials_0[0], (
                f"partials partition {partials_partition}: partition 0's partials at "
                f"{partials_0[:3]}, before partition 1 said it is active (at {active[0]})"
            )
    assert any(
        isinstance(r, Partial) and r.partition == 0
        for records in by_partials_partition.values()
        for r in records
    ), "partition 0's second half produced no partial"
