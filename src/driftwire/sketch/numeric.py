"""Mergeable sketches of one column: numeric (moments and KLL) and categorical (counts and HLL).

Both share the verb set of datasketches-python: ``update_batch``, ``merge`` (in place, returns
``self``), ``to_bytes`` / ``from_bytes`` and read-only queries. Parameters travel with the bytes;
merging or reading state made with other parameters raises :class:`FormatError`.

:class:`NumericSketch` (per numeric feature, prediction score and latency)
    ``count`` of finite values, ``missing`` (NaN), ``non_finite`` (±inf, kept out of everything
    else), mean and variance by the exact parallel merge of ``(n, mean, M2)`` (Chan et al.),
    ``min``, ``max`` in float64, and a deterministic quantile sketch
    (:class:`~driftwire.sketch.quantiles.QuantileSketch`: the same input gives the same bytes).
    Mean and variance overflow to inf for magnitudes beyond about 1e154. ``rank_error`` is the
    sketch's worst-case bound on every rank, CDF and quantile query, tracked as it compacts:
    0 while exact (below ``2 k`` values), 0.0056 at 1e4 values, 0.011 at 1e6 for k=200. It
    holds float32 values (relative rounding <= 6e-8, magnitudes beyond 3.4e38 clipped): half
    the size of doubles for an error far below the rank error. Serialized size at k=200:
    1.0 KB at 1e3 values, 2.0 KB at 1e4, 3.1 KB at 1e5, 6.1 KB at 1e6 (it grows with log n;
    see :mod:`driftwire.sketch.quantiles`).
    ``quantiles`` and ``cdf`` use inclusive ranks (the fraction of values <= x). Format 1
    (datasketches' randomized KLL) still loads: its items and weights become the new sketch,
    which carries the KLL's 99% single-query error (1.33% at k=200) as its bound.

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
from typing import Any

import numpy as np
from datasketches import kll_floats_sketch

from driftwire._codec import (
    Reader,
    Writer,
    check_int,
    deserialize_sketch,
    non_negative,
    seal,
    unseal_any,
)
from driftwire.errors import FormatError
from driftwire.sketch.categorical import DEFAULT_CAP, DEFAULT_LG_K, CategoricalSketch
from driftwire.sketch.quantiles import QuantileSketch, to_float32

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

_NUMERIC_MAGIC = b"DWNS"
_FORMAT = 2
#: Format 1 held a datasketches ``kll_floats_sketch``; it still loads (see :meth:`read_from`).
LEGACY_KLL_FORMAT = 1
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
        """Normalized rank error of one query of the legacy KLL sketch at 99% confidence."""
        return float(kll_floats_sketch.get_normalized_rank_error(self.k, False))

    @property
    def cdf_error(self) -> float:
        """Normalized rank error of a whole legacy KLL CDF/PMF at 99% confidence."""
        return float(kll_floats_sketch.get_normalized_rank_error(self.k, True))


# -- numeric ---------------------------------------------------------------------------------


class NumericSketch:
    """Count, missing, non-finite, mergeable moments, min, max and a quantile sketch.

    >>> rng = np.random.default_rng(7)
    >>> a, b = NumericSketch(), NumericSketch()
    >>> a.update_batch(rng.normal(10.0, 2.0, 5_000))
    >>> b.update_batch(rng.normal(10.0, 2.0, 5_000))
    >>> merged = a.merge(b)
    >>> merged.count, round(merged.mean, 1), round(merged.std, 1)
    (10000, 10.0, 2.0)
    >>> round(merged.rank_error, 4)      # worst-case bound of merged.cdf / merged.quantiles
    0.0046

    Below ``2 k`` values the quantile sketch is exact:

    >>> small = NumericSketch()
    >>> small.update_batch(np.arange(1.0, 101.0))
    >>> small.quantiles([0.0, 0.5, 1.0]).tolist(), small.cdf([25.0]).tolist()
    ([1.0, 50.0, 100.0], [0.25])
    """

    __slots__ = ("_count", "_m2", "_max", "_mean", "_min", "_missing", "_non_finite", "_q")

    def __init__(self, k: int = DEFAULT_K) -> None:
        check_int("k", k, 8, 65_535)
        self._q = QuantileSketch(k)
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
        self,
        n: int,
        mean: float,
        m2: float,
        lo: float,
        hi: float,
        values_f32: np.ndarray,
        lo_f32: float,
        hi_f32: float,
    ) -> None:
        """Fold ``n`` > 0 finite values given by their moments and their float32 values.

        For :func:`update_numeric_matrix`, which reduces many groups at once: ``values_f32``
        are the finite values as stored, ``lo_f32`` / ``hi_f32`` their extremes. No checks.
        """
        self._absorb(n, mean, m2, lo, hi)
        self._q.extend_finite(values_f32, lo_f32, hi_f32)

    @staticmethod
    def add_groups(
        sketches: Sequence[NumericSketch | None],
        counts: np.ndarray,
        means: np.ndarray,
        m2s: np.ndarray,
        lows: np.ndarray,
        highs: np.ndarray,
        values_f32: np.ndarray,
    ) -> None:
        """:meth:`add_group` for many (sketch, group) pairs: pair ``i`` has ``counts[i]`` > 0
        finite values, the next ones of ``values_f32`` (its own values in float32, pair after
        pair), their moments ``means[i]``, ``m2s[i]`` and extremes ``lows[i]``, ``highs[i]``;
        a ``None`` sketch skips its pair. For :func:`update_numeric_matrix`. No checks.
        """
        ends = np.cumsum(counts)
        for sketch, count, mean, m2, lo, hi, end, lo_f, hi_f in zip(
            sketches,
            counts.tolist(),
            means.tolist(),
            m2s.tolist(),
            lows.tolist(),
            highs.tolist(),
            ends.tolist(),
            to_float32(lows).tolist(),  # the extremes as stored: float32, clipped
            to_float32(highs).tolist(),
            strict=True,
        ):
            if sketch is not None:
                sketch.add_group(count, mean, m2, lo, hi, values_f32[end - count : end], lo_f, hi_f)

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
            self._q.merge(other._q)
        return self

    def copy(self) -> NumericSketch:
        out: NumericSketch = NumericSketch.__new__(NumericSketch)
        out._q = self._q.copy()
        out._count, out._missing, out._non_finite = self._count, self._missing, self._non_finite
        out._mean, out._m2, out._min, out._max = self._mean, self._m2, self._min, self._max
        return out

    # -- queries --------------------------------------------------------------------------

    @property
    def k(self) -> int:
        return self._q.k

    @property
    def rank_error(self) -> float:
        """Worst-case normalized error of any quantile, rank or CDF query (0 when exact)."""
        return self._q.rank_error_bound()

    @property
    def quantile_sketch(self) -> QuantileSketch:
        """The underlying :class:`QuantileSketch` (read it; updating it breaks the sketch)."""
        return self._q

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
        return self._q.quantiles(r)

    def cdf(self, points: Iterable[float] | np.ndarray) -> np.ndarray:
        """Fraction of values <= each point (compared in float32, as stored); NaN when empty."""
        p = np.asarray(points, dtype=np.float64)
        if p.ndim != 1 or np.isnan(p).any():
            raise ValueError(f"points must be a 1-D sequence of numbers, got {p!r}")
        if self._count == 0 or p.size == 0:
            return np.full(p.shape, np.nan)
        return self._q.cdf(p)

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
        versions = (LEGACY_KLL_FORMAT, _FORMAT)
        version, payload = unseal_any(data, _NUMERIC_MAGIC, versions, "NumericSketch")
        r = Reader(payload, "NumericSketch")
        k = r.uvarint()
        if not 8 <= k <= 65_535:
            raise FormatError(f"NumericSketch: k={k} out of range")
        out = cls.read_from(r, k, legacy_kll=version == LEGACY_KLL_FORMAT)
        r.done()
        return out

    def write_into(self, w: Writer) -> None:
        """The body of :meth:`to_bytes` (without ``k``), for a container that embeds it."""
        w.uvarint(self._count)
        w.uvarint(self._missing)
        w.uvarint(self._non_finite)
        if self._count:
            w.f64s(self._mean, self._m2, self._min, self._max)
            self._q.write_into(w)

    @classmethod
    def read_from(cls, r: Reader, k: int, *, legacy_kll: bool = False) -> NumericSketch:
        """Read what :meth:`write_into` wrote, or format 1's KLL bytes (converted)."""
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
            if legacy_kll:
                out._q = _from_kll(deserialize_sketch(kll_floats_sketch, r.blob(), "KLL sketch"))
            else:
                out._q = QuantileSketch.read_from(r, k)
            if out._q.k != k or out._q.n != out._count:
                raise FormatError(
                    f"NumericSketch: quantile sketch has k={out._q.k}, n={out._q.n}; "
                    f"expected k={k}, n={out._count}"
                )
        return out


def _from_kll(kll: Any) -> QuantileSketch:
    """A legacy ``kll_floats_sketch`` as a :class:`QuantileSketch` of the same items and weights,
    whose bound is the KLL's 99% single-query error (0 if it was exact)."""
    if kll.is_empty():
        return QuantileSketch(kll.k)
    items, weights = zip(*kll, strict=True)
    eps = kll.normalized_rank_error(False) if kll.is_estimation_mode() else 0.0
    return QuantileSketch.from_weighted(
        np.array(items, dtype=np.float64),
        np.array(weights, dtype=np.int64),
        kll.k,
        extremes=(kll.get_min_value(), kll.get_max_value()),
        error_weight=math.ceil(eps * kll.n),
    )


def _check_numeric_batch(values: object) -> np.ndarray:
    if not isinstance(values, np.ndarray):
        raise TypeError(f"expected a numpy float64 array, got {type(values).__name__}")
    if values.ndim != 1 or values.dtype != np.float64:
        raise TypeError(
            f"expected a 1-D float64 array, got {values.ndim}-D array of {values.dtype}"
        )
    return values


def update_numeric_groups(
    sketches: Sequence[NumericSketch], values: np.ndarray, starts: np.ndarray
) -> None:
    """Fold ``values`` (float64, rows sorted by group) into one sketch per group.

    Group ``i`` is ``values[starts[i]:starts[i + 1]]`` (the last one runs to the end; empty
    groups are fine). NaN is missing and ±inf non-finite. One pass of numpy reductions
    serves all groups, so each group costs a few scalar operations and one quantile-sketch update.

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
    the quantile sketches receive the float32 slices of their groups' finite values.

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
    finite: np.ndarray | None = None  # where values are finite, unless all are
    if all_finite:
        cnt = np.broadcast_to(size, (rows, len(idx)))
        finite_values = lows = highs = values
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
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # |x| > 1e154: variance becomes inf; a group without finite values: skipped below
        means = np.add.reduceat(finite_values, idx, axis=1) / cnt
        dev = finite_values - np.repeat(means, size, axis=1)
        if finite is not None:
            dev[~finite] = 0.0
        m2s = np.add.reduceat(dev * dev, idx, axis=1)
    mins = np.minimum.reduceat(lows, idx, axis=1)
    maxs = np.maximum.reduceat(highs, idx, axis=1)
    # the finite values as stored (float32), row after row: each (column, group)'s are one
    # slice of it, at the running total of the counts before it
    f32 = to_float32(values.reshape(-1) if finite is None else values[finite])
    rr, gg = np.nonzero(cnt)
    counts = cnt[rr, gg]
    lows, highs = mins[rr, gg], maxs[rr, gg]
    NumericSketch.add_groups(
        [sketches[r][g] for r, g in zip(rr.tolist(), nonempty[gg].tolist(), strict=True)],
        counts,
        means[rr, gg],
        m2s[rr, gg],
        lows,
        highs,
        f32,
    )
