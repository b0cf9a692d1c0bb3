"""Edge cases of the drift statistics: each has a defined result, never an exception.

Sketches here are exact (at most k = 200 items) unless a test says otherwise, so the values are
deterministic.
"""

from __future__ import annotations

import json
from typing import Any

import datasketches
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from driftwire.errors import ConfigError, InputError
from driftwire.stats.drift import (
    CATEGORICAL_STATISTICS,
    DEFAULT_MIN_COUNT,
    DEFAULT_MIN_REFERENCE_COUNT,
    DEFAULT_STATISTICS,
    DEFAULT_THRESHOLDS,
    NUMERIC_STATISTICS,
    OTHER,
    categorical_drift,
    compute,
    numeric_drift,
    reference_edges,
    reference_scale,
)

NO_MINIMUM = {"min_count": 1, "min_reference_count": 1}


def sketch(values: Any, kind: str = "doubles") -> Any:
    values = np.asarray(values, dtype=np.float64)
    if kind == "floats":
        s = datasketches.kll_floats_sketch(200)
        s.update(values.astype(np.float32))
    else:
        s = datasketches.kll_doubles_sketch(200)
        s.update(values)
    return s


def numeric_all(ref: Any, cur: Any, **options: Any) -> dict[str, Any]:
    return numeric_drift(ref, cur, NUMERIC_STATISTICS, **options)


def categorical_all(*args: Any, **options: Any) -> dict[str, Any]:
    return categorical_drift(*args, CATEGORICAL_STATISTICS, **options)


def assert_unavailable(results: dict[str, Any], status: str, reason: str) -> None:
    for name, r in results.items():
        assert r.statistic == name
        assert r.status == status
        assert r.value is None and r.p_value is None and r.bound == 0.0
        assert reason in r.evidence["reason"]


# --- defaults --------------------------------------------------------------------------------


def test_default_tables_cover_every_statistic() -> None:
    assert set(DEFAULT_THRESHOLDS) == set(NUMERIC_STATISTICS) | set(CATEGORICAL_STATISTICS)
    for warning, critical in DEFAULT_THRESHOLDS.values():
        assert 0 < warning < critical
    assert DEFAULT_THRESHOLDS["psi"] == (0.10, 0.25)
    assert set(DEFAULT_STATISTICS["numeric"]) <= set(NUMERIC_STATISTICS)
    assert set(DEFAULT_STATISTICS["categorical"]) <= set(CATEGORICAL_STATISTICS)
    assert (DEFAULT_MIN_COUNT, DEFAULT_MIN_REFERENCE_COUNT) == (200, 1000)
    rng = np.random.default_rng(0)
    big = sketch(rng.normal(size=150))
    assert set(numeric_drift(big, big)) == set(DEFAULT_STATISTICS["numeric"])


# --- too little data -------------------------------------------------------------------------


def test_empty_window_is_insufficient_data() -> None:
    ref = sketch(np.arange(150.0))
    results = numeric_all(ref, datasketches.kll_doubles_sketch(200), **NO_MINIMUM)
    assert_unavailable(results, "insufficient_data", "window has no events")
    results = categorical_all({"a": 2000}, 0, {}, 0)
    assert_unavailable(results, "insufficient_data", "window has no events")


def test_all_missing_feature_is_insufficient_data() -> None:
    """A feature that was null in every event of the window has count 0."""
    results = categorical_all({"a": 1500}, 0, {"a": 0}, 0)
    assert_unavailable(results, "insufficient_data", "no events")
    assert all(r.n_current == 0 for r in results.values())


def test_window_below_min_count() -> None:
    ref = sketch(np.arange(150.0))
    results = numeric_all(ref, sketch(np.arange(199.0)), min_reference_count=1)
    assert_unavailable(results, "insufficient_data", "fewer than min_count=200")
    assert results["ks"].n_current == 199
    results = categorical_all({"a": 5000}, 0, {"a": 150}, 49)
    assert_unavailable(results, "insufficient_data", "199 events")
    ok = categorical_all({"a": 5000}, 0, {"a": 150}, 50)  # other counts towards the total
    assert all(r.status == "ok" for r in ok.values())


def test_reference_below_min_reference_count() -> None:
    results = categorical_all({"a": 999}, 0, {"a": 500}, 0)
    assert_unavailable(results, "insufficient_data", "fewer than min_reference_count=1000")


def test_empty_reference() -> None:
    empty = datasketches.kll_doubles_sketch(200)
    results = numeric_all(empty, sketch(np.arange(150.0)), **NO_MINIMUM)
    assert_unavailable(results, "empty_reference", "reference has no events")
    results = numeric_all(empty, datasketches.kll_doubles_sketch(200), **NO_MINIMUM)
    assert_unavailable(results, "empty_reference", "reference has no events")
    results = categorical_all({}, 0, {"a": 500}, 0)
    assert_unavailable(results, "empty_reference", "reference has no events")
    assert reference_edges(empty).size == 0
    assert reference_scale(empty) == (1.0, "unit")


# --- constant and tied values ----------------------------------------------------------------


def test_constant_reference_has_three_bins_and_a_scale_fallback() -> None:
    ref = sketch(np.full(150, 5.0))
    cur = sketch(np.concatenate([np.full(100, 5.0), np.full(50, 4.0)]))
    results = numeric_all(ref, cur, **NO_MINIMUM)
    psi = results["psi"]
    assert psi.evidence["edges"] == [5.0, float(np.nextafter(5.0, np.inf))]  # < 5, = 5, > 5
    shares = {
        (b["lower"], b["upper"]): (b["reference"], b["current"]) for b in psi.evidence["top_bins"]
    }
    assert shares[(None, 5.0)] == (0.0, pytest.approx(1 / 3))
    assert psi.value > 0.25  # a third of the window below a constant reference
    assert results["ks"].value == pytest.approx(1 / 3)
    w = results["wasserstein"]
    assert (w.evidence["scale"], w.evidence["scale_kind"]) == (5.0, "abs_median")
    assert w.value == pytest.approx((50 / 150) * 1.0 / 5.0)  # W1 = 1/3, in units of |median|
    assert reference_scale(sketch(np.zeros(150))) == (1.0, "unit")


def test_constant_reference_in_estimation_mode_is_exact() -> None:
    """A constant sketch knows its CDF exactly (min = max), whatever its mode."""
    ref = sketch(np.full(100_000, 2.0))
    assert ref.is_estimation_mode()
    rng = np.random.default_rng(1)
    cur = sketch(rng.normal(2.0, 1.0, 150))
    results = numeric_all(ref, cur, **NO_MINIMUM)
    assert results["psi"].bound == 0.0  # both sides' shares are exact here
    assert results["ks"].evidence["rank_error"]["reference"] > 0  # but KS still states eps


def test_single_distinct_value_in_both_is_no_drift() -> None:
    for kind in ("doubles", "floats"):
        results = numeric_all(
            sketch(np.full(300, 7.25), kind), sketch(np.full(150, 7.25), kind), **NO_MINIMUM
        )
        for name, r in results.items():
            assert r.status == "ok", name
            assert r.value == 0.0, name
        assert results["ks"].p_value == 1.0
    results = categorical_all({"x": 3000}, 0, {"x": 250}, 0)
    for name, r in results.items():
        assert r.value == 0.0, name
    assert results["cramers_v"].p_value == 1.0
    assert results["cramers_v"].evidence["dof"] == 0


def test_zero_constant_reference_uses_unit_scale() -> None:
    r = compute("wasserstein", sketch(np.zeros(150)), sketch(np.full(150, 0.5)), **NO_MINIMUM)
    assert r.evidence["scale_kind"] == "unit"
    assert r.value == pytest.approx(0.5)


def test_heavy_ties_dedupe_bins_and_ks_is_correct() -> None:
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 4, size=150).astype(float)
    cur = rng.integers(1, 5, size=150).astype(float)
    r = numeric_all(sketch(ref), sketch(cur), **NO_MINIMUM)
    edges = r["psi"].evidence["edges"]
    assert edges == sorted(set(edges)) and len(edges) == 3  # 10 bins asked, 4 values exist
    assert r["ks"].value == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)
    assert r["ks"].bound == 0.0


def test_heavy_ties_in_estimation_mode() -> None:
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 6, size=200_000).astype(float)
    cur = rng.integers(0, 7, size=100_000).astype(float)
    r = numeric_all(sketch(ref), sketch(cur), **NO_MINIMUM)
    assert r["psi"].evidence["edges"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    exact = stats.ks_2samp(ref, cur, method="asymp").statistic
    assert abs(r["ks"].value - exact) <= r["ks"].bound
    # All distinct values are on the grid: no slack beyond the two rank errors.
    eps = datasketches.kll_doubles_sketch.get_normalized_rank_error(200, False)
    assert r["ks"].bound == pytest.approx(2 * eps)


def test_zero_inflated_reference_isolates_the_atom() -> None:
    values = np.concatenate([np.zeros(140), np.arange(1.0, 11.0)])  # 93% zeros
    r = compute("psi", sketch(values), sketch(values), **NO_MINIMUM)
    assert r.evidence["edges"] == [0.0, float(np.nextafter(0.0, np.inf))]
    assert r.value == 0.0


def test_float32_constant_edge_is_the_next_float32() -> None:
    r = compute(
        "psi", sketch(np.full(50, 0.1), "floats"), sketch(np.full(50, 0.2), "floats"), **NO_MINIMUM
    )
    lo, hi = r.evidence["edges"]
    assert hi == float(np.nextafter(np.float32(lo), np.float32(np.inf)))
    top = r.evidence["top_bins"][0]
    assert (top["lower"], top["reference"], top["current"]) == (hi, 0.0, 1.0)


def test_mixed_floats_and_doubles_sketches() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(size=150)
    r = numeric_all(sketch(values, "floats"), sketch(values, "doubles"), **NO_MINIMUM)
    assert all(res.status == "ok" for res in r.values())
    assert r["ks"].value < 0.02  # identical up to float32 rounding


# --- categories ------------------------------------------------------------------------------


def test_category_absent_from_reference() -> None:
    r = categorical_all({"a": 700, "b": 300}, 0, {"a": 140, "b": 50, "new": 10}, 0)
    assert r["unseen_share"].value == pytest.approx(0.05)
    assert r["unseen_share"].bound == 0.0
    assert r["unseen_share"].evidence["top_categories"] == [
        {"category": "new", "current": pytest.approx(0.05)}
    ]
    assert np.isfinite(r["psi"].value)  # the empty reference share is floored at 1e-4
    assert 0 < r["js"].value <= 1
    assert r["cramers_v"].p_value < 0.01


def test_category_absent_from_current() -> None:
    r = categorical_all({"a": 700, "b": 200, "gone": 100}, 0, {"a": 140, "b": 60}, 0)
    assert r["unseen_share"].value == 0.0
    assert r["linf"].evidence["at"]["category"] in {"a", "b", "gone"}
    assert r["psi"].value > 0


def test_unseen_with_reference_other_is_an_upper_limit() -> None:
    r = categorical_all({"a": 900}, 100, {"a": 180, "z": 20}, 0)
    assert r["unseen_share"].value == pytest.approx(0.1)
    assert r["unseen_share"].bound == pytest.approx(0.1)  # z may hide in the reference's other
    assert "upper limit" in r["unseen_share"].evidence["note"]
    # z is folded into other on both sides: the reference's other vs the window's z.
    assert r["psi"].evidence["other"]["folded_for_alignment"] == ["z"]
    assert r["psi"].evidence["other"]["treated_as_category"] is True
    assert r["psi"].value == 0.0


def test_other_only_on_the_current_side_folds_reference_categories() -> None:
    r = categorical_all({"a": 900, "rare": 100}, 0, {"a": 180}, 20)
    assert r["psi"].evidence["other"]["folded_for_alignment"] == ["rare"]
    assert r["psi"].value == 0.0


def test_other_label_in_counts_is_the_other_bucket() -> None:
    r = categorical_all({"a": 900, OTHER: 100}, 0, {"a": 180}, 20)
    assert r["psi"].value == 0.0
    assert r["psi"].evidence["other"]["reference"] == 100


def test_compute_accepts_plain_mappings_and_tuples() -> None:
    a = compute("linf", {"a": 800, "b": 400}, ({"a": 100, "b": 100}, 0))
    assert a.value == pytest.approx(0.5 - 1 / 3)


# --- misuse fails loudly, with what it got ---------------------------------------------------


def test_unknown_statistic_and_bad_options_are_config_errors() -> None:
    s = sketch(np.arange(10.0))
    with pytest.raises(ConfigError, match="unknown numeric statistic 'cramers_v'"):
        numeric_drift(s, s, ["cramers_v"])
    with pytest.raises(ConfigError, match="unknown categorical statistic 'ks'"):
        categorical_drift({"a": 1}, 0, {"a": 1}, 0, ["ks"])
    with pytest.raises(ConfigError, match="bins"):
        numeric_drift(s, s, bins=1)


def test_bad_inputs_are_input_errors() -> None:
    with pytest.raises(InputError, match="expected a QuantileSketch or a KLL sketch"):
        numeric_drift([1.0, 2.0], sketch(np.arange(3.0)))
    with pytest.raises(InputError, match="counts must be finite and >= 0"):
        categorical_drift({"a": -1}, 0, {"a": 1}, 0)
    with pytest.raises(InputError, match="other count"):
        categorical_drift({"a": 1}, -1, {"a": 1}, 0)
    with pytest.raises(InputError, match="Mapping of category counts"):
        compute("psi", [1, 2], {"a": 1})


# --- results are JSON-able, values in range, whatever the counts ----------------------------


def test_results_are_json_serialisable_without_infinities() -> None:
    rng = np.random.default_rng(5)
    results = numeric_all(
        sketch(rng.normal(size=5000)), sketch(rng.normal(1, size=3000)), **NO_MINIMUM
    )
    results |= {
        f"cat_{k}": v for k, v in categorical_all({"a": 800, "b": 400}, 7, {"c": 300}, 0).items()
    }
    for r in results.values():
        json.dumps(r.to_dict(), allow_nan=False)


counts = st.dictionaries(st.sampled_from("abcdefg"), st.integers(0, 10_000), max_size=7)


@settings(max_examples=200, deadline=None)
@given(counts, st.integers(0, 500), counts, st.integers(0, 500))
def test_categorical_never_raises_and_stays_in_range(
    ref: dict[str, int], ref_other: int, cur: dict[str, int], cur_other: int
) -> None:
    results = categorical_all(ref, ref_other, cur, cur_other, **NO_MINIMUM)
    for name, r in results.items():
        if r.status != "ok":
            assert r.value is None
            continue
        assert r.value >= 0, name
        if name in {"js", "hellinger", "cramers_v", "linf", "unseen_share"}:
            assert r.value <= 1 + 1e-12, name
        json.dumps(r.to_dict(), allow_nan=False)


values = st.lists(st.floats(-1e9, 1e9, allow_nan=False, width=32), max_size=60)


@settings(max_examples=150, deadline=None)
@given(values, values)
def test_numeric_never_raises_and_symmetric_statistics_are_symmetric(
    a: list[float], b: list[float]
) -> None:
    ab = numeric_all(sketch(a), sketch(b), **NO_MINIMUM)
    ba = numeric_all(sketch(b), sketch(a), **NO_MINIMUM)
    if not a:
        assert all(r.status == "empty_reference" for r in ab.values())
        return
    if not b:
        assert all(r.status == "insufficient_data" for r in ab.values())
        return
    assert ab["ks"].value == pytest.approx(ba["ks"].value)
    for name in ("ks", "js", "hellinger"):
        assert 0 <= ab[name].value <= 1 + 1e-12, name
    assert ab["psi"].value >= 0 and ab["wasserstein"].value >= 0
