"""Which detector of the detect stage holds which model (ownership:
:mod:`driftwire.stages.detect.stage`).

:func:`partition_of` is the partials (and state) partition of a model; the stage keeps one
detector per owned partials partition, a :class:`_Slot`, which :class:`DetectorLike` describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka.partitioner import DefaultPartitioner

from driftwire.alerts.alert import Alert
from driftwire.partials import Partial, Watermark
from driftwire.stages.detect._outbox import OutboxEntry


class DetectorLike(Protocol):
    """What the shell needs of :class:`driftwire.detect.detector.Detector`."""

    def on_partial(self, partial: Partial, now_ms: int) -> list[Alert]: ...
    def on_watermark(self, mark: Watermark, now_ms: int) -> list[Alert]: ...
    def tick(self, now_ms: int) -> list[Alert]: ...
    def take_changed(self) -> set[str]: ...
    def snapshot(self, model: str) -> dict[str, Any]: ...
    def restore(self, model: str, state: dict[str, Any]) -> None: ...
    def stored_parts(self) -> list[tuple[str, bytes, bytes | None]]: ...
    def part_keys(self, model: str) -> list[bytes]: ...
    def load_part(self, key: bytes, blob: bytes) -> None: ...


def partition_of(model: str, partitions: int) -> int:
    """The partials (and state) partition of ``model``: Kafka's default murmur2 partitioner."""
    return int(DefaultPartitioner()(model.encode(), list(range(partitions)), None))


@dataclass
class _Slot:
    """The detector of one partials partition and what it holds.

    A watermark copy on partition p is ordered after every partial produced to p before it,
    but not after partials on other partitions: so it may only complete the buckets of the
    models of partition p. One detector per partition gives each watermark copy exactly the
    models it speaks for (and a lost partition is dropped whole).
    """

    detector: DetectorLike
    models: set[str] = field(default_factory=set)
    marks: dict[tuple[str, int], tuple[int, bool]] = field(default_factory=dict)
    outbox: list[OutboxEntry] = field(default_factory=list)  # alerts not acknowledged yet

    def new_mark(self, mark: Watermark) -> bool:
        """False for a watermark this partition has already seen (a replay)."""
        key = (mark.topic, mark.partition)
        seen = self.marks.get(key)
        if seen is not None and mark.watermark_ms <= seen[0] and mark.idle == seen[1]:
            return False
        top = mark.watermark_ms if seen is None else max(mark.watermark_ms, seen[0])
        self.marks[key] = (top, mark.idle)
        return True
