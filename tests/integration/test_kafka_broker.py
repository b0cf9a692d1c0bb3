"""The real Kafka test broker works, including the group coordinator, and fails loudly."""

from __future__ import annotations

import asyncio

import kafka_broker
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

pytestmark = pytest.mark.kafka


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send_and_wait(topic, value, key=str(i).encode())
    finally:
        await producer.stop()


async def _consume_and_commit(
    bootstrap: str, topic: str, group: str, count: int
) -> tuple[list[bytes], int | None]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        received: list[bytes] = []
        async with asyncio.timeout(30):
            while len(received) < count:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    received.extend(r.value for r in records if r.value is not None)
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, 0))
        return received, committed
    finally:
        await consumer.stop()


async def _group_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


def test_produce_consume_commit(kafka_bootstrap: str, topic_name: str) -> None:
    kafka_broker.create_topic(kafka_bootstrap, topic_name, partitions=1)
    values = [f"event-{i}".encode() for i in range(5)]
    group = f"{topic_name}-group"

    asyncio.run(_produce(kafka_bootstrap, topic_name, values))
    received, committed = asyncio.run(
        _consume_and_commit(kafka_bootstrap, topic_name, group, len(values))
    )

    assert received == values
    assert committed == len(values)
    # Seen from a fresh client too: the offset really is stored by the group coordinator.
    offsets = asyncio.run(_group_offsets(kafka_bootstrap, group))
    assert offsets == {TopicPartition(topic_name, 0): len(values)}


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        # Rejected by `StorageTool format`: the reason is on the tool's stderr.
        ({"num.partitions": "not-a-number"}, "Invalid value not-a-number for configuration"),
        # Accepted by format, fatal inside kafka.Kafka: the reason is in the broker log.
        ({"authorizer.class.name": "com.example.NoSuchAuthorizer"}, "ClassNotFoundException"),
    ],
    ids=["format-stage", "broker-stage"],
)
def test_broken_start_raises_with_log_tail(properties: dict[str, str], expected: str) -> None:
    broker = kafka_broker.KafkaBroker(extra_properties=properties, startup_timeout=30)
    with pytest.raises(RuntimeError, match=expected) as excinfo:
        broker.start()
    assert "--- broker log (tail) ---" in str(excinfo.value)
    assert not broker.running
    assert broker.workdir is None  # temp dir cleaned up
