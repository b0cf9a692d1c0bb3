"""The detection window: the last N evaluated buckets merged, and what reaches it."""

from __future__ import annotations

import pytest

from driftwire.detect._parts import frozen_key
from driftwire.detect.detector import Detector
from driftwire.detect.reference import Reference, ReferenceStore
from driftwire.detect.window import ALL_SEGMENTS, detection_window
from driftwire.errors import FormatError
from driftwire.ops.config import Settings
from driftwire.partials import Partial, Watermark
from driftwire.sketch.numeric import SketchParams
from driftwire.sketch.profile import Profile

MIN = 60_000
T0 = 1_767_225_600_000  # a bucket boundary
EU, US = "region=eu", "region=us"


def bucket(start: int, events: int, params: SketchParams | None = None) -> Profile:
    p = Profile(params, start_ms=start, end_ms=start + MIN)
    p.update([{"x": float(i)} for i in range(events)])
    return p


def test_window_merges_the_last_n_buckets_and_skips_empty_ones() -> None:
    kept = {
        T0: {EU: bucket(T0, 1)},
        T0 + MIN: {EU: bucket(T0 + MIN, 2), US: bucket(T0 + MIN, 8)},
        T0 + 3 * MIN: {EU: bucket(T0 + 3 * MIN, 4)},  # T0 + 2 MIN had no events
    }
    w = detection_window(kept, end_ms=T0 + 4 * MIN, size=3, bucket_ms=MIN)
    assert (w.start_ms, w.end_ms, w.buckets, w.complete) == (T0 + MIN, T0 + 4 * MIN, 2, False)
    assert sorted(w.profiles) == [ALL_SEGMENTS, EU, US]  # T0 fell out
    assert w.profiles[EU].n_events == 6 and w.profiles[EU].feature("x").count == 6  # type: ignore[union-attr]
    assert w.profiles[US].n_events == 8 and w.profiles[ALL_SEGMENTS].n_events == 14
    every = detection_window(kept, end_ms=T0 + 2 * MIN, size=2, bucket_ms=MIN)
    assert every.complete and every.buckets == 2 and every.profiles[ALL_SEGMENTS].n_events == 11
    only_all = detection_window(kept, end_ms=T0 + 4 * MIN, size=3, bucket_ms=MIN, segments=False)
    assert list(only_all.profiles) == [ALL_SEGMENTS]
    assert only_all.profiles[ALL_SEGMENTS].n_events == 14


def test_window_evaluated_at_empty_buckets_slides_on() -> None:
    kept = {T0: {EU: bucket(T0, 5)}}
    at_next = detection_window(kept, end_ms=T0 + 2 * MIN, size=2, bucket_ms=MIN)
    assert at_next.buckets == 1 and at_next.profiles[ALL_SEGMENTS].n_events == 5
    assert not at_next.complete
    empty = detection_window(kept, end_ms=T0 + 6 * MIN, size=2, bucket_ms=MIN)
    assert (empty.start_ms, empty.buckets, empty.profiles, empty.complete) == (
        T0 + 4 * MIN,
        0,
        {},
        False,
    )


def test_window_keeps_its_own_copies() -> None:
    mine = bucket(T0, 3)
    kept = {T0: {EU: mine}, T0 + MIN: {EU: bucket(T0 + MIN, 4)}}
    w = detection_window(kept, end_ms=T0 + 2 * MIN, size=2, bucket_ms=MIN)
    mine.add_events(100)  # the window does not see later changes of a bucket ...
    assert w.profiles[EU].n_events == 7 and w.profiles[ALL_SEGMENTS].n_events == 7
    w.profiles[EU].add_events(1_000)  # ... and merging never writes into the buckets
    assert [kept[b][EU].n_events for b in sorted(kept)] == [103, 4]
    again = detection_window(kept, end_ms=T0 + 2 * MIN, size=2, bucket_ms=MIN)
    assert again.profiles[EU].n_events == 107


def test_window_validates_its_input() -> None:
    kept = {T0: {EU: bucket(T0, 1)}}
    with pytest.raises(ValueError, match="not the end"):
        detection_window(kept, end_ms=T0 + 1, size=2, bucket_ms=MIN)
    with pytest.raises(ValueError, match="size"):
        detection_window(kept, end_ms=T0 + MIN, size=0, bucket_ms=MIN)
    with pytest.raises(ValueError, match="bucket_ms"):
        detection_window(kept, end_ms=T0 + MIN, size=1, bucket_ms=0)
    mixed = {**kept, T0 + MIN: {EU: bucket(T0 + MIN, 1, SketchParams(k=64))}}
    with pytest.raises(FormatError, match="cannot merge"):
        detection_window(mixed, end_ms=T0 + 2 * MIN, size=2, bucket_ms=MIN)


# -- what reaches the window: the detector's buckets -------------------------------------------


def _partial(partition: int, start: int, events: int, first_offset: int = 0) -> Partial:
    return Partial(
        topic="events",
        partition=partition,
        first_offset=first_offset,
        last_offset=first_offset + events - 1,
        bucket_start_ms=start,
        bucket_end_ms=start + MIN,
        model="churn",
        model_version="1",
        events=events,
        segments={EU: bucket(start, events).to_bytes()},
    )


def _frozen_events(detector: Detector) -> int:
    """Events of the reference the detector froze from its first complete window."""
    parts = {key: blob for _, key, blob in detector.stored_parts()}
    blob = parts[frozen_key("churn", "1")]
    assert blob is not None
    return Reference.from_bytes(blob).count


def test_the_same_bucket_from_two_partitions_merges_and_an_evaluated_one_is_refused() -> None:
    settings = Settings.model_validate({"detect": {"window_buckets": 2}})
    detector = Detector(settings.detect, settings.alerts, ReferenceStore(), bucket_ms=MIN)

    def watermark(until: int) -> None:
        for partition in (0, 1):
            detector.on_watermark(Watermark("events", partition, 2, until), 0)

    detector.on_partial(_partial(0, T0, 3), 0)
    detector.on_partial(_partial(1, T0, 4), 0)  # the same bucket from another input partition
    watermark(T0 + MIN)  # bucket T0 is evaluated: the window is not complete yet
    late = _partial(1, T0, 50, first_offset=100)  # bucket T0 again, after its evaluation
    detector.on_partial(late, 0)
    detector.on_partial(_partial(0, T0 + MIN, 5, first_offset=3), 0)
    watermark(T0 + 2 * MIN)  # the window [T0, T0 + 2 MIN) is complete and frozen
    assert _frozen_events(detector) == 3 + 4 + 5  # the late partial is not in it
