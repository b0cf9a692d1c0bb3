"""QuantileSketch: the stated worst-case bound against exact numpy ranks, merge laws, bytes,
determinism (in one process and across processes), and the legacy KLL format.

The sketch is deterministic, so every assertion here holds with certainty, not at a confidence
level: a query's error is checked against ``rank_error_bound()`` for every query made.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from driftwire._codec import Reader
from driftwire.errors import FormatError
from driftwire.sketch.numeric import NumericSketch
from driftwire.sketch.profile import Profile
from driftwire.sketch.quantiles import QuantileSketch, _pad

DATA = Path(__file__).parent / "data"
RANKS = np.linspace(0.0, 1.0, 101)
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False, width=32)
arrays = st.lists(st.one_of(finite, st.integers(-3, 3).map(float)), max_size=400).map(
    lambda xs: np.array(xs, dtype=np.float64)
)
small_k = st.sampled_from([8, 9, 16])  # capacity 32 - 64 items per level: compactions happen


def fed(values: np.ndarray, k: int = 200, batch: int = 250) -> QuantileSketch:
    s = QuantileSketch(k)
    for start in range(0, values.size, batch):
        s.update_batch(values[start : start + batch])
    return s


def assert_within_bound(s: QuantileSketch, raw: np.ndarray) -> float:
    """Every quantile and CDF answer is within ``rank_error_bound()`` of the exact ranks of
    ``raw`` (float32-rounded, as stored); returns the largest error seen / the bound."""
    x = np.sort(raw.astype(np.float32))
    n, eps = x.size, s.rank_error_bound()
    tol = eps + 1e-12
    for inclusive in (True, False):
        q = s.quantiles(RANKS, inclusive).astype(np.float32)
        below = np.searchsorted(x, q, "left") / n  # exact rank interval of each answer
        upto = np.searchsorted(x, q, "right") / n
        assert np.all(below <= RANKS + tol) and np.all(upto >= RANKS - tol)
    points = np.unique(np.concatenate((x[:: max(1, n // 500)], x[-1:], [x[0] - 1, x[-1] + 1])))
    up, down = s.error_weights
    errors = []
    for inclusive, side in ((True, "right"), (False, "left")):
        signed = s.cdf(points, inclusive) * n - np.searchsorted(x, points, side)
        assert signed.max() <= up + 1e-6 and signed.min() >= -down - 1e-6  # one-sided sums
        errors.append(np.abs(signed).max() / n)
        assert errors[-1] <= tol, (errors[-1], eps)
    return max(errors) / eps if eps else 0.0


# -- the bound against exact ranks -----------------------------------------------------------


@SETTINGS
@given(arrays, small_k, st.integers(1, 120))
def test_every_query_is_within_the_bound(data: np.ndarray, k: int, batch: int) -> None:
    if data.size == 0:
        s = QuantileSketch(k)
        assert np.isnan(s.quantiles([0.5])).all() and s.rank_error_bound() == 0.0
        return
    s = fed(data, k, batch)
    assert s.n == data.size and s.min == data.min() and s.max == data.max()
    items, weights = s.sorted_view()
    assert np.all(np.diff(items) >= 0) and weights.sum() == data.size
    same, cumulative = s.cumulative_view()
    assert np.array_equal(same, items) and np.array_equal(cumulative, np.cumsum(weights))
    assert not (same.flags.writeable or cumulative.flags.writeable)
    assert_within_bound(s, data)
    if s.is_exact:
        assert s.num_retained == data.size and s.rank_error_bound() == 0.0


@pytest.mark.parametrize("n", [1, 2, 399, 400, 10_000, 100_000, 1_000_000])
def test_bound_holds_and_stays_below_the_old_kll_error_up_to_a_million(n: int) -> None:
    rng = np.random.default_rng(n)
    raw = rng.lognormal(0.0, 1.5, n)
    s = fed(raw)
    assert_within_bound(s, raw)
    assert s.is_exact == (n < 400) and s.rank_error_bound() < 0.0133  # KLL k=200's 99% bound
    assert len(s.to_bytes()) < 4 * s.num_retained + 20 * 16 + 40
    if n == 1_000_000:
        assert len(s.to_bytes()) < 6_500  # documented: 6.1 KB at 1e6 values


def test_one_big_batch_is_halved_at_once_with_a_small_bound() -> None:
    raw = np.random.default_rng(3).normal(size=200_000)
    s = QuantileSketch(200)
    s.update_batch(raw)
    assert s.error_weight < 2 * raw.size / 400  # one compaction per level: 1 + 2 + ... + 2^h
    assert_within_bound(s, raw)


def test_inputs_are_validated_and_non_finite_values_ignored() -> None:
    s = QuantileSketch(8)
    s.update_batch(np.array([1.0, np.nan, np.inf, -np.inf, 3.0, 1e300]))
    assert s.n == 3 and s.max == float(np.finfo(np.float32).max)  # clipped to float32
    with pytest.raises(ValueError, match="ranks"):
        s.quantiles([1.5])
    with pytest.raises(ValueError, match="points"):
        s.cdf([math.nan])
    with pytest.raises(TypeError, match="2-D"):
        s.update_batch(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="k must be"):
        QuantileSketch(4)


# -- merge laws ------------------------------------------------------------------------------


@SETTINGS
@given(arrays, arrays, small_k)
@example(np.array([0.0]), np.array([-0.0]), 8)  # -0.0 is stored as 0.0
def test_merge_is_commutative_in_its_bytes(a: np.ndarray, b: np.ndarray, k: int) -> None:
    ab = fed(a, k).merge(fed(b, k))
    ba = fed(b, k).merge(fed(a, k))
    assert ab.to_bytes() == ba.to_bytes()


@SETTINGS
@given(arrays, arrays, arrays, small_k)
def test_merge_is_associative_in_what_it_answers(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, k: int
) -> None:
    union = np.concatenate((a, b, c))
    left = fed(a, k).merge(fed(b, k)).merge(fed(c, k))
    right = fed(a, k).merge(fed(b, k).merge(fed(c, k)))
    for s in (left, right):
        assert s.n == union.size
        if union.size:
            assert_within_bound(s, union)
            assert (s.min, s.max) == (union.min(), union.max())
    parts = [fed(x, k).error_weights for x in (a, b, c)]
    for s in (left, right):  # merging adds the sums (and may compact more)
        assert all(s.error_weights[i] >= sum(p[i] for p in parts) for i in (0, 1))


def test_a_window_of_many_merged_buckets_keeps_the_bound() -> None:
    rng = np.random.default_rng(9)
    buckets = [rng.gamma(2.0, 3.0, int(rng.integers(50, 3_000))) for _ in range(120)]
    window = QuantileSketch(200)
    for bucket in buckets:
        window.merge(fed(bucket))
    assert assert_within_bound(window, np.concatenate(buckets)) <= 1.0
    assert window.rank_error_bound() < 0.0133


def test_merge_refuses_other_parameters_and_types() -> None:
    with pytest.raises(FormatError, match="k=100"):
        QuantileSketch(200).merge(QuantileSketch(100))
    with pytest.raises(TypeError, match="QuantileSketch"):
        QuantileSketch(200).merge(NumericSketch())  # type: ignore[arg-type]


# -- bytes -----------------------------------------------------------------------------------


@SETTINGS
@given(arrays, small_k, st.integers(1, 120), arrays)
def test_round_trip_is_exact_and_continues_alike(
    data: np.ndarray, k: int, batch: int, more: np.ndarray
) -> None:
    s = fed(data, k, batch)
    raw = s.to_bytes()
    back = QuantileSketch.from_bytes(raw)
    assert back.to_bytes() == raw
    assert back.quantiles(RANKS).tolist() == pytest.approx(s.quantiles(RANKS).tolist(), nan_ok=True)
    assert (back.n, back.error_weight) == (s.n, s.error_weight)
    s.update_batch(more)
    back.update_batch(more)
    assert back.to_bytes() == s.to_bytes()


@SETTINGS
@given(arrays, small_k, st.integers(1, 120), arrays, arrays)
def test_a_copy_is_the_round_trip_and_independent(
    data: np.ndarray, k: int, batch: int, more: np.ndarray, other: np.ndarray
) -> None:
    """``copy`` (used for every window and reference) builds the sketch directly, not through
    its bytes: it must behave exactly as the round trip did, and share nothing mutable."""
    s = fed(data, k, batch)
    raw = s.to_bytes()
    s.cumulative_view()  # a cached view is shared, read-only
    copied, back = s.copy(), QuantileSketch.from_bytes(raw)
    assert copied.to_bytes() == raw
    for sketch in (copied, back):
        sketch.update_batch(more)
        sketch.merge(fed(other, k))
    assert copied.to_bytes() == back.to_bytes()
    assert s.to_bytes() == raw  # the original did not move
    assert copied.cumulative_view()[1].tolist() == back.cumulative_view()[1].tolist()
    merged = fed(other, k).merge(s)
    assert s.to_bytes() == raw  # merging it into another leaves it as it was
    assert merged.n == s.n + other[np.isfinite(other)].size


def test_bad_bytes_raise_format_error() -> None:
    s = fed(np.random.default_rng(4).normal(size=3_000), k=8)
    raw = s.to_bytes()
    for cut in range(len(raw)):
        with pytest.raises(FormatError):
            QuantileSketch.from_bytes(raw[:cut])
    for i in range(0, len(raw), 5):
        flipped = bytearray(raw)
        flipped[i] ^= 0x10
        with pytest.raises(FormatError):
            QuantileSketch.from_bytes(bytes(flipped))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_random_payloads_raise_format_error_only(blob: bytes) -> None:
    from driftwire._codec import seal

    with contextlib.suppress(FormatError):
        QuantileSketch.from_bytes(seal(b"DWQS", 1, blob))


# -- determinism -----------------------------------------------------------------------------

_PROGRAM = """
import sys
import numpy as np
from driftwire.sketch.numeric import NumericSketch, update_numeric_matrix
from driftwire.sketch.profile import Profile
rng = np.random.default_rng(17)
a, b, c = NumericSketch(), NumericSketch(), NumericSketch()
for _ in range(40):
    block = rng.standard_t(3, size=(2, 2_000))
    block[0, ::97] = np.nan
    update_numeric_matrix([[a, b], [c, None]], block, np.array([0, 1_300]))
a.merge(b)
p = Profile()
p.update([{"x": float(v)} for v in rng.lognormal(size=5_000)], latency_ms=rng.gamma(2, 5, 5_000))
sys.stdout.buffer.write(a.to_bytes() + c.to_bytes() + p.to_bytes())
"""


def _run_program(hash_seed: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM], env=env, capture_output=True, check=True, timeout=120
    )
    return done.stdout


def test_same_input_gives_the_same_bytes_across_processes() -> None:
    first, second = _run_program("1"), _run_program("2")
    assert len(first) > 5_000 and first == second


def test_same_input_gives_the_same_bytes_run_after_run() -> None:
    raw = np.random.default_rng(8).normal(size=300_000)
    runs = {fed(raw, batch=333).to_bytes() for _ in range(3)}
    assert len(runs) == 1
    numeric = set()
    for _ in range(3):
        s = NumericSketch()
        for start in range(0, raw.size, 1_000):
            s.update_batch(raw[start : start + 1_000])
        numeric.add(s.to_bytes())
    assert len(numeric) == 1  # datasketches' KLL compacted at random: different bytes


# -- the previous format (datasketches KLL) still loads --------------------------------------
# The files were written by the previous code (NumericSketch / Profile format 1) from the data
# rebuilt below: Profile with 30,000 rows of income ~ lognormal(10, 1), age ~ integers(18, 90),
# score ~ uniform, latency ~ gamma(2, 5); a NumericSketch of 100,000 normal values; and one of
# 1 .. 100 (exact).


def _legacy_data() -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(2026)
    n = 30_000
    columns = {"income": rng.lognormal(10, 1, n), "age": rng.integers(18, 90, n).astype(float)}
    columns["score"], columns["latency"] = rng.random(n), rng.gamma(2.0, 5.0, n)
    return columns, rng.normal(size=100_000)


def _within_old_error(s: NumericSketch, raw: np.ndarray) -> None:
    x = np.sort(raw.astype(np.float32))
    eps = s.rank_error
    assert eps == pytest.approx(0.0133, abs=1e-4)  # the KLL's 99% single-query error, carried
    q = s.quantiles(RANKS[1:-1]).astype(np.float32)
    assert np.all(np.searchsorted(x, q, "left") / x.size <= RANKS[1:-1] + eps)
    assert np.all(np.searchsorted(x, q, "right") / x.size >= RANKS[1:-1] - eps)


def test_a_numeric_sketch_of_the_previous_format_loads_within_its_old_error() -> None:
    _, normal = _legacy_data()
    old = (DATA / "legacy_numeric_v1.bin").read_bytes()
    assert old[4] == 1
    s = NumericSketch.from_bytes(old)
    assert (s.count, s.min, s.max) == (normal.size, normal.min(), normal.max())
    assert s.mean == pytest.approx(normal.mean(), rel=1e-9)
    _within_old_error(s, normal)
    again = NumericSketch.from_bytes(s.to_bytes())  # written in the new format
    assert s.to_bytes()[4] == 2 and again.to_bytes() == s.to_bytes()
    assert again.rank_error == s.rank_error
    exact = NumericSketch.from_bytes((DATA / "legacy_numeric_exact_v1.bin").read_bytes())
    assert exact.rank_error == 0.0 and exact.quantile_sketch.is_exact
    assert exact.quantiles([0.0, 0.25, 0.5, 1.0]).tolist() == [1.0, 25.0, 50.0, 100.0]


def test_a_profile_of_the_previous_format_loads_within_its_old_error() -> None:
    columns, _ = _legacy_data()
    p = Profile.from_bytes((DATA / "legacy_profile_v1.bin").read_bytes())
    assert p.n_events == 30_000
    sketches = {
        "income": p.feature("income"),
        "age": p.feature("age"),
        "score": p.prediction_score,
        "latency": p.latency_ms,
    }
    for name, s in sketches.items():
        assert isinstance(s, NumericSketch), name
        assert s.count == 30_000 and s.max == columns[name].max(), name
        _within_old_error(s, columns[name])
    merged = Profile.from_bytes(p.to_bytes()).merge(p)  # converted state merges and rewrites
    assert merged.n_events == 60_000 and merged.to_bytes()[4] == 2


class _SortsEveryLevel(QuantileSketch):
    """The settle as it was: every level above 0 sorted again after every compaction."""

    __slots__ = ()

    def _settle(
        self,
        levels: list[np.ndarray],
        *,
        sorted_above: bool = False,
        in_order: list[bool] | None = None,
    ) -> None:
        super()._settle(levels, sorted_above=False)


def test_settling_sorts_only_the_levels_that_received_items() -> None:
    # The sketch's own levels above 0 are sorted after every settle, so only those that
    # received items are sorted again: the bytes are those of sorting every level each time.
    rng = np.random.default_rng(19)
    fast, reference = QuantileSketch(k=16), _SortsEveryLevel(k=16)
    for step in range(400):
        size = int(rng.integers(1, 3_000)) if step % 7 else 20_000
        batch = rng.normal(step % 5, 1.0, size)
        fast.update_batch(batch)
        reference.update_batch(batch)
        assert fast.to_bytes() == reference.to_bytes()
    # reading the bytes back checks that every level is sorted
    assert fast.copy().to_bytes() == fast.to_bytes()
    other = QuantileSketch(k=16)
    other.update_batch(rng.normal(0.0, 1.0, 50_000))
    assert fast.merge(other).to_bytes() == reference.merge(other).to_bytes()


class _MergesAsBefore(QuantileSketch):
    """The merge and the reading as they were: every level pair concatenated and sorted
    again, every level read and checked apart."""

    __slots__ = ()

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        depth = max(len(self._levels), len(other._levels)) + 1  # noqa: SLF001
        empty = [np.empty(0, dtype=np.float32)] * depth
        mine = [self._buf[: self._fill], *self._levels, *empty][:depth]
        theirs = [other._buf[: other._fill], *other._levels, *empty][:depth]  # noqa: SLF001
        done = _pad(self._done, depth), _pad(other._done, depth)  # noqa: SLF001
        self._done = [a + b for a, b in zip(*done, strict=True)]
        self._count += other._count  # noqa: SLF001
        self._up += other._up  # noqa: SLF001
        self._down += other._down  # noqa: SLF001
        self._lo, self._hi = min(self._lo, other._lo), max(self._hi, other._hi)  # noqa: SLF001
        self._view = None
        self._settle([np.concatenate(pair) for pair in zip(mine, theirs, strict=True)])
        return self

    @classmethod
    def read_from(cls, r: Reader, k: int) -> QuantileSketch:
        out = cls(k)
        out._count = r.uvarint()
        if not out._count:
            return out
        out._lo, out._hi, out._up, out._down = r.f64(), r.f64(), r.uvarint(), r.uvarint()
        depth = r.uvarint()
        if not 1 <= depth <= 64:
            raise FormatError(f"QuantileSketch: {depth} levels")
        done, levels = [], []
        for _ in range(depth):
            done.append(r.uvarint())
            blob = r.blob()
            if len(blob) % 4:
                raise FormatError("QuantileSketch: a level is not whole float32 items")
            levels.append(np.frombuffer(blob, dtype="<f4").astype(np.float32))
        weight = sum(level.size << h for h, level in enumerate(levels))
        if (
            weight != out._count
            or any(level.size >= out._cap for level in levels)
            or not all(np.all(level[:-1] <= level[1:]) for level in levels)
            or not (math.isfinite(out._lo) and math.isfinite(out._hi) and out._lo <= out._hi)
            or not all(
                out._lo <= level[0] and level[-1] <= out._hi for level in levels if level.size
            )
            or max(out._up, out._down) > out._count
        ):
            raise FormatError("QuantileSketch: inconsistent levels, weights or extremes")
        out._set_level0(levels[0])
        out._levels, out._done = levels[1:], done
        return out


_sizes = st.lists(st.integers(0, 5_000), min_size=2, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sizes, st.sampled_from([8, 16, 50]), st.integers(0, 2**32 - 1))
def test_merges_are_byte_identical_to_concatenating_every_level(
    sizes: list[int], k: int, seed: int
) -> None:
    """A level empty on one side is taken as it is instead of concatenated and sorted again:
    the same bytes, for chains of merges of sketches of every depth (some empty)."""
    rng = np.random.default_rng(seed)
    parts = [rng.normal(float(i), 1.0, n) for i, n in enumerate(sizes)]
    fast, before = QuantileSketch(k), _MergesAsBefore(k)
    for part in parts:
        other = fed(part, k, batch=max(1, len(part) // 3))
        fast.merge(other)
        before.merge(other)
        assert fast.to_bytes() == before.to_bytes()
        fresh = fed(part, k).copy()
        assert fresh.merge(fast).to_bytes() == fed(part, k).copy().merge(before).to_bytes()


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4_000), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255))))
def test_reading_accepts_and_refuses_what_the_level_by_level_reading_did(
    n: int, edits: list[tuple[int, int]]
) -> None:
    raw = bytearray(fed(np.random.default_rng(n).normal(size=n), k=8).to_bytes())
    for at, value in edits:  # corrupt some bytes: sizes, counts, items (NaN, order, extremes)
        raw[at % len(raw)] = value
    data = bytes(raw)
    try:
        expected: bytes | None = _MergesAsBefore.from_bytes(data).to_bytes()
    except FormatError:
        expected = None
    try:
        got: bytes | None = QuantileSketch.from_bytes(data).to_bytes()
    except FormatError:
        got = None
    assert got == expected
