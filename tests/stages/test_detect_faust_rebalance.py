"""The detect stage's faust consumer reads again a fetch that faust drops during a rebalance.

A fetch sent before a rebalance can return after it, while faust's flow is stopped: faust drops
its records and seeks back to the committed offsets, which aiokafka does not do for a partition
without one, so the records were lost (fault test (b): stage 1's first partials and "active
again" watermarks after a broker restart, written while stage 2's group rebalanced).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as driver

from driftwire.stages.detect._faust import read_committed

TP0 = TopicPartition("p", 0)
TP1 = TopicPartition("p", 1)
GONE = TopicPartition("p", 2)  # no longer assigned: its new owner reads it


def _consumer(monkeypatch: pytest.MonkeyPatch, *, flow_active: bool, fetched: Any) -> Any:
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
        flow_active=flow_active, assignment=lambda: {TP0, TP1}, seek=seek, seeks=seeks
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


def test_a_fetch_while_the_flow_runs_is_not_sought_back(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _consumer(monkeypatch, flow_active=True, fetched={TP1: _records(TP1, 58, 62)})
    asyncio.run(consumer._wait_next_records(1.0))  # noqa: SLF001
    assert consumer.seeks == []
