"""The profile stage's batch-wise intake reads what ``getmany`` reads, on a real broker.

Two consumers read the same partitions from the start, one with ``AIOKafkaConsumer.getmany``,
one with :class:`~driftwire.stages._fetch.RecordIntake`, with the same small ``max_records`` (so
budgets end inside batches): the records (offset, timestamp, key, value, headers) partition by
partition and the final positions must be equal. Covered: each compression codec aiokafka has
here, transactions with an aborted one under ``read_committed`` (and ``read_uncommitted``), and
a seek into the middle of a batch. And the profile stage, reading with it, still dead-letters a
refused event with its original key and headers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.codec import has_lz4, has_snappy, has_zstd
from kafkautil import create_topics, read_all
from prometheus_client import CollectorRegistry
from test_profile_stage import settings_dict

from driftwire.ops.config import Settings
from driftwire.ops.health import Readiness
from driftwire.ops.metrics import Metrics
from driftwire.stages._fetch import RecordIntake, batch_crcs, intake_problem, open_intake
from driftwire.stages.profile import ProfileStage
from driftwire.stages.profile_core import profile_core

pytestmark = pytest.mark.kafka

LOG = logging.getLogger("driftwire.stages.profile")
PARTITIONS = 2
MAX_RECORDS = 7
ABORTED = (20, 60)  # the transactions (of 20 records each, from 0 to 100) that are aborted
CODECS = [None, "gzip"] + [
    c for c, ok in (("snappy", has_snappy()), ("lz4", has_lz4()), ("zstd", has_zstd())) if ok
]

Row = tuple[int, int, bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]


def _row(r: Any) -> Row:
    return (r.offset, r.timestamp, r.key, r.value, tuple(r.headers))


async def _send(producer: AIOKafkaProducer, topic: str, n: int, start: int) -> None:
    futures = [
        await producer.send(
            topic,
            value=b'{"n": %d}' % i if i % 5 else None,  # a tombstone now and then
            key=b"k%d" % i if i % 3 == 0 or i % 5 == 0 else None,  # tombstones need one
            partition=i % PARTITIONS,
            timestamp_ms=1_790_000_000_000 + i,
            headers=[("h", b"%d" % i)] if i % 2 else [],
        )
        for i in range(start, start + n)
    ]
    await asyncio.gather(*futures)


class _Reader:
    """One consumer without a group, on all partitions, read with getmany or the intake."""

    def __init__(self, bootstrap: str, topic: str, *, intake: bool, isolation: str) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level=isolation,
            max_partition_fetch_bytes=512,  # several fetches per partition
        )
        self.parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.intake: RecordIntake | None = None
        self._use_intake = intake
        self.rows: dict[int, list[Row]] = {p: [] for p in range(PARTITIONS)}

    async def __aenter__(self) -> _Reader:
        await self.consumer.start()
        self.consumer.assign(self.parts)
        if self._use_intake:
            assert intake_problem(self.consumer) is None
            self.intake = RecordIntake(self.consumer)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def read_to(self, ends: dict[TopicPartition, int]) -> None:
        """Read until every partition's position is at ``ends``."""
        async with asyncio.timeout(20):
            while not all(
                p >= ends[tp] for p, tp in zip(await self.positions(), self.parts, strict=True)
            ):
                if self.intake is not None:
                    got: dict[TopicPartition, Any] = await self.intake.getmany(
                        timeout_ms=200, max_records=MAX_RECORDS
                    )
                else:
                    got = await self.consumer.getmany(timeout_ms=200, max_records=MAX_RECORDS)
                assert sum(map(len, got.values())) <= MAX_RECORDS
                for tp, records in got.items():
                    self.rows[tp.partition] += map(_row, records)

    async def positions(self) -> list[int]:
        return [await self.consumer.position(tp) for tp in self.parts]


async def _compare(
    bootstrap: str, topic: str, isolation: str = "read_committed", *, end: int
) -> dict[int, list[Row]]:
    """Read ``topic`` (every partition ending at offset ``end``) both ways and compare."""
    async with _Reader(bootstrap, topic, intake=False, isolation=isolation) as plain:
        # the end once every record and transaction marker is visible (a commit's marker
        # becomes readable a little after commit_transaction returns)
        async with asyncio.timeout(10):
            while True:
                ends = await plain.consumer.end_offsets(plain.parts)
                if set(ends.values()) == {end}:
                    break
                await asyncio.sleep(0.05)
        await plain.read_to(ends)
        async with _Reader(bootstrap, topic, intake=True, isolation=isolation) as compact:
            await compact.read_to(ends)
            assert compact.rows == plain.rows
            at_end = [ends[tp] for tp in plain.parts]
            assert await compact.positions() == await plain.positions() == at_end
            # a seek into the middle of a batch: read again from there
            for reader in (plain, compact):
                for tp in reader.parts:
                    reader.consumer.seek(tp, 3)
                    reader.rows[tp.partition] = []
                await reader.read_to(ends)
            assert compact.rows == plain.rows
            assert all(rows[0][0] == 3 for rows in plain.rows.values() if rows)
            assert compact.intake is not None
            # with the compiled extension, its CRC check stood in for aiokafka's
            assert (compact.intake.prechecked_fetches > 0) == (batch_crcs is not None)
    return plain.rows


@pytest.mark.parametrize("codec", CODECS)
def test_intake_reads_what_getmany_reads(
    kafka_bootstrap: str, topic_name: str, codec: str | None
) -> None:
    async def run() -> dict[int, list[Row]]:
        await create_topics(kafka_bootstrap, [topic_name], PARTITIONS)
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, compression_type=codec, linger_ms=50
        )
        await producer.start()
        try:
            await _send(producer, topic_name, 60, 0)
        finally:
            await producer.stop()
        return await _compare(kafka_bootstrap, topic_name, end=60 // PARTITIONS)

    rows = asyncio.run(run())
    assert sum(map(len, rows.values())) == 60 - 2 * 3  # from offset 3 on, per partition
    assert any(len(r[4]) for p in rows.values() for r in p)  # headers were read


@pytest.mark.parametrize("isolation", ["read_committed", "read_uncommitted"])
def test_intake_skips_aborted_transactions_as_getmany_does(
    kafka_bootstrap: str, topic_name: str, isolation: str
) -> None:
    async def run() -> dict[int, list[Row]]:
        await create_topics(kafka_bootstrap, [topic_name], PARTITIONS)
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap,
            transactional_id=f"{topic_name}-txn",
            compression_type="gzip",
            linger_ms=20,
        )
        await producer.start()
        try:
            for start in range(0, 100, 20):
                await producer.begin_transaction()
                await _send(producer, topic_name, 20, start)
                if start in ABORTED:
                    await producer.abort_transaction()
                else:
                    await producer.commit_transaction()
        finally:
            await producer.stop()
        # 100 records and 5 transaction markers per partition
        return await _compare(kafka_bootstrap, topic_name, isolation, end=100 // PARTITIONS + 5)

    rows = asyncio.run(run())
    seen = {int(r[3][6:-1]) for p in rows.values() for r in p if r[3] is not None}
    aborted = {n for start in ABORTED for n in range(start, start + 20)}
    if isolation == "read_committed":
        assert not seen & aborted, "aborted records were read"
        assert seen == {n for n in range(6, 100) if n % 5 and n not in aborted}
    else:
        assert seen == {n for n in range(6, 100) if n % 5}


def test_a_consumer_the_intake_cannot_read_falls_back_to_getmany_with_one_line(
    kafka_bootstrap: str, topic_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> tuple[str | None, RecordIntake | None]:
        await create_topics(kafka_bootstrap, [topic_name])
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, value_deserializer=bytes)
        await consumer.start()
        consumer.assign([TopicPartition(topic_name, 0)])
        await consumer.position(TopicPartition(topic_name, 0))  # aiokafka's stop() right
        try:  # after start() raises CancelledError (its NoGroupCoordinator task never ran)
            with caplog.at_level(logging.WARNING, logger="driftwire.stages.profile"):
                return intake_problem(consumer), open_intake(consumer, LOG, "profile")
        finally:
            await consumer.stop()

    problem, intake = asyncio.run(run())
    assert problem == "the consumer has a key or value deserializer"
    assert intake is None
    lines = [r.getMessage() for r in caplog.records if r.name == LOG.name]
    assert lines == [
        "profile stage: reading with plain getmany, slower: the consumer has a key or value "
        "deserializer (driftwire's batch-wise intake was written for aiokafka 0.14.0)"
    ]


def test_the_profile_stage_dead_letters_with_the_original_key_and_headers(
    kafka_bootstrap: str, topic_name: str
) -> None:
    settings = Settings.model_validate(settings_dict(kafka_bootstrap, topic_name))
    registry = CollectorRegistry()

    async def run() -> list[Any]:
        await create_topics(kafka_bootstrap, [topic_name], 1)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=50)
        await producer.start()
        try:
            sent = [
                await producer.send(
                    topic_name, value=v, key=k, headers=h, timestamp_ms=1_790_000_000_000 + i
                )
                for i, (k, v, h) in enumerate(
                    [
                        (b"a", b"not json", [("trace", b"t1"), ("empty", None)]),
                        (None, b'{"model": "m"}', []),
                        (b"c", None, [("trace", b"t3")]),  # a tombstone
                    ]
                )
            ]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        stage = ProfileStage(settings, profile_core(settings), Metrics(registry), Readiness())
        stop = asyncio.Event()
        task = asyncio.create_task(stage.run(stop))
        async with asyncio.timeout(25):
            while registry.get_sample_value("driftwire_dead_letters_produced_total") != 3:
                assert not task.done(), task
                await asyncio.sleep(0.1)
        assert stage._intake is not None  # the batch-wise intake read them
        stop.set()
        await asyncio.wait_for(task, timeout=20)
        return await read_all(kafka_bootstrap, settings.topics.dead_letter_topic)

    dead = asyncio.run(run())
    rows = [
        (
            r.key,
            r.value,
            [h for h in r.headers if not h[0].startswith("__driftwire.")],
            dict(r.headers)["__driftwire.errors.offset"],
        )
        for r in dead
    ]
    got = sorted(rows, key=lambda row: int(row[3]))  # whatever the dead-letter partitions
    assert got == [
        (b"a", b"not json", [("trace", b"t1"), ("empty", None)], b"0"),
        (None, b'{"model": "m"}', [], b"1"),
        (b"c", None, [("trace", b"t3")], b"2"),
    ]
