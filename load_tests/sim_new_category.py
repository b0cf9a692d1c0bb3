"""Simulated ``new_category`` rules: how often a never-seen category is reported, and when.

Binomial counts per 200-value bucket (5-bucket windows of 1,000 values), 20,000 runs per
share, the category present from bucket 0 on. For each rule: the share of runs at 1% that are
reported within one window (by the end of bucket 5) and within two, and the share of runs at
0.2% (below the 0.5% floor: should stay quiet) and at 0.05% (a rare category a reference could
miss) reported at all over 20 windows. Without a never-seen category nothing is counted, so
nothing is ever reported (no simulation needed). The README's detection-quality section quotes
this table.

The last two columns hold each rule to the limit: the share of 0.2% runs reported within one
window, and the most any test can report a 1% category within one window at that same rate
(the Neyman-Pearson test on the window's 1,000 values: within one window nothing else is
known, and the count is sufficient). A rule on that frontier cannot report more 1% categories
within a window without reporting more 0.2% ones.

    python load_tests/sim_new_category.py
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from evaluation.theory import best_power_new_category
from scipy import special

RUNS, BUCKET, WINDOW, BUCKETS = 20_000, 200, 5, 100
FLOOR = 0.005


def critical(n: np.ndarray, alpha: float, least: int) -> np.ndarray:
    """Smallest count rejecting share <= FLOOR / 2 at ``alpha`` (one-sided binomial)."""
    out = np.full(n.shape, least)
    for i, values in np.ndenumerate(n):
        c = least
        while special.bdtrc(c - 1, values, FLOOR / 2) > alpha:
            c += 1
        out[i] = c
    return out


Rule = Callable[[np.ndarray], np.ndarray]


def since_first_seen(alpha: float, least: int, k: int, window_alpha: float | None) -> Rule:
    """Counts since the first appearance, tested for ``k`` windows (the built rule)."""
    limit = critical(BUCKET * np.arange(1, k * WINDOW + 1), alpha, least)
    window_limit = (
        None
        if window_alpha is None
        else critical(np.array([BUCKET * WINDOW]), window_alpha, least)[0]
    )

    def first_report(x: np.ndarray) -> np.ndarray:
        runs = np.arange(len(x))
        seen = x > 0
        first = np.where(seen.any(1), seen.argmax(1), BUCKETS)
        total = np.cumsum(x, axis=1)
        before = np.where(first > 0, total[runs, np.maximum(first - 1, 0)], 0)
        out = np.full(len(x), np.inf)
        for j in range(BUCKETS):
            age = j - first + 1
            counted = (age >= 1) & (age <= k * WINDOW)
            hit = counted & (total[:, j] - before >= limit[np.clip(age, 1, k * WINDOW) - 1])
            if window_limit is not None:
                window = total[:, j] - (total[:, j - WINDOW] if j >= WINDOW else 0)
                hit |= window >= window_limit
            out = np.where(np.isinf(out) & hit, j, out)
        return out

    return first_report


def one_window(least: int, consecutive: int) -> Rule:
    """The rule before: ``least`` values and FLOOR of one window, ``consecutive`` windows."""

    def first_report(x: np.ndarray) -> np.ndarray:
        total = np.cumsum(x, axis=1)
        out = np.full(len(x), np.inf)
        run = np.zeros(len(x), dtype=int)
        for j in range(BUCKETS):
            window = total[:, j] - (total[:, j - WINDOW] if j >= WINDOW else 0)
            run = np.where((window >= least) & (window >= FLOOR * BUCKET * WINDOW), run + 1, 0)
            out = np.where(np.isinf(out) & (run >= consecutive), j, out)
        return out

    return first_report


RULES: dict[str, Rule] = {
    "one window: 5 values and 0.5%, K = 2 (before)": one_window(5, 2),
    "one window: 5 values and 0.5%, K = 1": one_window(5, 1),
    "since first seen: 5 values and 0.5%, 1 window": since_first_seen(1.0, 5, 1, None),
    "since first seen: test a=0.10, 5 values, K = 1": since_first_seen(0.10, 5, 1, 0.001),
    "since first seen: test a=0.05, 5 values, K = 1": since_first_seen(0.05, 5, 1, 0.001),
    "since first seen: test a=0.05, 5 values, K = 2 (built)": since_first_seen(0.05, 5, 2, 0.001),
    "since first seen: test a=0.01, 5 values, K = 2": since_first_seen(0.01, 5, 2, 0.001),
}


def best_within_window(level: float, null: float = 0.002, share: float = 0.01) -> float:
    """The most any test can report a ``share`` category within one window (its first
    ``BUCKET * WINDOW`` values) while reporting a ``null`` one within that window at rate
    ``level``: the Neyman-Pearson test on the window's count (randomized at its edge)."""
    return best_power_new_category(BUCKET * WINDOW, share, floor=2 * null, alpha=level)


def main() -> None:
    rng = np.random.default_rng(14)
    counts = {s: rng.binomial(BUCKET, s, size=(RUNS, BUCKETS)) for s in (0.01, 0.002, 0.0005)}
    print(
        "rule | 1% within 1 window | within 2 | 0.2% reported (20 windows) | 0.05% | "
        "0.2% within 1 window | any test within 1 window at that 0.2% rate"
    )
    print("---|---|---|---|---|---|---")
    for name, rule in RULES.items():
        at = {s: rule(x) for s, x in counts.items()}
        level = float(np.mean(at[0.002] < WINDOW))
        print(
            f"{name} | {np.mean(at[0.01] < WINDOW):.1%} | {np.mean(at[0.01] < 2 * WINDOW):.1%} | "
            f"{np.mean(np.isfinite(at[0.002])):.1%} | {np.mean(np.isfinite(at[0.0005])):.2%} | "
            f"{level:.2%} | {best_within_window(level):.1%}"
        )


if __name__ == "__main__":
    main()
