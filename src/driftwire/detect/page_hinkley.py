"""Page-Hinkley change detection over a series of numbers, with state that round-trips.

The test of Page (1954) in the form river's ``drift.PageHinkley`` computes, operation for
operation, so a series gives the same detections as river's: for every value ``x_t`` the
running mean ``m_t`` is updated, and two faded cumulative sums follow the deviation
``x_t - m_t``: ``up_t = alpha * up_{t-1} + (x_t - m_t) - delta`` and
``down_t = alpha * down_{t-1} + (x_t - m_t) + delta``. An increase is detected when ``up``
rises more than ``threshold`` above its running minimum, a decrease when ``down`` falls more
than ``threshold`` below its running maximum (``mode`` picks which), once ``min_instances``
values have been seen. The update after a detection starts a new series.

Why our own: river keeps this state in private fields, so saving it meant writing into
them; here the state is public (:meth:`PageHinkley.to_state` / :meth:`PageHinkley.from_state`),
as six numbers and the detection flag (the list river's fields were stored as before).

A level shift from 0 to 1 at value 40, detected at its fourth value:

>>> ph = PageHinkley(min_instances=10, delta=0.05, threshold=3.0, mode="up")
>>> series = [0.0] * 40 + [1.0] * 20
>>> [t for t, x in enumerate(series) if ph.update(x)]
[43]
>>> ph.n, ph.statistic                   # a new series started after the detection
(16, 0.0)
"""

from __future__ import annotations

import math
from typing import Any, Literal

from driftwire.errors import FormatError

Mode = Literal["up", "down", "both"]

#: river's default forgetting factor (``1 - 0.0001``)
DEFAULT_ALPHA = 1 - 0.0001


class PageHinkley:
    """Page-Hinkley test for a change of the mean; ``update`` says whether it fired."""

    def __init__(
        self,
        *,
        min_instances: int,
        delta: float,
        threshold: float,
        alpha: float = DEFAULT_ALPHA,
        mode: Mode = "both",
    ) -> None:
        if mode not in ("up", "down", "both"):
            raise ValueError(f"mode must be 'up', 'down' or 'both', got {mode!r}")
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode: Mode = mode
        self.reset()

    def reset(self) -> None:
        """Forget the series (as after a detection)."""
        self.n = 0
        self.mean = 0.0
        self.sum_increase = 0.0
        self.sum_decrease = 0.0
        self.min_increase = math.inf
        self.max_decrease = -1.0
        self.drift_detected = False

    @property
    def statistic(self) -> float:
        """How far the increase sum is above its minimum (an increase fires above ``threshold``)."""
        return 0.0 if self.n == 0 else self.sum_increase - self.min_increase

    def update(self, x: float) -> bool:
        """Add one value; ``True`` when a change is detected at it."""
        if self.drift_detected:
            self.reset()
        self.n += 1
        self.mean += (1.0 / self.n) * (x - self.mean)
        dev = x - self.mean
        self.sum_increase = self.alpha * self.sum_increase + dev - self.delta
        self.sum_decrease = self.alpha * self.sum_decrease + dev + self.delta
        self.min_increase = min(self.min_increase, self.sum_increase)
        self.max_decrease = max(self.max_decrease, self.sum_decrease)
        if self.n >= self.min_instances:
            up = self.sum_increase - self.min_increase > self.threshold
            down = self.max_decrease - self.sum_decrease > self.threshold
            self.drift_detected = {"up": up, "down": down, "both": up or down}[self.mode]
        return self.drift_detected

    def to_state(self) -> list[Any]:
        """``[n, mean, sum_increase, sum_decrease, min_increase, max_decrease, detected]``.

        Numbers as floats, a non-finite one (the minimum before the first value) as ``None``,
        so the state is plain JSON.
        """
        values = (
            self.n,
            self.mean,
            self.sum_increase,
            self.sum_decrease,
            self.min_increase,
            self.max_decrease,
        )
        return [*(float(v) if math.isfinite(v) else None for v in values), self.drift_detected]

    @classmethod
    def from_state(
        cls,
        state: list[Any],
        *,
        min_instances: int,
        delta: float,
        threshold: float,
        alpha: float = DEFAULT_ALPHA,
        mode: Mode = "both",
    ) -> PageHinkley:
        """The detector :meth:`to_state` saved, with its parameters from the settings."""
        if len(state) != 7:
            raise FormatError(f"a Page-Hinkley state has 7 entries, got {len(state)}")
        out = cls(
            min_instances=min_instances, delta=delta, threshold=threshold, alpha=alpha, mode=mode
        )
        n, mean, sum_inc, sum_dec, min_inc, max_dec, detected = state
        out.n = 0 if n is None else int(n)
        out.mean = 0.0 if mean is None else float(mean)
        out.sum_increase = 0.0 if sum_inc is None else float(sum_inc)
        out.sum_decrease = 0.0 if sum_dec is None else float(sum_dec)
        out.min_increase = math.inf if min_inc is None else float(min_inc)
        out.max_decrease = -1.0 if max_dec is None else float(max_dec)
        out.drift_detected = bool(detected)
        return out
