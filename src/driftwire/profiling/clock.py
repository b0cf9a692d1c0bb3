"""Event-time buckets and the watermark that closes them.

Buckets are tumbling: an event at ``t`` belongs to ``[s, s + bucket_ms)`` with ``s = t -
t mod bucket_ms``. :class:`EventClock` keeps the watermark, ``max event time seen - allowed
lateness``; bucket ``[s, e)`` is *closed* once the watermark reaches ``e``. It decides per
batch, before the batch moves the watermark:

* **late**: the event's bucket is already closed, by the watermark of the events before it
  (in offset order, also those earlier in the same batch: a replay cut into other batches
  decides the same). Counted and handed back, never folded.
  Event time going backwards is fine while its bucket is still open (within the lateness);
  repeats of the same time are fine.
* **future**: the event cannot be trusted to move time forward. With a wall clock
  (``now_ms`` given, the live service) that is an event more than ``max_future_ms`` (5 min)
  ahead of ``now_ms``; it is kept out of profiles and of the watermark. The watermark is also
  capped at ``now_ms - allowed lateness``, so a producer whose clock runs a few minutes fast
  (inside ``max_future_ms``) cannot close buckets early either.
  Without a wall clock (``now_ms=None``, replaying a file) an event more than ``max_jump_ms``
  (default: the larger of bucket and lateness) beyond the highest accepted time is a
  *suspect*. Suspects are future events until the jump is corroborated: at least
  ``jump_quorum`` (20) suspects have arrived, and they outnumber the normal events that
  arrived since the first of them. A real gap in a replay (everything after it is ahead)
  passes at once when a batch holds ``jump_quorum`` events after the gap; one producer with a
  bad clock among others never passes, because normal events keep outnumbering it. Suspects
  turned away before the jump was accepted stay counted as future.
* otherwise **accepted**. The caller folds accepted events, then flushes ``closed``.

Stage 2's detection window over closed buckets is :mod:`driftwire.detect.window`.

>>> clock = EventClock(bucket_ms=60_000, allowed_lateness_ms=10_000)
>>> a = clock.advance(np.array([5_000, 59_000, 75_000]))
>>> a.accepted.tolist(), a.closed, clock.watermark_ms
([True, True, True], (0,), 65000)
>>> b = clock.advance(np.array([30_000, 70_000]))    # bucket [0, 60000) is closed: late
>>> b.late.tolist(), b.accepted.tolist()
([True, False], [False, True])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from driftwire.profiling._columns import unique_counts

__all__ = ["Admission", "EventClock", "distinct_starts"]

_LOW = np.iinfo(np.int64).min // 2  # "no watermark yet", far below any epoch ms


def distinct_starts(starts: np.ndarray, bucket_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(starts, return_inverse=True)`` of bucket starts (multiples of
    ``bucket_ms``), counted by bucket number (:func:`unique_counts`) instead of sorting the
    events: a batch spans a few buckets.

    >>> [a.tolist() for a in distinct_starts(np.array([120, 0, 120, 60]), 60)]
    [[0, 60, 120], [2, 0, 2, 1]]
    """
    lo = int(starts.min())
    numbers = (starts - lo) // bucket_ms
    found, inverse, _ = unique_counts(numbers, int(numbers.max()) + 1)
    return lo + found * bucket_ms, inverse


@dataclass(frozen=True, slots=True)
class Admission:
    """What :meth:`EventClock.advance` decided for a batch; arrays are aligned with it."""

    bucket_start: np.ndarray  # int64: the bucket of every event (meaningful where accepted)
    accepted: np.ndarray  # bool: fold into the bucket's profile
    late: np.ndarray  # bool: the bucket was closed before this batch
    future: np.ndarray  # bool: too far ahead (wall clock) or an uncorroborated jump
    closed: tuple[int, ...]  # starts of the buckets this batch closed, ascending
    watermark_ms: int | None  # after this batch

    @property
    def n_late(self) -> int:
        return int(self.late.sum())

    @property
    def n_future(self) -> int:
        return int(self.future.sum())


class EventClock:
    """Tumbling event-time buckets with a watermark, allowed lateness and jump guards.

    >>> clock = EventClock(bucket_ms=1_000, allowed_lateness_ms=0, jump_quorum=3)
    >>> _ = clock.advance(np.array([100, 200]))
    >>> clock.advance(np.array([900_000, 300])).future.tolist()   # one bad clock: refused
    [True, False]
    >>> clock.watermark_ms
    300
    >>> clock.advance(np.array([900_000, 900_100, 900_200])).accepted.tolist()  # a real gap
    [True, True, True]
    >>> clock.watermark_ms
    900200
    """

    __slots__ = (
        "_bucket",
        "_jump_quorum",
        "_lateness",
        "_max_future",
        "_max_jump",
        "_max_seen",
        "_open",
        "_pending_normal",
        "_pending_suspects",
        "_watermark",
    )

    def __init__(
        self,
        *,
        bucket_ms: int = 60_000,
        allowed_lateness_ms: int = 30_000,
        max_future_ms: int = 300_000,
        max_jump_ms: int | None = None,
        jump_quorum: int = 20,
    ) -> None:
        for name, value, low in (
            ("bucket_ms", bucket_ms, 1),
            ("allowed_lateness_ms", allowed_lateness_ms, 0),
            ("max_future_ms", max_future_ms, 0),
            ("jump_quorum", jump_quorum, 1),
        ):
            if type(value) is not int or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if max_jump_ms is None:
            max_jump_ms = max(bucket_ms, allowed_lateness_ms)
        if type(max_jump_ms) is not int or max_jump_ms < 0:
            raise ValueError(f"max_jump_ms must be an int >= 0, got {max_jump_ms!r}")
        self._bucket = bucket_ms
        self._lateness = allowed_lateness_ms
        self._max_future = max_future_ms
        self._max_jump = max_jump_ms
        self._jump_quorum = jump_quorum
        self._max_seen: int | None = None
        self._watermark: int | None = None
        self._open: set[int] = set()
        self._pending_suspects = 0
        self._pending_normal = 0

    @property
    def bucket_ms(self) -> int:
        return self._bucket

    @property
    def watermark_ms(self) -> int | None:
        """Every bucket ending at or before this is closed; ``None`` before the first event."""
        return self._watermark

    @property
    def max_event_ms(self) -> int | None:
        """The highest accepted event time."""
        return self._max_seen

    @property
    def open_buckets(self) -> tuple[int, ...]:
        """Starts of the buckets that received events and are not closed yet, ascending."""
        return tuple(sorted(self._open))

    def bucket_of(self, event_times: np.ndarray) -> np.ndarray:
        """The bucket start of each event time."""
        t = np.asarray(event_times, dtype=np.int64)
        return t - t % self._bucket

    def advance(self, event_times: np.ndarray, now_ms: int | None = None) -> Admission:
        """Classify a batch's event times (epoch ms, int64), then move the watermark."""
        t = _check_times(event_times)
        starts = t - t % self._bucket
        # without a wall clock, jumps are measured from one anchor for the whole batch, so the
        # events that move the watermark within it are exactly those the jump guard lets pass
        anchor = self._jump_anchor(t)
        late = self._late(t, starts, now_ms, anchor)
        if now_ms is not None:
            future = (t > int(now_ms) + self._max_future) & ~late
        else:
            future = self._jump_guard(t, ~late, anchor)
        accepted = ~(late | future)
        if accepted.any():
            top = int(t[accepted].max())
            if self._max_seen is None or top > self._max_seen:
                self._max_seen = top
            opened = starts[accepted]
            if opened[0] == opened[-1] and (opened == opened[0]).all():  # one bucket: usual
                self._open.add(int(opened[0]))
            else:
                self._open.update(distinct_starts(opened, self._bucket)[0].tolist())
        if self._max_seen is not None:
            reference = self._max_seen if now_ms is None else min(self._max_seen, int(now_ms))
            self._raise_watermark(reference - self._lateness)
        return Admission(starts, accepted, late, future, self._close(), self._watermark)

    def _jump_anchor(self, t: np.ndarray) -> int:
        """The time jumps are measured from: the highest accepted time, else the batch's median.

        The median of the first events: a minority of wild clocks cannot set the start.
        """
        if self._max_seen is not None:
            return self._max_seen
        return int(np.median(t)) if len(t) else 0

    def _late(
        self, t: np.ndarray, starts: np.ndarray, now_ms: int | None, anchor: int
    ) -> np.ndarray:
        """Late events: each is judged by the watermark of the events *before it* in the batch.

        So whether an event is late does not depend on where a batch begins or ends: a
        replay read in other batches puts the same events in the same buckets. With a wall
        clock, events beyond ``max_future_ms`` do not move the watermark (they are future);
        without one, neither do jumps the batch has not confirmed yet. A late event cannot
        move it either (its time is below it), so counting it is harmless.
        """
        if len(t) == 0:
            return np.zeros(0, dtype=bool)
        # No event can be late when the earliest bucket ends after the highest watermark any
        # event of the batch could meet (the usual case, checked in two reductions).
        top = int(t.max()) if self._max_seen is None else max(int(t.max()), self._max_seen)
        if now_ms is not None:
            top = min(top, int(now_ms))
        highest = top - self._lateness
        if self._watermark is not None:
            highest = max(highest, self._watermark)
        if int(starts.min()) + self._bucket > highest:
            return np.zeros(len(t), dtype=bool)
        return self._late_each(t, starts, now_ms, anchor)

    def _late_each(
        self, t: np.ndarray, starts: np.ndarray, now_ms: int | None, anchor: int
    ) -> np.ndarray:
        """:meth:`_late` event by event (the watermark each event meets)."""
        wm = self._watermark
        if now_ms is not None:
            ahead = t > int(now_ms) + self._max_future
        else:  # an unconfirmed jump (see _jump_guard) does not move it within the batch
            ahead = t > anchor + self._max_jump
        moving = np.where(ahead, _LOW, t)
        seen = np.maximum.accumulate(moving)
        before = np.empty_like(seen)
        before[0] = _LOW  # the first event meets the watermark as it is
        before[1:] = seen[:-1]
        if self._max_seen is not None:
            before[1:] = np.maximum(before[1:], self._max_seen)
        if now_ms is not None:
            before = np.minimum(before, int(now_ms))
        marks = np.where(before > _LOW, before - self._lateness, _LOW)
        if wm is not None:
            marks = np.maximum(marks, wm)
        return starts + self._bucket <= marks

    def _jump_guard(self, t: np.ndarray, live: np.ndarray, anchor: int) -> np.ndarray:
        """Mark uncorroborated jumps ahead (replay mode) as future."""
        if not live.any():
            return np.zeros(len(t), dtype=bool)
        suspect = live & (t > anchor + self._max_jump)
        n_suspect = int(suspect.sum())
        if n_suspect == 0:
            self._pending_suspects = self._pending_normal = 0
            return suspect
        # normal events that arrived after the first pending suspect
        first = 0 if self._pending_suspects else int(np.argmax(suspect))
        self._pending_suspects += n_suspect
        self._pending_normal += int((live[first:] & ~suspect[first:]).sum())
        if (
            self._pending_suspects >= self._jump_quorum
            and self._pending_suspects > self._pending_normal
        ):
            self._pending_suspects = self._pending_normal = 0
            return np.zeros(len(t), dtype=bool)
        if self._pending_normal > self._pending_suspects:  # refuted: start counting afresh
            self._pending_suspects = self._pending_normal = 0
        return suspect

    def _raise_watermark(self, candidate: int) -> None:
        if self._watermark is None or candidate > self._watermark:
            self._watermark = candidate

    def _close(self) -> tuple[int, ...]:
        wm = self._watermark
        if wm is None or not self._open:
            return ()
        closed = sorted(s for s in self._open if s + self._bucket <= wm)
        self._open.difference_update(closed)
        return tuple(closed)

    def advance_to(self, watermark_ms: int) -> tuple[int, ...]:
        """Move the watermark to at least ``watermark_ms`` (an idle input); the closed buckets."""
        self._raise_watermark(int(watermark_ms))
        return self._close()

    def flush(self) -> tuple[int, ...]:
        """Close every open bucket (shutdown, revoked partition), ascending."""
        closed = tuple(sorted(self._open))
        self._open.clear()
        return closed


def _check_times(event_times: object) -> np.ndarray:
    if not isinstance(event_times, np.ndarray):
        raise TypeError(f"expected an int64 numpy array, got {type(event_times).__name__}")
    if event_times.ndim != 1 or event_times.dtype.kind not in "iu":
        raise TypeError(
            f"expected a 1-D integer array of epoch ms, got {event_times.ndim}-D "
            f"{event_times.dtype}"
        )
    return event_times.astype(np.int64, copy=False)
