"""The detect stage's faust consumer: what it reads and how its offsets advance.

faust (``faust.transport.consumer.Consumer``) decides what to commit from per-partition
bookkeeping: the offset last handed to the agent (``_read_offset``; a record below it is dropped
unprocessed as "already read"), the acknowledged offsets (``_acked``, ``_acked_index``), skipped
offsets it may commit past (``_gap``) and the offset it believes committed
(``_committed_offset``). :func:`read_committed` gives the app a consumer that

* reads ``read_committed`` (stage 1's exactly-once output) and records the offsets it skips as
  gaps;
* starts every assignment with no bookkeeping for the assigned partitions: faust clears it on
  revoke, but its fetch loop writes the read offset of the record it was handing over when the
  flow stopped right after that, and the value stayed until the partition came back, maybe
  generations later (:func:`forget_partitions`);
* reads again a fetch faust drops while its flow is stopped (:func:`read_again_if_dropped`);
* hands faust no partials record until a rebalance is over, faust's seek to the committed
  offsets included (:func:`hold_while_rebalancing`);
* counts an offset that is both acknowledged and in a gap once (:func:`next_commit`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

LAST_READ = "_driftwire_last_read"  # per partition: the offset getmany yielded last


def read_committed(app: Any) -> None:
    """Make ``app``'s consumer read with ``isolation_level=read_committed``, and fix faust's
    offset bookkeeping across rebalances (see the module's docstring).

    faust reads ``read_committed`` only when the app itself runs ``exactly_once``, which would
    write transaction markers into the changelog; the detect stage runs ``at_least_once`` and
    only needs to see stage 1's committed partials. So the app's transport gets a consumer
    whose aiokafka consumer is created ``read_committed`` (before it starts). Without
    transactions on the topic this reads exactly what ``read_uncommitted`` reads.
    """
    from faust.transport.drivers import aiokafka as driver

    class _Thread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._isolation_level = "read_committed"  # noqa: SLF001  (read at start())
            return consumer

    class _Consumer(driver.Consumer):
        def _new_consumer_thread(self) -> Any:
            return _Thread(self, loop=self.loop, beacon=self.beacon)

        async def on_partitions_revoked(self, revoked: set[Any]) -> None:
            forget_partitions(self, revoked)
            await super().on_partitions_revoked(revoked)

        async def on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
            forget_partitions(self, assigned)
            await super().on_partitions_assigned(assigned, generation_id)

        def _new_offset(self, tp: Any) -> int | None:
            return next_commit(self, tp)

        async def _wait_next_records(self, timeout: Any) -> Any:  # noqa: ASYNC109
            records, active = await super()._wait_next_records(timeout)
            await read_again_if_dropped(self, records)
            return await hold_while_rebalancing(self, records), active

        async def getmany(self, timeout: float) -> Any:  # noqa: ASYNC109  (faust's signature)
            """Every offset skipped between two records read (transaction markers, aborted
            records) becomes a gap faust may commit past. faust adds such gaps itself, but
            not after a record at offset 0 nor before the first record after an assignment,
            and a commit then never passes the marker after the first transaction."""
            last: dict[Any, int] = self.__dict__.setdefault(LAST_READ, {})
            async for tp, message in super().getmany(timeout):
                offset = message.offset
                before = last.get(tp)
                if before is None or offset <= before:  # first record since an assignment
                    committed = self._committed_offset[tp]  # the next offset to read
                    before = None if committed is None else committed - 1
                if (
                    before is not None
                    and offset > before + 1
                    and self.app.topics.acks_enabled_for(message.topic)
                ):
                    await self._add_gap(tp, before + 1, offset - 1)
                last[tp] = offset
                yield tp, message

    app.transport.Consumer = _Consumer


def forget_partitions(consumer: Any, tps: Iterable[Any]) -> None:
    """Drop everything ``consumer`` knows about reading and committing ``tps``.

    Called for the revoked partitions and for the assigned ones before faust's own handling.
    faust pops its bookkeeping on revoke, but its fetch loop, waiting for the agent to take a
    record when the flow stops, records that record's offset as read right after the pop (the
    record itself is then cleared from the agent's buffer, unprocessed). The value outlived
    the partition's loss: when the partition came back (a member joined and left), every
    record below it was dropped unprocessed, and either committed past (lost) or never
    acknowledged (the committed offset stuck below it for good). At an assignment nothing of
    a partition's earlier ownership holds: the new generation starts from the committed offset.
    """
    last: dict[Any, int] = consumer.__dict__.setdefault(LAST_READ, {})
    for tp in tps:
        for book in (
            consumer._read_offset,  # noqa: SLF001  (faust's bookkeeping)
            consumer._committed_offset,  # noqa: SLF001
            consumer._acked,  # noqa: SLF001
            consumer._acked_index,  # noqa: SLF001
            consumer._gap,  # noqa: SLF001
            last,
        ):
            book.pop(tp, None)


def next_commit(consumer: Any, tp: Any) -> int | None:
    """The offset to commit for ``tp`` after its acknowledged offsets and gaps, consuming them
    (faust's ``Consumer._new_offset``), counting an offset that is both once.

    faust adds the offsets of a gap to the acknowledged ones and commits up to the end of the
    first run of consecutive offsets; its fetch loop's gaps end at the record read after them,
    which is acknowledged too, and an offset listed twice ended the run there: the commit then
    advanced by one offset per commit interval over such a stretch. A rebalance made one as long
    as the records read before faust's seek to the committed offsets (the fetch loop then counts
    them as a gap), so the committed offset crawled for minutes; each transaction marker added
    one. As in faust: ``None`` while the offset after the committed one is neither acknowledged
    nor skipped.

    >>> from types import SimpleNamespace
    >>> from intervaltree import IntervalTree
    >>> c = SimpleNamespace(_acked={"p": [5, 6, 7, 8]}, _acked_index={"p": {5, 6, 7, 8}},
    ...                     _gap={"p": IntervalTree.from_tuples([(6, 9)])},
    ...                     _committed_offset={"p": 5})
    >>> next_commit(c, "p"), c._acked["p"], len(c._gap["p"])
    (9, [], 0)
    >>> c._acked["p"] += [12, 13]  # 9, 10 and 11 neither acknowledged nor skipped
    >>> c._committed_offset["p"] = 9
    >>> next_commit(c, "p"), c._acked["p"]
    (None, [12, 13])
    """
    acked: list[int] = consumer._acked[tp]  # noqa: SLF001  (faust's bookkeeping)
    if not acked:
        return None
    gap = consumer._gap[tp]  # noqa: SLF001
    done = set(acked)
    if gap:
        for span in gap.overlap(0, max(done)):  # as faust: the gaps below the highest ack
            done.update(range(span.begin, span.end))
        gap.chop(0, max(done) + 1)
    ordered = sorted(done)
    committed = consumer._committed_offset[tp]  # noqa: SLF001
    if committed and ordered[0] - committed > 1:  # faust's test, kept as it is
        acked[:] = ordered
        return None
    n = 1  # the first run of consecutive offsets
    while n < len(ordered) and ordered[n] == ordered[0] + n:
        n += 1
    acked[:] = ordered[n:]
    consumer._acked_index[tp].difference_update(ordered[:n])  # noqa: SLF001
    return ordered[n - 1] + 1


async def hold_while_rebalancing(consumer: Any, records: Any) -> Any:
    """``records`` without those of the partials topic while faust's app is rebalancing (from the
    revoke until faust has sought the assigned partitions to their committed offsets and ended
    the rebalance); the position of each such partition goes back to its first held record.

    After an assignment faust resumes the partitions (its flow already running for the
    changelog) and only then seeks them to the committed offsets. Records fetched meanwhile
    were handed to the agent, and the seek then reset faust's read offset under them: the
    fetch loop counted them as a gap again (see :func:`next_commit`), a delivery in progress
    wrote its own offset over the reset, and in two of about twelve runs of the rebalance fault
    test with the seek slowed down the two records handed over just before it were never
    acknowledged (why was not found), so the committed offset stood still below them for good.
    Held back, they are read again once the rebalance is over (from the committed offset;
    where there is none, from the position this puts back). The changelog's records pass: the
    recovery reads them during the rebalance.
    """
    if not records or not consumer.flow_active or not consumer.app.rebalancing:
        return records
    kept = {}
    for tp, batch in records.items():
        if consumer._is_changelog_tp(tp):  # noqa: SLF001  (faust's own test)
            kept[tp] = batch
        elif batch:
            await consumer.seek(tp, read_again_from(consumer, tp, batch))
    return kept


async def read_again_if_dropped(consumer: Any, records: Any) -> None:
    """Seek back to the first of ``records`` when faust is about to drop them.

    A fetch sent before a rebalance can return after it, while faust's flow is stopped; faust
    then drops its records and seeks back to the committed offsets -- but aiokafka leaves a
    partition without a committed offset where that fetch stopped, so the records were lost
    (after a broker restart: stage 1's first partials and its "active again" watermarks, the
    group not having committed yet). The position goes back to the first of them instead; a
    committed offset, if there is one, still wins (faust seeks to it next).
    """
    if not records or consumer.flow_active:
        return
    assigned = consumer.assignment()
    for tp, batch in records.items():
        if batch and tp in assigned:
            await consumer.seek(tp, read_again_from(consumer, tp, batch))


def read_again_from(consumer: Any, tp: Any, batch: Any) -> int:
    """Where to read ``tp`` again after dropping ``batch``: its committed offset once faust
    knows it in this assignment, else the batch's first record.

    The batch can come from a fetch sent before faust's seek to the committed offsets, and a
    seek to its first record then undid that seek: the records between the committed offset
    and the batch, handed over in the earlier generation and never acknowledged, were never
    read again, and :meth:`getmany` took them for skipped offsets a commit may pass (a
    SIGKILL fault test lost one input partition's partials of a run of buckets).

    >>> from types import SimpleNamespace
    >>> batch = [SimpleNamespace(offset=40)]
    >>> read_again_from(SimpleNamespace(_committed_offset={"p": 25}), "p", batch)
    25
    >>> read_again_from(SimpleNamespace(_committed_offset={}), "p", batch)
    40
    """
    committed = consumer._committed_offset.get(tp)  # noqa: SLF001  (faust's bookkeeping)
    return int(batch[0].offset) if committed is None else int(committed)


def commit_positions(consumer: Any, topic: str) -> dict[int, tuple[int | None, int | None]]:
    """Per assigned partition of ``topic``: (the offset faust last committed, the offset
    getmany handed over last), for :class:`~driftwire.stages.detect._commit_watch.CommitWatch`;
    ``None`` where there is none yet in this assignment."""
    last: dict[Any, int] = consumer.__dict__.get(LAST_READ, {})
    committed = consumer._committed_offset  # noqa: SLF001  (faust's bookkeeping)
    return {
        tp.partition: (committed.get(tp), last.get(tp))
        for tp in consumer.assignment()
        if tp.topic == topic
    }
