"""The ground-truth join against a brute-force oracle, its accounting, bounds and restarts."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwire.truth.join import JoinedPair, Prediction, TruthJoin, is_sampled
from driftwire.truth.label import GroundTruth

HORIZON = 100


@dataclass(frozen=True)
class Item:
    """One record of the merged stream: a prediction (label None) or a label."""

    event_id: str
    time: int  # prediction timestamp or label observed time
    actual: str | None = None


def prediction(event_id: str, time: int) -> Prediction:
    return Prediction(event_id, "m", "1", "", time, 0.5, "a")


def label(event_id: str, time: int, actual: str = "yes") -> GroundTruth:
    return GroundTruth(event_id, "m", None, actual, time, None)


def run(join: TruthJoin, items: list[Item]) -> list[JoinedPair]:
    pairs = []
    for item in items:
        if item.actual is None:
            pair = join.add_prediction(prediction(item.event_id, item.time))
        else:
            pair = join.add_label(label(item.event_id, item.time, item.actual))
        if pair is not None:
            pairs.append(pair)
    return pairs


def oracle(items: list[Item]) -> dict[str, tuple[str, int]]:
    """Which ids join, from the whole stream at once, by the rule in driftwire.truth.join:
    the watermark W(k) is the largest time among items 0..k; a prediction at i (time t) and
    its first label at j (observed o) join iff, when the later of the two arrives, the earlier
    is still held: i < j and t + h >= W(j), or j < i and o + h >= W(i) and o - t <= h."""
    watermark = []
    top = -(10**9)
    for item in items:
        top = max(top, item.time)
        watermark.append(top)
    joined = {}
    first_pred: dict[str, int] = {}
    first_label: dict[str, int] = {}
    for k, item in enumerate(items):
        target = first_pred if item.actual is None else first_label
        target.setdefault(item.event_id, k)
    for event_id, i in first_pred.items():
        j = first_label.get(event_id)
        if j is None:
            continue
        t, o = items[i].time, items[j].time
        if (i < j and t + HORIZON >= watermark[j]) or (
            j < i and o + HORIZON >= watermark[i] and o - t <= HORIZON
        ):
            joined[event_id] = (str(items[j].actual), o - t)
    return joined


@st.composite
def streams(draw: st.DrawFn) -> list[Item]:
    """Predictions in roughly increasing time, labels 0-3 horizons later (some never, some
    twice in a row, some before their prediction in the merged order), orphan labels."""
    items: list[tuple[float, Item]] = []
    n = draw(st.integers(1, 40))
    clock = 0
    for k in range(n):
        clock += draw(st.integers(0, 30))
        t = clock - draw(st.integers(0, 20))  # out of order within a few steps
        items.append((k, Item(f"e{k}", t)))
        fate = draw(st.sampled_from(["label", "label", "none", "twice", "early"]))
        if fate == "none":
            continue
        delay = draw(st.integers(0, 3 * HORIZON))
        actual = draw(st.sampled_from(["yes", "no"]))
        position = k + draw(st.floats(0.1, 12.0)) * (-1 if fate == "early" else 1)
        items.append((position, Item(f"e{k}", t + delay, actual)))
        if fate == "twice":
            items.append((position + 1e-6, Item(f"e{k}", t + delay, actual)))
    for m in range(draw(st.integers(0, 4))):
        items.append((draw(st.floats(0, n)), Item(f"orphan{m}", draw(st.integers(0, clock)), "x")))
    return [item for _, item in sorted(items, key=lambda pair: pair[0])]


def conserved(join: TruthJoin) -> None:
    c = join.counts
    assert c.predictions == (
        c.joined
        + c.expired
        + c.evicted_predictions
        + join.pending_predictions
        + c.duplicate_predictions
        + c.not_sampled_predictions
    )
    assert c.labels == (
        c.joined
        + c.late_labels
        + c.orphan_labels
        + c.duplicate_labels
        + c.mismatched_labels
        + c.not_sampled_labels
        + c.evicted_labels
        + join.pending_labels
    )


@settings(max_examples=300, deadline=None)
@given(streams())
def test_join_matches_the_brute_force_oracle(items: list[Item]) -> None:
    join = TruthJoin(horizon_ms=HORIZON)
    pairs = run(join, items)
    got = {p.prediction.event_id: (p.actual, p.delay_ms) for p in pairs}
    assert len(got) == len(pairs)  # nothing joined twice
    assert got == oracle(items)
    conserved(join)


@settings(max_examples=150, deadline=None)
@given(streams(), st.integers(0, 60))
def test_a_restart_from_the_state_changes_nothing(items: list[Item], cut: int) -> None:
    cut = min(cut, len(items))
    whole = TruthJoin(horizon_ms=HORIZON)
    expected = run(whole, items)
    first = TruthJoin(horizon_ms=HORIZON)
    pairs = run(first, items[:cut])
    restored = TruthJoin.from_bytes(first.to_bytes())
    pairs += run(restored, items[cut:])
    assert pairs == expected
    assert restored.counts == whole.counts
    assert restored.drain_expired() == whole.drain_expired()
    assert restored.to_bytes() == whole.to_bytes()


@settings(max_examples=150, deadline=None)
@given(streams(), st.integers(1, 5))
def test_bounded_state_evicts_and_counts(items: list[Item], max_pending: int) -> None:
    join = TruthJoin(horizon_ms=HORIZON, max_pending=max_pending)
    run(join, items)
    assert join.pending_predictions <= max_pending and join.pending_labels <= max_pending
    conserved(join)


def test_expired_predictions_are_handed_out_once_for_completeness() -> None:
    join = TruthJoin(horizon_ms=HORIZON)
    run(join, [Item("a", 0), Item("b", 10), Item("c", 50, "yes")])  # c: orphan so far
    assert join.drain_expired() == []
    run(join, [Item("z", 10 + HORIZON + 1)])  # moves the watermark past a's and b's horizon
    assert [p.event_id for p in join.drain_expired()] == ["a", "b"]
    assert join.drain_expired() == []
    assert join.counts.expired == 2 and join.pending_predictions == 1
    run(join, [Item("a", 150, "late")])
    assert join.counts.late_labels == 1  # remembered as expired: late, not an orphan


def test_label_with_other_model_or_version_does_not_join() -> None:
    join = TruthJoin(horizon_ms=HORIZON)
    join.add_prediction(prediction("e", 0))
    assert join.add_label(GroundTruth("e", "other", None, "y", 5, None)) is None
    assert join.add_label(GroundTruth("e", "m", "2", "y", 5, None)) is None
    pair = join.add_label(GroundTruth("e", "m", "1", "y", 6, None))
    assert pair is not None and pair.delay_ms == 6
    assert join.counts.mismatched_labels == 2
    conserved(join)


def test_late_label_with_prediction_timestamp_is_not_held() -> None:
    join = TruthJoin(horizon_ms=HORIZON)
    assert join.add_label(GroundTruth("e", "m", None, "y", 500, 100)) is None
    assert join.counts.late_labels == 1 and join.pending_labels == 0


def test_sampling_keeps_the_same_ids_on_both_sides() -> None:
    join = TruthJoin(horizon_ms=10**6, sample_fraction=0.3)
    ids = [f"id-{k}" for k in range(5_000)]
    for k, event_id in enumerate(ids):
        join.add_prediction(prediction(event_id, k))
    pairs = [join.add_label(label(event_id, 5_000)) for event_id in ids]
    kept = {p.prediction.event_id for p in pairs if p is not None}
    assert kept == {i for i in ids if is_sampled(i, 0.3)}
    # a binomial(5000, 0.3) count: 1500 +- 4.5 sd (sd 32.4)
    assert abs(len(kept) - 1_500) < 146
    assert (
        join.counts.not_sampled_predictions == join.counts.not_sampled_labels == 5_000 - len(kept)
    )
    conserved(join)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="sample_fraction"):
        TruthJoin(horizon_ms=1, sample_fraction=0.0)
    with pytest.raises(ValueError, match="horizon_ms"):
        TruthJoin(horizon_ms=0)


def test_memory_per_pending_prediction_is_bounded() -> None:
    """100,000 pending predictions serialize to under 60 bytes each (ids of 12 characters)."""
    join = TruthJoin(horizon_ms=10**9)
    for k in range(100_000):
        join.add_prediction(
            Prediction(f"evt-{k:08d}", "churn", "1.4.2", "region=eu", k, 0.25, None)
        )
    assert join.pending_predictions == 100_000
    assert len(join.to_bytes()) < 60 * 100_000
