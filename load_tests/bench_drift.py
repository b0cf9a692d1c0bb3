"""Time to compute the drift statistics of one feature, window vs reference, on one core.

Numeric: two quantile sketches with k = 200, both in estimation mode (a 1,000,000-event
reference, a 100,000-event window with its mean shifted by 0.2 sd), as the deterministic
``QuantileSketch`` (what the profile stores, fed 250 values at a time as the profiler does) and,
for comparison, as datasketches' ``kll_floats_sketch`` and ``kll_doubles_sketch``.
Categorical: the counts of the top 100 of 300
Zipf-distributed categories plus ``other``, on both sides. For each, all statistics of the
kind and the kind's defaults, in microseconds per feature (median and 90th percentile over
``--repeat`` timed calls of ``--number`` each, after a warm-up), plus the bound each statistic
stated, so a change that makes the bounds looser shows here too.

Target: < 1,000 us per feature for all its statistics.

    python load_tests/bench_drift.py [--repeat 30] [--number 20] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasketches
import numpy as np

from driftwire.sketch.quantiles import QuantileSketch
from driftwire.stats.drift import (
    CATEGORICAL_STATISTICS,
    DEFAULT_STATISTICS,
    NUMERIC_STATISTICS,
    categorical_drift,
    numeric_drift,
)

TARGET_US = 1_000.0


def kll(values: np.ndarray, kind: str, k: int) -> Any:
    if kind == "quantile":
        q = QuantileSketch(k)
        for start in range(0, values.size, 250):
            q.update_batch(values[start : start + 250])
        return q
    if kind == "floats":
        s = datasketches.kll_floats_sketch(k)
        s.update(values.astype(np.float32))
    else:
        s = datasketches.kll_doubles_sketch(k)
        s.update(values)
    return s


def top_counts(rng: np.random.Generator, n: int, skew: float) -> tuple[dict[str, int], int]:
    weights = 1.0 / np.arange(1, 301) ** skew
    counts = rng.multinomial(n, weights / weights.sum())
    order = np.argsort(-counts, kind="stable")[:100]
    tracked = {f"cat{i:03d}": int(counts[i]) for i in order.tolist()}
    return tracked, int(n - sum(tracked.values()))


def timed(call: Callable[[], object], repeat: int, number: int) -> dict[str, float]:
    call()  # warm-up: imports, caches
    runs = [t / number * 1e6 for t in timeit.repeat(call, repeat=repeat, number=number)]
    return {
        "median_us": round(statistics.median(runs), 1),
        "p90_us": round(float(np.quantile(runs, 0.9)), 1),
        "min_us": round(min(runs), 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    ref_values = rng.normal(0.0, 1.0, args.reference_events)
    cur_values = rng.normal(0.2, 1.0, args.window_events)
    result: dict[str, Any] = {"target_us_per_feature": TARGET_US}
    met = True
    for kind in ("quantile", "floats", "doubles"):
        ref, cur = kll(ref_values, kind, args.k), kll(cur_values, kind, args.k)
        exact = (
            s.is_exact if kind == "quantile" else not s.is_estimation_mode() for s in (ref, cur)
        )
        if any(exact):
            raise SystemExit("both sketches must be in estimation mode")
        entry: dict[str, Any] = {}
        for label, names in (
            ("all", NUMERIC_STATISTICS),
            ("defaults", DEFAULT_STATISTICS["numeric"]),
        ):
            entry[label] = timed(
                lambda r=ref, c=cur, names=names: numeric_drift(r, c, names),
                args.repeat,
                args.number,
            )
        results = numeric_drift(ref, cur, NUMERIC_STATISTICS)
        entry["values"] = {k: round(r.value, 4) for k, r in results.items()}
        entry["bounds"] = {k: round(r.bound, 4) for k, r in results.items()}
        met &= entry["all"]["median_us"] < TARGET_US
        result[f"numeric_{kind}_k{args.k}"] = entry

    ref_counts, ref_other = top_counts(rng, args.reference_events, 1.1)
    cur_counts, cur_other = top_counts(rng, args.window_events, 1.0)
    entry = {}
    for label, names in (
        ("all", CATEGORICAL_STATISTICS),
        ("defaults", DEFAULT_STATISTICS["categorical"]),
    ):
        entry[label] = timed(
            lambda names=names: categorical_drift(
                ref_counts, ref_other, cur_counts, cur_other, names
            ),
            args.repeat,
            args.number,
        )
    results = categorical_drift(
        ref_counts, ref_other, cur_counts, cur_other, CATEGORICAL_STATISTICS
    )
    entry["values"] = {k: round(r.value, 4) for k, r in results.items()}
    met &= entry["all"]["median_us"] < TARGET_US
    result["categorical_top100"] = entry
    result["target_met"] = met
    calibration = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6
    result["calibration_sum_range_1000_us"] = round(calibration, 2)
    result["python"] = sys.version.split()[0]
    result["numpy"] = np.__version__
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reference-events", type=int, default=1_000_000)
    ap.add_argument("--window-events", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=200, help="KLL k of both sketches")
    ap.add_argument("--repeat", type=int, default=30, help="timed runs")
    ap.add_argument("--number", type=int, default=20, help="calls per timed run")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    result = run(args)
    result["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
