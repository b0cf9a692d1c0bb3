"""Small aiokafka helpers for the integration tests: produce, read a whole topic, offsets."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def produce(
    bootstrap: str, topic: str, values: Sequence[bytes], *, partitions: int = 1
) -> dict[int, list[int]]:
    """Send ``values`` round-robin over ``partitions``; returns offsets per partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=v, partition=i % partitions)
            for i, v in enumerate(values)
        ]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    out: dict[int, list[int]] = {}
    for m in metas:
        out.setdefault(m.partition, []).append(m.offset)
    return out


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    known = consumer.partitions_for_topic(topic)
    if not known:
        await consumer._client._wait_on_metadata(topic)
        known = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(known or [])]


async def read_all(
    bootstrap: str,
    topic: str,
    *,
    limit_s: float = 30.0,
    isolation_level: str = "read_committed",
) -> list[ConsumerRecord]:
    """Every record of ``topic`` up to its current end, without a consumer group.

    ``read_committed`` by default, as stage 2 and any downstream reader: stage 1 writes its
    partials and dead letters in transactions (``processing.guarantee: exactly_once``, the
    default), so the end is the last stable offset and records of aborted transactions are
    skipped (on a topic without transactions this reads exactly what ``read_uncommitted``
    reads). Offsets of what it returns are not contiguous there: each transaction leaves a
    marker at an offset no record has."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation_level
    )
    await consumer.start()
    try:
        parts = await _partitions(consumer, topic)
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        records: list[ConsumerRecord] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in parts])

        while await behind():
            if loop.time() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {limit_s} s")
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """Committed offsets of ``group`` ({} while the group does not exist yet)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(
            group, partitions=[TopicPartition(topic, p) for p in range(partitions)]
        )
    except KafkaError:
        return {}
    finally:
        await admin.close()
    return {
        tp.partition: om.offset for tp, om in found.items() if om is not None and om.offset >= 0
    }


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The high watermark per partition: with transactions, one past the last marker, which
    no consumer ever commits past (see :func:`last_record_ends` for that)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = await _partitions(consumer, topic)
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        return {tp.partition: await consumer.position(tp) for tp in parts}
    finally:
        await consumer.stop()


async def last_record_ends(bootstrap: str, topic: str) -> dict[int, int]:
    """Per partition, one past the last committed record (0 for an empty partition): what a
    ``read_committed`` consumer that has read everything has committed at least. A topic
    written in transactions ends in a marker, so its :func:`end_offsets` is one further."""
    ends = dict.fromkeys(await end_offsets(bootstrap, topic), 0)
    for r in await read_all(bootstrap, topic):
        ends[r.partition] = max(ends[r.partition], r.offset + 1)
    return ends
