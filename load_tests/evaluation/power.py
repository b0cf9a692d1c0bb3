"""The power table: the smallest location shift detected within 2 windows, per window size.

For each window size (300, 1,000, 3,000 events) the ``cancer`` model (unsegmented) runs
against a 20,000-row baseline; ``mean_texture`` (near-normal, skew 0.65) is shifted by ``s``
reference sds after one window, and the run lasts two windows more. A shift is *detected* when
an alert (or incident member) about ``mean_texture`` fires within those 2 windows. Per seed, a
bisection over :data:`GRID` (detection assumed monotone in the shift) finds the smallest grid
shift detected; the table shows the largest of these over the seeds (detected in every seed)
and the median, next to the two-sample z-test's minimum detectable shift at power 0.8 and the
α one test gets after false-discovery control (:mod:`evaluation.theory`), and their ratio.

:func:`new_category_limit` is the same comparison for a never-seen category, from theory alone:
the share its check reports within one window with power 0.8, and the most any test at the
check's level can report a 1% category within one window.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from scipy import special

from driftwire.ops.config import Settings
from evaluation import theory
from evaluation.real import Scenario, family, new_category_test
from evaluation.runs import alerts_of
from evaluation.scoring import announces, change_ms, episodes
from evaluation.streams import HOUR, Change, Design
from evaluation.tables import load

GRID = (0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.10, 0.12, 0.14, 0.17, 0.20, 0.25, 0.30,
        0.35, 0.40, 0.50, 0.60, 0.80, 1.00)  # fmt: skip
SIZES = (300, 1000, 3000)
TABLE, FEATURE, REFERENCE = "cancer", "mean_texture", 20_000


def detected(shift: float, window_events: int, seed: int, config: Settings) -> bool:
    """Whether a shift of ``shift`` sd is announced within 2 windows of its start."""
    w = config.detect.window_buckets
    change = Change(FEATURE, w, "location", shift)
    design = Design(TABLE, window_events, REFERENCE, 3 * w, (change,))
    events, _ = alerts_of(Scenario(f"power {shift}", "power", design), seed, config)
    deadline = change_ms(change) + 2 * w * HOUR
    return any(announces(ep, change) and ep.start_ms <= deadline for ep in episodes(events))


def smallest(window_events: int, seed: int, config: Settings) -> float | None:
    """The smallest grid shift detected within 2 windows (None: not even the largest)."""
    lo, hi = 0, len(GRID) - 1
    if not detected(GRID[hi], window_events, seed, config):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if detected(GRID[mid], window_events, seed, config):
            hi = mid
        else:
            lo = mid + 1
    return GRID[lo]


def power_table(
    seeds: range, config: Settings, sizes: tuple[int, ...] = SIZES
) -> list[dict[str, Any]]:
    level = theory.level(config.detect)
    tests = family(load(TABLE), config.detect)
    alpha = level.alpha(tests)
    rows = []
    for n in sizes:
        found = [smallest(n, seed, config) for seed in seeds]
        values = [f if f is not None else float("inf") for f in found]
        worst = max(values)
        mde = theory.mde_location(n, REFERENCE, alpha=alpha)
        mde50 = theory.mde_location(n, REFERENCE, alpha=alpha, power=0.5)
        rows.append({
            "window_events": n,
            "reference_rows": REFERENCE,
            "feature": f"{TABLE}.{FEATURE}",
            "per_seed": found,
            "smallest_all_seeds": None if worst == float("inf") else worst,
            "smallest_median": (None if statistics.median(values) == float("inf")
                                else statistics.median(values)),
            "mde_power_0.8": round(mde, 4),
            "mde_power_0.5": round(mde50, 4),
            "alpha": alpha,
            "family": tests,
            "q": level.q,
            "method": level.method,
            "level_source": level.source,
            "ratio": None if worst == float("inf") else round(worst / mde, 2),
        })  # fmt: skip
        print(f"  power {n}: {found}", file=sys.stderr, flush=True)
    return rows


NEW_SHARE, NEW_RUNS = 0.01, 3  # the real suite's new category, and its runs per scenario


def new_category_limit(
    config: Settings, sizes: tuple[int, ...] = SIZES, share: float = NEW_SHARE
) -> list[dict[str, Any]]:
    """The limit for a never-seen category, per window size (theory only, no runs).

    Per size: the check's critical count at the end of one window (its minimum count
    included), the limit (the share the best test reports within one window with power 0.8),
    a ``share`` category over it, the probability
    that the check's test reports it within one window (at the window's end alone; its looks
    after each bucket add a little), the Neyman-Pearson bound on that probability for any test
    at the same level, and that bound over the :data:`NEW_RUNS` runs of a scenario together.
    """
    test = new_category_test(config.detect)
    rows = []
    for n in sizes:
        c = theory.new_category_critical(n, **test)
        limit = theory.mde_new_category(n, floor=test["floor"], alpha=test["alpha"])
        best = theory.best_power_new_category(n, share, floor=test["floor"], alpha=test["alpha"])
        rows.append({
            "window_events": n,
            "floor": test["floor"],
            "null_share": test["floor"] / 2,
            "alpha": test["alpha"],
            "least": test["least"],
            "critical_count": c,
            "limit_power_0.8": round(limit, 5),
            "share": share,
            "ratio": round(share / limit, 2),
            "check_within_1_window": round(float(special.bdtrc(c - 1, n, share)), 4),
            "best_within_1_window": round(best, 4),
            "runs": NEW_RUNS,
            "best_all_runs": round(best**NEW_RUNS, 4),
        })  # fmt: skip
    return rows
