"""Ground-truth evaluation: realized and estimated performance, label drift, the join's memory.

Models are trained here on real data bundled with scikit-learn (a logistic regression on the
handwritten-digits table: is the digit 5-9?; a linear regression on the diabetes table);
their predictions on held-out rows are the reference (its realized performance is what
``baseline build --target-column`` stores, built with the same code), and rows resampled
from the held-out pool are streamed, with their truth, through
:class:`driftwire.truth.tracker.TruthTracker` in memory. Labels arrive with log-normal delays
(median 3 hours, 1 minute to 6 days) for a share of the predictions (80%, 30% after a
drop). Settings: 1-hour buckets, 6-hour windows judged 6 hours after they close and again
24 hours, 72 hours and 7 days (the horizon) after, on every label joined by then; the default
rule.

Scenarios (a change starts at hour ``CHANGE_H``):

* ``stationary``: nothing changes (every alert is false);
* ``covariate_harmful``: the inputs move to where the model is unsure (rows sampled with
  weight on scores in 0.15-0.85): accuracy falls; the estimate can see it;
* ``covariate_harmless``: the inputs move to where the model is sure: nothing should fire;
* ``concept``: inputs unchanged, 25% of the outcomes flip: only realized performance sees it;
* ``label_rate_drop``: the labelled share falls from 80% to 30%: completeness falls, nothing
  should fire;
* ``prior_shift``: positives become rare (rows resampled to 20% positive): label drift;
* ``regression_stationary`` / ``regression_concept`` (the target moves by +60, about one
  standard deviation of the model's error): a regressor's MAE/RMSE.

Scoring, per alert kind: an alert (a firing event) is *true* when the scenario expects that
kind and its window ends after the change started; recall is the share of runs expecting the
kind where a true one fired; delay is from the change to the evaluation that fired it
(hours, median over runs), and the age of the judgement that fired it is reported. The
estimate's error is estimated minus realized accuracy of each window after the change
(estimate made when the window closed, realized value as judged 24 hours later); label
completeness is read at that judgement too.

    python load_tests/eval_truth.py            # full, writes load_tests/results/truth.json
    python load_tests/eval_truth.py --quick    # < 30 s: one seed, 5-day streams, 100k join
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

from driftwire.alerts.alert import Alert
from driftwire.truth.join import Prediction, TruthJoin
from driftwire.truth.label import GroundTruth
from driftwire.truth.reference import ReferencePerformance, ReferencePerformanceBuilder
from driftwire.truth.tracker import TrackerSettings, TruthTracker

HOUR = 3_600_000
CHANGE_H = 72
FIRST_H = 6  # the first judgement, hours after a window closes
REJUDGE_H = (24, 72)  # judged again then, and at the 7-day horizon
MEASURED_H = 24  # completeness and the estimate's error are read at this judgement
CONCEPT_SHIFT = 60.0
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "truth.json"
KINDS = ("performance_degradation", "estimated_performance", "label_drift")

#: Targets, asserted by the quick test: every expected kind found in every run, no false
#: alert, detection within 18 hours of the change (a window judged first 6 hours after it
#: closes; 36 when windows were judged once, 24 hours after), the estimate within 0.05 of the
#: realized accuracy on average where only the inputs moved.
TARGETS = {"recall": 1.0, "precision": 1.0, "max_delay_hours": 18.0, "estimate_mae": 0.05}


@dataclass(frozen=True)
class Scenario:
    name: str
    expects: tuple[str, ...]  # alert kinds that should fire after the change
    regression: bool = False
    allowed: tuple[str, ...] = ()  # kinds that may fire after the change (neither true nor false)


SCENARIOS = (
    Scenario("stationary", ()),
    Scenario("covariate_harmful", ("performance_degradation", "estimated_performance")),
    Scenario("covariate_harmless", ()),
    Scenario("concept", ("performance_degradation",)),
    Scenario("label_rate_drop", ()),
    # fewer positives also moves accuracy (the model errs more on one class): allowed
    Scenario("prior_shift", ("label_drift",), allowed=("performance_degradation",)),
    Scenario("regression_stationary", (), regression=True),
    Scenario("regression_concept", ("performance_degradation",), regression=True),
)


@dataclass
class Model:
    pool_x: np.ndarray  # held-out rows: reference and stream
    pool_y: np.ndarray
    predicted: np.ndarray  # score (classifier) or value (regressor) of each pool row
    reference: ReferencePerformance


def classifier() -> Model:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, digit = load_digits(return_X_y=True)
    y = (digit >= 5).astype(int)  # a binary task: is the handwritten digit 5-9?
    xt, xp, yt, yp = train_test_split(x, y, test_size=0.5, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
    score = model.fit(xt, yt).predict_proba(xp)[:, 1]
    builder = ReferencePerformanceBuilder()
    for s, actual in zip(score.tolist(), yp.tolist(), strict=True):
        builder.add(segment="all", score=s, label=None, actual="true" if actual else "false")
    return Model(xp, yp, score, builder.finish())


def regressor() -> Model:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import train_test_split

    x, y = load_diabetes(return_X_y=True)
    xt, xp, yt, yp = train_test_split(x, y, test_size=0.5, random_state=0)
    predicted = LinearRegression().fit(xt, yt).predict(xp)
    builder = ReferencePerformanceBuilder()
    for value, actual in zip(predicted.tolist(), yp.tolist(), strict=True):
        builder.add(segment="all", score=value, label=None, actual=float(actual))
    return Model(xp, yp, predicted, builder.finish())


def stream(
    s: Scenario, m: Model, seed: int, hours: int, rate: int
) -> list[Prediction | GroundTruth]:
    """``rate`` predictions an hour for ``hours`` hours, their labels, in arrival order."""
    rng = np.random.default_rng(seed)
    n = len(m.pool_y)
    weights_after = np.ones(n)
    if s.name == "covariate_harmful":
        weights_after = np.where(np.abs(m.predicted - 0.5) < 0.35, 1.0, 0.02)
    elif s.name == "covariate_harmless":
        weights_after = np.where(np.abs(m.predicted - 0.5) > 0.45, 1.0, 0.02)
    elif s.name == "prior_shift":
        positive = m.pool_y == 1
        weights_after = np.where(positive, 0.2 / positive.mean(), 0.8 / (~positive).mean())
    p_after = weights_after / weights_after.sum()
    records: list[tuple[int, int, Prediction | GroundTruth]] = []
    k = 0
    for hour in range(hours):
        after = hour >= CHANGE_H
        rows = rng.choice(n, size=rate, p=p_after if after else None)
        times = np.sort(rng.integers(hour * HOUR, (hour + 1) * HOUR, size=rate))
        labelled_share = 0.3 if s.name == "label_rate_drop" and after else 0.8
        for row, t in zip(rows.tolist(), times.tolist(), strict=True):
            k += 1
            event_id = f"{seed}-{k}"
            value = float(m.predicted[row])
            model = "price" if s.regression else "diagnosis"
            records.append((t, 2 * k, Prediction(event_id, model, "1", "all", t, value, None)))
            if rng.random() >= labelled_share:
                continue
            truth: str | float
            if s.regression:
                shift = CONCEPT_SHIFT if s.name == "regression_concept" and after else 0.0
                truth = float(m.pool_y[row]) + shift
            else:
                outcome = bool(m.pool_y[row])
                if s.name == "concept" and after and rng.random() < 0.25:
                    outcome = not outcome
                truth = "true" if outcome else "false"
            delay = int(min(max(rng.lognormal(np.log(3 * HOUR), 1.5), 60_000), 6 * 24 * HOUR))
            label = GroundTruth(event_id, model, None, truth, t + delay, None)
            records.append((t + delay, 2 * k + 1, label))
    return [r for _, _, r in sorted(records, key=lambda r: (r[0], r[1]))]


def run(s: Scenario, m: Model, seed: int, hours: int, rate: int) -> dict[str, Any]:
    tracker = TruthTracker(
        TrackerSettings(
            bucket_ms=HOUR,
            window_ms=6 * HOUR,
            horizon_ms=7 * 24 * HOUR,
            evaluation_delay_ms=FIRST_H * HOUR,
            rejudge_ms=tuple(h * HOUR for h in REJUDGE_H),
        )
    )
    model = "price" if s.regression else "diagnosis"
    tracker.use_baseline(model, "1", f"baseline:{model}", m.reference)
    alerts: list[Alert] = []
    errors: list[float] = []
    completeness: dict[str, list[float]] = {"before": [], "after": []}
    seen_windows: set[int] = set()
    for r in stream(s, m, seed, hours, rate):
        alerts += tracker.add_prediction(r) if isinstance(r, Prediction) else tracker.add_label(r)
        judged = tracker.judged.get((model, "1", "all"), {}).get(MEASURED_H * HOUR)
        if judged is not None and judged.window_end_ms not in seen_windows:
            seen_windows.add(judged.window_end_ms)
            phase = "after" if judged.window_end_ms > CHANGE_H * HOUR + 6 * HOUR else "before"
            if judged.window_end_ms > CHANGE_H * HOUR and phase == "before":
                phase = "mixed"
            if phase != "mixed":
                completeness[phase].append(judged.completeness)
            if "accuracy" in judged.estimate_error and phase == "after":
                errors.append(judged.estimate_error["accuracy"])
    firing = [a for a in alerts if a.status == "firing"]
    found: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        mine = [a for a in firing if a.kind == kind]
        if kind in s.allowed:
            mine = [a for a in mine if _window_end(a) <= CHANGE_H * HOUR]
        true = [a for a in mine if kind in s.expects and _window_end(a) > CHANGE_H * HOUR]
        found[kind] = {
            "fired": len(mine),
            "true": len(true),
            "delay_hours": (true[0].evaluated_at_ms - CHANGE_H * HOUR) / HOUR if true else None,
            "judged_after_hours": (
                true[0].evidence.get("judged_after_seconds", 0) / 3600 if true else None
            ),
        }
    return {
        "scenario": s.name,
        "seed": seed,
        "alerts": found,
        "estimate_errors": errors,
        "completeness": {k: float(np.mean(v)) if v else None for k, v in completeness.items()},
        "joined": tracker.join.counts.joined,
    }


def _window_end(alert: Alert) -> int:
    from datetime import datetime

    end = str(alert.window["end"]).replace("Z", "+00:00")
    return int(datetime.fromisoformat(end).timestamp() * 1000)


def join_memory(pending: int, fraction: float) -> dict[str, Any]:
    """Memory of the join holding the predictions offered until ``pending`` are kept
    (``fraction`` of the offered ones when sampling), no label yet: tracemalloc's peak and
    the serialized state's size."""
    join = TruthJoin(horizon_ms=7 * 24 * HOUR, max_pending=pending, sample_fraction=fraction)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    offered = 0
    while join.pending_predictions < pending:
        offered += 1
        join.add_prediction(Prediction(f"{offered:016x}", "churn", "1", "all", offered, 0.5, None))
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = len(join.to_bytes())
    return {
        "pending": join.pending_predictions,
        "offered": offered,
        "sample_fraction": fraction,
        "bytes_per_pending": round((current - before) / pending, 1),
        "megabytes": round((current - before) / 2**20, 1),
        "peak_megabytes": round((peak - before) / 2**20, 1),
        "serialized_megabytes": round(size / 2**20, 1),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    per_kind: dict[str, Any] = {}
    for kind in KINDS:
        fired = sum(r["alerts"][kind]["fired"] for r in rows)
        true = sum(r["alerts"][kind]["true"] for r in rows)
        expecting = [r for r in rows if kind in _expects(r["scenario"])]
        delays = [
            r["alerts"][kind]["delay_hours"]
            for r in expecting
            if r["alerts"][kind]["delay_hours"] is not None
        ]
        ages = sorted(
            {
                r["alerts"][kind]["judged_after_hours"]
                for r in expecting
                if r["alerts"][kind]["judged_after_hours"] is not None
            }
        )
        per_kind[kind] = {
            "fired_at_ages_hours": ages,
            "alerts": fired,
            "precision": true / fired if fired else None,
            "recall": len(delays) / len(expecting) if expecting else None,
            "median_delay_hours": median(delays) if delays else None,
            "max_delay_hours": max(delays) if delays else None,
        }
    estimate: dict[str, Any] = {}
    for name in ("stationary", "covariate_harmful", "covariate_harmless", "concept"):
        errors = [e for r in rows if r["scenario"] == name for e in r["estimate_errors"]]
        if errors:
            estimate[name] = {
                "windows": len(errors),
                "mean_abs_error": round(float(np.mean(np.abs(errors))), 4),
                "mean_error": round(float(np.mean(errors)), 4),
                "p90_abs_error": round(float(np.quantile(np.abs(errors), 0.9)), 4),
            }
    return {"per_kind": per_kind, "estimate_error_accuracy": estimate}


def _expects(name: str) -> tuple[str, ...]:
    return next(s.expects for s in SCENARIOS if s.name == name)


def evaluate(quick: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    seeds = (1,) if quick else (1, 2, 3, 4, 5)
    hours, rate = (120, 120) if quick else (216, 250)
    models = {False: classifier(), True: regressor()}
    rows = [run(s, models[s.regression], seed, hours, rate) for s in SCENARIOS for seed in seeds]
    pending = 100_000 if quick else 1_000_000
    memory = [join_memory(pending, 1.0), join_memory(pending // 10, 0.1)]
    return {
        "quick": quick,
        "settings": {
            "bucket_hours": 1,
            "window_hours": 6,
            "evaluation_delay_hours": FIRST_H,
            "rejudge_after_hours": [*REJUDGE_H, 7 * 24],
            "measured_at_hours": MEASURED_H,
            "horizon_days": 7,
            "predictions_per_hour": rate,
            "hours": hours,
            "change_at_hour": CHANGE_H,
            "seeds": list(seeds),
        },
        "targets": TARGETS,
        "summary": summarize(rows),
        "runs": [{k: v for k, v in r.items() if k != "estimate_errors"} for r in rows],
        "join_memory": memory,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| alert kind | alerts | precision | recall | median / max delay (h) | judged after (h) |",
        "|---|---|---|---|---|---|",
    ]
    for kind, k in result["summary"]["per_kind"].items():
        precision = "-" if k["precision"] is None else f"{k['precision']:.2f}"
        recall = "-" if k["recall"] is None else f"{k['recall']:.2f}"
        delay = (
            "-"
            if k["median_delay_hours"] is None
            else f"{k['median_delay_hours']:.0f} / {k['max_delay_hours']:.0f}"
        )
        ages = ", ".join(f"{a:g}" for a in k["fired_at_ages_hours"]) or "-"
        lines.append(f"| {kind} | {k['alerts']} | {precision} | {recall} | {delay} | {ages} |")
    lines += [
        "",
        "| scenario | estimated - realized accuracy: mean abs / mean / p90 abs |",
        "|---|---|",
    ]
    for name, e in result["summary"]["estimate_error_accuracy"].items():
        lines.append(
            f"| {name} | {e['mean_abs_error']:.3f} / {e['mean_error']:+.3f} / "
            f"{e['p90_abs_error']:.3f} ({e['windows']} windows) |"
        )
    lines += ["", "| join | pending | MB (tracemalloc) | bytes / pending | serialized MB |"]
    lines.append("|---|---|---|---|---|")
    for mem in result["join_memory"]:
        lines.append(
            f"| sample_fraction {mem['sample_fraction']} ({mem['offered']} offered) | "
            f"{mem['pending']} | {mem['megabytes']} | {mem['bytes_per_pending']} | "
            f"{mem['serialized_megabytes']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, shorter streams")
    parser.add_argument("--json", type=Path, help=f"write the result here (full: {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    result = evaluate(args.quick)
    out = args.json or (None if args.quick else DEFAULT_JSON)
    if out is not None:
        out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(table(result))
    print(f"{result['seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
