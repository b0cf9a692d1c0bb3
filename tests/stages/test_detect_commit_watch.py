"""The detect stage tells when its committed offsets stand still while it reads past them.

The consumer is the stage's own faust consumer (``read_committed``) with faust's bookkeeping;
only faust's fetch and its broker calls are replaced.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as driver
from prometheus_client import CollectorRegistry

from driftwire.detect.reference import ReferenceStore
from driftwire.ops.config import Settings
from driftwire.ops.health import Readiness
from driftwire.stages.detect._consumer import read_committed
from driftwire.stages.detect.stage import DetectMetrics, DetectStage, FaustOptions

PARTIALS = "t-partials"
TP0, TP1 = TopicPartition(PARTIALS, 0), TopicPartition(PARTIALS, 1)
OTHER = TopicPartition("t-detect-detector-changelog", 0)  # not a partials partition


def _consumer(monkeypatch: pytest.MonkeyPatch) -> Any:
    fetched: list[tuple[TopicPartition, int]] = []

    async def faust_getmany(self: Any, timeout: float) -> Any:  # noqa: ASYNC109
        for tp, offset in fetched:
            yield tp, SimpleNamespace(offset=offset, topic=tp.topic)

    monkeypatch.setattr(driver.Consumer, "getmany", faust_getmany)
    app = SimpleNamespace(transport=SimpleNamespace(Consumer=None))
    read_committed(app)
    consumer = object.__new__(app.transport.Consumer)
    consumer.__dict__.update(
        app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True)),
        _read_offset=defaultdict(lambda: None),
        _committed_offset=defaultdict(lambda: None),
        assignment=lambda: {TP0, TP1, OTHER},
        fetched=fetched,
    )
    return consumer


def _read(consumer: Any, *records: tuple[TopicPartition, int]) -> None:
    consumer.fetched[:] = records

    async def read() -> None:
        async for _ in consumer.getmany(1.0):
            pass

    asyncio.run(read())


def _committed(consumer: Any, offsets: dict[TopicPartition, int]) -> None:
    """faust's ``perform_seek`` with the broker's committed offsets ``offsets``."""

    async def seek_to_committed() -> dict[TopicPartition, int]:
        return offsets

    consumer.seek_to_committed = seek_to_committed
    asyncio.run(consumer.perform_seek())


def test_a_committed_offset_standing_while_records_past_it_are_read_is_reported_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.model_validate({"topics": {"partials": PARTIALS}})
    registry = CollectorRegistry()
    stage = DetectStage(
        settings,
        lambda: None,  # type: ignore[arg-type,return-value]  (no record reaches a detector)
        ReferenceStore(),
        DetectMetrics(registry),
        Readiness(),
        options=FaustOptions(commit_stall_s=60.0),
    )
    consumer = _consumer(monkeypatch)
    app: Any = SimpleNamespace(consumer=consumer)

    def stalled() -> float | None:
        return registry.get_sample_value("driftwire_detect_commit_stalled_partitions")

    _committed(consumer, {TP0: 10, TP1: 20})
    _read(consumer, (TP0, 10), (TP1, 9))  # 0 read its committed record; 1 is behind: caught up
    with caplog.at_level(logging.WARNING, logger="driftwire"):
        stage._watch_commits(app, 1000.0)  # noqa: SLF001
        _read(consumer, (TP0, 11), (TP0, 12), (OTHER, 500))
        stage._watch_commits(app, 1059.0)  # noqa: SLF001
        assert stalled() == 0
        stage._watch_commits(app, 1060.0)  # noqa: SLF001
        stage._watch_commits(app, 1061.0)  # noqa: SLF001
        assert stalled() == 1
        lines = [r for r in caplog.records if "committed offset stands still" in r.getMessage()]
        assert len(lines) == 1
        assert lines[0].fields == {  # type: ignore[attr-defined]
            "partition": 0,
            "committed": 10,
            "read": 12,
            "seconds": 60.0,
        }
        _committed(consumer, {TP0: 13, TP1: 20})  # the commit moves on
        stage._watch_commits(app, 1062.0)  # noqa: SLF001
        assert stalled() == 0
