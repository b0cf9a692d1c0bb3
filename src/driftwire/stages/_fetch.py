"""The profile stage's intake: aiokafka's fetched records without a ``ConsumerRecord`` each.

``AIOKafkaConsumer.getmany`` hands every record over as a ``ConsumerRecord``, built in Python by
a generator that walks aiokafka's record batches one record at a time (with ``tuple(headers)``
each): about 2 us per event, a quarter of the profile stage. :class:`RecordIntake` drains the
same buffered fetches batch by batch instead and returns aiokafka's own record objects
(``DefaultRecord``, or ``LegacyRecord`` for the old message formats), which carry ``offset``,
``timestamp``, ``key``, ``value`` and ``headers`` (the stage reads the last three only for the
few events it dead-letters); a batch's records are taken with one C-level ``list(batch)``.

Everything else is aiokafka's: the batches it fetched, its ``FetchResult.check_assignment``
(records of a partition that was revoked, paused or sought while they were buffered are dropped),
its positions (``consumed_to`` through ``FetchResult._update_position``) and the rules of
``PartitionRecords._unpack_records``, repeated here batch-wise: CRC check when ``check_crcs``,
aborted transactions skipped under ``read_committed``, control batches skipped, records before
the fetch position skipped (a seek into a batch), compaction gaps, the position after a batch
taken from the batch's last offset, and ``max_records`` counted exactly as ``getall`` counts it.
``tests/stages/test_fetch.py`` checks record for record that :func:`take_records` returns what
iterating aiokafka's ``PartitionRecords`` returns; ``tests/integration/test_fetch_kafka.py``
checks the whole intake against ``getmany`` on a real broker.

aiokafka checks each batch's CRC-32C (``check_crcs``, on by default) with a byte-at-a-time
table, about 0.6 ns per byte. With the compiled extension (``batch_crcs``, native/src/records.rs,
the CPU's CRC-32C instruction), the intake checks each fetch response's record sets as they
arrive and aiokafka's check is skipped for a batch whose stored CRC is the one found correct at
its place in the same partition's response (:class:`_CheckingClient`); every other batch is
checked by aiokafka as before. ``DRIFTWIRE_NATIVE=0``, or an extension without it, leaves every
check to aiokafka.

One difference, on purpose: when a batch fails its CRC check after other records were taken in
the same call, aiokafka raises and those records are lost (their positions were already moved
past); here they are returned and the error is raised by the next call.

Written against aiokafka 0.14.0 (``aiokafka/consumer/fetcher.py``: ``Fetcher.fetched_records``,
``FetchResult.getall``, ``PartitionRecords._unpack_records``). The private names it uses are all
in this module; :func:`intake_problem` checks them when the stage starts, and the stage falls
back to plain ``getmany`` with one log line naming what is missing.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiokafka
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.fetcher import READ_COMMITTED, FetchError, FetchResult, PartitionRecords
from aiokafka.errors import ConsumerStoppedError, CorruptRecordException
from aiokafka.record.memory_records import MemoryRecords

#: the aiokafka release this module was written against (others are checked, not refused)
WRITTEN_FOR = "0.14.0"
FETCH_API_KEY = 1
log = logging.getLogger(__name__)


def _native_batch_crcs() -> Callable[[bytes], list[int]] | None:
    """The extension's ``batch_crcs`` (native/src/records.rs), unless ``DRIFTWIRE_NATIVE=0`` or
    the installed extension predates it."""
    if os.environ.get("DRIFTWIRE_NATIVE", "1") == "0":
        return None
    try:
        extension = importlib.import_module("_driftwire_native")
    except ImportError:
        return None
    found: Callable[[bytes], list[int]] | None = getattr(extension, "batch_crcs", None)
    return found


#: ``batch_crcs(records)``: the stored CRCs of the leading v2 batches of a fetched record set
#: whose CRC-32C is correct (hardware CRC, without the GIL); None without the extension
batch_crcs = _native_batch_crcs()


class FetchedRecord(Protocol):
    """What the stage reads of a record: aiokafka's ``DefaultRecord`` or ``ConsumerRecord``."""

    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass
class _Rest:
    """Where :func:`take_records` stopped in a ``PartitionRecords`` (``max_records`` reached
    inside a batch, or a corrupt batch after records already taken)."""

    source: Any  # the PartitionRecords
    records: list[Any]  # the batch being read
    taken: int  # how many of them were returned
    next_offset: int  # the batch's next offset, the position once it is done
    error: Exception | None = None  # raised by the next call
    closed: bool = False  # the error was raised: nothing more comes from this source
    crcs: Sequence[int] = ()  # the stored CRCs of the leading batches found correct
    batches: int = 0  # how many batches were read


def take_records(
    source: Any, budget: int | None, rest: _Rest | None, crcs: Sequence[int] = ()
) -> tuple[list[Any], bool, _Rest | None]:
    """Up to ``budget`` records of aiokafka's ``PartitionRecords`` ``source``, batch-wise.

    Returns the records, whether ``source`` is exhausted (False when the budget ran out, even at
    its very end, as aiokafka's generator does not know it either), and where to go on next
    time. ``source.next_fetch_offset`` moves exactly as ``_unpack_records`` moves it. ``crcs``
    (first call only): the stored CRCs of the leading batches, in order, already found correct
    (:func:`checked_crcs`); a batch whose stored CRC is the one listed at its place is not
    checked again, every other one is, by aiokafka.
    """
    out: list[Any] = []
    if rest is None or rest.source is not source:
        rest = _Rest(source, [], 0, source.next_fetch_offset, crcs=crcs)
    else:
        if rest.closed:
            return out, True, None
        if rest.error is not None:
            rest.closed = True
            raise rest.error
        records = rest.records
        end = len(records) if budget is None else min(len(records), rest.taken + budget)
        if end > rest.taken:
            out += records[rest.taken : end]
            source.next_fetch_offset = records[end - 1].offset + 1
        if budget is not None:
            budget -= end - rest.taken
            if budget == 0:
                rest.taken = end
                return out, False, rest
        source.next_fetch_offset = rest.next_offset
    batches = source._records
    checked = rest.crcs
    while batches.has_next():
        batch = batches.next_batch()
        k = rest.batches
        rest.batches = k + 1
        if (
            source._check_crcs
            and not (k < len(checked) and batch.crc == checked[k])
            and not batch.validate_crc()
        ):
            error = CorruptRecordException(f"Invalid CRC - {source._tp}")
            if not out:
                raise error  # the batches after it are fetched again, as in aiokafka
            rest.records, rest.taken, rest.next_offset = [], 0, source.next_fetch_offset
            rest.error = error
            return out, False, rest
        if source._isolation_level == READ_COMMITTED and batch.producer_id is not None:
            source._consume_aborted_up_to(batch.base_offset)
            if batch.is_control_batch and source._contains_abort_marker(batch):
                source._aborted_producers.discard(batch.producer_id)
            if batch.is_transactional and batch.producer_id in source._aborted_producers:
                source.next_fetch_offset = batch.next_offset
                continue
        if batch.is_control_batch:
            source.next_fetch_offset = batch.next_offset
            continue
        records = list(batch)
        if records and records[0].offset < source.next_fetch_offset:
            start = source.next_fetch_offset  # a seek into the batch, or a compressed v0/v1 set
            records = [r for r in records if r.offset >= start]
        if budget is not None and len(records) >= budget:
            out += records[:budget]
            if budget:
                source.next_fetch_offset = records[budget - 1].offset + 1
            rest.records, rest.taken, rest.next_offset = records, budget, batch.next_offset
            return out, False, rest
        out += records
        if budget is not None:
            budget -= len(records)
        source.next_fetch_offset = batch.next_offset
    return out, True, None


def intake_problem(consumer: AIOKafkaConsumer) -> str | None:
    """What :class:`RecordIntake` needs of a started ``consumer`` and does not find, or None."""
    try:
        tp = TopicPartition("driftwire.intake-check", 0)
        source = PartitionRecords(tp, MemoryRecords(b""), None, 0, None, None, True, 1)
        result = FetchResult(tp, assignment=None, partition_records=source, backoff=0)
        fetcher = consumer._fetcher
        needed = {
            "PartitionRecords": (
                source,
                "_records _tp _check_crcs _isolation_level _aborted_producers next_fetch_offset "
                "_consume_aborted_up_to _contains_abort_marker",
            ),
            "FetchResult": (
                result,
                "_partition_records check_assignment has_more _update_position",
            ),
            "FetchError": (FetchError, "check_raise"),
            "AIOKafkaConsumer": (
                consumer,
                "_closed _coordinator _subscription _fetcher _max_poll_records",
            ),
            "Fetcher": (
                fetcher,
                "_records _subscriptions _notify _wait_consume_future _create_fetch_waiter _closed "
                "_key_deserializer _value_deserializer _client _check_crcs",
            ),
            "SubscriptionState": (
                fetcher._subscriptions,
                "reassignment_in_progress wait_for_assignment",
            ),
            "GroupCoordinator": (consumer._coordinator, "check_errors"),
        }
        for owner, (obj, names) in needed.items():
            missing = [n for n in names.split() if not hasattr(obj, n)]
            if missing:
                return f"aiokafka {aiokafka.__version__}'s {owner} has no {', '.join(missing)}"
        if fetcher._key_deserializer is not None or fetcher._value_deserializer is not None:
            return "the consumer has a key or value deserializer"
    except (AttributeError, TypeError, ValueError) as exc:
        return f"aiokafka {aiokafka.__version__}'s fetcher internals changed ({exc})"
    return None


def open_intake(
    consumer: AIOKafkaConsumer, stage_log: logging.Logger, stage: str
) -> RecordIntake | None:
    """A :class:`RecordIntake` for the started ``consumer``, or None (read with plain
    ``getmany``) when this aiokafka lacks what it needs, said in one line on ``stage_log``."""
    problem = intake_problem(consumer)
    if problem is None:
        return RecordIntake(consumer)
    stage_log.warning(
        f"{stage} stage: reading with plain getmany, slower: {problem} "
        f"(driftwire's batch-wise intake was written for aiokafka {WRITTEN_FOR})",
        extra={"fields": {"stage": stage}},
    )
    return None


class _CheckingClient:
    """The fetcher's client, unchanged but for ``send``: each fetch response's record sets get
    their batches' CRCs checked by ``check`` as they arrive, noted in ``found`` per partition
    as (fetch offset, size in bytes, stored CRCs of the leading correct batches).

    aiokafka makes each partition's ``MemoryRecords`` from that very bytes object right after
    ``send`` returns, in the same task; the intake uses a note only for the ``PartitionRecords``
    of the same partition, fetch offset and size, and only for batches whose stored CRC is the
    noted one at the same place: any other batch is checked by aiokafka.
    """

    def __init__(
        self,
        client: Any,
        check: Callable[[bytes], list[int]],
        found: dict[TopicPartition, tuple[int, int, list[int]]],
    ) -> None:
        self._client = client
        self._check = check
        self._found = found
        self._broken = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def send(self, node_id: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        response = await self._client.send(node_id, request, *args, **kwargs)
        if not self._broken and getattr(request, "API_KEY", None) == FETCH_API_KEY:
            try:
                self._note(request, response)
            except (AttributeError, TypeError, ValueError, KeyError) as exc:
                self._broken = True  # aiokafka checks every CRC itself from now on
                log.warning(
                    "the compiled CRC check of fetched batches is off: this aiokafka's fetch "
                    f"response has another layout ({exc!r}); aiokafka checks them, slower"
                )
        return response

    def _note(self, request: Any, response: Any) -> None:
        offsets = {
            (topic, partition): offset
            for topic, partitions in request.topics
            for partition, offset, *_ in partitions
        }
        for topic, partitions in response.topics:
            for partition, _error, _highwater, *part_data in partitions:
                records = part_data[-1] if part_data else None
                if type(records) is bytes and records:
                    offset = offsets[(topic, partition)]
                    crcs = self._check(records)
                    self._found[TopicPartition(topic, partition)] = (offset, len(records), crcs)


class RecordIntake:
    """``getmany`` for a started consumer without ``partitions`` and without deserializers,
    returning aiokafka's record objects (see the module docstring). Check the consumer with
    :func:`intake_problem` first. With the compiled extension, each fetch response's batch CRCs
    are checked as it arrives (:class:`_CheckingClient`) instead of by aiokafka, batch by batch,
    when the records are taken."""

    def __init__(self, consumer: AIOKafkaConsumer, *, compiled_crc: bool = True) -> None:
        self._consumer = consumer
        self._rests: dict[TopicPartition, _Rest] = {}
        self._checked: dict[TopicPartition, tuple[int, int, list[int]]] = {}
        self.prechecked_fetches = 0  # fetches whose CRCs the compiled check had checked
        fetcher = consumer._fetcher
        if compiled_crc and batch_crcs is not None and fetcher._check_crcs:
            fetcher._client = _CheckingClient(fetcher._client, batch_crcs, self._checked)

    async def getmany(
        self, *, timeout_ms: int, max_records: int | None
    ) -> dict[TopicPartition, list[FetchedRecord]]:
        """As ``AIOKafkaConsumer.getmany(timeout_ms=..., max_records=...)``."""
        c = self._consumer
        if c._closed:
            raise ConsumerStoppedError()
        if max_records is not None and max_records < 1:
            raise ValueError("`max_records` must be a positive Integer")
        c._coordinator.check_errors()
        with c._subscription.fetch_context():
            return await self._fetched(timeout_ms / 1000, max_records or c._max_poll_records)

    async def _fetched(
        self, wait_s: float, max_records: int | None
    ) -> dict[TopicPartition, list[FetchedRecord]]:
        """``Fetcher.fetched_records`` (all partitions), draining with :meth:`_getall`."""
        fetcher = self._consumer._fetcher
        while True:
            if fetcher._subscriptions.reassignment_in_progress:
                await fetcher._subscriptions.wait_for_assignment()
            start_time = time.monotonic()
            if len(self._rests) > len(fetcher._records):  # fetches dropped by aiokafka
                self._rests = {tp: r for tp, r in self._rests.items() if tp in fetcher._records}
            drained: dict[TopicPartition, list[FetchedRecord]] = {}
            for tp in list(fetcher._records.keys()):
                found = fetcher._records[tp]
                if type(found) is FetchResult:
                    records = self._getall(tp, found, max_records)
                    if not found.has_more():
                        del fetcher._records[tp]
                        fetcher._notify(fetcher._wait_consume_future)
                    if not records:
                        continue
                    drained[tp] = records
                    if max_records is not None:
                        max_records -= len(records)
                        if max_records == 0:
                            break
                elif drained:
                    return drained
                else:
                    del fetcher._records[tp]
                    fetcher._notify(fetcher._wait_consume_future)
                    found.check_raise()
            if drained or not wait_s:
                return drained
            waiter = fetcher._create_fetch_waiter()
            done, pending = await asyncio.wait([waiter], timeout=wait_s)
            if not done or fetcher._closed:
                if pending:
                    pending.pop().cancel()
                return {}
            if waiter.done():
                waiter.result()  # authorization errors
            wait_s = max(0.0, wait_s - (time.monotonic() - start_time))

    def _getall(self, tp: TopicPartition, result: Any, max_records: int | None) -> list[Any]:
        """``FetchResult.getall``, with :func:`take_records` for the generator."""
        if not result.check_assignment(tp) or not result.has_more():
            self._rests.pop(tp, None)
            return []
        source = result._partition_records
        rest = self._rests.get(tp)
        crcs: Sequence[int] = ()
        if rest is None or rest.source is not source:  # the first call for this fetch
            noted = self._checked.pop(tp, None)
            if noted is not None and noted[:2] == (
                source.next_fetch_offset,
                source._records.size_in_bytes(),
            ):
                crcs = noted[2]
                self.prechecked_fetches += 1
        try:
            records, exhausted, rest = take_records(source, max_records, rest, crcs)
        except Exception:
            # aiokafka's generator is closed by the failure: its next call returns nothing,
            # moves the position to where the failed one stopped and drops the fetch
            self._rests[tp] = _Rest(source, [], 0, source.next_fetch_offset, closed=True)
            raise
        result._update_position()
        if rest is None:
            self._rests.pop(tp, None)
        else:
            self._rests[tp] = rest
        if exhausted:
            result._partition_records = None
        return records
