"""A deterministic, mergeable quantile sketch with an exact worst-case rank-error bound.

:class:`QuantileSketch` is a hierarchy of compactors (the Manku-Rajagopalan-Lindsay scheme that
KLL refines). Level ``h`` holds float32 items of weight ``2**h``. When a level holds at least
``capacity`` items (``2 * k``), it is sorted and halved: every other item moves one level up
with twice the weight, starting at the first item on even compactions of that level and at the
second on odd ones (one odd item stays behind). No random bit: the same sequence of
``update_batch`` / ``merge`` calls gives the same state and the same bytes, run after run.

Error: halving a sorted level changes the weight of items ``<= x`` (or ``< x``), for any ``x``,
by at most the weight ``2**h`` of one of its items: only the pair straddling ``x`` can move,
and it moves up when the first item of each pair is kept and down when the second is. So the
sketch keeps two sums, ``up`` and ``down``, of ``2**h`` over its compactions of each kind
(merging adds them): every rank it answers is within ``[-down, +up]`` of the true rank, and
:meth:`rank_error_bound` ``= max(up, down) / n`` bounds, with certainty, the error of every
rank, CDF and quantile query as a fraction of ``n``; 0 while nothing was compacted (exact).
It grows with ``log2(n / capacity)``. At ``k = 200`` fed 250 values at a time: 0.0030 at 1e3
values, 0.0056 at 1e4, 0.0085 at 1e5, 0.0111 at 1e6 (fed one value at a time, 0.0154 at
1e6; one big batch is halved level by level and gets far less). The largest CDF errors
measured against exact ranks were 0.0030, 0.0043, 0.0040 and 0.0035. Serialized size: 1.0 KB
at 1e3 values, 2.0 KB at 1e4, 3.1 KB at 1e5, 6.1 KB at 1e6. For comparison, the randomized
KLL at k = 200 takes 1.3, 2.2, 2.4 and 2.5 KB for an error of 0.0133 at 99% confidence.

Ranks follow datasketches: an inclusive rank counts items ``<= x``, an exclusive one ``< x``.
Rank 0 answers the minimum and rank 1 the maximum, which are kept exactly.

>>> s = QuantileSketch(k=50)                      # halves a level at 100 items
>>> for chunk in np.split(np.arange(10_000.0), 100):
...     s.update_batch(chunk)
>>> s.n, s.min, s.max, s.is_exact, s.num_retained, s.error_weights
(10000, 0.0, 9999.0, False, 150, (376, 276))
>>> s.rank_error_bound()                          # max(376, 276) / 10,000
0.0376
>>> s.quantiles([0.0, 0.5, 1.0]).tolist()         # the exact median is 4999.5
[0.0, 5042.0, 9999.0]
>>> s.cdf([5000.0]).tolist()                      # the exact rank is 0.5001
[0.4992]
>>> QuantileSketch.from_bytes(s.to_bytes()).to_bytes() == s.to_bytes()
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import accumulate

import numpy as np

from driftwire._codec import Reader, Writer, check_int, seal, unseal
from driftwire.errors import FormatError

__all__ = ["CAPACITY_PER_K", "QuantileSketch", "to_float32"]

#: Items a level holds before it is halved, per unit of ``k``.
CAPACITY_PER_K = 2
_F32_MAX = float(np.finfo(np.float32).max)
#: the level 0 of a sketch without items (shared: nothing is ever written into it)
_NO_ITEMS = np.empty(0, dtype=np.float32)
_MAGIC = b"DWQS"
_FORMAT = 1


def to_float32(values: np.ndarray) -> np.ndarray:
    """float64 -> float32, magnitudes beyond float32 clipped to its largest finite value, and
    -0.0 as 0.0 (so that merge order cannot change the bytes)."""
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)
    if np.isinf(out).any():
        out = np.clip(values, -_F32_MAX, _F32_MAX).astype(np.float32)
        out[np.isinf(values)] = values[np.isinf(values)]
    out += np.float32(0.0)
    return out


class QuantileSketch:
    """Deterministic compactor hierarchy over float32 values; see the module docstring."""

    # fmt: off
    __slots__ = ("_buf", "_cap", "_count", "_done", "_down", "_fill", "_hi", "_k", "_levels",
                 "_lo", "_up", "_view")
    # fmt: on

    def __init__(self, k: int = 200) -> None:
        check_int("k", k, 8, 65_535)
        self._k = k
        self._cap = k * CAPACITY_PER_K
        self._buf = _NO_ITEMS  # level 0, unsorted; allocated at the first item, up to _cap
        self._fill = 0
        self._levels: list[np.ndarray] = []  # levels 1.. (sorted after a compaction)
        self._done: list[int] = []  # compactions per level, from level 0
        self._count = self._up = self._down = 0  # see the module docstring
        self._lo, self._hi = math.inf, -math.inf
        self._view: tuple[np.ndarray, np.ndarray] | None = None

    # -- updates --------------------------------------------------------------------------

    def update_batch(self, values: Iterable[float] | np.ndarray) -> None:
        """Add the finite values of a 1-D array (NaN and +-inf are ignored)."""
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 1:
            raise TypeError(f"expected a 1-D array of numbers, got {x.ndim}-D")
        x = to_float32(x[np.isfinite(x)])
        if x.size:
            self.extend_finite(x, float(x.min()), float(x.max()))

    def extend_finite(self, x: np.ndarray, lo: float, hi: float) -> None:
        """Add float32 finite ``x`` whose minimum and maximum are ``lo`` and ``hi``."""
        fill = self._fill  # the hot path (once per column and group of a batch): plain steps
        end = fill + x.size
        self._count += x.size
        if lo < self._lo:
            self._lo = lo
        if hi > self._hi:
            self._hi = hi
        self._view = None
        if end < self._cap:
            buf = self._buf
            if end > buf.size:  # grow fourfold: few copies for a sketch filled in small steps
                buf = np.empty(min(self._cap, max(end, 4 * buf.size, 16)), dtype=np.float32)
                buf[:fill] = self._buf[:fill]
                self._buf = buf
            buf[fill:end] = x
            self._fill = end
            return
        self._settle([np.concatenate((self._buf[:fill], x)), *self._levels], sorted_above=True)

    def _set_level0(self, items: np.ndarray, room: int = 0) -> None:
        if max(items.size, room) > self._buf.size:
            self._buf = np.empty(min(self._cap, max(items.size, room)), dtype=np.float32)
        self._fill = items.size
        self._buf[: items.size] = items

    def _settle(
        self,
        levels: list[np.ndarray],
        *,
        sorted_above: bool = False,
        in_order: list[bool] | None = None,
    ) -> None:
        """Halve, from the bottom up, every level (level 0 first) of ``capacity`` or more.

        ``sorted_above``: levels 1.. are sorted already (this sketch's own, as after every
        settle); then only those that receive items are sorted again. ``in_order``: which
        levels are sorted already, one by one (instead of ``sorted_above``).
        """
        cap, h = self._cap, 0
        self._done = _pad(self._done, len(levels))
        if in_order is None:
            in_order = [sorted_above] * len(levels)
        while h < len(levels):
            if levels[h].size >= cap:
                if h + 1 == len(levels):
                    levels.append(np.empty(0, dtype=np.float32))
                    self._done.append(0)
                    in_order.append(True)
                items = levels[h] if in_order[h] and h else np.sort(levels[h])
                even = items.size & ~1
                levels[h] = items[even:]
                in_order[h] = True
                second = self._done[h] & 1  # keep the second item of each pair: ranks go down
                levels[h + 1] = np.concatenate((levels[h + 1], items[second:even:2]))
                in_order[h + 1] = False
                self._done[h] += 1
                if second:
                    self._down += 1 << h
                else:
                    self._up += 1 << h
            h += 1
        self._set_level0(levels[0])
        # every level above 0 is owned by this sketch (a merge's concatenation or a slice of
        # a sorted compaction), so one that received items is sorted in place
        for h in range(1, len(levels)):
            if not in_order[h]:
                levels[h].sort()
        self._levels = levels[1:]

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        """Add ``other`` into this sketch and return ``self`` (commutative in its bytes)."""
        if not isinstance(other, QuantileSketch):
            raise TypeError(f"can only merge a QuantileSketch, got {type(other).__name__}")
        if other._k != self._k:
            raise FormatError(f"cannot merge QuantileSketch with k={other._k} into k={self._k}")
        if other._count == 0:
            return self
        depth = max(len(self._levels), len(other._levels)) + 1
        empty = [np.empty(0, dtype=np.float32)] * depth
        mine = [self._buf[: self._fill], *self._levels, *empty][:depth]
        theirs = [other._buf[: other._fill], *other._levels, *empty][:depth]
        done = _pad(self._done, depth), _pad(other._done, depth)
        self._done = [a + b for a, b in zip(*done, strict=True)]
        self._count += other._count
        self._up += other._up
        self._down += other._down
        self._lo, self._hi = min(self._lo, other._lo), max(self._hi, other._hi)
        self._view = None
        # Levels above 0 are sorted in both sketches: where one side is empty the other is
        # the merged level as it is (a copy of theirs; this sketch's own is owned already).
        levels = [np.concatenate((mine[0], theirs[0]))]
        in_order = [False]
        for a, b in zip(mine[1:], theirs[1:], strict=True):
            if not b.size:
                levels.append(a)
            elif not a.size:
                levels.append(b.copy())
            else:
                levels.append(np.concatenate((a, b)))
            in_order.append(not (a.size and b.size))
        self._settle(levels, in_order=in_order)
        return self

    def copy(self) -> QuantileSketch:
        """An independent sketch with the same state and bytes (level 0 sorted, as a round
        trip through :meth:`to_bytes` leaves it)."""
        out: QuantileSketch = QuantileSketch.__new__(QuantileSketch)
        out._k, out._cap = self._k, self._cap
        out._buf = np.sort(self._buf[: self._fill])
        out._fill = self._fill
        out._levels = [level.copy() for level in self._levels]
        out._done = list(self._done)
        out._count, out._up, out._down = self._count, self._up, self._down
        out._lo, out._hi = self._lo, self._hi
        out._view = self._view  # read-only arrays, replaced (never changed) on an update
        return out

    # -- queries --------------------------------------------------------------------------

    @property
    def k(self) -> int:
        return self._k

    @property
    def n(self) -> int:
        return self._count

    @property
    def min(self) -> float:
        return self._lo if self._count else math.nan

    @property
    def max(self) -> float:
        return self._hi if self._count else math.nan

    @property
    def is_exact(self) -> bool:
        """True while every value is retained with weight 1 (no compaction yet)."""
        return self._up == self._down == 0

    @property
    def error_weights(self) -> tuple[int, int]:
        """``(up, down)``: how far compactions may have raised and lowered any rank."""
        return self._up, self._down

    @property
    def error_weight(self) -> int:
        """The most any rank may be off by: ``max(up, down)``."""
        return max(self._up, self._down)

    @property
    def num_retained(self) -> int:
        return self._fill + sum(level.size for level in self._levels)

    def rank_error_bound(self) -> float:
        """Worst-case error of any normalized rank, CDF or quantile query (0 when exact)."""
        return self.error_weight / self._count if self._count else 0.0

    def sorted_view(self) -> tuple[np.ndarray, np.ndarray]:
        """Retained items in ascending order (float32) and their weights (int64)."""
        items, cum = self._sorted()
        return items, np.diff(cum, prepend=0)

    def cumulative_view(self) -> tuple[np.ndarray, np.ndarray]:
        """Retained items in ascending order (float32) and their cumulative weights (int64,
        ending at ``n``): the inclusive rank of item ``i`` is ``cumulative[i]``. Read-only
        arrays, kept until the next update or merge."""
        return self._sorted()

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        if self._view is None:
            parts = [self._buf[: self._fill], *self._levels]
            items = np.concatenate(parts)
            weights = np.repeat(1 << np.arange(len(parts), dtype=np.int64), [p.size for p in parts])
            order = np.argsort(items, kind="stable")
            items, cumulative = items[order], np.cumsum(weights[order])
            items.flags.writeable = cumulative.flags.writeable = False
            self._view = items, cumulative
        return self._view

    def quantiles(self, ranks: Iterable[float] | np.ndarray, inclusive: bool = True) -> np.ndarray:
        """Items at normalized ``ranks`` in [0, 1] (as float64); NaN when empty."""
        r = np.asarray(ranks, dtype=np.float64)
        if r.ndim != 1 or not np.all((r >= 0.0) & (r <= 1.0)):
            raise ValueError(f"ranks must be a 1-D sequence in [0, 1], got {r!r}")
        if self._count == 0:
            return np.full(r.shape, np.nan)
        items, cum = self._sorted()
        if inclusive:
            at = np.searchsorted(cum, np.ceil(r * self._count), "left")
        else:
            at = np.searchsorted(cum, r * self._count, "right")
        out = items[np.minimum(at, items.size - 1)].astype(np.float64)
        out[r == 0.0] = self._lo
        out[r == 1.0] = self._hi
        return out

    def cdf(self, points: Iterable[float] | np.ndarray, inclusive: bool = True) -> np.ndarray:
        """Fraction of the weight ``<= point`` (``< point`` if not inclusive); NaN when empty."""
        p = np.asarray(points, dtype=np.float64)
        if p.ndim != 1 or np.isnan(p).any():
            raise ValueError(f"points must be a 1-D sequence of numbers, got {p!r}")
        if self._count == 0:
            return np.full(p.shape, np.nan)
        items, cum = self._sorted()
        at = np.searchsorted(items, to_float32(p), "right" if inclusive else "left")
        return np.concatenate(([0], cum))[at] / self._count

    def __repr__(self) -> str:
        return (
            f"QuantileSketch(k={self._k}, n={self._count}, retained={self.num_retained}, "
            f"rank_error_bound={self.rank_error_bound():.4g})"
        )

    # -- bytes and conversion ---------------------------------------------------------------

    def to_bytes(self) -> bytes:
        w = Writer()
        w.uvarint(self._k)
        self.write_into(w)
        return seal(_MAGIC, _FORMAT, w.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes) -> QuantileSketch:
        r = Reader(unseal(data, _MAGIC, _FORMAT, "QuantileSketch"), "QuantileSketch")
        k = r.uvarint()
        if not 8 <= k <= 65_535:
            raise FormatError(f"QuantileSketch: k={k} out of range")
        out = cls.read_from(r, k)
        r.done()
        return out

    def write_into(self, w: Writer) -> None:
        """Count, min, max, error weight, then per level its compactions and sorted items."""
        w.uvarint(self._count)
        if not self._count:
            return
        w.f64s(self._lo, self._hi)
        w.uvarint(self._up)
        w.uvarint(self._down)
        level0 = np.sort(self._buf[: self._fill]).astype("<f4", copy=False).tobytes()
        if not self._levels:  # never compacted (the usual sketch of one bucket): one level
            w.uvarint(1)
            w.uvarint(self._done[0] if self._done else 0)
            w.blob(level0)
            return
        w.uvarint(len(self._levels) + 1)
        done = _pad(self._done, len(self._levels) + 1)
        w.uvarint(done[0])
        w.blob(level0)
        for level, n in zip(self._levels, done[1:], strict=True):
            w.uvarint(n)
            w.blob(level.astype("<f4", copy=False).tobytes())

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
        done, blobs = [], []
        for _ in range(depth):
            done.append(r.uvarint())
            blob = r.blob()
            if len(blob) % 4:
                raise FormatError("QuantileSketch: a level is not whole float32 items")
            blobs.append(blob)
        # all levels in one array (checked in one pass), each level a slice of it
        items = np.frombuffer(b"".join(blobs), dtype="<f4").astype(np.float32)
        sizes = [len(blob) >> 2 for blob in blobs]
        ends = list(accumulate(sizes))
        ascending = items[:-1] <= items[1:]  # False at a NaN
        for end in ends[:-1]:
            if 0 < end < items.size:
                ascending[end - 1] = True  # where one level ends and the next begins
        if (
            sum(size << h for h, size in enumerate(sizes)) != out._count
            or max(sizes) >= out._cap
            or not ascending.all()  # each level sorted
            or not (math.isfinite(out._lo) and math.isfinite(out._hi) and out._lo <= out._hi)
            or not (out._lo <= items.min() and items.max() <= out._hi)  # no NaN either
            or max(out._up, out._down) > out._count
        ):
            raise FormatError("QuantileSketch: inconsistent levels, weights or extremes")
        levels = [items[end - size : end] for size, end in zip(sizes, ends, strict=True)]
        out._set_level0(levels[0])
        out._levels, out._done = levels[1:], done
        return out

    @classmethod
    def from_weighted(
        cls,
        items: np.ndarray,
        weights: np.ndarray,
        k: int,
        *,
        extremes: tuple[float, float],
        error_weight: int,
    ) -> QuantileSketch:
        """A sketch of ``items`` with power-of-two ``weights`` (e.g. a KLL sorted view) whose
        ranks are already off by at most ``error_weight``, and the exact ``extremes``."""
        w = np.asarray(weights, dtype=np.int64)
        h = np.log2(np.maximum(w, 1)).astype(np.int64)
        if w.size == 0 or w.min() < 1 or not np.array_equal(np.left_shift(1, h), w):
            raise FormatError("QuantileSketch: weights must be powers of two")
        out = cls(k)
        x = to_float32(np.asarray(items, dtype=np.float64))
        out._count, out._up, out._down = int(w.sum()), error_weight, error_weight
        out._lo, out._hi = (float(np.float32(v)) for v in extremes)
        out._settle([x[h == level] for level in range(int(h.max()) + 1)])
        return out


def _pad(counts: list[int], size: int) -> list[int]:
    return [*counts, *([0] * (size - len(counts)))]
