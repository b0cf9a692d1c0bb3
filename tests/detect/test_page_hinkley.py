"""Our Page-Hinkley test against river's, its state, and creep state written by earlier releases."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from river.drift import PageHinkley as RiverPageHinkley

from driftwire.detect.latency import Creep
from driftwire.detect.page_hinkley import PageHinkley
from driftwire.detect.settings import LatencySettings
from driftwire.errors import FormatError


def seeded_series(seed: int) -> list[float]:
    """Noise, a step up, noise, a step down, a slow ramp: changes in both directions."""
    rng = np.random.default_rng(seed)
    level = np.concatenate(
        [np.zeros(300), np.full(200, 0.8), np.zeros(200), np.linspace(0, 2, 300)]
    )
    return [float(x) for x in level + rng.normal(0.0, 0.5, level.size)]


def river_detects(detector: RiverPageHinkley, x: float) -> bool:
    detector.update(x)
    return bool(detector.drift_detected)


@pytest.mark.parametrize("mode", ["up", "down", "both"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_detects_where_river_does(mode: str, seed: int) -> None:
    series = seeded_series(seed)
    params = {"min_instances": 30, "delta": 0.05, "threshold": 8.0, "mode": mode}
    ours, theirs = PageHinkley(**params), RiverPageHinkley(**params)
    fired, river_fired, statistics, river_statistics = [], [], [], []
    for t, x in enumerate(series):
        if ours.update(x):
            fired.append(t)
        if river_detects(theirs, x):
            river_fired.append(t)
        statistics.append(ours.statistic)
        river_statistics.append(theirs._sum_increase - theirs._min_increase)  # noqa: SLF001
    assert fired == river_fired
    assert fired and fired[0] > 300  # every mode finds a change, none before the first step
    assert statistics == river_statistics  # bit for bit, not approximately


def test_the_change_index_of_a_seeded_step() -> None:
    # 200 values of N(0, 0.5), then the mean steps up by 0.8 at index 200
    rng = np.random.default_rng(11)
    series = np.concatenate([rng.normal(0, 0.5, 200), rng.normal(0.8, 0.5, 100)]).tolist()
    params = {"min_instances": 30, "delta": 0.05, "threshold": 8.0, "mode": "up"}
    ours, theirs = PageHinkley(**params), RiverPageHinkley(**params)
    first = next(t for t, x in enumerate(series) if ours.update(x))
    river_first = next(t for t, x in enumerate(series) if river_detects(theirs, x))
    assert first == river_first
    assert 200 < first < 230  # a step of 1.6 sd, found within 30 values


def test_state_round_trip_continues_identically() -> None:
    series = seeded_series(4)
    original = PageHinkley(min_instances=30, delta=0.05, threshold=8.0, mode="both")
    for x in series[:420]:
        original.update(x)
    state = orjson.loads(orjson.dumps(original.to_state()))
    copy = PageHinkley.from_state(state, min_instances=30, delta=0.05, threshold=8.0, mode="both")
    assert [original.update(x) for x in series[420:]] == [copy.update(x) for x in series[420:]]
    assert original.to_state() == copy.to_state()


def test_fresh_state_is_plain_json() -> None:
    fresh = PageHinkley(min_instances=5, delta=0.1, threshold=1.0)
    assert fresh.to_state() == [0.0, 0.0, 0.0, 0.0, None, -1.0, False]
    assert fresh.statistic == 0.0
    back = PageHinkley.from_state(fresh.to_state(), min_instances=5, delta=0.1, threshold=1.0)
    assert back.min_increase == math.inf


def test_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="mode must be"):
        PageHinkley(min_instances=5, delta=0.1, threshold=1.0, mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(FormatError, match="7 entries"):
        PageHinkley.from_state([0.0, 0.0], min_instances=5, delta=0.1, threshold=1.0)


# Creep state as the release before this detector wrote it (river's fields copied out), after
# the first 150 values of `creep_series()`: bucket count, mean, the four sums, the flag, and
# the latch time (the detection at value 82).
OLD_CREEP_STATE = (
    "[67.0,2.7328813061621973,-1.3428955417705253,5.33504228667795,-1.3847507917539754,"
    "5.33504228667795,false,82]"
)


def creep_series() -> list[float]:
    rng = np.random.default_rng(8)
    return (12.0 * rng.lognormal(0.0, 0.05, 200) * np.linspace(1.0, 1.5, 200)).tolist()


def test_creep_state_of_the_previous_release_loads_as_a_new_series() -> None:
    # the previous release's series held ln(p95); today's holds ln(p95 / reference p95), so a
    # stored series of the old kind is not continued: the detector starts afresh
    restored = Creep.from_state(LatencySettings(), orjson.loads(OLD_CREEP_STATE))
    assert restored.buckets == 0 and restored.latched_ms is None and restored.statistic == 0.0


def test_creep_state_round_trips_through_json_and_continues_identically() -> None:
    ratios = [x / 12.0 for x in creep_series()]
    straight = Creep(LatencySettings())
    fired = [t for t, x in enumerate(ratios[:150]) if straight.update(x, now_ms=t)]
    assert fired and straight.latched_ms == fired[0]
    restored = Creep.from_state(LatencySettings(), orjson.loads(orjson.dumps(straight.to_state())))
    assert restored.latched_ms == straight.latched_ms and restored.buckets == straight.buckets
    rest = [(straight.update(x, t), restored.update(x, t)) for t, x in enumerate(ratios[150:])]
    assert [a for a, _ in rest] == [b for _, b in rest] and any(a for a, _ in rest)
    assert restored.to_state() == straight.to_state()


def test_empty_creep_state_of_the_previous_release_loads() -> None:
    restored = Creep.from_state(
        LatencySettings(), orjson.loads("[0.0,0.0,0.0,0.0,null,-1.0,false,null]")
    )
    assert restored.buckets == 0 and restored.statistic == 0.0 and restored.latched_ms is None
