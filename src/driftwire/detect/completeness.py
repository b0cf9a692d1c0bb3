"""When is a bucket complete? The minimum watermark over the input partitions, with a grace.

Stage 1 publishes a watermark per input partition. A bucket is complete for stage 2 once
every non-idle input partition's watermark has passed its end (as a stream processor takes
the minimum watermark over its inputs). A partition that has not reported at all holds the
bucket back for at most ``grace_ms`` of processing time after the first partition passed it,
so one stuck or slow stage-1 member cannot stall detection; partials that arrive for an
already evaluated bucket are counted as late by the caller.

>>> t = Completeness(grace_ms=10_000)
>>> t.observe(partition=0, partitions=2, watermark_ms=120_000, idle=False, now_ms=0)
>>> t.complete_until(now_ms=1_000)        # partition 1 not heard from yet
>>> t.complete_until(now_ms=11_000)       # grace passed
120000
>>> t.observe(partition=1, partitions=2, watermark_ms=60_000, idle=False, now_ms=12_000)
>>> t.complete_until(now_ms=12_000)       # never goes backwards
120000
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Completeness:
    """Tracks per-input-partition watermarks and answers how far buckets are complete."""

    grace_ms: int
    partitions: int = 0
    watermarks: dict[int, int] = field(default_factory=dict)
    idle: set[int] = field(default_factory=set)
    _complete: int | None = None
    _max_seen_at: tuple[int, int] | None = None  # (max watermark, processing time first seen)

    def observe(
        self, *, partition: int, partitions: int, watermark_ms: int, idle: bool, now_ms: int
    ) -> None:
        self.partitions = max(self.partitions, partitions)
        self.watermarks[partition] = max(self.watermarks.get(partition, watermark_ms), watermark_ms)
        if idle:
            self.idle.add(partition)
        else:
            self.idle.discard(partition)
        top = max(self.watermarks.values())
        if self._max_seen_at is None or top > self._max_seen_at[0]:
            self._max_seen_at = (top, now_ms)

    def complete_until(self, now_ms: int) -> int | None:
        """Every bucket ending at or before the returned time may be evaluated."""
        if not self.watermarks:
            return self._complete
        active = [self.watermarks.get(p) for p in range(self.partitions) if p not in self.idle]
        if active and all(w is not None for w in active):
            candidate: int | None = min(w for w in active if w is not None)
        elif not active:
            candidate = max(self.watermarks.values())
        else:
            candidate = None
        if self._max_seen_at is not None and now_ms - self._max_seen_at[1] >= self.grace_ms:
            # grace over: whoever has not reported by now is late, not a blocker; a partition
            # that reported and lags is still waited for (evaluating past it would make its
            # partials late, and the alerts would depend on how fast stage 1 read each one)
            reported = [w for p, w in self.watermarks.items() if p not in self.idle]
            fallback = min(reported) if reported else max(self.watermarks.values())
            candidate = fallback if candidate is None else max(candidate, fallback)
        if candidate is not None and (self._complete is None or candidate > self._complete):
            self._complete = candidate
        return self._complete

    def for_new_model(self, grace_ms: int) -> Completeness:
        """What a new model starts with: this tracker's input partitions (their count,
        watermarks and idle ones), but no bucket completed yet."""
        state = self.to_state()
        state["complete"] = None
        return Completeness.from_state(grace_ms, state)

    def to_state(self) -> dict[str, object]:
        return {
            "partitions": self.partitions,
            "watermarks": {str(k): v for k, v in self.watermarks.items()},
            "idle": sorted(self.idle),
            "complete": self._complete,
        }

    @classmethod
    def from_state(cls, grace_ms: int, state: dict[str, object]) -> Completeness:
        c = cls(grace_ms=grace_ms, partitions=int(state["partitions"]))  # type: ignore[call-overload]
        c.watermarks = {int(k): int(v) for k, v in state["watermarks"].items()}  # type: ignore[attr-defined]
        c.idle = set(state["idle"])  # type: ignore[call-overload]
        c._complete = state["complete"]  # type: ignore[assignment]
        return c
