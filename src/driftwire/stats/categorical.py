"""Drift of a categorical distribution, from category counts plus an ``other`` count.

Each side is a ``Mapping[str, int]`` of counts of the tracked categories and an ``other``
count of the events folded beyond them (a frequent-items sketch's tail). Counts are taken as
exact, so every statistic's ``bound`` is 0, except ``unseen_share`` when the reference has an
``other`` bucket (see below). Statistics are defined on the categories *as given*:

* ``other`` is a category of its own (labelled ``__other__``) whenever either side has one.
* Alignment: a category tracked on one side only, while the other side has an ``other``
  bucket, may be hiding in that bucket; it is folded into ``other`` on both sides (and listed
  in the evidence) instead of being reported as appearing or vanishing. With no ``other`` on
  the far side its count there is known to be 0 and it stays a category.

Statistics (``p`` reference shares, ``q`` current shares over the aligned categories):

* **psi**: ``sum (q - p) ln(q / p)``, shares floored at 1e-4 (as for numeric features).
* **js** / **hellinger**: Jensen–Shannon distance (base 2) and Hellinger distance, in [0, 1].
* **cramers_v**: the chi-square test of homogeneity of the 2 x K table (Pearson's statistic,
  no Yates correction, categories empty on both sides dropped; ``p_value`` from it, as
  ``scipy.stats.chi2_contingency(table, correction=False)``). The thresholded ``value`` is
  Cramér's V *at equal sample sizes*, ``sqrt(sum (p - q)^2 / (p + q) / 2)``: the V the same
  shares give when both samples have the same size. Plain V = sqrt(chi2 / N) shrinks towards
  0 as the reference outgrows the window (by sqrt(n_cur / n_ref)), and the p-value fires on
  any difference at large counts, so neither can carry a fixed threshold. Both are evidence.
* **linf**: the largest absolute share difference of one category.
* **unseen_share**: the share of the window in categories the reference never counted. When
  the reference has an ``other`` bucket, those categories may be in it: the value is then an
  upper limit and ``bound`` equals it (the true share lies in ``[0, value]``).

>>> ref = {"DE": 500, "FR": 300, "IT": 200}
>>> cur = {"DE": 300, "FR": 300, "IT": 200, "XX": 200}
>>> r = categorical_drift(ref, 0, cur, 0, min_count=1, min_reference_count=1)
>>> round(r["psi"].value, 3), round(r["cramers_v"].value, 3), r["unseen_share"].value
(1.622, 0.354, 0.2)
>>> r["unseen_share"].evidence["top_categories"][0]["category"]
'XX'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from typing import Any

import numpy as np
from scipy import special

from driftwire.errors import InputError
from driftwire.stats._common import (
    CATEGORICAL_STATISTICS,
    DEFAULT_MIN_COUNT,
    DEFAULT_MIN_REFERENCE_COUNT,
    PSI_FLOOR,
    BinnedShares,
    DriftResult,
    FloatArray,
    binned_null_p99,
    check_statistics,
    guard,
    unavailable,
)

#: The label of the ``other`` bucket when it is treated as a category.
OTHER = "__other__"


@dataclass(frozen=True, slots=True)
class AlignedCounts:
    """Reference and current counts over the same categories (``OTHER`` last if present)."""

    labels: list[str]
    reference: FloatArray
    current: FloatArray
    folded: list[str]
    unseen: list[str]  # counted in the window, never counted in the reference
    unseen_counts: FloatArray  # their window counts, as given (before any folding)


def _checked_other(counts: Mapping[str, int], other: int, role: str) -> int:
    """``other`` plus a count filed under the bucket's own label; counts validated."""
    values = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
    if values.size and (values.min() < 0 or not np.isfinite(values).all()):
        raise InputError(f"{role}: category counts must be finite and >= 0")
    if other < 0:
        raise InputError(f"{role}: the other count must be >= 0, got {other}")
    return int(other) + int(counts.get(OTHER, 0))


def _vector(counts: Mapping[str, int], labels: list[str]) -> FloatArray:
    # map() over dict.get runs in C: no Python-level loop per category.
    return np.fromiter(map(counts.get, labels, repeat(0)), dtype=np.float64, count=len(labels))


def align_counts(
    reference: Mapping[str, int],
    reference_other: int,
    current: Mapping[str, int],
    current_other: int,
) -> AlignedCounts:
    """Both sides' counts on one list of categories, folding what cannot be compared.

    >>> a = align_counts({"a": 5, "b": 3}, 2, {"a": 4, "c": 6}, 0)
    >>> a.labels, a.reference.tolist(), a.current.tolist(), a.folded, a.unseen
    (['a', 'b', '__other__'], [5.0, 3.0, 2.0], [4.0, 0.0, 6.0], ['c'], ['c'])
    """
    r_other = _checked_other(reference, reference_other, "reference")
    c_other = _checked_other(current, current_other, "current")
    labels = np.array(sorted((reference.keys() | current.keys()) - {OTHER}), dtype=object)
    names = labels.tolist()
    r, c = _vector(reference, names), _vector(current, names)
    unseen_mask = (c > 0) & (r == 0)
    fold_c = unseen_mask if r_other > 0 else np.zeros(labels.size, dtype=bool)
    fold_r = (r > 0) & (c == 0) if c_other > 0 else np.zeros(labels.size, dtype=bool)
    unseen_counts = c[unseen_mask]
    r_other += int(r[fold_r].sum())
    c_other += int(c[fold_c].sum())
    keep = ((r > 0) | (c > 0)) & ~(fold_c | fold_r)
    kept = labels[keep].tolist()
    r, c = r[keep], c[keep]
    if r_other or c_other:
        kept.append(OTHER)
        r, c = np.append(r, r_other), np.append(c, c_other)
    return AlignedCounts(
        kept, r, c, labels[fold_c | fold_r].tolist(), labels[unseen_mask].tolist(), unseen_counts
    )


def _top(
    weights: FloatArray, row: Any, limit: int = 5, key: str = "contribution"
) -> list[dict[str, Any]]:
    order = np.argsort(-weights, kind="stable")[:limit].tolist()
    return [{**row(i), key: float(weights[i])} for i in order]


class _Comparison:
    def __init__(
        self, aligned: AlignedCounts, n_reference: int, n_current: int, other: dict[str, Any]
    ) -> None:
        self.a = aligned
        self.n_r, self.n_c = n_reference, n_current
        self.p = aligned.reference / n_reference
        self.q = aligned.current / n_current
        self.other = other

    def row(self, i: int) -> dict[str, Any]:
        return {
            "category": self.a.labels[i],
            "reference": float(self.p[i]),
            "current": float(self.q[i]),
        }

    def result(
        self,
        statistic: str,
        value: float,
        evidence: dict[str, Any],
        *,
        bound: float = 0.0,
        p_value: float | None = None,
    ) -> DriftResult:
        other = self.other  # a fresh copy per result: results do not share state
        evidence["other"] = {**other, "folded_for_alignment": list(other["folded_for_alignment"])}
        return DriftResult(statistic, value, bound, p_value, self.n_r, self.n_c, "ok", evidence)

    @cached_property
    def shares(self) -> BinnedShares:
        return BinnedShares(self.p, self.q, None, None)

    @property
    def dof(self) -> int:
        return len(self.a.labels) - 1

    def binned(self, statistic: str) -> DriftResult:
        value, _, terms = self.shares.evaluate(statistic)
        evidence: dict[str, Any] = {
            "top_categories": _top(terms, self.row),
            "null_p99": binned_null_p99(statistic, self.dof, self.n_r, self.n_c),
        }
        if statistic == "psi":
            evidence["smoothing"] = f"shares floored at {PSI_FLOOR}"
        return self.result(statistic, value, evidence)

    def cramers_v(self) -> DriftResult:
        r, c, p, q = self.a.reference, self.a.current, self.p, self.q
        n = self.n_r + self.n_c
        dof = self.dof
        if dof < 1:
            chi2, p_value, balanced = 0.0, 1.0, 0.0
            contributions = np.zeros(r.size)
        else:
            column = r + c
            exp_r, exp_c = column * (self.n_r / n), column * (self.n_c / n)
            contributions = (r - exp_r) ** 2 / exp_r + (c - exp_c) ** 2 / exp_c
            chi2 = float(contributions.sum())
            p_value = float(special.chdtrc(dof, chi2))
            balanced = math.sqrt(0.5 * float(np.sum((p - q) ** 2 / (p + q))))
        null = None
        if dof >= 1:
            s = 1.0 / self.n_r + 1.0 / self.n_c
            null = math.sqrt(float(special.chdtri(dof, 0.01)) * s / 4.0)
        evidence = {
            "chi2": chi2,
            "dof": dof,
            "cramers_v_plain": math.sqrt(chi2 / n),
            "top_categories": _top(contributions, self.row, key="chi2_contribution"),
            "null_p99": null,
            "p_value_method": "chi-square test of homogeneity (informational at large counts)",
        }
        return self.result("cramers_v", balanced, evidence, p_value=p_value)

    def linf(self) -> DriftResult:
        diff = np.abs(self.p - self.q)
        i = int(diff.argmax())
        return self.result("linf", float(diff[i]), {"at": self.row(i)})

    def unseen_share(self) -> DriftResult:
        a = self.a
        value = float(a.unseen_counts.sum()) / self.n_c
        evidence: dict[str, Any] = {"categories": len(a.unseen)}
        if a.unseen:
            evidence["top_categories"] = _top(
                a.unseen_counts / self.n_c, lambda i: {"category": a.unseen[i]}, key="current"
            )
        bound = 0.0
        if self.other["reference"] > 0 and value > 0:
            bound = value
            evidence["note"] = (
                "the reference has an other bucket: these categories may be in it, so the "
                "value is an upper limit"
            )
        return self.result("unseen_share", value, evidence, bound=bound)

    def compute(self, statistic: str) -> DriftResult:
        if statistic == "cramers_v":
            return self.cramers_v()
        if statistic == "linf":
            return self.linf()
        if statistic == "unseen_share":
            return self.unseen_share()
        return self.binned(statistic)


def categorical_drift(
    reference: Mapping[str, int],
    reference_other: int,
    current: Mapping[str, int],
    current_other: int,
    statistics: Iterable[str] | None = None,
    *,
    min_count: int = DEFAULT_MIN_COUNT,
    min_reference_count: int = DEFAULT_MIN_REFERENCE_COUNT,
) -> dict[str, DriftResult]:
    """Compare category counts; one :class:`DriftResult` per statistic, keyed by name.

    ``statistics`` from ``psi``, ``js``, ``hellinger``, ``cramers_v``, ``linf``,
    ``unseen_share`` (default ``DEFAULT_STATISTICS["categorical"]``). Too little data gives
    ``status="insufficient_data"`` (or ``"empty_reference"``) and ``value=None``.

    >>> r = categorical_drift({"a": 600, "b": 400}, 0, {"a": 100}, 0, ["psi"])
    >>> r["psi"].status, r["psi"].value, r["psi"].evidence["reason"]
    ('insufficient_data', None, 'the window has 100 events, fewer than min_count=200')
    """
    names = check_statistics(statistics, "categorical", CATEGORICAL_STATISTICS)
    aligned = align_counts(reference, reference_other, current, current_other)
    n_r, n_c = int(aligned.reference.sum()), int(aligned.current.sum())
    why = guard(n_r, n_c, min_count=min_count, min_reference_count=min_reference_count)
    if why is not None:
        return {name: unavailable(name, n_r, n_c, why) for name in names}
    other = {
        "reference": int(reference_other) + int(reference.get(OTHER, 0)),
        "current": int(current_other) + int(current.get(OTHER, 0)),
        "treated_as_category": OTHER in aligned.labels,
        "folded_for_alignment": aligned.folded[:20],
    }
    comparison = _Comparison(aligned, n_r, n_c, other)
    return {name: comparison.compute(name) for name in names}
