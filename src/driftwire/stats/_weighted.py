"""Two sketches' CDFs compared exactly, from their weighted sorted items.

A :class:`~driftwire.sketch.quantiles.QuantileSketch` answers every rank from its retained
items in order and their cumulative weights (``cumulative_view()``): its CDF is the step
function ``F(x) = (weight of items <= x) / n``. :func:`cdf_distances` merges
two such item lists once (a stable argsort of two sorted runs) and reads off both step CDFs at
every jump point: the KS distance ``D = max |F_ref - F_cur|`` and ``W1 = integral |F_ref -
F_cur| dx`` of the sketches themselves, with no quantile grid in between. With exact sketches
(every item of weight 1) ``D`` is computed as ``scipy.stats.ks_2samp`` computes it.

>>> ref = WeightedItems.of_values(np.array([1.0, 2.0, 2.0, 3.0]))
>>> cur = WeightedItems.of_values(np.array([2.0, 3.0, 4.0]))
>>> d = cdf_distances(ref, cur)  # scipy: ks_2samp 0.4167, wasserstein_distance 1.0
>>> round(d.d, 4), d.at, round(d.reference_cdf, 4), round(d.current_cdf, 4), round(d.w1, 4)
(0.4167, 2.0, 0.75, 0.3333, 1.0)
>>> ref.quantiles([0.05, 0.5, 0.95]).tolist(), ref.shares_below(np.array([2.0, 3.0])).tolist()
([1.0, 2.0, 3.0], [0.25, 0.5, 0.25])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftwire.stats._common import FloatArray

IntArray = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True, slots=True)
class WeightedItems:
    """Items in ascending order (float64) and the running sum of their integer weights, from 0.

    ``below[i]`` is the weight of the items before item ``i`` (``below[0] = 0``, ``below[-1]``
    the total): the sketch's CDF just past item ``i`` is ``below[i + 1] / total``. ``total`` is
    the sketch's ``n`` (or the number of points of a grid read off a sketch with no sorted view).
    """

    items: FloatArray
    below: IntArray
    total: int

    @classmethod
    def of_cumulative(cls, items: np.ndarray, cumulative: np.ndarray) -> WeightedItems:
        """From sorted ``items`` and their cumulative weights (the last one is the total)."""
        below = np.zeros(len(cumulative) + 1, dtype=np.int64)
        below[1:] = cumulative
        return cls(np.asarray(items, dtype=np.float64), below, int(below[-1]))

    @classmethod
    def of_values(cls, values: np.ndarray) -> WeightedItems:
        """Every value with weight 1 (sorted here)."""
        items = np.sort(np.asarray(values, dtype=np.float64))
        return cls.of_cumulative(items, np.arange(1, items.size + 1))

    @property
    def weights(self) -> IntArray:
        return np.diff(self.below)

    def quantiles(self, ranks: list[float]) -> FloatArray:
        """Items at inclusive normalised ``ranks`` in (0, 1) (the smallest item whose
        cumulative weight reaches ``rank * total``), as the sketch's own quantile query."""
        need = [math.ceil(r * self.total) for r in ranks]
        at = self.below.searchsorted(need, "left") - 1
        out: FloatArray = self.items[np.clip(at, 0, self.items.size - 1)]
        return out

    def shares_below(self, edges: FloatArray) -> FloatArray:
        """The weight in ``(-inf, e1), [e1, e2), ..., [ek, inf)``, as fractions of the total:
        the exclusive CDF at each edge, differenced."""
        counts = np.empty(edges.size + 2, dtype=np.int64)
        counts[0], counts[-1] = 0, self.total
        counts[1:-1] = self.below[np.searchsorted(self.items, edges, "left")]
        return np.diff(counts) / self.total


@dataclass(frozen=True, slots=True)
class CdfDistances:
    """``D`` and where it is reached (``at``, both CDFs there), and ``W1`` (unnormalised)."""

    d: float
    at: float
    reference_cdf: float
    current_cdf: float
    w1: float


def cdf_distances(reference: WeightedItems, current: WeightedItems) -> CdfDistances:
    """``max |F_ref - F_cur|`` and ``integral |F_ref - F_cur| dx`` of the two step CDFs."""
    m = reference.items.size
    x = np.concatenate((reference.items, current.items))
    order = np.argsort(x, kind="stable")  # two sorted runs: one merge
    x = x[order]
    # through merged position k: how many reference items, and so how many current ones
    n_ref = np.cumsum(order < m)
    n_cur = np.arange(1, x.size + 1) - n_ref
    f_r = reference.below[n_ref] / reference.total
    f_c = current.below[n_cur] / current.total
    gap = np.abs(f_r - f_c)
    # only the last of equal items carries both CDFs' values at that point (ties)
    # (both CDFs are 1 at the last item)
    jumps = np.flatnonzero(x[1:] != x[:-1])
    j = int(jumps[int(gap[jumps].argmax())]) if jumps.size else x.size - 1
    w1 = float(np.dot(gap[:-1], np.diff(x)))
    return CdfDistances(float(gap[j]), float(x[j]), float(f_r[j]), float(f_c[j]), w1)
