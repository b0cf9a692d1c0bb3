"""How far each input partition has been read, and the limit that puts on the tracker's clock.

A shell that reads several partitions (the events and labels topics, two partitions each or
more) gets their records in no fixed order: one partition can be read to its end before
another is started. :class:`~driftwire.truth.tracker.TruthTracker` judges a window once its
clock passes it, so the shell holds the clock at the event time every partition that still
has records to come has reached (:attr:`~driftwire.truth.tracker.TruthTracker.limit_ms`).

A partition has records to come while its read position is behind its end, and also while the
records of the batch being added are not all in the tracker yet: a fetch moves the position
to the end of what it returned before those records are added, so a batch that reads a
partition to its end must not free the clock before its records are in (it would judge the
windows they belong to without them).

>>> clock = InputClock()
>>> clock.limit(behind=["labels-0"], reading=[]) == NOTHING_READ  # nothing read from it yet
True
>>> clock.note("labels-0", 5_000); clock.note("events-0", 9_000)
>>> clock.limit(behind=[], reading=["labels-0"])  # its last records are being added
5000
>>> clock.limit(behind=["events-0"], reading=[]), clock.limit(behind=[], reading=[])
(9000, None)
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

__all__ = ["NOTHING_READ", "InputClock"]

#: the limit of a partition with records to come of which none was read yet
NOTHING_READ = -(2**62)


class InputClock:
    """The latest event time read per input partition; pure."""

    def __init__(self) -> None:
        self._reached: dict[Hashable, int] = {}

    def note(self, partition: Hashable, time_ms: int) -> None:
        """A record of ``partition`` with event time ``time_ms`` was added to the tracker."""
        self._reached[partition] = max(self._reached.get(partition, time_ms), time_ms)

    def clear(self) -> None:
        """Forget every partition (a rebuild reads them again)."""
        self._reached.clear()

    def limit(self, *, behind: Iterable[Hashable], reading: Iterable[Hashable]) -> int | None:
        """The event time every partition ``behind`` its end or with records in the batch
        being added (``reading``) has reached; None when there is none."""
        lagging = {*behind, *reading}
        if not lagging:
            return None
        return min(self._reached.get(p, NOTHING_READ) for p in lagging)
