"""Never-seen categories counted since they first appeared, across windows (``new_category``).

One window cannot tell a new category at 1% from one at 0.2%: at 1,000 window events that is
about 10 values against 2, and every rule on one window's counts trades missed 1% categories
for reported 0.2% ones. So each category the reference never saw is counted from the bucket it
first appeared in, for ``new_category_windows`` (K) windows: its values ``x`` and the input's
values ``n`` since the start of that bucket. After every bucket it is judged by a one-sided
binomial test of *its share is at most half the reporting floor*: it is reported when

    ``x >= new_category_min_count``  and  ``P(Binomial(n, floor / 2) >= x) <= new_category_alpha``

(the floor is ``thresholds.new_category``, 0.5% by default, or more when the reference is too
small to have seen a category that large). At the defaults (floor 0.5%, alpha 0.05, at least 5
values) that is 5 values in the first 200-600 values, 6 in 800-1,000, 7 in 1,200, 9 in 1,600.
Once reported, a category is held to the floor by its share of each window (of the values
since it appeared, while that is less than a window), so that its alert resolves when it fades;
after K windows unreported, it is no longer new and is judged on one window's values by the
same test at the stricter ``new_category_window_alpha``, as is any never-seen category not
counted since it appeared (forgotten beyond ``new_category_max_tracked``, or state from before
this check). The README's detection-quality section has the simulation behind the defaults.

>>> p_at_most(6, 1000, 0.0025) < 0.05 < p_at_most(5, 1000, 0.0025)
True
>>> from driftwire.sketch.categorical import CategoricalSketch
>>> ref, bucket = CategoricalSketch(), CategoricalSketch()
>>> ref.update_batch(["a"] * 100)
>>> bucket.update_batch(["a"] * 195 + ["new"] * 5)
>>> seen = NewCategories()
>>> seen.observe("all", "x", ref, [bucket], 0, new_for_ms=600, cap=8)
>>> [(a.category, a.count, a.values, a.basis) for a in seen.judge(
...     "all", "x", {"new": 5}, 200, floor=0.005, alpha=0.05, window_alpha=0.001, least=5)]
[('new', 5, 200, 'since first seen')]
>>> seen.to_state() == NewCategories.from_state(seen.to_state()).to_state()
True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from scipy import special

from driftwire.sketch.categorical import CategoricalSketch

Status = Literal["new", "reported", "settled"]
Basis = Literal["since first seen", "window", "reported"]
_STATUSES: tuple[Status, ...] = ("new", "reported", "settled")


def p_at_most(count: int, values: int, share: float) -> float:
    """One-sided p-value of *the share is at most* ``share`` after ``count`` of ``values``:
    ``P(X >= count)`` for ``X ~ Binomial(values, share)``.

    >>> round(p_at_most(5, 200, 0.0025), 5), p_at_most(0, 200, 0.0025)
    (0.00017, 1.0)
    """
    if count <= 0:
        return 1.0
    if count > values:
        return 0.0
    return float(special.bdtrc(count - 1, values, share))


def significant(count: int, values: int, floor: float, alpha: float, least: int) -> bool:
    """Whether ``count`` of ``values`` says the share is above half ``floor``, at ``alpha``."""
    return count >= least and p_at_most(count, values, floor / 2.0) <= alpha


@dataclass(slots=True)
class Seen:
    """One never-seen category of one (segment, input)."""

    first: int  # start (ms) of the bucket it first appeared in
    last: int  # start of the newest bucket it had values in
    count: int  # its values since ``first`` (counted while new)
    values: int  # the input's values since ``first`` (counted while new)
    status: Status = "new"  # reported; settled: no longer new, never reported

    def to_state(self) -> list[Any]:
        return [self.first, self.last, self.count, self.values, self.status]

    @classmethod
    def from_state(cls, state: Sequence[Any]) -> Seen:
        first, last, count, values, status = state
        if status not in _STATUSES:
            raise ValueError(f"unknown new-category status {status!r}")
        return cls(int(first), int(last), int(count), int(values), status)


@dataclass(frozen=True, slots=True)
class Announced:
    """A never-seen category the test reports in this window (or a reported one's share)."""

    category: str
    share: float
    count: int
    values: int
    basis: Basis
    p_value: float | None


class NewCategories:
    """The never-seen categories of one model version, per (segment, input)."""

    def __init__(self) -> None:
        self.inputs: dict[tuple[str, str], dict[str, Seen]] = {}
        self.observed: dict[tuple[str, str], int] = {}  # newest bucket counted per input

    def observe(
        self,
        segment: str,
        feature: str,
        reference: CategoricalSketch,
        bucket: Sequence[CategoricalSketch],
        bucket_start: int,
        *,
        new_for_ms: int,
        cap: int,
    ) -> None:
        """Count one bucket's values of ``feature`` in ``segment`` (its sketches, one per
        segment it merges). A bucket already counted is skipped."""
        key = (segment, feature)
        if self.observed.get(key, bucket_start - 1) >= bucket_start:
            return
        self.observed[key] = bucket_start
        seen = self.inputs.setdefault(key, {})
        known = reference.counts
        for category in [c for c in seen if c in known]:
            del seen[category]  # the reference has it now (a new baseline)
        values = sum(s.count for s in bucket)
        counts: Counter[str] = Counter()
        for sketch in bucket:
            counts.update(sketch.unseen(reference))
        for category, entry in seen.items():
            if entry.status == "settled":
                continue
            if bucket_start - entry.first < new_for_ms:  # counted for K windows
                entry.count += counts.get(category, 0)
                entry.values += values
            elif entry.status == "new":
                entry.status = "settled"
        for category, n in counts.items():
            if not n:
                continue
            old = seen.get(category)
            if old is None:
                seen[category] = Seen(bucket_start, bucket_start, n, values)
            else:
                old.last = bucket_start
        if len(seen) > cap:  # the ones seen longest ago go; among equals the rarer
            order = sorted(seen, key=lambda c: (seen[c].last, seen[c].count, c))
            for category in order[: len(seen) - cap]:
                del seen[category]

    def forget_before(self, bucket_start: int) -> None:
        """Drop the inputs (segment, feature) not counted since ``bucket_start``."""
        for key in [k for k, b in self.observed.items() if b < bucket_start]:
            del self.observed[key]
            self.inputs.pop(key, None)

    def judge(
        self,
        segment: str,
        feature: str,
        window: Mapping[str, int],
        window_values: int,
        *,
        floor: float,
        alpha: float,
        window_alpha: float,
        least: int,
    ) -> list[Announced]:
        """The categories reported in this window; those newly found significant are marked
        reported. ``window``: the window's never-seen categories and their counts."""
        seen = self.inputs.get((segment, feature), {})
        return judged(seen, window, window_values, floor, alpha, window_alpha, least)

    def to_state(self) -> dict[str, Any]:
        return {
            "inputs": [
                [
                    segment,
                    feature,
                    self.observed.get((segment, feature)),
                    {c: e.to_state() for c, e in sorted(seen.items())},
                ]
                for (segment, feature), seen in sorted(self.inputs.items())
            ]
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> NewCategories:
        """Read :meth:`to_state`'s dict back; ``None`` (state written before this check)
        gives an empty one."""
        out = cls()
        for segment, feature, observed, seen in (state or {}).get("inputs", []):
            key = (str(segment), str(feature))
            out.inputs[key] = {str(c): Seen.from_state(e) for c, e in seen.items()}
            if observed is not None:
                out.observed[key] = int(observed)
        return out


def judged(
    seen: dict[str, Seen],
    window: Mapping[str, int],
    window_values: int,
    floor: float,
    alpha: float,
    window_alpha: float,
    least: int,
) -> list[Announced]:
    """:meth:`NewCategories.judge` over one input's categories ``seen`` (mutated)."""
    out: list[Announced] = []
    share = floor / 2.0
    for category in sorted(set(window) | {c for c, e in seen.items() if e.status != "settled"}):
        entry = seen.get(category)
        x = window.get(category, 0)
        if entry is not None and entry.status == "reported":
            if 0 < entry.values < window_values:
                # younger than the window: its share since it appeared, not diluted by the
                # buckets before it
                count, values = entry.count, entry.values
            else:
                count, values = x, window_values
            if count:
                out.append(Announced(category, count / values, count, values, "reported", None))
            continue
        if (
            entry is not None
            and entry.status == "new"
            and significant(entry.count, entry.values, floor, alpha, least)
        ):
            entry.status = "reported"
            p = p_at_most(entry.count, entry.values, share)
            share_seen = entry.count / entry.values
            out.append(
                Announced(category, share_seen, entry.count, entry.values, "since first seen", p)
            )
            continue
        if window_values and significant(x, window_values, floor, window_alpha, least):
            if entry is not None:
                entry.status = "reported"
            p = p_at_most(x, window_values, share)
            out.append(Announced(category, x / window_values, x, window_values, "window", p))
    return out
