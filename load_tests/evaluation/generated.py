"""Today's generated streams (:mod:`driftwire.offline.generator`) with known truth.

Every scenario is a seeded stream at 40 events/s (4 regions x 2 tiers = 8 segments, 8 numeric
and 4 categorical features; 1,500 events per segment in a 5-minute window, so the frozen first
window meets the default ``min_reference_count`` of 1,000), 45 minutes long with one known
change from minute 20 on (60 minutes for the gradual drift and the latency creep), run through
both stages with the DEFAULT settings. Exceptions, each needed by its scenario: the seasonal
scenario sets its reference kind (``seasonal``, a day, 2 periods) and 10-minute buckets.

Scenarios: abrupt shifts of income in one segment (+0.5, +1, +2 sd) and of age everywhere
(+0.5 sd); gradual drift (income +0.05 sd per minute everywhere); 4 features +1 sd at once
(true: one ``upstream_change``); 30% of income missing in one segment; a new country in 10% of
the events; a schema change (``plan`` renamed ``plan_tier``; true: data-quality alerts on
either, or an upstream incident); latency x4 (spike) and +2% per minute (creep); one of two
versions stops sending; a 10% canary scoring 0.5 sd higher (true: its ``version_comparison``
on the prediction); a daily pattern (income ±1 sd by hour everywhere, 3 days, compared with
the same hour of the previous 2 days; alerts of day 1 not counted) with a +1 sd change in one
segment on day 3 at noon; and two stationary streams of 2 hours (all-normal features, and
mixed shapes: lognormal, heavy-tailed, uniform-like, bimodal, integer with ties, zero-inflated
and skewed categoricals with a 0.5% category).

Here an alert is one episode of one fingerprint, from firing to resolved (the incident itself
for ``upstream_change``), so a condition that fired while a reference was still building and
fires again at the change counts twice;
recall is the share of runs in which a true alert fired after the change; delay runs from the
change to the end of the window whose evaluation fired the first true alert (minutes, windows,
events of the changed traffic); evaluations are (input, scope) pairs per evaluated window
of a model version (14 inputs: 12 features and the prediction's score and label; 9 scopes: 8
segments and ``all``), whether or not the detector had enough data. Runs with the same seed
share the same background stream.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from driftwire.alerts.alert import Alert, fingerprint
from driftwire.offline.generator import Change, StreamSpec, daily_pattern, generate
from driftwire.ops.config import Settings
from driftwire.stages.inmemory import InMemoryPipeline

MINUTE = 60_000
RATE = 40.0  # events/s: 5 per segment and second, 1,500 per segment in a 5-minute window
START = StreamSpec(events=1).start_ms
T = START + 20 * MINUTE  # the change (the first window, minutes 0-5, is the frozen reference)
SEGMENT = "region=eu,tier=gold"
INPUTS = 8 + 4 + 2  # numeric and categorical features, the prediction's score and label
SCOPES = 4 * 2 + 1  # the segments and their aggregate
MIXED = (
    ("income", "lognormal"), ("tenure_days", "uniform"), ("sessions_7d", "integer"),
    ("basket_value", "heavy_tailed"), ("discount", "zero_inflated"),
    ("support_calls", "integer"), ("pages_per_visit", "bimodal"),
    ("country", "skewed"), ("device", "skewed"),
)  # fmt: skip

Edit = Callable[[dict[str, Any], np.random.Generator], dict[str, Any] | None]
Truth = Callable[[Alert], bool]


@dataclass
class Scenario:
    name: str
    changes: tuple[Change, ...] = ()
    edit: Edit | None = None
    truth: Truth | None = None  # None: stationary
    versions: tuple[str, ...] = ("1.4.2",)
    config: dict[str, Any] = field(default_factory=dict)  # the stated exceptions only
    minutes: int = 45  # stream length at RATE
    share: float = 1.0  # share of the traffic that changes (delay in events counts that)
    shapes: tuple[tuple[str, str], ...] = ()
    days: int = 0  # a stream of this many days at DAILY_RATE instead
    change_ms: int = 0  # when the change starts (0: T)
    warmup_ms: int = 0  # alerts before this are not counted (a reference still building)


@dataclass
class Outcome:
    runs: int = 0
    detected: int = 0
    delays: list[float] = field(default_factory=list)  # minutes
    windows: list[float] = field(default_factory=list)
    delay_events: list[float] = field(default_factory=list)
    true_alerts: int = 0
    false_alerts: int = 0
    evaluations: int = 0
    false_by_kind: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def drift_of(feature: str, segment: str | None) -> Truth:
    def truth(a: Alert) -> bool:
        segments = {"all", segment} if segment else None
        return (
            a.kind == "data_drift"
            and a.labels.get("feature") == feature
            and (segments is None or a.labels["segment"] in segments)
        )

    return truth


def kind_is(kind: str, *statistics: str) -> Truth:
    return lambda a: a.kind == kind and (not statistics or a.labels["statistic"] in statistics)


def null_income(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any] | None:
    segment = event["segment"]
    hit = segment["region"] == "eu" and segment["tier"] == "gold"
    if event["timestamp"] >= T and hit and rng.random() < 0.3:
        event["features"]["income"] = None
    return event


def stop_version(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any] | None:
    return None if event["timestamp"] >= T and event["model_version"] == "2.0.0" else event


def canary_version(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any] | None:
    """From the change on, 10% of the traffic goes to canary 1.5.0, scoring 0.5 sd higher."""
    if event["timestamp"] >= T and rng.random() < 0.1:
        event["model_version"] = "1.5.0"
        score = min(1.0, event["prediction"]["score"] + 0.5 * 0.16)  # sd of Beta(2, 5)
        event["prediction"] = {"score": score, "label": "churn" if score > 0.5 else "stay"}
    return event


def canary_differs(alert: Alert) -> bool:
    return (
        alert.kind == "version_comparison"
        and alert.labels["model_version"] == "1.5.0"
        and alert.labels.get("feature", "").startswith("prediction.")
    )


def new_country(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any] | None:
    """From the change on, 10% of all events come from a country never seen before."""
    if event["timestamp"] >= T and rng.random() < 0.1:
        event["features"]["country"] = "MX"
    return event


def rename_plan(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any] | None:
    """From the change on, upstream renames the feature ``plan`` to ``plan_tier``."""
    if event["timestamp"] >= T:
        event["features"]["plan_tier"] = event["features"].pop("plan")
    return event


def about(*features: str) -> Truth:
    """Data-quality or drift alerts on these features, or an upstream incident."""
    return lambda a: (
        a.kind == "upstream_change"
        or (a.kind in ("data_quality", "data_drift") and a.labels.get("feature") in features)
    )


# a daily pattern (income +-1 sd by hour of the day, all traffic) over 3 days, compared with the
# same hour of the previous 2 days; a real +1 sd change in one segment on day 3 at noon
DAY = 86_400_000
DAILY_RATE = 4800 * 24  # events per day: 600 per segment and hour
SEASONAL = {
    "profile": {"bucket_seconds": 600},
    "detect": {"references": {"default": "seasonal", "seasonal_period": "day",
                              "seasonal_periods": 2}},
}  # fmt: skip
NOON3 = START + 2 * DAY + 12 * 3_600_000


def ramp(target: str, step: float, minutes: int, additive: bool = False) -> tuple[Change, ...]:
    """From T, one step per minute: latency x (1 + step * i), or a feature + step * i sd."""
    return tuple(
        Change(target, T + i * MINUTE, step * (i + 1) + (0 if additive else 1),
               end_ms=T + (i + 1) * MINUTE)
        for i in range(minutes - (T - START) // MINUTE)
    )  # fmt: skip


SCENARIOS = [
    Scenario("stationary, normal", minutes=120),
    Scenario("stationary, mixed shapes", minutes=120, shapes=MIXED),
    Scenario("income +0.5 sd, 1 segment", (Change("income", T, 0.5, SEGMENT),), None,
             drift_of("income", SEGMENT), share=1 / 8),
    Scenario("income +1 sd, 1 segment", (Change("income", T, 1.0, SEGMENT),), None,
             drift_of("income", SEGMENT), share=1 / 8),
    Scenario("income +2 sd, 1 segment", (Change("income", T, 2.0, SEGMENT),), None,
             drift_of("income", SEGMENT), share=1 / 8),
    Scenario("age +0.5 sd, all traffic", (Change("age", T, 0.5),), None, drift_of("age", None)),
    Scenario("income +0.05 sd/min (gradual)", ramp("income", 0.05, 60, additive=True), None,
             drift_of("income", None), minutes=60),
    Scenario("4 features +1 sd (upstream)",
             tuple(Change(f, T, 1.0) for f in ("age", "income", "tenure_days", "discount")),
             None, kind_is("upstream_change")),
    Scenario("30% income missing, 1 segment", (), null_income,
             lambda a: a.kind == "data_quality" and a.labels.get("feature") == "income",
             share=1 / 8),
    Scenario("new country in 10%", (), new_country, about("country")),
    Scenario("plan renamed (schema)", (), rename_plan, about("plan", "plan_tier")),
    Scenario("latency x4 (spike)", (Change("latency", T, 4.0),), None,
             kind_is("latency_anomaly", "p50", "p95", "p99")),
    Scenario("latency +2%/min (creep)", ramp("latency", 0.02, 60), None,
             kind_is("latency_anomaly", "p95_creep", "p50", "p95", "p99"), minutes=60),
    Scenario("version 2.0.0 stops", (), stop_version, kind_is("throughput", "no_data"),
             versions=("1.4.2", "2.0.0"), share=0.5),
    Scenario("canary 10%, score +0.5 sd", (), canary_version, canary_differs, share=0.1),
    Scenario("daily pattern, seasonal ref.",
             (*daily_pattern("income", 1.0, START, 3), Change("income", NOON3, 1.0, SEGMENT)),
             None, drift_of("income", SEGMENT), config=SEASONAL, days=3, change_ms=NOON3,
             warmup_ms=START + DAY + 3_600_000, share=1 / 8),
]  # fmt: skip
ABRUPT = ("income +1 sd", "income +2 sd", "4 features", "missing", "new country", "renamed",
          "spike", "stops")  # fmt: skip


def settings(config: dict[str, Any] | None = None) -> Settings:
    return Settings.model_validate(config or {})


def rate(scenario: Scenario) -> float:
    return DAILY_RATE / 86_400 if scenario.days else RATE


def events(scenario: Scenario, seed: int) -> Iterator[bytes]:
    seconds = 86_400 * scenario.days if scenario.days else scenario.minutes * 60
    spec = StreamSpec(
        events=round(seconds * rate(scenario)),
        seed=seed,
        events_per_second=rate(scenario),
        versions=scenario.versions,
        changes=scenario.changes,
        shapes=scenario.shapes,
    )
    if scenario.edit is None:
        yield from generate(spec)
        return
    rng = np.random.default_rng(seed + 1000)
    for raw in generate(spec):
        event = scenario.edit(orjson.loads(raw), rng)
        if event is not None:
            yield orjson.dumps(event)


def run_one(scenario: Scenario, seed: int, outcome: Outcome) -> None:
    config = settings(scenario.config)
    window_ms = config.detect.window_buckets * config.profile.bucket_seconds * 1000
    pipeline = InMemoryPipeline(config, keep_state_parts=False)
    t0 = time.perf_counter()
    alerts = list(pipeline.run(events(scenario, seed)))
    outcome.evaluations += pipeline.stats.windows_evaluated * INPUTS * SCOPES
    outcome.seconds += time.perf_counter() - t0
    score(scenario, alerts, outcome, window_ms)


def score(scenario: Scenario, alerts: list[Alert], outcome: Outcome, window_ms: int) -> None:
    """Add one run's alerts to ``outcome``: its true and false episodes, whether a true one
    fired after the change, and the delay of the first (minutes, windows, changed events)."""
    outcome.runs += 1
    first: int | None = None
    change = scenario.change_ms or T
    for alert in episodes(alerts):
        if alert.evaluated_at_ms < scenario.warmup_ms:
            continue
        true = (
            scenario.truth is not None and scenario.truth(alert) and alert.evaluated_at_ms > change
        )
        if true:
            outcome.true_alerts += 1
            first = alert.evaluated_at_ms if first is None else min(first, alert.evaluated_at_ms)
        else:
            outcome.false_alerts += 1
            outcome.false_by_kind[alert.kind] = outcome.false_by_kind.get(alert.kind, 0) + 1
    if first is not None:
        outcome.detected += 1
        outcome.delays.append((first - change) / MINUTE)
        outcome.windows.append((first - change) / window_ms)
        outcome.delay_events.append((first - change) / 1000 * rate(scenario) * scenario.share)


def episodes(alerts: list[Alert]) -> list[Alert]:
    """The alert that starts each episode of each condition (firing until resolved).

    An escalation (the warning resolved and the critical firing in one evaluation) continues
    its episode; a condition that resolves and fires again later starts a new one.
    """
    firing: dict[str, bool] = {}
    resolved_at: dict[str, int] = {}
    out: list[Alert] = []
    for alert in alerts:
        # the condition, not the fingerprint: the severity is one of the alert's labels, and
        # an escalation resolves the warning's fingerprint and fires the critical one's
        key = fingerprint({k: v for k, v in alert.labels.items() if k != "severity"})
        if alert.status == "resolved":
            firing[key] = False
            resolved_at[key] = alert.evaluated_at_ms
        elif not firing.get(key):
            firing[key] = True
            if resolved_at.get(key) != alert.evaluated_at_ms:
                out.append(alert)
    return out


def evaluate(seeds: Iterable[int], scenarios: list[Scenario]) -> dict[str, Outcome]:
    results: dict[str, Outcome] = {}
    for scenario in scenarios:
        outcome = results.setdefault(scenario.name, Outcome())
        for seed in seeds:
            run_one(scenario, seed, outcome)
        print(
            f"  generated | {scenario.name}: {outcome.seconds:.0f} s", file=sys.stderr, flush=True
        )
    return results


def spread(values: list[float], digits: int = 1) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), digits), "max": round(max(values), digits)}


def row(name: str, o: Outcome, stationary: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"group": "generated", "scenario": name, "runs": o.runs}
    out["seconds"] = round(o.seconds, 1)
    out["kind"] = "stationary" if stationary else "change"
    out["abrupt"] = any(a in name for a in ABRUPT)
    out["evaluations"] = o.evaluations
    if stationary:
        out["false_alerts"] = o.false_alerts
        out["false_per_10k"] = round(o.false_alerts / max(o.evaluations, 1) * 10_000, 3)
        out["false_by_kind"] = o.false_by_kind
        return out
    fired = o.true_alerts + o.false_alerts
    out["recall"] = round(o.detected / o.runs, 3)
    out["precision"] = None if not fired else round(o.true_alerts / fired, 3)
    out["true_alerts"], out["false_alerts"] = o.true_alerts, o.false_alerts
    out["delay_minutes"] = spread(o.delays)
    out["delay_windows"] = spread(o.windows, 2)
    out["delay_events"] = spread(o.delay_events, 0)
    out["false_by_kind"] = o.false_by_kind
    return out


def run_all(seeds: Iterable[int], names: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of the generated scenarios (``names``: substrings choosing a subset)."""
    chosen = SCENARIOS
    if names:
        chosen = [s for s in SCENARIOS if any(n.lower() in s.name.lower() for n in names)]
    results = evaluate(list(seeds), chosen)
    return [row(name, o, name.startswith("stationary")) for name, o in results.items()]
