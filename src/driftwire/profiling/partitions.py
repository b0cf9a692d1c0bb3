"""Stage 1's pure core per input partition: profiles, bucket offsets, partials, commit points.

:class:`ProfileCore` wraps one :class:`~driftwire.profiling.profiler.Profiler` per assigned input
partition (sharing one model catalog, so kinds and segment caps agree) and knows, for every
open bucket, the offsets of its events. It answers the Kafka shell's three questions:

* what is due (:meth:`due`): partials of closed buckets, then a watermark record per input
  partition whose watermark crossed a bucket boundary or that went idle (stage 2 only asks
  which buckets are complete, so a watermark moving inside a bucket is not news: this keeps
  the broadcast at one record per partials partition and bucket, not one per fetch);
* where it is safe to commit (:meth:`commit_point`): the first offset of the oldest open
  bucket, or the position when nothing is open, with metadata (watermark, the highest offset
  already emitted in a partial) so that a successor resumes exactly;
* what to do after a restart (:meth:`assign` with a :class:`Resume`): events re-read from
  buckets that were already emitted are skipped (counted as replayed), so the partials of a
  replay carry the same ids and the same content.

An input partition that is caught up with its end and has had no events for ``idle_ms``
(processing time; only when ``now_ms`` is given) closes every open bucket up to and including
the one holding its newest event, but never beyond the bucket holding ``now_ms`` (an event
stamped a few minutes ahead does not close the minutes before it; its bucket closes when the
wall clock gets there), and is reported idle with a watermark at that bucket's end,
so it neither holds back detection nor waits forever for its last bucket, and that bucket
reaches stage 2 before the watermark that completes it (an event that arrives for it later is
late). A partition that is only behind is never idle, and an idle partition whose end moves
past its position (events to read again) is reported active at once, ahead of every other
partition's output: stage 2 does not wait for an idle partition.

The core counts, it does not export: :meth:`~ProfileCore.process` returns the late, future and
replayed events of the batch (:class:`FoldCounts`), :meth:`~ProfileCore.due` and
:meth:`~ProfileCore.flush` return the records with the cardinality overflow counted since the
last call (:class:`Emission`); the shells turn them into metrics
(:mod:`driftwire.stages.profile_core`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import orjson

from driftwire.decode.batch import DecodedBatch
from driftwire.partials import Partial, Watermark
from driftwire.profiling.clock import EventClock, distinct_starts
from driftwire.profiling.profiler import ClosedBucket, ModelCatalog, Profiler, ProfilerLimits

#: Profile bytes per partial record; base64 in the JSON envelope adds a third, so a record
#: stays under Kafka's default 1 MiB limit.
MAX_PARTIAL_BYTES = 600_000


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record for the partials topic. ``broadcast``: send it to every partition.

    ``source`` is the input partition it comes from (its partials, its watermark): a shell
    that commits each input partition's output with its offsets in one transaction sends it
    with that partition's producer.

    ``barrier``: it must be in the log before every record that follows it in the emission
    (the watermark of a partition that resumes after being reported idle). One producer keeps
    its records in send order; with a producer per input partition the shell has the barrier
    acknowledged before it sends anything after it.
    """

    key: bytes | None
    value: bytes
    broadcast: bool = False
    headers: tuple[tuple[str, bytes], ...] = ()
    source: int | None = None
    barrier: bool = False


@dataclass(frozen=True, slots=True)
class FoldCounts:
    """What :meth:`ProfileCore.process` set aside from one batch.

    ``late`` and ``future`` count events per model (raw model names: the shell caps them as
    metric labels); ``replayed`` counts events re-read after a restart whose bucket had already
    been emitted.
    """

    late: Mapping[str, int]
    future: Mapping[str, int]
    replayed: int = 0


_NOTHING_FOLDED = FoldCounts({}, {})


@dataclass(frozen=True, slots=True)
class Emission:
    """What :meth:`ProfileCore.due` and :meth:`ProfileCore.flush` hand to the shell.

    ``records`` go to the partials topic; ``overflow`` counts, by what was capped (``models``,
    ``versions``, ``segments``, ``features``), the values folded or dropped since the previous
    emission; ``evictions`` the names pushed out to make room for newer ones.
    """

    records: list[OutRecord]
    overflow: Mapping[str, int]
    evictions: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a partition's previous owner stopped: committed offset and its metadata."""

    offset: int
    watermark_ms: int | None = None
    emitted_through: int = -1  # highest offset already inside an emitted partial

    @property
    def metadata(self) -> str:
        return orjson.dumps({"wm": self.watermark_ms, "et": self.emitted_through}).decode()

    @classmethod
    def from_metadata(cls, offset: int, metadata: str | None) -> Resume:
        try:
            doc = orjson.loads(metadata or "{}")
            return cls(offset, doc.get("wm"), int(doc.get("et", -1)))
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            return cls(offset)  # committed by something else: resume from the offset only


@dataclass
class _Partition:
    profiler: Profiler
    resume: Resume | None = None
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)  # bucket -> first, last
    position: int | None = None
    emitted_through: int = -1
    reported_wm: int | None = None
    idle: bool = False
    last_event_ms: int | None = None  # processing time of the last event
    caught_up: bool = False  # position at the partition's end (only then can it be idle)
    closed: list[ClosedBucket] = field(default_factory=list)  # closed, not yet emitted
    idle_reported: bool = False


class ProfileCore:
    """Pure stage-1 logic for the partitions this worker owns."""

    def __init__(
        self,
        *,
        topic: str,
        partitions: int,
        bucket_ms: int,
        allowed_lateness_ms: int,
        max_future_ms: int,
        idle_ms: int,
        limits: ProfilerLimits,
    ) -> None:
        self.topic = topic
        self.partitions = partitions
        self._bucket_ms = bucket_ms
        self._lateness_ms = allowed_lateness_ms
        self._max_future_ms = max_future_ms
        self._idle_ms = idle_ms
        self._catalog = ModelCatalog(limits)
        self._parts: dict[int, _Partition] = {}
        self._overflow_seen: dict[str, int] = {}
        self._evictions_seen: dict[str, int] = {}

    # -- partition lifecycle -------------------------------------------------------------

    def assign(self, partition: int, resume: Resume | None) -> None:
        clock = EventClock(
            bucket_ms=self._bucket_ms,
            allowed_lateness_ms=self._lateness_ms,
            max_future_ms=self._max_future_ms,
        )
        if resume is not None and resume.watermark_ms is not None:
            clock.advance_to(resume.watermark_ms)
        state = _Partition(Profiler(clock, catalog=self._catalog), resume=resume)
        if resume is not None:
            state.position = resume.offset
            state.emitted_through = resume.emitted_through
            state.reported_wm = resume.watermark_ms
            # the previous owner may have reported it idle: say it is active (in the first
            # call of :meth:`due`, ahead of other output) until it is found idle here
            state.idle_reported = resume.watermark_ms is not None
        self._parts[partition] = state

    def revoke(self, partition: int) -> None:
        """Forget a partition's in-flight state (it was flushed, or it was lost)."""
        self._parts.pop(partition, None)

    def owns(self, partition: int) -> bool:
        """Whether ``partition`` is assigned (and not revoked or lost since)."""
        return partition in self._parts

    def set_partition_count(self, partitions: int) -> None:
        self.partitions = max(self.partitions, partitions)

    def note_position(self, partition: int, position: int, end: int | None = None) -> None:
        """The next offset the consumer will read for ``partition`` (and the partition's end).

        A partition can only be idle when it is caught up (``position >= end``): one that is
        merely behind, or starved by its neighbours in a fetch, still holds the watermark.
        """
        state = self._parts.get(partition)
        if state is None:
            return
        if state.position is None or position > state.position:
            state.position = position
        if end is not None:
            state.caught_up = position >= end
            if state.idle and not state.caught_up:
                # events arrived for an idle partition: it is not idle from now on, and
                # :meth:`due` says so before any other partition's output (see there)
                state.idle = False

    def max_event_time(self, partition: int) -> int | None:
        state = self._parts.get(partition)
        return None if state is None else state.profiler.clock.max_event_ms

    # -- the hot path --------------------------------------------------------------------

    def process(
        self, partition: int, batch: DecodedBatch, offsets: np.ndarray, now_ms: int | None
    ) -> FoldCounts:
        """Fold the valid events of one batch; ``offsets`` are theirs (aligned with rows).

        Returns what was set aside: late and future events per model, replayed events.
        """
        state = self._parts[partition]
        if len(batch) == 0:
            return _NOTHING_FOLDED
        state.last_event_ms = now_ms
        state.idle = False
        replayed = 0
        if state.resume is not None:
            before = len(batch)
            batch, offsets = self._skip_replayed(state, batch, offsets)
            replayed = before - len(batch)
            if len(batch) == 0:
                return FoldCounts({}, {}, replayed)
        result = state.profiler.fold(batch, now_ms)
        admission = result.admission
        if admission.accepted.any():
            starts = admission.bucket_start[admission.accepted]
            accepted_offsets = offsets[admission.accepted]
            if starts[0] == starts[-1] and (starts == starts[0]).all():  # one bucket: usual
                spans = [(int(starts[0]), accepted_offsets)]
            else:
                found = distinct_starts(starts, self._bucket_ms)[0].tolist()
                spans = [(s, accepted_offsets[starts == s]) for s in found]
            for start, sel in spans:
                lo, hi = int(sel.min()), int(sel.max())
                known = state.offsets.get(start)
                state.offsets[start] = (
                    (lo, hi) if known is None else (min(known[0], lo), max(known[1], hi))
                )
        state.closed.extend(result.closed)
        return FoldCounts(result.late, result.future, replayed)

    def _skip_replayed(
        self, state: _Partition, batch: DecodedBatch, offsets: np.ndarray
    ) -> tuple[DecodedBatch, np.ndarray]:
        """Drop re-read events whose bucket was emitted before the restart."""
        if state.resume is None:  # not resuming after a restart: nothing to skip
            return batch, offsets
        wm = state.resume.watermark_ms
        if wm is None or state.resume.emitted_through < 0:
            state.resume = None
            return batch, offsets
        starts = batch.timestamp_ms - batch.timestamp_ms % self._bucket_ms
        replayed = (starts + self._bucket_ms <= wm) & (offsets <= state.resume.emitted_through)
        if offsets.size and int(offsets.min()) > state.resume.emitted_through:
            state.resume = None  # past everything emitted: no more checks needed
        if not replayed.any():
            return batch, offsets
        keep = np.flatnonzero(~replayed)
        return batch.take(keep), offsets[keep]

    # -- what is due ---------------------------------------------------------------------

    def due(self, now_ms: int | None) -> Emission:
        """Partials of closed buckets, then watermark records, for every partition.

        First, though, the watermark of every partition that was reported idle and has events
        to read again: stage 2 does not wait for an idle partition, so were it told of the
        resumption only after the partials of a partition read first, it would evaluate their
        buckets without this partition and set its partials aside as late.
        """
        out: list[OutRecord] = []
        for partition, state in self._parts.items():
            last = state.reported_wm
            if state.idle_reported and not state.idle and last is not None:
                # the watermark reported with the idleness, not a newer one: the partials of
                # the buckets this partition closes in this call follow below
                state.idle_reported = False
                mark = Watermark(self.topic, partition, self.partitions, last, idle=False)
                out.append(
                    OutRecord(None, mark.encode(), broadcast=True, source=partition, barrier=True)
                )
        for partition, state in self._parts.items():
            closed = state.closed
            if (
                now_ms is not None
                and state.last_event_ms is not None
                and state.caught_up
                and (state.idle or now_ms - state.last_event_ms >= self._idle_ms)
            ):
                state.idle = True
                top = state.profiler.clock.max_event_ms
                if top is not None:  # every bucket, the one holding the newest event too,
                    # but none beyond the wall clock's: a future-stamped event's bucket closes
                    # when the clock reaches it (the watermark moves on with processing time)
                    newest = min(top, now_ms)
                    end = newest // self._bucket_ms * self._bucket_ms + self._bucket_ms
                    closed.extend(state.profiler.advance_to(end))
            out.extend(self._partials(partition, state, closed))
            closed.clear()
            wm = state.profiler.clock.watermark_ms
            moved = state.reported_wm is None or (
                wm is not None and wm // self._bucket_ms > state.reported_wm // self._bucket_ms
            )
            if wm is not None and (moved or state.idle != state.idle_reported):
                state.idle_reported = state.idle
                state.reported_wm = wm
                mark = Watermark(self.topic, partition, self.partitions, wm, idle=state.idle)
                out.append(OutRecord(None, mark.encode(), broadcast=True, source=partition))
        if not self._parts:
            return Emission(out, {})
        return Emission(out, self._new_overflow(), self._new_evictions())

    def flush(self, partition: int) -> Emission:
        """Emit every open bucket of ``partition`` now (revoke, shutdown, end of a replay)."""
        state = self._parts.get(partition)
        if state is None:
            return Emission([], {})
        closed = state.closed
        closed.extend(state.profiler.flush())
        out = self._partials(partition, state, closed)
        closed.clear()
        return Emission(out, self._new_overflow(), self._new_evictions())

    def _partials(
        self, partition: int, state: _Partition, closed: list[ClosedBucket]
    ) -> list[OutRecord]:
        out = []
        for bucket in closed:
            span = state.offsets.get(bucket.start_ms)
            if span is None:
                continue
            for part, (events, segments) in enumerate(_chunks(bucket)):
                partial = Partial(
                    topic=self.topic,
                    partition=partition,
                    first_offset=span[0],
                    last_offset=span[1],
                    bucket_start_ms=bucket.start_ms,
                    bucket_end_ms=bucket.end_ms,
                    model=bucket.model,
                    model_version=bucket.model_version,
                    events=events,
                    segments=segments,
                    part=part,
                )
                out.append(OutRecord(partial.key, partial.encode(), source=partition))
            state.emitted_through = max(state.emitted_through, span[1])
        done = {b.start_ms for b in closed}
        for start in done:
            state.offsets.pop(start, None)
        return out

    def _new_overflow(self) -> dict[str, int]:
        """Overflow counts by what was capped, folded or dropped since the last call."""
        return _since(self._catalog.overflow_totals, self._overflow_seen)

    def _new_evictions(self) -> dict[str, int]:
        """Names pushed out by what was capped since the last call."""
        return _since(self._catalog.evictions, self._evictions_seen)

    # -- commits -------------------------------------------------------------------------

    def commit_point(self, partition: int) -> Resume | None:
        """The offset (and metadata) it is safe to commit once all output is acknowledged."""
        state = self._parts.get(partition)
        if state is None or state.position is None:
            return None
        offset = min((first for first, _ in state.offsets.values()), default=state.position)
        return Resume(offset, state.profiler.clock.watermark_ms, state.emitted_through)


def _since(totals: Mapping[str, int], seen: dict[str, int]) -> dict[str, int]:
    """What grew in ``totals`` since ``seen`` (which is brought up to date)."""
    new: dict[str, int] = {}
    for what, n in totals.items():
        before = seen.get(what, 0)
        if n > before:
            new[what] = n - before
            seen[what] = n
    return new


def _chunks(bucket: ClosedBucket) -> list[tuple[int, dict[str, bytes]]]:
    """Split a bucket's segment profiles into partials below ``MAX_PARTIAL_BYTES`` each.

    Kafka refuses records over ``message.max.bytes`` (1 MiB by default); a model with many
    segments is sent as several parts, each a set of whole segments, and one segment whose
    profile alone is over the limit is sent as several parts of its features (see
    :meth:`~driftwire.sketch.profile.Profile.split_features`), which stage 2 merges back.
    """
    chunks: list[tuple[int, dict[str, bytes]]] = []
    segments: dict[str, bytes] = {}
    events = size = 0
    for key in sorted(bucket.segments):
        profile = bucket.segments[key]
        blob = profile.to_bytes()
        if len(blob) > MAX_PARTIAL_BYTES:
            if segments:
                chunks.append((events, segments))
                events, segments, size = 0, {}, 0
            for part in profile.split_features(MAX_PARTIAL_BYTES):
                chunks.append((part.n_events, {key: part.to_bytes()}))
            continue
        if segments and size + len(blob) > MAX_PARTIAL_BYTES:
            chunks.append((events, segments))
            events, segments, size = 0, {}, 0
        segments[key] = blob
        events += profile.n_events
        size += len(blob)
    if segments or not chunks:
        chunks.append((events, segments))
    return chunks
