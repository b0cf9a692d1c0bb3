"""Valid events with many unique feature names: the per-model cap applies before columns are
built, so memory stays proportional to the cap, not to the distinct names of a batch."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from test_profiler import MIN, T0, by_key, make_batch, profiler

from driftwire.profiling.profiler import ModelCatalog, Profiler, ProfilerLimits

CAP = 500


def _fold_peak(rows: list[dict[str, Any]]) -> tuple[Profiler, int]:
    """The profiler after folding ``rows`` as one batch, and the peak bytes it allocated."""
    batch = make_batch([T0 + i for i in range(len(rows))], rows)
    prof = profiler(catalog=ModelCatalog(ProfilerLimits(max_features=CAP)))
    tracemalloc.start()
    try:
        prof.fold(batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return prof, peak


@pytest.mark.parametrize(("events", "names_per_event"), [(400, 50), (2000, 100)])
def test_unique_names_fold_into_the_overflow_without_building_their_columns(
    events: int, names_per_event: int
) -> None:
    # the same number of events, each with the same CAP names: what the cap allows
    _fold_peak([{f"g{j}": 1.0 for j in range(CAP)} for _ in range(events)])  # warm-up
    _, allowed = _fold_peak([{f"g{j}": float(j) for j in range(CAP)} for _ in range(events)])
    # every event brings names no other event has
    rows = [{f"f{i}_{j}": float(j) for j in range(names_per_event)} for i in range(events)]
    prof, peak = _fold_peak(rows)
    # a column per distinct name would be 20,000 columns of 400 slots (64 MB) for 400 x 50,
    # and 200,000 of 2,000 (3.2 GB) for 2,000 x 100
    assert peak < 2 * allowed + 8 * 2**20, f"peak {peak / 2**20:.1f} MiB, cap {allowed / 2**20:.1f}"
    profile = by_key(prof.flush())[("churn", "1", T0 // MIN * MIN, "")]
    assert len(profile.features) == CAP
    assert prof.overflow_counts[("churn", "features")] == events * names_per_event - CAP
