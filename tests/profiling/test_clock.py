"""EventClock: buckets, watermark, lateness, future and jump guards."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwire.profiling.clock import EventClock, distinct_starts

MIN = 60_000
T0 = 1_767_225_600_000  # a bucket boundary


def times(*ms: int) -> np.ndarray:
    return np.array(ms, dtype=np.int64)


def clock(**kw: int) -> EventClock:
    kw.setdefault("bucket_ms", MIN)
    kw.setdefault("allowed_lateness_ms", 10_000)
    return EventClock(**kw)


# -- buckets and lateness --------------------------------------------------------------------


@given(
    st.lists(st.integers(-3, 3_000), min_size=1, max_size=300),
    st.sampled_from([1, 7, 1_000, MIN]),
)
def test_distinct_starts_is_np_unique_with_its_inverse(numbers: list[int], bucket_ms: int) -> None:
    """Bucket starts spread over a few buckets (counted) or thousands (sorted): the same."""
    starts = T0 - T0 % bucket_ms + np.array(numbers, dtype=np.int64) * bucket_ms
    values, inverse = distinct_starts(starts, bucket_ms)
    want_values, want_inverse = np.unique(starts, return_inverse=True)
    assert values.dtype == np.int64 and inverse.dtype == np.int64
    assert values.tolist() == want_values.tolist()
    assert inverse.tolist() == want_inverse.reshape(-1).tolist()


def test_bucket_starts_floor_also_before_1970() -> None:
    c = clock()
    assert c.bucket_of(times(0, 59_999, 60_000, -1, -60_000, -60_001)).tolist() == [
        0,
        0,
        60_000,
        -60_000,
        -60_000,
        -120_000,
    ]


def test_watermark_closes_a_bucket_when_it_passes_its_end() -> None:
    c = clock()
    a = c.advance(times(T0 + 1_000, T0 + 30_000))
    assert a.closed == () and c.watermark_ms == T0 + 20_000 and c.open_buckets == (T0,)
    a = c.advance(times(T0 + MIN + 9_999))  # watermark T0 + 59_999: still open
    assert a.closed == ()
    a = c.advance(times(T0 + MIN + 10_000))  # watermark reaches the end of [T0, T0 + MIN)
    assert a.closed == (T0,) and c.open_buckets == (T0 + MIN,)


def test_backwards_within_lateness_is_fine_beyond_is_late_and_counted() -> None:
    c = clock()
    c.advance(times(T0 + MIN + 15_000))  # watermark T0 + 65_000: [T0, T0+MIN) closed
    a = c.advance(times(T0 + MIN + 1_000, T0 + 59_000, T0 + MIN + 15_000, T0 + MIN + 15_000))
    assert a.accepted.tolist() == [True, False, True, True]  # repeats are fine
    assert a.late.tolist() == [False, True, False, False] and a.n_late == 1
    assert a.bucket_start.tolist()[1] == T0
    assert T0 not in c.open_buckets  # a late event never reopens its bucket


def test_an_event_behind_an_earlier_one_of_its_batch_is_late_as_if_read_alone() -> None:
    c = clock(allowed_lateness_ms=0)
    a = c.advance(times(T0 + 5_000, T0 + 3 * MIN, T0 + 10_000), now_ms=T0 + 3 * MIN)
    assert a.accepted.tolist() == [True, True, False] and a.late.tolist()[2]
    assert a.closed == (T0,)


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 6 * MIN), min_size=1, max_size=60),
    cuts=st.sets(st.integers(1, 59)),
    lateness=st.sampled_from([0, 10_000, 45_000]),
)
def test_late_decisions_do_not_depend_on_batch_boundaries(
    offsets: list[int], cuts: set[int], lateness: int
) -> None:
    """A replay read in other batches puts the same events in the same buckets."""
    t = times(*(T0 + o for o in offsets))
    now = T0 + 10 * MIN

    def decide(bounds: list[int]) -> tuple[list[bool], int | None]:
        c = clock(allowed_lateness_ms=lateness)
        out: list[bool] = []
        for lo, hi in itertools.pairwise(bounds):
            if hi > lo:
                out += c.advance(t[lo:hi], now_ms=now).accepted.tolist()
        return out, c.watermark_ms

    whole = decide([0, len(t)])
    assert decide([0, *sorted(x for x in cuts if x < len(t)), len(t)]) == whole
    assert decide(list(range(len(t) + 1))) == whole


def test_watermark_never_goes_back() -> None:
    c = clock()
    c.advance(times(T0 + 5 * MIN), now_ms=T0 + 5 * MIN)
    wm = c.watermark_ms
    c.advance(times(T0 + 4 * MIN), now_ms=T0)  # wall clock stepped back
    assert c.watermark_ms == wm


def test_advance_to_and_flush() -> None:
    c = clock(allowed_lateness_ms=3 * MIN)
    c.advance(times(T0, T0 + MIN, T0 + 2 * MIN))
    assert c.watermark_ms == T0 - MIN and c.open_buckets == (T0, T0 + MIN, T0 + 2 * MIN)
    assert c.advance_to(T0 + 2 * MIN) == (T0, T0 + MIN)
    assert c.advance_to(T0) == () and c.watermark_ms == T0 + 2 * MIN
    assert c.flush() == (T0 + 2 * MIN,) and c.open_buckets == ()


def test_inputs_are_validated() -> None:
    with pytest.raises(TypeError, match="float64"):
        clock().advance(np.array([1.0]))
    with pytest.raises(TypeError, match="list"):
        clock().advance([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bucket_ms"):
        EventClock(bucket_ms=0)
    a = clock().advance(times())
    assert a.closed == () and a.accepted.size == 0


# -- future events with a wall clock -----------------------------------------------------------


def test_events_too_far_ahead_of_the_wall_clock_are_future_and_ignored() -> None:
    c = clock(max_future_ms=300_000)
    now = T0 + 10 * MIN
    a = c.advance(times(now - 1_000, now + 300_000, now + 300_001, now + 86_400_000), now)
    assert a.future.tolist() == [False, False, True, True] and a.n_future == 2
    assert a.accepted.tolist() == [True, True, False, False]
    assert c.max_event_ms == now + 300_000


def test_a_fast_producer_clock_cannot_close_buckets_early() -> None:
    c = clock(max_future_ms=300_000)
    now = T0 + 10 * MIN
    c.advance(times(now - 2_000), now)
    c.advance(times(now + 4 * MIN), now)  # one producer four minutes ahead (not future)
    assert c.watermark_ms == now - 10_000  # capped by the wall clock, not by that event
    a = c.advance(times(now - 5_000, now + 500), now + 1_000)
    assert a.accepted.all()  # normal events stay on time
    assert T0 + 9 * MIN in c.open_buckets


# -- jumps without a wall clock (replay) -----------------------------------------------------


def test_one_bad_clock_cannot_flush_everything() -> None:
    c = clock(jump_quorum=20)
    c.advance(times(*range(T0, T0 + 30_000, 1_000)))
    wm = c.watermark_ms
    a = c.advance(times(T0 + 31_000, T0 + 86_400_000, T0 + 32_000))
    assert a.future.tolist() == [False, True, False]
    assert c.watermark_ms == wm + 3_000 and c.open_buckets == (T0,)
    later = c.advance(times(*range(T0 + 33_000, T0 + 50_000, 1_000)))
    assert later.accepted.all()


def test_a_minority_of_bad_clocks_never_wins() -> None:
    c = clock(jump_quorum=5)
    t = T0
    for _ in range(50):  # every batch: 10 normal events and 3 from a clock a day ahead
        batch = [*range(t, t + 10_000, 1_000), t + 86_400_000, t + 86_401_000, t + 86_402_000]
        a = c.advance(times(*batch))
        assert a.n_future == 3 and a.n_late == 0
        t += 10_000
    assert c.max_event_ms == t - 1_000


def test_a_real_gap_in_a_replay_is_accepted_at_once_when_a_batch_corroborates_it() -> None:
    c = clock(jump_quorum=20)
    c.advance(times(*range(T0, T0 + 60_000, 1_000)))
    gap = T0 + 6 * 3_600_000
    a = c.advance(times(T0 + 60_500, *range(gap, gap + 25_000, 1_000)))
    assert a.accepted.all()
    assert c.max_event_ms == gap + 24_000 and a.closed == (T0, T0 + MIN)


def test_a_sparse_gap_is_accepted_after_the_quorum_earlier_ones_are_future() -> None:
    c = clock(jump_quorum=3)
    c.advance(times(T0, T0 + 1_000))
    gap = T0 + 3_600_000
    first = c.advance(times(gap))
    second = c.advance(times(gap + 1_000))
    third = c.advance(times(gap + 2_000))
    assert first.n_future == second.n_future == 1
    assert third.accepted.all() and c.max_event_ms == gap + 2_000
    assert c.advance(times(gap + 3_000)).accepted.all()


def test_wild_first_events_do_not_set_the_start() -> None:
    c = clock(jump_quorum=5)
    a = c.advance(times(T0, T0 + 1_000, T0 + 2_000, T0 + 86_400_000))
    assert a.future.tolist() == [False, False, False, True]
    assert c.max_event_ms == T0 + 2_000


def test_the_jump_guard_is_off_with_a_wall_clock() -> None:
    c = clock()
    c.advance(times(T0), now_ms=T0 + 3_600_000)
    a = c.advance(times(T0 + 3_600_000 - 1_000), now_ms=T0 + 3_600_000)  # catching up
    assert a.accepted.all() and c.max_event_ms == T0 + 3_600_000 - 1_000


def test_an_event_that_closes_a_bucket_within_the_batch_is_one_the_guard_lets_pass() -> None:
    # hypothesis found it: the lateness pass measured the jump from the median of all events,
    # the jump guard from the median of those not late, so 59,999 ms ahead moved the watermark
    # within the batch (the next event late) and was then held back as future
    c = EventClock(bucket_ms=MIN, allowed_lateness_ms=0, jump_quorum=3)
    a = c.advance(times(T0 - MIN - 2, T0 + MIN - 1, T0 - 1))
    assert a.watermark_ms is not None
    assert (a.bucket_start[a.late] + MIN <= a.watermark_ms).all()


# -- invariants --------------------------------------------------------------------------------


batches = st.lists(
    st.tuples(
        st.lists(st.integers(min_value=-5 * MIN, max_value=30 * MIN), max_size=12),
        st.one_of(st.none(), st.integers(min_value=0, max_value=30 * MIN)),
    ),
    max_size=15,
)


@settings(max_examples=200, deadline=None)
@given(batches, st.integers(min_value=0, max_value=2 * MIN))
def test_clock_invariants(seq: list[tuple[list[int], int | None]], lateness: int) -> None:
    c = EventClock(bucket_ms=MIN, allowed_lateness_ms=lateness, jump_quorum=3)
    closed: set[int] = set()
    previous_wm = None
    for offsets, now in seq:
        t = times(*(T0 + o for o in offsets))
        a = c.advance(t, None if now is None else T0 + now)
        # every event gets exactly one verdict
        verdicts = a.accepted.astype(int) + a.late.astype(int) + a.future.astype(int)
        assert (verdicts == 1).all()
        # late when its bucket was closed before this batch, or by an event before it in
        # the batch; never when its bucket is still open after the batch
        if previous_wm is not None:
            assert (a.late >= (a.bucket_start + MIN <= previous_wm)).all()
        if a.late.any():
            assert a.watermark_ms is not None
            assert (a.bucket_start[a.late] + MIN <= a.watermark_ms).all()
        # accepted events never go to a bucket that was already closed
        assert not set(a.bucket_start[a.accepted].tolist()) & closed
        wm = c.watermark_ms
        assert previous_wm is None or (wm is not None and wm >= previous_wm)
        for start in a.closed:
            assert wm is not None and start + MIN <= wm and start not in closed
        closed.update(a.closed)
        assert all(start + MIN > wm for start in c.open_buckets) if wm is not None else True
        previous_wm = wm


@settings(max_examples=300, deadline=None)
@given(batches, st.integers(min_value=0, max_value=2 * MIN))
def test_the_shortcut_to_no_late_event_agrees_with_judging_each_event(
    seq: list[tuple[list[int], int | None]], lateness: int
) -> None:
    """``_late`` answers "none late" from the batch's extremes when it can; the verdicts are
    those of the event-by-event judgement (``_late_each``) in every state the clock reaches."""
    c = EventClock(bucket_ms=MIN, allowed_lateness_ms=lateness, jump_quorum=3)
    for offsets, now in seq:
        t = times(*(T0 + o for o in offsets))
        now_ms = None if now is None else T0 + now
        starts = c.bucket_of(t)
        anchor = c._jump_anchor(t)  # noqa: SLF001
        quick = c._late(t, starts, now_ms, anchor)  # noqa: SLF001
        if len(t):
            each = c._late_each(t, starts, now_ms, anchor)  # noqa: SLF001
            np.testing.assert_array_equal(quick, each)
        c.advance(t, now_ms)
