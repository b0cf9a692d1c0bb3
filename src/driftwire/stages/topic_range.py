"""Read a time range of a topic once: a fresh consumer, no group, nothing committed.

``since`` / ``until`` select records by their Kafka timestamp (the producer's create time,
unless the topic uses ``LogAppendTime``) through ``offsets_for_times``: per partition, from
the first offset at or after ``since`` (the beginning without it) to the first offset at or
after ``until`` (without it: the end the partition had when the read started, so that a live
topic's read ends). Records are handed over per partition in fetch order, as the profile
stage sees them, to ``on_batch(partition, values)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from driftwire.errors import InputError, TransportError

__all__ = ["RangeRead", "read_topic_range"]


async def _partitions(client_options: dict[str, Any], topic: str) -> list[int]:
    """The topic's partition numbers ([] when it does not exist), from the cluster metadata."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_options)
    await admin.start()
    try:
        if topic not in await admin.list_topics():  # asking for it by name may create it
            return []
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(
        p["partition"] for t in described if t.get("error_code") == 0 for p in t["partitions"]
    )


@dataclass
class RangeRead:
    """What a range read covered: per partition the offsets ``[start, end)``, and records."""

    topic: str
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)
    records: int = 0

    @property
    def partitions(self) -> int:
        return len(self.offsets)


async def read_topic_range(
    client_options: dict[str, Any],
    topic: str,
    *,
    since_ms: int | None,
    until_ms: int | None,
    on_batch: Callable[[int, list[bytes]], None],
    on_partitions: Callable[[int], None] | None = None,
    timeout_s: float = 60.0,
    max_records: int = 5_000,
) -> RangeRead:
    """Hand every record of ``topic`` in the range to ``on_batch``; see the module docstring.

    Raises :class:`InputError` when the topic does not exist, :class:`TransportError` when the
    range cannot be read within ``timeout_s`` of no progress.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    from driftwire.stages.consumer_stop import stop_consumer

    servers = client_options.get("bootstrap_servers")
    consumer = AIOKafkaConsumer(
        **client_options, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        await asyncio.wait_for(consumer.start(), timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        await stop_consumer(consumer)
        raise TransportError(
            f"cannot reach the Kafka brokers {servers} ({type(exc).__name__}): check "
            "kafka.bootstrap_servers / DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
    try:
        numbers = await _partitions(client_options, topic)
        if not numbers:
            raise InputError(f"no topic {topic!r} at {servers}: check the name (--topic)")
        parts = [TopicPartition(topic, p) for p in sorted(numbers)]
        if on_partitions is not None:
            on_partitions(len(parts))
        starts = await consumer.beginning_offsets(parts)
        ends = await consumer.end_offsets(parts)
        if since_ms is not None:
            found = await consumer.offsets_for_times(dict.fromkeys(parts, since_ms))
            starts = {tp: ends[tp] if found[tp] is None else found[tp].offset for tp in parts}
        if until_ms is not None:
            found = await consumer.offsets_for_times(dict.fromkeys(parts, until_ms))
            ends = {tp: ends[tp] if found[tp] is None else found[tp].offset for tp in parts}
        read = RangeRead(topic, {tp.partition: (starts[tp], ends[tp]) for tp in parts})
        todo = [tp for tp in parts if starts[tp] < ends[tp]]
        if not todo:
            return read
        consumer.assign(todo)
        for tp in todo:
            consumer.seek(tp, starts[tp])
        loop = asyncio.get_running_loop()
        progress_at = loop.time()
        while todo:
            fetched = await consumer.getmany(*todo, timeout_ms=500, max_records=max_records)
            for tp, records in sorted(fetched.items(), key=lambda item: item[0].partition):
                values = [r.value for r in records if r.offset < ends[tp] and r.value is not None]
                if values:
                    on_batch(tp.partition, values)
                    read.records += len(values)
                    progress_at = loop.time()
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.remove(tp)
            if todo and loop.time() - progress_at > timeout_s:
                left = ", ".join(f"{tp.partition}" for tp in todo)
                raise TransportError(
                    f"{topic}: no records for {timeout_s:g} s from partitions {left} before "
                    "the end of the range"
                )
            if todo:
                consumer.pause(*[tp for tp in consumer.assignment() if tp not in todo])
        return read
    finally:
        await stop_consumer(consumer)
