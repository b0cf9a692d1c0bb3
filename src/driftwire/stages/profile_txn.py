"""Stage 1's exactly-once output: one transactional producer per owned input partition.

With ``processing.guarantee: exactly_once`` (the default) every record stage 1 writes because
of input partition *p* (its partials, its watermark copies, its dead letters) goes through the
producer of *p*, whose transactional id is ``<consumer.group_id>-eos-<topic>-<p>``; the commit
of *p*'s offsets (with the core's resume metadata) is sent into the same transaction
(``send_offsets_to_transaction``), so output and input position become visible together or
not at all. Readers of the partials topic use ``read_committed``.

Why a producer per input partition and not one per member: zombie fencing. aiokafka sends
``TxnOffsetCommit`` without the group's generation (no KIP-447), so the broker cannot refuse
the offsets of a member that lost its partition. A transactional id bound to the partition
gives the same protection the older way (KIP-98): the new owner's producer registers the id
(``InitProducerId``), which aborts whatever the previous owner left open and fences it, so
its later commit fails with ``ProducerFenced`` instead of landing twice. A member restarted
after a crash registers the ids of the partitions it is given again and fences its own earlier
life, never itself.

aiokafka waits for an unavailable transaction coordinator for ever, silently (a single-node
broker left with ``transaction.state.log.replication.factor=3``): :meth:`open` bounds that wait
by ``processing.coordinator_timeout_seconds`` and raises one line naming the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import IllegalOperation, InvalidProducerEpoch, KafkaError, ProducerFenced
from aiokafka.producer.transaction_manager import TransactionState
from aiokafka.structs import OffsetAndMetadata

from driftwire.errors import BrokerSetupError
from driftwire.stages.compression import output_producer_options

log = logging.getLogger(__name__)

#: what the broker answers a producer whose transactional id has a newer owner
FENCED = (ProducerFenced, InvalidProducerEpoch)


def transactional_id(group: str, topic: str, partition: int) -> str:
    """The transactional id of input partition ``partition``'s producer.

    >>> transactional_id("driftwire-profile", "inference-events", 3)
    'driftwire-profile-eos-inference-events-3'
    """
    return f"{group}-eos-{topic}-{partition}"


def no_coordinator(txn_id: str, waited_s: float) -> BrokerSetupError:
    """The one line for a broker whose transaction coordinator never answered.

    >>> print(no_coordinator("g-eos-events-0", 120))  # doctest: +NORMALIZE_WHITESPACE
    Kafka: no transaction coordinator answered for transactional id g-eos-events-0 within
    120 s (processing.coordinator_timeout_seconds): set processing.guarantee: at_least_once,
    or give the broker a transaction coordinator (a single-node broker needs
    transaction.state.log.replication.factor=1 and transaction.state.log.min.isr=1)
    """
    return BrokerSetupError(
        f"Kafka: no transaction coordinator answered for transactional id {txn_id} within "
        f"{waited_s:g} s (processing.coordinator_timeout_seconds): set "
        "processing.guarantee: at_least_once, or give the broker a transaction coordinator "
        "(a single-node broker needs transaction.state.log.replication.factor=1 and "
        "transaction.state.log.min.isr=1)"
    )


def transaction_failure(producer: AIOKafkaProducer) -> BaseException | None:
    """The error that broke ``producer``'s open transaction, if one did.

    A refused AddPartitionsToTxn (no Write on a topic) puts aiokafka's transaction into an
    error state in which every later send fails an internal ``assert`` and only the commit
    would raise the real error; this returns that error (marking it retrieved) so a send can
    raise it instead.
    """
    txn: Any = producer._txn_manager  # noqa: SLF001  (aiokafka has no public accessor)
    if txn is None or txn.state not in (
        TransactionState.ABORTABLE_ERROR,
        TransactionState.FATAL_ERROR,
    ):
        return None
    waiter = txn._transaction_waiter  # noqa: SLF001
    if waiter is not None and waiter.done() and not waiter.cancelled():
        found: BaseException | None = waiter.exception()
        if found is not None:
            return found
    broken: BaseException = KafkaError(
        f"transaction of {txn.transactional_id} failed ({txn.state.name})"
    )
    return broken


@contextlib.contextmanager
def _broken_raises_its_error(producer: AIOKafkaProducer) -> Iterator[None]:
    """Raise the error that broke ``producer``'s transaction instead of aiokafka's ``assert``
    (or ``IllegalOperation``): before the block, and when the block fails because the
    transaction broke while it waited (a send waiting for metadata while the refusal of an
    earlier send's AddPartitionsToTxn arrives)."""
    if (failure := transaction_failure(producer)) is not None:
        raise failure
    try:
        yield
    except (AssertionError, IllegalOperation):
        if (failure := transaction_failure(producer)) is not None:
            raise failure from None
        raise


@dataclass
class _Owned:
    producer: AIOKafkaProducer
    in_transaction: bool = False
    committed: OffsetAndMetadata | None = None


class PartitionTransactions:
    """The transactional producers of the input partitions this member owns.

    :meth:`open` starts a partition's producer (fencing its previous owner), :meth:`send`
    writes in that partition's open transaction (beginning one if needed), :meth:`commit`
    adds the partition's offsets and commits, :meth:`close` aborts what is open and stops it.
    """

    def __init__(
        self,
        options: dict[str, Any],
        *,
        group: str,
        topic: str,
        timeout_ms: int,
        coordinator_timeout_s: float = 120.0,
    ) -> None:
        self._options = options
        self._group = group
        self._topic = topic
        self._timeout_ms = timeout_ms
        self._coordinator_timeout_s = coordinator_timeout_s
        self._owned: dict[int, _Owned] = {}

    def owns(self, partition: int) -> bool:
        return partition in self._owned

    @property
    def partitions(self) -> list[int]:
        return sorted(self._owned)

    async def open(self, partition: int) -> None:
        """Start ``partition``'s producer; the broker aborts its previous owner's transaction."""
        if partition in self._owned:
            return
        txn_id = transactional_id(self._group, self._topic, partition)
        producer = AIOKafkaProducer(
            **self._options,
            transactional_id=txn_id,
            transaction_timeout_ms=self._timeout_ms,
            **output_producer_options(),
        )
        try:
            # start() registers the id (InitProducerId, fencing the old owner); aiokafka
            # retries an unavailable coordinator for ever, silently: bound it
            await asyncio.wait_for(producer.start(), timeout=self._coordinator_timeout_s)
            await producer.begin_transaction()
        except TimeoutError:
            await producer.stop()
            raise no_coordinator(txn_id, self._coordinator_timeout_s) from None
        except BaseException:
            await producer.stop()
            raise
        self._owned[partition] = _Owned(producer, in_transaction=True)

    async def send(
        self,
        source: int,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> asyncio.Future[object]:
        """Send one record in ``source``'s transaction; the future is the broker's ack."""
        owned = self._owned[source]
        with _broken_raises_its_error(owned.producer):
            if not owned.in_transaction:
                await owned.producer.begin_transaction()
                owned.in_transaction = True
            fut: asyncio.Future[object] = await owned.producer.send(
                topic, value=value, key=key, partition=partition, headers=list(headers)
            )
        return fut

    async def partitions_for(self, topic: str) -> set[int]:
        owned = next(iter(self._owned.values()), None)
        if owned is None:
            return set()
        found: set[int] = await owned.producer.partitions_for(topic)
        return found

    async def commit(self, partition: int, offset: OffsetAndMetadata | None) -> bool:
        """Commit ``partition``'s transaction with ``offset`` in it.

        Nothing is sent when there is neither output nor a new offset. False if the producer was
        fenced (a new owner has the partition): the caller drops the partition's state.
        """
        owned = self._owned[partition]
        news = offset is not None and offset != owned.committed
        if not owned.in_transaction and not news:
            return True
        try:
            with _broken_raises_its_error(owned.producer):  # fenced: below
                if not owned.in_transaction:
                    await owned.producer.begin_transaction()
                    owned.in_transaction = True
                if offset is not None and news:
                    tp = TopicPartition(self._topic, partition)
                    await owned.producer.send_offsets_to_transaction({tp: offset}, self._group)
                await owned.producer.commit_transaction()
        except FENCED:
            log.warning(
                f"input partition {partition}: another member owns it now (producer fenced); "
                "dropping its state, the new owner re-reads from the last commit",
                extra={"fields": {"partition": partition}},
            )
            await self._drop(partition)
            return False
        owned.in_transaction = False
        if news:
            owned.committed = offset
        return True

    async def close(self, partition: int) -> None:
        """Abort ``partition``'s open transaction (if any) and stop its producer."""
        owned = self._owned.get(partition)
        if owned is None:
            return
        if owned.in_transaction:
            # a broken transaction's waiter holds its error, and aiokafka's abort replaces the
            # waiter: retrieve the error first, or asyncio logs it as never retrieved
            transaction_failure(owned.producer)
            try:
                await owned.producer.abort_transaction()
            except KafkaError:  # fenced or gone: the next owner aborts it when it registers
                log.debug("abort on close failed", exc_info=True)
        await self._drop(partition)

    async def _drop(self, partition: int) -> None:
        owned = self._owned.pop(partition, None)
        if owned is not None:
            # a fenced producer's transaction waiter holds the error; retrieve it, or asyncio
            # logs "Future exception was never retrieved" with a traceback when it is collected
            transaction_failure(owned.producer)
            await owned.producer.stop()

    async def close_all(self) -> None:
        for partition in list(self._owned):
            await self.close(partition)
