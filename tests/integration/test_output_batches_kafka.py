"""Stage 1's record batches on a real broker: as large as ``OUTPUT_BATCH_BYTES`` lets them grow,
and still taken by a broker at Kafka's default limits (``message.max.bytes``, 1 MiB)."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiokafka import AIOKafkaProducer
from kafkautil import create_topics, read_all

from driftwire.stages.compression import output_producer_options

pytestmark = pytest.mark.kafka


async def _send_at_once(bootstrap: str, topic: str, values: list[bytes]) -> int:
    """Send ``values`` to partition 0 without waiting between them; returns how many sends
    waited for a batch before them to go out (the sends a full batch holds up)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **output_producer_options())
    await producer.start()
    try:
        futures, held = [], 0
        for value in values:
            send = asyncio.ensure_future(producer.send(topic, value, partition=0))
            await asyncio.sleep(0)  # the send appends now if its batch has room
            held += not send.done()
            futures.append(await send)
        await asyncio.gather(*futures)  # raises if the broker refused a batch
        return held
    finally:
        await producer.stop()


def test_incompressible_partials_fill_a_batch_the_broker_takes(
    kafka_bootstrap: str, topic_name: str
) -> None:
    asyncio.run(create_topics(kafka_bootstrap, [topic_name]))
    size = 90_000  # a partial of a few segments
    values = [os.urandom(size) for _ in range(33)]  # three batches of 1 MB
    held = asyncio.run(_send_at_once(kafka_bootstrap, topic_name, values))
    # eleven to a batch: only the sends that found the batch full waited (with aiokafka's
    # 16 KiB default, each partial is a batch of its own and nearly every send waits)
    assert held <= 4, held
    records = asyncio.run(read_all(kafka_bootstrap, topic_name))
    assert [r.value for r in records] == values
