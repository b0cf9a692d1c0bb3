"""Realized performance of a regression model from mergeable state, with confidence intervals.

:class:`RegressionState` keeps power sums of the error ``prediction - actual`` (bias, MAE,
RMSE and their intervals), the sum of absolute percentage errors over the non-zero actuals
(MAPE), and a :class:`~driftwire.sketch.quantiles.QuantileSketch` of the errors (error
quantiles within the sketch's stated rank-error bound). Sums merge by adding, the sketch by its
own merge. The moments are exact up to floating-point rounding.

>>> state = RegressionState()
>>> state.update_batch(np.array([10.0, 12.0, 9.0]), np.array([11.0, 12.0, 7.0]))
>>> m = state.metrics()
>>> m.n, m.bias.value, m.mae.value, round(m.rmse.value, 4), round(m.mape, 4)
(3, 0.3333333333333333, 1.0, 1.291, 0.1255)
>>> RegressionState.from_bytes(state.to_bytes()).to_bytes() == state.to_bytes()
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from driftwire._codec import Reader, Writer, seal, unseal
from driftwire.sketch.quantiles import QuantileSketch
from driftwire.truth.interval import Z95, Estimate, mean_interval

__all__ = ["ERROR_QUANTILES", "RegressionMetrics", "RegressionState"]

ERROR_QUANTILES = (0.05, 0.5, 0.95)
_MAGIC = b"DWRP"
_FORMAT = 1
_SKETCH_K = 200


@dataclass(frozen=True, slots=True)
class RegressionMetrics:
    """Realized regression performance over the joined predictions of a window."""

    n: int
    bias: Estimate
    mae: Estimate
    rmse: Estimate
    mape: float | None  # over the non-zero actuals; None when every actual is 0
    error_quantiles: dict[float, float]
    quantile_rank_error: float


class RegressionState:
    """Mergeable error moments and error quantiles; see the module docstring."""

    __slots__ = ("_errors", "_sums")

    def __init__(self) -> None:
        # n, sum e, sum e^2, sum |e|, sum e^4, sum |e|/|y| (y != 0), count of y != 0
        self._sums = np.zeros(7)
        self._errors = QuantileSketch(_SKETCH_K)

    @property
    def n(self) -> int:
        return int(self._sums[0])

    def update_batch(self, predicted: np.ndarray, actual: np.ndarray) -> None:
        """Count the finite (prediction, actual) pairs of two aligned arrays."""
        predicted = np.asarray(predicted, dtype=np.float64)
        actual = np.asarray(actual, dtype=np.float64)
        keep = np.isfinite(predicted) & np.isfinite(actual)
        y, e = actual[keep], predicted[keep] - actual[keep]
        if not len(e):
            return
        nonzero = y != 0
        e2 = e * e
        self._sums += (
            len(e),
            e.sum(),
            e2.sum(),
            np.abs(e).sum(),
            (e2 * e2).sum(),
            (np.abs(e[nonzero]) / np.abs(y[nonzero])).sum(),
            nonzero.sum(),
        )
        self._errors.update_batch(e)

    def merge(self, other: RegressionState) -> RegressionState:
        """Add ``other`` into this state and return it."""
        self._sums += other._sums
        self._errors.merge(other._errors)
        return self

    def metrics(self) -> RegressionMetrics:
        n, s1, s2, sa, s4, sape, nz = self._sums.tolist()
        count = int(n)
        quantiles = (
            dict(
                zip(ERROR_QUANTILES, self._errors.quantiles(ERROR_QUANTILES).tolist(), strict=True)
            )
            if count
            else {}
        )
        return RegressionMetrics(
            n=count,
            bias=mean_interval(s1, s2, count),
            mae=mean_interval(sa, s2, count),
            rmse=_rmse(s2, s4, count),
            mape=sape / nz if nz else None,
            error_quantiles=quantiles,
            quantile_rank_error=self._errors.rank_error_bound() if count else 0.0,
        )

    def to_bytes(self) -> bytes:
        w = Writer()
        for value in self._sums.tolist():
            w.f64(value)
        w.blob(self._errors.to_bytes())
        return seal(_MAGIC, _FORMAT, w.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes) -> RegressionState:
        r = Reader(unseal(data, _MAGIC, _FORMAT, "regression performance"))
        state = cls()
        state._sums[:] = [r.f64() for _ in range(7)]
        state._errors = QuantileSketch.from_bytes(r.blob())
        r.done()
        return state


def _rmse(s2: float, s4: float, n: int) -> Estimate:
    """RMSE with the interval of the mean squared error (normal), mapped through the root."""
    if n <= 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mse = s2 / n
    var = max(s4 / n - mse * mse, 0.0) * n / (n - 1) if n > 1 else math.inf
    half = Z95 * math.sqrt(var / n)
    return Estimate(math.sqrt(mse), math.sqrt(max(mse - half, 0.0)), math.sqrt(mse + half), n)
