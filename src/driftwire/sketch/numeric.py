"""Mergeable sketches of one column: numeric (moments and KLL) and categorical (counts and HLL).

Both share the verb set of datasketches-python: ``update_batch``, ``merge`` (in place, returns
``self``), ``to_bytes`` / ``from_bytes`` and read-only queries. Parameters travel with the bytes;
merging or reading state made with other parameters raises :class:`FormatError`.

:class:`NumericSketch` (per numeric feature, prediction score and latency)
    ``count`` of finite values, ``missing`` (NaN), ``non_finite`` (±inf, kept out of everything
    else), mean and variance by the exact parallel merge of ``(n, mean, M2)`` (Chan et al.),
    ``min``, ``max`` in float64, and a KLL quantile sketch (``datasketches.kll_floats_sketch``).
    Mean and variance overflow to inf for magnitudes beyond about 1e154.
    Error of one rank or quantile query at 99% confidence: ``get_normalized_rank_error(k,
    False)`` = 1.33% at the default k=200 (1.65% for a whole CDF, ``(k, True)``). The KLL sketch
    holds float32 values (relative rounding <= 6e-8, magnitudes beyond 3.4e38 clipped): half
    the size of doubles for an error far below the rank error. Serialized size at k=200:
    14 bytes empty, 0.5 KB for 100 values, 1.4 KB for 1e3, 2.3 KB for 1e4, 2.4 KB for 1e5,
    2.6 KB for 1e6 (it grows with log n). ``quantiles`` and ``cdf`` use inclusive ranks (the
    fraction of values <= x); datasketches' own methods default to exclusive ranks.

:class:`CategoricalSketch` (per categorical feature and prediction label; in
:mod:`driftwire.sketch.categorical`, re-exported here)
    Exact counts while at most ``cap`` (256) distinct categories, then a Misra–Gries summary
    whose counts are lower bounds within ``count / (cap + 1)``; missing values; the distinct
    count, exact and then HLL (2.3% relative error at one standard deviation).

>>> s = NumericSketch()
>>> s.update_batch(np.array([1.0, 2.0, 3.0, np.nan, np.inf]))
>>> (s.count, s.missing, s.non_finite, s.mean, s.max)
(3, 1, 1, 2.0, 3.0)
>>> NumericSketch.from_bytes(s.to_bytes()).quantiles([0.5]).tolist()
[2.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from datasketches import kll_floats_sketch

from driftwire._codec import (
    Reader,
    Writer,
    check_int,
    deserialize_sketch,
    non_negative,
    seal,
    unseal,
)
from driftwire.errors import FormatError
from driftwire.sketch.categorical import DEFAULT_CAP, DEFAULT_LG_K, CategoricalSketch

__all__ = [
    "DEFAULT_CAP",
    "DEFAULT_K",
    "DEFAULT_LG_K",
    "CategoricalSketch",
    "NumericSketch",
    "SketchParams",
    "update_numeric_groups",
    "update_numeric_matrix",
]

DEFAULT_K = 200

_F32_MAX = float(np.finfo(np.float32).max)
_NUMERIC_MAGIC = b"DWNS"
_FORMAT = 1
_ZERO = np.zeros(1, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class SketchParams:
    """The parameters that make sketch state compatible: KLL ``k``, category ``cap``, HLL ``lg_k``.

    >>> SketchParams().rank_error
    0.013294757464848584
    """

    k: int = DEFAULT_K
    cap: int = DEFAULT_CAP
    lg_k: int = DEFAULT_LG_K

    def __post_init__(self) -> None:
        check_int("k", self.k, 8, 65_535)
        check_int("cap", self.cap, 1, 1 << 20)
        check_int("lg_k", self.lg_k, 4, 21)

    @property
    def rank_error(self) -> float:
        """Normalized rank error of one KLL query at 99% confidence."""
        return float(kll_floats_sketch.get_normalized_rank_error(self.k, False))

    @property
    def cdf_error(self) -> float:
        """Normalized rank error of a whole KLL CDF/PMF at 99% confidence."""
        return float(kll_floats_sketch.get_normalized_rank_error(self.k, True))


# -- numeric ---------------------------------------------------------------------------------


class NumericSketch:
    """Count, missing, non-finite, mergeable moments, min, max and a KLL quantile sketch.

    >>> rng = np.random.default_rng(7)
    >>> a, b = NumericSketch(), NumericSketch()
    >>> a.update_batch(rng.normal(10.0, 2.0, 5_000))
    >>> b.update_batch(rng.normal(10.0, 2.0, 5_000))
    >>> merged = a.merge(b)
    >>> merged.count, round(merged.mean, 1), round(merged.std, 1)
    (10000, 10.0, 2.0)
    >>> round(merged.rank_error, 4)      # bound of merged.cdf / merged.quantiles at 99%
    0.0133

    Below ``k`` values the KLL sketch is exact:

    >>> small = NumericSketch()
    >>> small.update_batch(np.arange(1.0, 101.0))
    >>> small.quantiles([0.0, 0.5, 1.0]).tolist(), small.cdf([25.0]).tolist()
    ([1.0, 50.0, 100.0], [0.25])
    """

    __slots__ = ("_count", "_kll", "_m2", "_max", "_mean", "_min", "_missing", "_non_finite")

    def __init__(self, k: int = DEFAULT_K) -> None:
        check_int("k", k, 8, 65_535)
        self._kll = kll_floats_sketch(k)
        self._count = 0
        self._missing = 0
        self._non_finite = 0
        self._mean = 0.0
        self._m2 = 0.0
        self._min = math.inf
        self._max = -math.inf

    # -- updates --------------------------------------------------------------------------

    def update(self, value: float) -> None:
        """Add one value (NaN is missing)."""
        self.update_batch(np.array([value], dtype=np.float64))

    def update_batch(self, values: np.ndarray) -> None:
        """Add a 1-D float64 array: NaN counts as missing, ±inf as non-finite."""
        update_numeric_groups((self,), _check_numeric_batch(values), _ZERO)

    def add_missing(self, n: int) -> None:
        """Count ``n`` missing values that were never materialized as NaN."""
        self._missing += non_negative(n)

    def add_non_finite(self, missing: int, non_finite: int) -> None:
        """Count ``missing`` (NaN) and ``non_finite`` (±inf) values folded elsewhere.

        For :func:`update_numeric_matrix`, which counts them itself; no checks on this path.
        """
        self._missing += missing
        self._non_finite += non_finite

    def add_group(
        self, n: int, mean: float, m2: float, lo: float, hi: float, values_f32: np.ndarray
    ) -> None:
        """Fold ``n`` > 0 finite values given by their moments and their float32 values.

        For :func:`update_numeric_matrix`, which reduces many groups at once; ``values_f32``
        go into the quantile sketch, where NaN entries are skipped. No checks on this path.
        """
        self._absorb(n, mean, m2, lo, hi)
        self._kll.update(values_f32)

    def _absorb(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        """Fold the moments of ``n`` > 0 finite values (symmetric, hence commutative)."""
        na = self._count
        if na == 0:
            self._count, self._mean, self._m2, self._min, self._max = n, mean, m2, lo, hi
            return
        total = na + n
        delta = mean - self._mean
        self._mean = (na * self._mean + n * mean) / total
        self._m2 = self._m2 + m2 + delta * delta * (na * n / total)
        self._count = total
        self._min = min(self._min, lo)
        self._max = max(self._max, hi)

    def merge(self, other: NumericSketch) -> NumericSketch:
        """Add ``other`` into this sketch and return ``self``."""
        if not isinstance(other, NumericSketch):
            raise TypeError(f"can only merge a NumericSketch, got {type(other).__name__}")
        if other.k != self.k:
            raise FormatError(f"cannot merge NumericSketch with k={other.k} into k={self.k}")
        self._missing += other._missing
        self._non_finite += other._non_finite
        if other._count:
            self._absorb(other._count, other._mean, other._m2, other._min, other._max)
            self._kll.merge(other._kll)
        return self

    def copy(self) -> NumericSketch:
        out: NumericSketch = NumericSketch.__new__(NumericSketch)
        out._kll = kll_floats_sketch.deserialize(self._kll.serialize())
        out._count, out._missing, out._non_finite = self._count, self._missing, self._non_finite
        out._mean, out._m2, out._min, out._max = self._mean, self._m2, self._min, self._max
        return out

    # -- queries --------------------------------------------------------------------------

    @property
    def k(self) -> int:
        return int(self._kll.k)

    @property
    def rank_error(self) -> float:
        """Normalized rank error of one quantile or rank query at 99% confidence."""
        return float(kll_floats_sketch.get_normalized_rank_error(self.k, False))

    @property
    def kll(self) -> kll_floats_sketch:
        """The underlying ``kll_floats_sketch`` (read it; updating it breaks the sketch)."""
        return self._kll

    @property
    def count(self) -> int:
        """Finite values seen."""
        return self._count

    @property
    def missing(self) -> int:
        return self._missing

    @property
    def non_finite(self) -> int:
        return self._non_finite

    @property
    def total(self) -> int:
        """Every value seen: ``count + missing + non_finite``."""
        return self._count + self._missing + self._non_finite

    @property
    def mean(self) -> float:
        return self._mean if self._count else math.nan

    @property
    def variance(self) -> float:
        """Population variance (``ddof=0``, as ``numpy.var``); NaN when empty."""
        return self._m2 / self._count if self._count else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.variance) if self._count else math.nan

    @property
    def min(self) -> float:
        return self._min if self._count else math.nan

    @property
    def max(self) -> float:
        return self._max if self._count else math.nan

    def quantiles(self, ranks: Iterable[float] | np.ndarray) -> np.ndarray:
        """Values at normalized ``ranks`` in [0, 1] (inclusive ranks); NaN when empty."""
        r = np.asarray(ranks, dtype=np.float64)
        if r.ndim != 1 or not np.all((r >= 0.0) & (r <= 1.0)):
            raise ValueError(f"ranks must be a 1-D sequence in [0, 1], got {r!r}")
        if self._count == 0 or r.size == 0:
            return np.full(r.shape, np.nan)
        return np.asarray(self._kll.get_quantiles(r, inclusive=True), dtype=np.float64)

    def cdf(self, points: Iterable[float] | np.ndarray) -> np.ndarray:
        """Fraction of values <= each point (compared in float32, as stored); NaN when empty."""
        p = np.asarray(points, dtype=np.float64)
        if p.ndim != 1 or np.isnan(p).any():
            raise ValueError(f"points must be a 1-D sequence of numbers, got {p!r}")
        if self._count == 0 or p.size == 0:
            return np.full(p.shape, np.nan)
        unique, inverse = np.unique(_to_f32(p), return_inverse=True)
        ranks = np.asarray(self._kll.get_cdf(unique, inclusive=True), dtype=np.float64)[:-1]
        return ranks[inverse]

    def __repr__(self) -> str:
        return (
            f"NumericSketch(k={self.k}, count={self._count}, missing={self._missing}, "
            f"non_finite={self._non_finite}, mean={self.mean:.6g}, std={self.std:.6g})"
        )

    # -- bytes ----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        w = Writer()
        w.uvarint(self.k)
        self.write_into(w)
        return seal(_NUMERIC_MAGIC, _FORMAT, w.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes) -> NumericSketch:
        r = Reader(unseal(data, _NUMERIC_MAGIC, _FORMAT, "NumericSketch"), "NumericSketch")
        k = r.uvarint()
        if not 8 <= k <= 65_535:
            raise FormatError(f"NumericSketch: k={k} out of range")
        out = cls.read_from(r, k)
        r.done()
        return out

    def write_into(self, w: Writer) -> None:
        """The body of :meth:`to_bytes` (without ``k``), for a container that embeds it."""
        w.uvarint(self._count)
        w.uvarint(self._missing)
        w.uvarint(self._non_finite)
        if self._count:
            for x in (self._mean, self._m2, self._min, self._max):
                w.f64(x)
            w.blob(self._kll.serialize())

    @classmethod
    def read_from(cls, r: Reader, k: int) -> NumericSketch:
        """The sketch :meth:`write_into` wrote, made with ``k`` (stored by the container)."""
        out = cls(k)
        out._count, out._missing, out._non_finite = r.uvarint(), r.uvarint(), r.uvarint()
        if out._count:
            out._mean, out._m2, out._min, out._max = r.f64(), r.f64(), r.f64(), r.f64()
            # mean and M2 may overflow to inf for magnitudes beyond 1e154; never below 0
            if not (
                math.isfinite(out._min)
                and math.isfinite(out._max)
                and out._min <= out._max
                and not out._m2 < 0.0
            ):
                raise FormatError("NumericSketch: inconsistent moments")
            kll = deserialize_sketch(kll_floats_sketch, r.blob(), "KLL sketch")
            if kll.k != k or kll.n != out._count:
                raise FormatError(
                    f"NumericSketch: KLL sketch has k={kll.k}, n={kll.n}; "
                    f"expected k={k}, n={out._count}"
                )
            out._kll = kll
        return out


def _check_numeric_batch(values: object) -> np.ndarray:
    if not isinstance(values, np.ndarray):
        raise TypeError(f"expected a numpy float64 array, got {type(values).__name__}")
    if values.ndim != 1 or values.dtype != np.float64:
        raise TypeError(
            f"expected a 1-D float64 array, got {values.ndim}-D array of {values.dtype}"
        )
    return values


def _to_f32(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """float64 → float32 for the KLL sketch, clipping magnitudes float32 cannot hold.

    ``lo`` and ``hi``, when known, are the finite minimum and maximum of ``values``.
    """
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)
    if lo is not None and hi is not None and lo >= -_F32_MAX and hi <= _F32_MAX:
        return out
    if np.isinf(out).any():
        out = np.clip(values, -_F32_MAX, _F32_MAX).astype(np.float32)
        out[np.isinf(values)] = values[np.isinf(values)]
    return out


def update_numeric_groups(
    sketches: Sequence[NumericSketch], values: np.ndarray, starts: np.ndarray
) -> None:
    """Fold ``values`` (float64, rows sorted by group) into one sketch per group.

    Group ``i`` is ``values[starts[i]:starts[i + 1]]`` (the last one runs to the end; empty
    groups are fine). NaN is missing and ±inf non-finite. One pass of numpy reductions
    serves all groups, so each group costs a few scalar operations and one KLL update.

    >>> a, b = NumericSketch(), NumericSketch()
    >>> update_numeric_groups([a, b], np.array([1.0, 3.0, 10.0, np.nan]), np.array([0, 2]))
    >>> (a.mean, b.mean, b.missing)
    (2.0, 10.0, 1)
    """
    update_numeric_matrix((sketches,), values.reshape(1, -1), starts)


def update_numeric_matrix(
    sketches: Sequence[Sequence[NumericSketch | None]], values: np.ndarray, starts: np.ndarray
) -> None:
    """:func:`update_numeric_groups` for several columns grouped alike, in one pass.

    Row ``r`` of ``values`` (a 2-D float64 array, columns sorted by group) goes into
    ``sketches[r]``, one sketch per group; a ``None`` sketch discards its group's values. The
    reductions run once over the whole matrix (non-finite entries masked, not removed), and
    the KLL sketches receive the float32 rows with non-finite entries as NaN, which they skip.

    >>> a, b, c = NumericSketch(), NumericSketch(), NumericSketch()
    >>> update_numeric_matrix([[a, b], [c, None]], np.array([[1.0, 3.0, 10.0], [np.inf, 2.0, 5.0]]),
    ...                       np.array([0, 2]))
    >>> (a.mean, b.mean, c.mean, c.non_finite)
    (2.0, 10.0, 2.0, 1)
    """
    rows, n = values.shape
    bounds = np.empty(len(starts) + 1, dtype=np.int64)
    bounds[:-1] = starts
    bounds[-1] = n
    sizes = np.diff(bounds)
    if (
        len(sketches) != rows
        or any(len(row) != len(sizes) for row in sketches)
        or (sizes < 0).any()
        or (len(starts) and starts[0] != 0)
    ):
        raise ValueError("starts must begin at 0, not decrease, and give one group per sketch")
    if n == 0:
        return
    nonempty = np.flatnonzero(sizes)
    idx, size = bounds[nonempty], sizes[nonempty]
    with np.errstate(over="ignore", invalid="ignore"):
        all_finite = math.isfinite(np.add.reduce(values, axis=None))
    if all_finite:
        cnt = np.broadcast_to(size, (rows, len(idx)))
        finite_values = lows = highs = kll_values = values
    else:  # NaN or ±inf somewhere (or a sum beyond float64)
        finite = np.isfinite(values)
        nan = np.isnan(values)
        cnt = np.add.reduceat(finite, idx, axis=1, dtype=np.int64)
        missing = np.add.reduceat(nan, idx, axis=1, dtype=np.int64)
        non_finite = size - cnt - missing
        for r, g in zip(*np.nonzero(missing | non_finite), strict=True):
            sketch = sketches[r][int(nonempty[g])]
            if sketch is not None:
                sketch.add_non_finite(int(missing[r, g]), int(non_finite[r, g]))
        finite_values = np.where(finite, values, 0.0)
        lows = np.where(finite, values, math.inf)
        highs = np.where(finite, values, -math.inf)
        kll_values = np.where(finite, values, math.nan)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # |x| > 1e154: variance becomes inf; a group without finite values: skipped below
        means = np.add.reduceat(finite_values, idx, axis=1) / cnt
        dev = finite_values - np.repeat(means, size, axis=1)
        if not all_finite:
            dev[~finite] = 0.0
        m2s = np.add.reduceat(dev * dev, idx, axis=1)
    mins = np.minimum.reduceat(lows, idx, axis=1)
    maxs = np.maximum.reduceat(highs, idx, axis=1)
    f32 = _to_f32(kll_values, float(mins.min()), float(maxs.max()))
    rr, gg = np.nonzero(cnt)
    for r, g, count, mean, m2, lo, hi, a, b in zip(
        rr.tolist(),
        nonempty[gg].tolist(),
        cnt[rr, gg].tolist(),
        means[rr, gg].tolist(),
        m2s[rr, gg].tolist(),
        mins[rr, gg].tolist(),
        maxs[rr, gg].tolist(),
        idx[gg].tolist(),
        (idx + size)[gg].tolist(),
        strict=True,
    ):
        sketch = sketches[r][g]
        if sketch is not None:
            sketch.add_group(count, mean, m2, lo, hi, f32[r, a:b])
