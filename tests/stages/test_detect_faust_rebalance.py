"""The detect stage's faust consumer reads again a fetch that faust drops during a rebalance.

A fetch sent before a rebalance can return after it, while faust's flow is stopped: faust drops
its records and seeks back to the committed offsets, which aiokafka does not do for a partition
without one, so the records were lost (fault test (b): stage 1's first partials and "active
again" watermarks after a broker restart, written while stage 2's group rebalanced).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any
from weakref import WeakSet

import pytest
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as driver
from intervaltree import IntervalTree

from driftwire.stages.detect._consumer import read_committed

TP0 = TopicPartition("p", 0)
TP1 = TopicPartition("p", 1)
GONE = TopicPartition("p", 2)  # no longer assigned: its new owner reads it
CHANGELOG = TopicPartition("app-detector-changelog", 0)


def _consumer(
    monkeypatch: pytest.MonkeyPatch,
    *,
    flow_active: bool,
    fetched: Any,
    committed: dict[TopicPartition, int] | None = None,
) -> Any:
    async def fetch(self: Any, timeout: float) -> Any:  # noqa: ASYNC109  (faust's signature)
        return fetched, {TP0, TP1}

    monkeypatch.setattr(driver.Consumer, "_wait_next_records", fetch)
    app = SimpleNamespace(transport=SimpleNamespace(Consumer=None))
    read_committed(app)
    consumer = object.__new__(app.transport.Consumer)
    seeks: list[tuple[TopicPartition, int]] = []

    async def seek(tp: TopicPartition, offset: int) -> None:
        seeks.append((tp, offset))

    consumer.__dict__.update(
        app=SimpleNamespace(rebalancing=False),
        flow_active=flow_active,
        assignment=lambda: {TP0, TP1},
        seek=seek,
        seeks=seeks,
        _committed_offset=defaultdict(lambda: None, committed or {}),
    )
    return consumer


def _records(tp: TopicPartition, first: int, last: int) -> list[Any]:
    return [SimpleNamespace(offset=o) for o in range(first, last + 1)]


def test_a_fetch_returning_while_the_flow_is_stopped_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fetched = {TP0: _records(TP0, 0, 10), TP1: _records(TP1, 0, 62), GONE: _records(GONE, 5, 6)}
    consumer = _consumer(monkeypatch, flow_active=False, fetched=fetched)
    records, _ = asyncio.run(consumer._wait_next_records(1.0))  # noqa: SLF001
    assert records is fetched  # faust still gets them (and drops them)
    assert sorted(consumer.seeks) == [(TP0, 0), (TP1, 0)]


def test_a_fetch_dropped_after_faust_sought_the_committed_offset_does_not_undo_that_seek(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fetch sent before faust's seek to the committed offsets returns after it: going back to
    its first record would skip the records between (never acknowledged: lost once a commit
    took them for skipped offsets). The committed offset wins; without one, the batch's start."""
    fetched = {TP0: _records(TP0, 40, 50), TP1: _records(TP1, 7, 9)}
    consumer = _consumer(monkeypatch, flow_active=False, fetched=fetched, committed={TP0: 25})
    asyncio.run(consumer._wait_next_records(1.0))  # noqa: SLF001
    assert sorted(consumer.seeks) == [(TP0, 25), (TP1, 7)]


def test_a_fetch_while_the_flow_runs_is_not_sought_back(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _consumer(monkeypatch, flow_active=True, fetched={TP1: _records(TP1, 58, 62)})
    asyncio.run(consumer._wait_next_records(1.0))  # noqa: SLF001
    assert consumer.seeks == []


# -- offsets across a rebalance --------------------------------------------------------------
#
# The consumers below hold faust's own bookkeeping (read offsets, acknowledgements, gaps,
# committed offsets) and run faust's own ``ack``, ``_add_gap`` and ``perform_seek``; only the
# broker calls are replaced.


class _Message:  # what faust's ``ack`` reads of a message (weakly referenced, like faust's)
    def __init__(self, tp: TopicPartition, offset: int) -> None:
        self.tp, self.topic, self.offset, self.acked = tp, tp.topic, offset, False


def _booked_consumer() -> Any:
    app = SimpleNamespace(transport=SimpleNamespace(Consumer=None))
    read_committed(app)
    consumer = object.__new__(app.transport.Consumer)
    consumer.__dict__.update(
        app=SimpleNamespace(
            topics=SimpleNamespace(acks_enabled_for=lambda topic: True),
            tables=SimpleNamespace(changelog_topics={CHANGELOG.topic}),
        ),
        _gap=defaultdict(IntervalTree),
        _acked=defaultdict(list),
        _acked_index=defaultdict(set),
        _read_offset=defaultdict(lambda: None),
        _committed_offset=defaultdict(lambda: None),
        _unacked_messages=WeakSet(),
        _waiting_for_ack=None,
        _n_acked=0,
    )
    return consumer


def _ack(consumer: Any, tp: TopicPartition, first: int, last: int) -> None:
    for offset in range(first, last + 1):
        assert consumer.ack(_Message(tp, offset))


def _seek_to_committed(consumer: Any, committed: dict[TopicPartition, int]) -> None:
    """faust's ``perform_seek`` with the broker's committed offsets ``committed``."""

    async def seek_to_committed() -> dict[TopicPartition, int]:
        return committed

    consumer.seek_to_committed = seek_to_committed
    asyncio.run(consumer.perform_seek())


def test_records_read_before_faust_seeks_after_a_rebalance_do_not_slow_the_commit() -> None:
    """After an assignment faust resumes the partitions (its flow already running for the
    changelog) before it seeks them to the committed offsets: the records read meanwhile are
    acknowledged, and the fetch loop, its read offset reset by the seek, counts them as a gap
    up to and including the next record, which is acknowledged too. Counted twice, each of
    them ended faust's run of consecutive offsets: one offset per commit interval (2.8 s),
    minutes for a fetch of a few hundred records."""
    consumer = _booked_consumer()
    _ack(consumer, TP1, 118, 326)  # read and processed before the seek
    _seek_to_committed(consumer, {TP1: 118})
    # faust's _drain_messages: read offset 118 (the seek), next record 327 -> gap 119..327
    asyncio.run(consumer._add_gap(TP1, 119, 327))  # noqa: SLF001
    _ack(consumer, TP1, 327, 400)
    assert consumer._new_offset(TP1) == 401  # noqa: SLF001  (faust's own: 120, then 121, ...)
    assert consumer._new_offset(TP1) is None  # noqa: SLF001
    assert not consumer._gap[TP1]  # noqa: SLF001


def test_a_transaction_marker_does_not_hold_the_commit_back() -> None:
    """With stage 1's transactions: a marker at 50 is a gap (getmany), and faust's fetch loop
    adds 50..51 (51 is the next record, acknowledged too)."""
    consumer = _booked_consumer()
    _seek_to_committed(consumer, {TP0: 40})
    _ack(consumer, TP0, 40, 49)
    asyncio.run(consumer._add_gap(TP0, 50, 50))  # noqa: SLF001
    asyncio.run(consumer._add_gap(TP0, 50, 51))  # noqa: SLF001
    _ack(consumer, TP0, 51, 60)
    assert consumer._new_offset(TP0) == 61  # noqa: SLF001  (faust's own: 52, then 61)


def test_the_commit_still_waits_for_a_record_neither_acknowledged_nor_skipped() -> None:
    consumer = _booked_consumer()
    _seek_to_committed(consumer, {TP0: 40})
    _ack(consumer, TP0, 42, 60)  # 40 and 41 still being processed
    assert consumer._new_offset(TP0) is None  # noqa: SLF001
    _ack(consumer, TP0, 40, 41)
    assert consumer._new_offset(TP0) == 61  # noqa: SLF001


def test_an_assignment_starts_without_the_bookkeeping_of_an_earlier_ownership(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust pops a revoked partition's bookkeeping, but its fetch loop, waiting for the agent
    to take a record when the flow stops, writes that record's read offset right after the
    pop; the record is then cleared from the agent's buffer unprocessed. When the partition
    came back (after another member held it), faust dropped every record below that offset
    as already read: committed past, or never acknowledged and the commit stuck below them
    (the rebalance fault test, stage 2's committed offset stuck for 5 minutes)."""
    consumer = _booked_consumer()
    seen: dict[str, Any] = {}

    async def faust_assigned(self: Any, assigned: set[TopicPartition], generation_id: int) -> None:
        seen.update(
            read=dict(self._read_offset),
            committed=dict(self._committed_offset),
            acked={tp: list(v) for tp, v in self._acked.items() if v},
            index={tp: set(v) for tp, v in self._acked_index.items() if v},
            gap={tp: len(v) for tp, v in self._gap.items() if v},
        )

    monkeypatch.setattr(driver.Consumer, "on_partitions_assigned", faust_assigned)
    # after the revoke of generation 1: what the fetch loop and the agent wrote after the pop
    consumer._read_offset[TP1] = 158  # noqa: SLF001
    consumer._committed_offset[TP1] = 97  # noqa: SLF001
    _ack(consumer, TP1, 150, 151)
    asyncio.run(consumer._add_gap(TP1, 153, 155))  # noqa: SLF001
    consumer._read_offset[GONE] = 7  # noqa: SLF001  (not assigned again: not touched)
    asyncio.run(consumer.on_partitions_assigned({TP0, TP1}, 3))
    assert seen == {"read": {GONE: 7}, "committed": {}, "acked": {}, "index": {}, "gap": {}}


def test_gaps_after_an_assignment_count_only_what_this_assignment_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """getmany's last read offset per partition is forgotten on revoke and assignment: the
    first record after an assignment (the broker's committed offset, which faust learns only
    when it seeks) opened no gap back to what this member read generations earlier."""
    consumer = _booked_consumer()
    fetched: list[tuple[TopicPartition, int]] = []

    async def faust_getmany(self: Any, timeout: float) -> Any:  # noqa: ASYNC109
        for tp, offset in fetched:
            yield tp, SimpleNamespace(offset=offset, topic=tp.topic)

    async def faust_rebalanced(self: Any, tps: set[TopicPartition], *args: Any) -> None:
        return None

    async def read() -> list[int]:
        return [m.offset async for _, m in consumer.getmany(1.0)]

    monkeypatch.setattr(driver.Consumer, "getmany", faust_getmany)
    monkeypatch.setattr(driver.Consumer, "on_partitions_revoked", faust_rebalanced)
    monkeypatch.setattr(driver.Consumer, "on_partitions_assigned", faust_rebalanced)
    fetched[:] = [(TP0, o) for o in range(60, 67)]
    assert asyncio.run(read()) == list(range(60, 67))
    asyncio.run(consumer.on_partitions_revoked({TP0}))
    asyncio.run(consumer.on_partitions_assigned({TP0}, 3))  # another member read up to 119
    fetched[:] = [(TP0, o) for o in range(120, 123)]
    assert asyncio.run(read()) == [120, 121, 122]
    assert not consumer._gap[TP0]  # noqa: SLF001  (was 67..119, offsets it never read)


def test_partials_records_fetched_during_a_rebalance_are_read_again_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Until faust ends a rebalance (after its seek to the committed offsets), the partials
    records fetched are not handed over (the position goes back to the first of them); the
    changelog's are (the recovery reads them then)."""
    consumer = _booked_consumer()
    fetched: dict[TopicPartition, list[Any]] = {}
    seeks: list[tuple[TopicPartition, int]] = []

    async def faust_fetch(self: Any, timeout: float) -> Any:  # noqa: ASYNC109
        return dict(fetched), {TP0, TP1, CHANGELOG}

    async def faust_seek(self: Any, tp: TopicPartition, offset: int) -> None:
        seeks.append((tp, offset))

    monkeypatch.setattr(driver.Consumer, "_wait_next_records", faust_fetch)
    monkeypatch.setattr(driver.Consumer, "seek", faust_seek)
    consumer.__dict__.update(flow_active=True, assignment=lambda: {TP0, TP1, CHANGELOG})
    consumer.app.rebalancing = True  # faust's app: from the revoke to the end of the recovery

    def fetch() -> dict[TopicPartition, list[int]]:
        records, _ = asyncio.run(consumer._wait_next_records(1.0))  # noqa: SLF001
        return {tp: [r.offset for r in batch] for tp, batch in records.items()}

    fetched.update(
        {TP0: _records(TP0, 40, 45), TP1: _records(TP1, 7, 9), CHANGELOG: _records(CHANGELOG, 0, 2)}
    )
    assert fetch() == {CHANGELOG: [0, 1, 2]}
    assert sorted(seeks) == [(TP0, 40), (TP1, 7)]
    _seek_to_committed(consumer, {TP0: 40})  # faust's seek; TP1 has no committed offset
    assert fetch() == {CHANGELOG: [0, 1, 2]}  # still rebalancing (faust seeks more than once)
    consumer.app.rebalancing = False
    seeks.clear()
    assert fetch() == {TP0: [40, 41, 42, 43, 44, 45], TP1: [7, 8, 9], CHANGELOG: [0, 1, 2]}
    assert seeks == []
