"""NumericSketch and CategoricalSketch: oracles against numpy, merge laws, bytes, bad input.

The quantile sketch is deterministic and states a worst-case rank error (``rank_error``),
so tests compare quantiles and CDFs with exact ranks within that bound, with certainty.
Tests that need exact answers keep the sketch below ``2 k`` values, where it holds every value.
"""

from __future__ import annotations

import contextlib
import math
import struct
import zlib
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from driftwire._codec import Writer, seal
from driftwire.errors import FormatError
from driftwire.sketch.numeric import (
    CategoricalSketch,
    NumericSketch,
    SketchParams,
    update_numeric_groups,
    update_numeric_matrix,
)
from driftwire.sketch.quantiles import to_float32

RANKS = np.linspace(0.0, 1.0, 21)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=False)
value = st.one_of(finite, finite, finite, st.sampled_from([math.nan, math.inf, -math.inf]))
values = st.lists(value, max_size=60).map(lambda xs: np.array(xs, dtype=np.float64))
category = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"])
categories = st.lists(st.one_of(category, st.none()), max_size=40)


def numeric(data: np.ndarray, k: int = 200) -> NumericSketch:
    s = NumericSketch(k)
    s.update_batch(data)
    return s


def categorical(data: list[str | None], cap: int = 256) -> CategoricalSketch:
    s = CategoricalSketch(cap)
    s.update_batch(data)
    return s


def rank_interval(raw: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of the (float32-rounded, as stored) raw values < q and <= q."""
    x = np.sort(raw.astype(np.float32))
    q32 = q.astype(np.float32)
    return np.searchsorted(x, q32, "left") / len(x), np.searchsorted(x, q32, "right") / len(x)


def assert_quantiles_within(sketch: NumericSketch, raw: np.ndarray, eps: float) -> None:
    lo, hi = rank_interval(raw, sketch.quantiles(RANKS))
    # the returned value's true rank interval must come within eps of the asked rank
    assert np.all(lo <= RANKS + eps) and np.all(hi >= RANKS - eps), (lo, hi, RANKS)


def scale_of(*arrays: np.ndarray) -> float:
    x = np.concatenate(arrays)
    return max(1.0, float(np.abs(x[np.isfinite(x)]).max(initial=0.0)))


def moments(s: NumericSketch) -> tuple[object, ...]:
    return (s.count, s.missing, s.non_finite, s.min, s.max, s.mean, s._m2)


# -- NumericSketch: oracles ----------------------------------------------------------------


def test_counts_moments_and_extremes_match_numpy() -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(3.0, 2.0, 5_000)
    data = raw.copy()
    data[::50] = np.nan
    data[7] = np.inf
    data[8] = -np.inf
    s = numeric(data)
    good = data[np.isfinite(data)]
    assert (s.count, s.missing, s.non_finite, s.total) == (len(good), 100, 2, 5_000)
    assert s.mean == pytest.approx(good.mean(), rel=1e-12)
    assert s.variance == pytest.approx(good.var(), rel=1e-12)
    assert s.std == pytest.approx(good.std(), rel=1e-12)
    assert (s.min, s.max) == (good.min(), good.max())


def test_quantiles_and_cdf_are_exact_below_k() -> None:
    s = numeric(np.arange(1.0, 101.0))
    assert s.quantiles([0.0, 0.25, 0.5, 1.0]).tolist() == [1.0, 25.0, 50.0, 100.0]
    assert s.cdf([0.0, 25.0, 25.5, 100.0, 25.0]).tolist() == [0.0, 0.25, 0.25, 1.0, 0.25]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quantiles_and_cdf_within_the_stated_bound(seed: int) -> None:
    rng = np.random.default_rng(seed)
    raw = rng.lognormal(0.0, 1.0, 50_000)
    s = numeric(raw)
    assert not s.quantile_sketch.is_exact
    assert 0.0 < s.rank_error < 0.0133  # below the old KLL's 99% bound, and certain
    assert_quantiles_within(s, raw, s.rank_error)
    points = np.quantile(raw, RANKS[1:-1])
    true = np.searchsorted(np.sort(raw.astype(np.float32)), points.astype(np.float32), "right")
    assert np.abs(s.cdf(points) - true / raw.size).max() <= s.rank_error


def test_empty_sketch_answers_nan() -> None:
    s = NumericSketch()
    s.update_batch(np.array([np.nan]))
    assert s.count == 0 and s.missing == 1
    assert all(math.isnan(x) for x in (s.mean, s.variance, s.std, s.min, s.max))
    assert np.isnan(s.quantiles([0.5])).all() and np.isnan(s.cdf([1.0])).all()


def test_values_beyond_float32_are_clipped_in_the_quantile_sketch_only() -> None:
    s = numeric(np.array([1e300, -1e300, 0.0]))
    assert s.max == 1e300 and s.min == -1e300 and s.mean == 0.0
    assert s.variance == math.inf  # documented: squares beyond float64
    q = s.quantiles([0.0, 1.0])
    assert np.isfinite(q).all() and q[0] < -1e38 and q[1] > 1e38
    back = NumericSketch.from_bytes(s.to_bytes())
    assert back.variance == math.inf and back.to_bytes() == s.to_bytes()


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ([1.0, 2.0], "list"),
        (np.array([1, 2]), "int64"),
        (np.ones((2, 2)), "2-D"),
        (np.array([1.0], dtype=np.float32), "float32"),
    ],
)
def test_update_batch_says_what_it_got(bad: object, says: str) -> None:
    with pytest.raises(TypeError, match=says):
        NumericSketch().update_batch(bad)  # type: ignore[arg-type]


def test_update_one_value_and_ranks_are_validated() -> None:
    s = NumericSketch()
    s.update(2.0)
    s.update(math.nan)
    assert (s.count, s.missing) == (1, 1)
    with pytest.raises(ValueError, match="ranks"):
        s.quantiles([1.5])
    with pytest.raises(ValueError, match="points"):
        s.cdf([math.nan])


def test_grouped_update_equals_one_sketch_per_group() -> None:
    rng = np.random.default_rng(3)
    data = rng.normal(size=1_000)
    data[rng.integers(0, 1_000, 40)] = np.nan
    data[5] = np.inf
    starts = np.array([0, 0, 100, 100, 900])  # two empty groups
    grouped = [NumericSketch() for _ in starts]
    update_numeric_groups(grouped, data, starts)
    bounds = [*starts.tolist(), 1_000]
    for sketch, a, b in zip(grouped, bounds, bounds[1:], strict=False):
        alone = numeric(data[a:b])
        assert moments(sketch)[:5] == moments(alone)[:5]
        if alone.count:
            assert sketch.mean == pytest.approx(alone.mean, rel=1e-12)
            assert sketch.variance == pytest.approx(alone.variance, rel=1e-9)
            part = data[a:b]
            assert_quantiles_within(sketch, part[np.isfinite(part)], sketch.rank_error)
    with pytest.raises(ValueError, match="starts"):
        update_numeric_groups(grouped[:2], data, np.array([5, 1]))


@SETTINGS
@given(
    st.integers(min_value=1, max_value=4).flatmap(
        lambda rows: st.integers(min_value=0, max_value=40).flatmap(
            lambda n: st.tuples(
                st.lists(st.lists(value, min_size=n, max_size=n), min_size=rows, max_size=rows),
                st.lists(st.integers(min_value=0, max_value=n), max_size=5),
                st.lists(st.booleans(), min_size=rows * 6, max_size=rows * 6),
            )
        )
    )
)
@example(([[1e300, -1e300, 3.0]], [], [True] * 6))  # beyond float32, beyond float64 sums
def test_matrix_update_equals_numpy_per_row_and_group(
    case: tuple[list[list[float]], list[int], list[bool]],
) -> None:
    rows, cuts, keep = case
    data = np.array(rows, dtype=np.float64).reshape(len(rows), -1)
    n = data.shape[1]
    starts = np.array([0, *sorted(cuts)], dtype=np.int64)
    g = len(starts)
    sketches = [
        [NumericSketch() if keep[r * 6 + j] else None for j in range(g)] for r in range(len(rows))
    ]
    update_numeric_matrix(sketches, data, starts)
    bounds = [*starts.tolist(), n]
    for r, row in enumerate(sketches):
        for sketch, a, b in zip(row, bounds, bounds[1:], strict=False):
            if sketch is None:
                continue
            part = data[r, a:b]
            ok = part[np.isfinite(part)]
            assert (sketch.count, sketch.missing, sketch.non_finite) == (
                len(ok),
                int(np.isnan(part).sum()),
                int(np.isinf(part).sum()),
            )
            assert sketch.quantile_sketch.n == len(ok)
            if len(ok):
                assert (sketch.min, sketch.max) == (ok.min(), ok.max())
                with np.errstate(over="ignore", invalid="ignore"):
                    mean, var = ok.mean(), ok.var()
                if math.isfinite(mean) and math.isfinite(var):
                    assert sketch.mean == pytest.approx(mean, rel=1e-9, abs=1e-9)
                    assert sketch.variance == pytest.approx(var, rel=1e-9, abs=1e-6)
                top = np.finfo(np.float32).max
                expected = np.sort(np.clip(ok, -top, top).astype(np.float32))
                assert sketch.quantiles([0.0, 1.0]).tolist() == [expected[0], expected[-1]]


# -- NumericSketch: merge laws -------------------------------------------------------------


@SETTINGS
@given(values, values)
def test_numeric_merge_is_commutative_exactly(a: np.ndarray, b: np.ndarray) -> None:
    ab = numeric(a).merge(numeric(b))
    ba = numeric(b).merge(numeric(a))
    assert moments(ab) == moments(ba)  # bit for bit: the merge formula is symmetric
    np.testing.assert_array_equal(ab.quantiles(RANKS), ba.quantiles(RANKS))


@SETTINGS
@given(values, values, values)
def test_numeric_merge_is_associative(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    left = numeric(a).merge(numeric(b)).merge(numeric(c))
    right = numeric(a).merge(numeric(b).merge(numeric(c)))
    assert moments(left)[:5] == moments(right)[:5]  # counts, min, max exactly
    scale = scale_of(a, b, c)
    assert left.mean == pytest.approx(right.mean, rel=1e-9, abs=1e-12 * scale, nan_ok=True)
    assert left.variance == pytest.approx(
        right.variance, rel=1e-9, abs=1e-12 * scale * scale, nan_ok=True
    )
    # below k values the KLL sketch is exact, so quantiles agree exactly
    assert left.quantiles(RANKS).tolist() == pytest.approx(
        right.quantiles(RANKS).tolist(), nan_ok=True
    )


@SETTINGS
@given(values, st.integers(min_value=0, max_value=60))
def test_numeric_merge_of_halves_equals_the_whole(data: np.ndarray, cut: int) -> None:
    cut = min(cut, len(data))
    whole = numeric(data)
    halves = numeric(data[:cut]).merge(numeric(data[cut:]))
    assert moments(halves)[:5] == moments(whole)[:5]
    scale = scale_of(data)
    assert halves.mean == pytest.approx(whole.mean, rel=1e-9, abs=1e-12 * scale, nan_ok=True)
    assert halves.variance == pytest.approx(
        whole.variance, rel=1e-9, abs=1e-12 * scale * scale, nan_ok=True
    )
    assert halves.quantiles(RANKS).tolist() == pytest.approx(
        whole.quantiles(RANKS).tolist(), nan_ok=True
    )


@pytest.mark.parametrize("parts", [2, 7, 64])
def test_many_way_merge_matches_the_raw_data(parts: int) -> None:
    rng = np.random.default_rng(parts)
    raw = np.concatenate([rng.normal(0, 1, 30_000), rng.exponential(5.0, 30_000)])
    merged = NumericSketch()
    for chunk in np.array_split(raw, parts):
        merged.merge(numeric(chunk))
    assert merged.count == raw.size
    assert merged.mean == pytest.approx(raw.mean(), rel=1e-9)
    assert merged.variance == pytest.approx(raw.var(), rel=1e-9)
    assert_quantiles_within(merged, raw, merged.rank_error)


def test_merge_refuses_other_parameters_and_types() -> None:
    with pytest.raises(FormatError, match="k=100"):
        NumericSketch(200).merge(NumericSketch(100))
    with pytest.raises(TypeError):
        NumericSketch().merge(CategoricalSketch())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be"):
        NumericSketch(4)


def test_copy_is_independent() -> None:
    s = numeric(np.arange(10.0))
    c = s.copy()
    c.update_batch(np.arange(100.0, 110.0))
    assert (s.count, s.max) == (10, 9.0)
    assert (c.count, c.max) == (20, 109.0)


# -- NumericSketch: bytes --------------------------------------------------------------------


@SETTINGS
@given(values)
def test_numeric_round_trip_answers_alike_and_reserializes_identically(data: np.ndarray) -> None:
    s = numeric(data)
    raw = s.to_bytes()
    back = NumericSketch.from_bytes(raw)
    assert back.to_bytes() == raw
    assert moments(back) == moments(s)
    assert back.quantiles(RANKS).tolist() == pytest.approx(s.quantiles(RANKS).tolist(), nan_ok=True)


def test_numeric_round_trip_in_estimation_mode() -> None:
    s = numeric(np.random.default_rng(5).normal(size=100_000))
    raw = s.to_bytes()
    back = NumericSketch.from_bytes(raw)
    assert back.to_bytes() == raw and not back.quantile_sketch.is_exact
    assert back.quantiles(RANKS).tolist() == s.quantiles(RANKS).tolist()
    assert len(raw) < 3_500  # documented: about 3.1 KB at 1e5 values


def _envelope(magic: bytes, payload: bytes, version: int = 2) -> bytes:
    return seal(magic, version, payload)


def test_numeric_from_bytes_refuses_inconsistent_content() -> None:
    good = numeric(np.arange(300.0))
    w = Writer()
    w.uvarint(200)
    w.uvarint(299)  # count disagrees with the quantile sketch's n
    w.uvarint(0)
    w.uvarint(0)
    for x in (1.0, 1.0, 0.0, 2.0):
        w.f64(x)
    good.quantile_sketch.write_into(w)
    with pytest.raises(FormatError, match="n=300"):
        NumericSketch.from_bytes(_envelope(b"DWNS", w.getvalue()))
    w = Writer()
    w.uvarint(200)
    w.uvarint(1)
    w.uvarint(0)
    w.uvarint(0)
    for x in (1.0, -1.0, 0.0, 2.0):  # negative M2
        w.f64(x)
    with pytest.raises(FormatError, match="moments"):
        NumericSketch.from_bytes(_envelope(b"DWNS", w.getvalue()))
    w = Writer()
    w.uvarint(200)
    w.uvarint(1)
    w.uvarint(0)
    w.uvarint(0)
    for x in (1.0, 0.0, 1.0, 1.0):
        w.f64(x)
    w.blob(b"\x05\x01garbage")
    with pytest.raises(FormatError, match="KLL"):  # format 1: a datasketches KLL blob
        NumericSketch.from_bytes(_envelope(b"DWNS", w.getvalue(), version=1))


# -- CategoricalSketch: oracles --------------------------------------------------------------


def test_exact_regime_counts_everything() -> None:
    data = ["DE", "FR", None, "DE", "US", None, "DE"]
    s = categorical(data)
    assert s.counts == {"DE": 3, "FR": 1, "US": 1}
    assert list(s.counts) == ["DE", "FR", "US"]  # largest first, then by name
    assert (s.count, s.missing, s.total, s.other, s.count_error) == (5, 2, 7, 0, 0)
    assert s.is_exact and s.distinct_estimate == 3.0 and s.distinct_bounds() == (3.0, 3.0)


def test_bools_and_numbers_are_refused_by_the_strict_batch_path() -> None:
    with pytest.raises(TypeError, match="int 3"):
        CategoricalSketch().update_batch(["a", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="list of str"):
        CategoricalSketch().update_batch("abc")
    with pytest.raises(TypeError, match="float64"):
        CategoricalSketch().update_batch(np.array([1.0]))  # type: ignore[arg-type]
    s = CategoricalSketch()
    s.update_batch(np.array(["x", "y", "x"]))
    s.update_counts({"y": 2, "z": 0}, missing=4)
    assert s.counts == {"y": 3, "x": 2} and s.missing == 4
    with pytest.raises(ValueError):
        s.update_counts({"y": -1})


def test_misra_gries_bounds_hold_beyond_the_cap() -> None:
    rng = np.random.default_rng(11)
    raw = [f"c{int(z)}" for z in rng.zipf(1.3, 50_000) if z < 5_000]
    truth = Counter(raw)
    s = CategoricalSketch(cap=64)
    for chunk in range(0, len(raw), 997):
        s.update_batch(raw[chunk : chunk + 997])
    assert not s.is_exact and len(s.counts) <= 64
    err = s.count_error
    assert err <= (s.count - sum(s.counts.values())) / 65
    assert s.count == len(raw) and s.other == s.count - sum(s.counts.values())
    for name, n in s.counts.items():
        assert n <= truth[name] <= n + err
    for name, n in truth.items():
        if name not in s.counts:
            assert n <= err
    top = [name for name, _ in truth.most_common(10)]
    assert all(name in s.counts for name in top)
    estimate, (lo, hi) = s.distinct_estimate, s.distinct_bounds(3)
    assert lo <= len(truth) <= hi
    assert abs(estimate - len(truth)) / len(truth) < 3 * 0.023


def test_unseen_lists_categories_the_reference_never_counted() -> None:
    ref = categorical(["a", "b"])
    cur = categorical(["a", "c", "c", "d", None])
    assert cur.unseen(ref) == {"c": 2, "d": 1}
    assert ref.unseen(ref) == {}


# -- CategoricalSketch: merge laws -----------------------------------------------------------


def cat_state(s: CategoricalSketch) -> tuple[object, ...]:
    return (s.counts, s.count, s.missing, s.other, s.count_error, s.is_exact)


@SETTINGS
@given(categories, categories, st.integers(min_value=1, max_value=9))
def test_categorical_merge_is_commutative_exactly(a: list, b: list, cap: int) -> None:
    ab = categorical(a, cap).merge(categorical(b, cap))
    ba = categorical(b, cap).merge(categorical(a, cap))
    assert cat_state(ab) == cat_state(ba)


@SETTINGS
@given(categories, categories, categories)
def test_categorical_merge_is_associative_exactly_while_exact(a: list, b: list, c: list) -> None:
    left = categorical(a).merge(categorical(b)).merge(categorical(c))
    right = categorical(a).merge(categorical(b).merge(categorical(c)))
    whole = categorical(a + b + c)
    assert cat_state(left) == cat_state(right) == cat_state(whole)
    assert left.distinct_estimate == whole.distinct_estimate


@SETTINGS
@given(categories, categories, categories, st.integers(min_value=1, max_value=5))
def test_categorical_merge_trees_keep_the_error_bound(a: list, b: list, c: list, cap: int) -> None:
    truth = Counter(x for x in a + b + c if x is not None)
    for tree in (
        categorical(a, cap).merge(categorical(b, cap)).merge(categorical(c, cap)),
        categorical(a, cap).merge(categorical(b, cap).merge(categorical(c, cap))),
        categorical(c, cap).merge(categorical(a, cap)).merge(categorical(b, cap)),
    ):
        err = tree.count_error
        assert tree.count == sum(truth.values())
        assert err <= (tree.count - sum(tree.counts.values())) / (cap + 1)
        for name, n in truth.items():
            assert tree.counts.get(name, 0) <= n <= tree.counts.get(name, 0) + err


def test_hll_distinct_count_survives_merges() -> None:
    parts = [[f"u{i}" for i in range(start, start + 3_000)] for start in range(0, 9_000, 1_500)]
    merged = CategoricalSketch(cap=16)
    for part in parts:
        merged.merge(categorical(part, cap=16))
    lo, hi = merged.distinct_bounds(3)
    assert lo <= 10_500 <= hi


def test_categorical_merge_refuses_other_parameters() -> None:
    with pytest.raises(FormatError, match="cap=8"):
        CategoricalSketch(cap=16).merge(CategoricalSketch(cap=8))
    with pytest.raises(FormatError, match="lg_k=12"):
        CategoricalSketch().merge(CategoricalSketch(lg_k=12))


# -- CategoricalSketch: bytes ----------------------------------------------------------------


@SETTINGS
@given(categories, st.integers(min_value=1, max_value=9))
@example(list("cabdefgh"), 1)  # an HLL in list mode re-serializes differently (found by CI)
def test_categorical_round_trip(data: list, cap: int) -> None:
    s = categorical(data, cap)
    raw = s.to_bytes()
    back = CategoricalSketch.from_bytes(raw)
    assert back.to_bytes() == raw
    assert cat_state(back) == cat_state(s)
    assert back.distinct_estimate == s.distinct_estimate


def test_categorical_round_trip_with_hll_in_estimation_mode() -> None:
    s = categorical([f"u{i}" for i in range(5_000)], cap=32)
    raw = s.to_bytes()
    back = CategoricalSketch.from_bytes(raw)
    assert back.to_bytes() == raw and back.distinct_estimate == s.distinct_estimate


def test_categorical_from_bytes_refuses_non_canonical_counters() -> None:
    w = Writer()
    w.uvarint(256)
    w.u8(11)
    w.uvarint(2)  # count
    w.uvarint(0)  # missing
    w.uvarint(0)  # offset
    w.uvarint(2)
    w.text("b")
    w.uvarint(1)
    w.text("a")  # not sorted
    w.uvarint(1)
    with pytest.raises(FormatError, match="sorted"):
        CategoricalSketch.from_bytes(_envelope(b"DWCS", w.getvalue(), version=1))


# -- bad bytes are always FormatError --------------------------------------------------------


@pytest.mark.parametrize("cls", [NumericSketch, CategoricalSketch])
def test_truncated_flipped_foreign_and_versioned_bytes(cls: type) -> None:
    s = cls()
    s.update_batch(np.arange(500.0) if cls is NumericSketch else [f"x{i % 7}" for i in range(500)])
    raw = s.to_bytes()
    for cut in range(len(raw)):
        with pytest.raises(FormatError):
            cls.from_bytes(raw[:cut])
    for i in range(0, len(raw), 7):
        flipped = bytearray(raw)
        flipped[i] ^= 0x40
        with pytest.raises(FormatError):
            cls.from_bytes(bytes(flipped))
    other = CategoricalSketch() if cls is NumericSketch else NumericSketch()
    with pytest.raises(FormatError, match="magic"):
        cls.from_bytes(other.to_bytes())
    future = bytearray(raw[:-4])
    future[4] = 3  # format version 3, with a valid checksum
    future += struct.pack("<I", zlib.crc32(future))
    with pytest.raises(FormatError, match="version 3"):
        cls.from_bytes(bytes(future))
    with pytest.raises(FormatError, match="expected bytes"):
        cls.from_bytes("not bytes")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([b"", b"DWNS\x01", b"DWNS\x02", b"DWCS\x01"]))
def test_random_bytes_raise_format_error_only(blob: bytes, prefix: bytes) -> None:
    for data in (prefix + blob, prefix + blob + struct.pack("<I", zlib.crc32(prefix + blob))):
        for cls in (NumericSketch, CategoricalSketch):
            with contextlib.suppress(FormatError):
                cls.from_bytes(data)


def test_sketch_params_validate_and_report_bounds() -> None:
    p = SketchParams()
    assert (p.k, p.cap, p.lg_k) == (200, 256, 11)
    assert p.rank_error == pytest.approx(0.013295, abs=1e-6)
    assert p.cdf_error == pytest.approx(0.016516, abs=1e-6)
    for bad in ({"k": 7}, {"cap": 0}, {"lg_k": 22}, {"k": 200.0}):
        with pytest.raises(ValueError):
            SketchParams(**bad)  # type: ignore[arg-type]


def test_valid_counts_add_like_checked_counts() -> None:
    tally = {f"c{i}": i + 1 for i in range(40)}
    checked, trusted = CategoricalSketch(cap=16), CategoricalSketch(cap=16)
    checked.update_counts(tally, missing=3)
    trusted.update_valid_counts(tally, 3)
    assert trusted.to_bytes() == checked.to_bytes()


def test_grouped_moments_add_like_a_batch() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(10.0, 2.0, 150)  # fewer than k: the quantile sketch is exact
    batch, grouped = NumericSketch(), NumericSketch()
    batch.update_batch(np.concatenate([values, [np.nan, np.nan, np.inf]]))
    stored = values.astype(np.float32)
    grouped.add_group(
        values.size,
        float(values.mean()),
        float(((values - values.mean()) ** 2).sum()),
        float(values.min()),
        float(values.max()),
        stored,
        float(stored.min()),
        float(stored.max()),
    )
    grouped.add_non_finite(2, 1)
    assert (grouped.count, grouped.missing, grouped.non_finite) == (150, 2, 1)
    assert grouped.mean == pytest.approx(batch.mean, rel=1e-12)
    assert grouped.variance == pytest.approx(batch.variance, rel=1e-12)
    assert grouped.quantiles([0.1, 0.5, 0.9]).tolist() == batch.quantiles([0.1, 0.5, 0.9]).tolist()


def test_add_groups_leaves_each_sketch_as_add_group_pair_by_pair() -> None:
    """``NumericSketch.add_groups`` (the loop of ``update_numeric_matrix``) folds pair after
    pair exactly as ``add_group`` does: byte for byte, over many small groups that fill the
    quantile sketch's level 0 in steps and compact it; a ``None`` sketch skips its values."""
    rng = np.random.default_rng(11)
    looped = [NumericSketch(k=8) for _ in range(3)]
    grouped = [NumericSketch(k=8) for _ in range(3)]
    for _ in range(60):
        targets = [int(t) for t in rng.permutation(4)]  # 3: a group nobody keeps
        parts = [rng.normal(5.0, 2.0, int(n)) for n in rng.integers(1, 12, 4)]
        for t, part in zip(targets, parts, strict=True):
            if t < 3:
                stored = to_float32(part)
                looped[t].add_group(
                    part.size,
                    float(part.mean()),
                    float(((part - part.mean()) ** 2).sum()),
                    float(part.min()),
                    float(part.max()),
                    stored,
                    float(stored.min()),
                    float(stored.max()),
                )
        NumericSketch.add_groups(
            [grouped[t] if t < 3 else None for t in targets],
            np.array([p.size for p in parts]),
            np.array([p.mean() for p in parts]),
            np.array([((p - p.mean()) ** 2).sum() for p in parts]),
            np.array([p.min() for p in parts]),
            np.array([p.max() for p in parts]),
            to_float32(np.concatenate(parts)),
        )
    assert not looped[0].quantile_sketch.is_exact  # compacted along the way
    assert [s.to_bytes() for s in grouped] == [s.to_bytes() for s in looped]
