"""A profile over the record limit is split into feature parts that merge back exactly."""

from __future__ import annotations

import itertools

import numpy as np

from driftwire.sketch.profile import Profile


def _wide_profile(seed: int) -> Profile:
    rng = np.random.default_rng(seed)
    p = Profile(start_ms=0, end_ms=60_000)
    rows = []
    for i in range(2000):
        row: dict[str, object] = {f"n{j:02d}": float(rng.normal()) for j in range(40)}
        row |= {f"c{j:02d}": f"v{rng.integers(50)}" for j in range(10)}
        row["mixed"] = "text" if i % 7 == 0 else float(i)  # wrong-type counts
        row["nulls"] = None  # untyped missing
        rows.append(row)
    p.update(rows, prediction_score=rng.random(2000), latency_ms=rng.gamma(2.0, 5.0, 2000))
    return p


def test_parts_fit_and_merge_back_to_the_same_bytes_in_any_order() -> None:
    p = _wide_profile(1)
    whole = p.to_bytes()
    limit = len(whole) // 5
    parts = p.split_features(limit)
    assert len(parts) >= 5
    assert all(len(q.to_bytes()) <= limit for q in parts)
    assert [q.n_events for q in parts] == [2000] + [0] * (len(parts) - 1)
    assert sorted(n for q in parts for n in q.features) == sorted(p.features)
    for order in itertools.islice(itertools.permutations(parts), 6):
        merged = Profile.from_bytes(order[0].to_bytes())
        for q in order[1:]:
            merged.merge(Profile.from_bytes(q.to_bytes()))
        assert merged.to_bytes() == whole


def test_a_profile_that_fits_is_not_split() -> None:
    p = _wide_profile(2)
    assert p.split_features(len(p.to_bytes())) == [p]
