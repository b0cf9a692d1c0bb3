"""Whether the detect stage's committed offsets still follow what it reads.

A partials partition is *stalled* when records at or past its committed offset were read and
the committed offset has not moved for ``stall_s``: whatever the cause (an offset faust never
sees acknowledged, a commit that keeps failing), a restart would replay everything since, and
an operator should know before that replay grows. The stage feeds :meth:`CommitWatch.observe`
from its timer; the watch reads no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

STALL_S = 300.0


@dataclass
class CommitWatch:
    """Per partition: the committed offset, and since when it stands while records past it
    were read.

    >>> w = CommitWatch(stall_s=300.0)
    >>> w.observe(0.0, {0: (10, 9), 1: (20, 25)})  # 0 is caught up; 1 read past 20
    []
    >>> w.observe(299.0, {0: (10, 9), 1: (20, 30)})
    []
    >>> w.observe(300.0, {0: (10, 9), 1: (20, 31)}), w.stalled
    ([1], {1})
    >>> w.observe(301.0, {0: (10, 9), 1: (20, 32)})  # reported once
    []
    >>> w.observe(302.0, {0: (10, 9), 1: (33, 32)}), w.stalled  # the commit moved
    ([], set())
    """

    stall_s: float = STALL_S
    stalled: set[int] = field(default_factory=set)
    _since: dict[int, tuple[int | None, float]] = field(default_factory=dict)

    def observe(
        self, now: float, offsets: Mapping[int, tuple[int | None, int | None]]
    ) -> list[int]:
        """``offsets``: partition -> (committed offset, offset last read), of the partitions
        owned now (others are forgotten). The partitions that became stalled, in order."""
        for gone in set(self._since) - set(offsets):
            del self._since[gone]
            self.stalled.discard(gone)
        new: list[int] = []
        for partition, (committed, read) in sorted(offsets.items()):
            before = self._since.get(partition)
            waiting = read is not None and (committed is None or read >= committed)
            if not waiting or before is None or before[0] != committed:
                self._since[partition] = (committed, now)
                self.stalled.discard(partition)
            elif now - before[1] >= self.stall_s and partition not in self.stalled:
                self.stalled.add(partition)
                new.append(partition)
        return new
