"""The calibrated detection rule: stationary false alerts and stage 2's CPU per window.

Stationary streams of the generator (8 numeric and 4 categorical inputs, the prediction's score
and label, 8 segments plus ``all``) run through the in-memory pipeline against their frozen
first window, once per seed. Reported per rule (``detect.rule`` fixed and calibrated) and FDR
level ``q``:

* false drift alerts (firing ``data_drift`` / ``prediction_drift``: every one is false here)
  per 10,000 (feature, segment) evaluations, after the K = 2 consecutive-window rule, and the
  share of windows with any breaching finding before it;
* stage 2's CPU per evaluated window (one model version's window: every input x segment
  compared with its reference, the FDR step, the findings), measured with
  ``time.process_time`` around the detector's window evaluation, and per comparison;
* of that, the CPU of the drift comparisons alone (``compare_profiles`` and ``decide_family``:
  the part the rule changes; the window merge, quality and latency findings are the same).

``--repeats`` runs the rules in turn that many times (fixed, calibrated, fixed, ...): on a
shared machine the CPU figures move with the load, and the rows give the median over the
repeats (each repeat's figure in ``cpu_ms_per_window_repeats``).

    python load_tests/bench_calibration.py [--seeds 4] [--minutes 150] [--repeats 3]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from driftwire.detect import detector as detector_module
from driftwire.detect.detector import Detector
from driftwire.offline.generator import StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.stages.inmemory import InMemoryPipeline

DRIFT = {"data_drift", "prediction_drift"}


def measure(rule: str, q: float, seed: int, minutes: int, per_minute: int) -> dict[str, Any]:
    settings = Settings.model_validate({"detect": {"rule": rule, "fdr_q": q}})
    pipeline = InMemoryPipeline(settings)
    detector: Any = pipeline.detector
    cpu = {
        "seconds": 0.0,
        "comparison_seconds": 0.0,
        "windows": 0,
        "comparisons": 0,
        "breaching_windows": 0,
    }
    inner = Detector._evaluate_window

    def clocked(function: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                cpu["comparison_seconds"] += time.process_time() - t0

        return run

    def timed(*args: Any, **kwargs: Any) -> Any:
        findings = args[5]
        before = len(findings)
        t0 = time.process_time()
        out = inner(detector, *args, **kwargs)
        cpu["seconds"] += time.process_time() - t0
        drift = [f for f in findings[before:] if f.kind in DRIFT]
        if drift:
            cpu["windows"] += 1
            cpu["comparisons"] += len(drift)
            cpu["breaching_windows"] += any(f.level is not None for f in drift)
        return out

    detector._evaluate_window = timed
    originals = detector_module.compare_profiles, detector_module.decide_family
    detector_module.compare_profiles, detector_module.decide_family = map(clocked, originals)
    spec = StreamSpec(events=minutes * per_minute, seed=seed, events_per_second=per_minute / 60)
    try:
        alerts = list(pipeline.run(generate(spec)))
    finally:
        detector_module.compare_profiles, detector_module.decide_family = originals
    false_alerts = sum(1 for a in alerts if a.status == "firing" and a.kind in DRIFT)
    return {"false_alerts": false_alerts, **cpu}


def _row(rule: str, q: float, repeats: list[dict[str, float]]) -> dict[str, Any]:
    total = repeats[0]  # the counts are the same in every repeat (deterministic streams)
    per_window = [1e3 * r["seconds"] / max(r["windows"], 1) for r in repeats]
    comparing = [1e3 * r["comparison_seconds"] / max(r["windows"], 1) for r in repeats]
    ms = statistics.median(per_window)
    return {
        "rule": rule,
        "q": q if rule == "calibrated" else None,
        "evaluations": int(total["comparisons"]),
        "windows": int(total["windows"]),
        "false_alerts": int(total["false_alerts"]),
        "false_alerts_per_10k": 1e4 * total["false_alerts"] / max(total["comparisons"], 1),
        "breaching_window_share": total["breaching_windows"] / max(total["windows"], 1),
        "cpu_ms_per_window": ms,
        "cpu_us_per_comparison": 1e3 * ms * total["windows"] / max(total["comparisons"], 1),
        "comparison_cpu_ms_per_window": statistics.median(comparing),
        "cpu_ms_per_window_repeats": per_window,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "per_minute": args.per_minute,
        "minutes": args.minutes,
        "seeds": args.seeds,
        "repeats": args.repeats,
        "rows": [],
    }
    rules = [("fixed", 0.01), *(("calibrated", q) for q in args.q)]
    runs: dict[tuple[str, float], list[dict[str, float]]] = {rule: [] for rule in rules}
    for _ in range(args.repeats):
        for rule, q in rules:  # in turn, so that a change of load hits every rule alike
            total: dict[str, float] = {}
            for seed in range(args.seeds):
                for key, value in measure(rule, q, seed, args.minutes, args.per_minute).items():
                    total[key] = total.get(key, 0) + value
            runs[rule, q].append(total)
    for (rule, q), repeats in runs.items():
        row = _row(rule, q, repeats)
        out["rows"].append(row)
        print(json.dumps(row), file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--minutes", type=int, default=150, help="stream length (1-minute buckets)")
    ap.add_argument("--per-minute", type=int, default=2_000, help="events per minute, all segments")
    ap.add_argument("--q", type=float, nargs="+", default=[0.01])
    ap.add_argument("--repeats", type=int, default=1, help="runs of each rule, in turn")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    result = run(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
