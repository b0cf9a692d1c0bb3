"""Running the real-data scenarios through the in-memory pipeline and adding up the runs.

One run: the scenario's stream for one seed, its baseline (an independent resample, built
with the offline baseline builder) published to the reference store, both stages of
:class:`~driftwire.stages.inmemory.InMemoryPipeline` with the default settings except
``profile.bucket_seconds`` (1 hour), and the alerts read back as CloudEvents.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from driftwire.detect.reference import Reference, ReferenceStore
from driftwire.ops.config import Settings
from driftwire.stages.inmemory import InMemoryPipeline
from evaluation.real import Scenario, evaluations, limit
from evaluation.scoring import RunScore, episodes, score_run
from evaluation.streams import baseline_bytes, build
from evaluation.tables import load

SOURCE = "driftwire-evaluation"
BUCKET_SECONDS = 3600


def settings() -> Settings:
    """The defaults, with 1-hour buckets (the streams are laid out in hours)."""
    return Settings.model_validate({"profile": {"bucket_seconds": BUCKET_SECONDS}})


def alerts_of(scenario: Scenario, seed: int, config: Settings) -> tuple[list[dict[str, Any]], Any]:
    """The alert CloudEvents of one run, and its stream."""
    w = config.detect.window_buckets
    stream = build(scenario.design, seed, window_buckets=w)
    store = ReferenceStore()
    raw = baseline_bytes(scenario.design.table, scenario.design.reference_rows, seed)
    store.put(Reference.from_bytes(raw))
    pipeline = InMemoryPipeline(config, store, keep_state_parts=False)
    events = [a.cloudevent(SOURCE) for a in pipeline.run(stream.events)]
    return events, stream


@dataclass
class Outcome:
    """The runs of one scenario, added up."""

    scenario: Scenario
    runs: int = 0
    injected: int = 0
    detected: int = 0
    delays: list[float] = field(default_factory=list)  # windows
    delay_events: list[float] = field(default_factory=list)
    true_alerts: int = 0
    false_alerts: int = 0
    false_by_kind: dict[str, int] = field(default_factory=dict)
    evaluations: int = 0
    flaps: list[float] = field(default_factory=list)
    flap_pairs: int = 0
    seconds: float = 0.0

    def add(self, score: RunScore, evaluations: int) -> None:
        self.runs += 1
        self.evaluations += evaluations
        self.true_alerts += score.true_alerts
        self.false_alerts += score.false_alerts
        for kind, n in score.false_by_kind.items():
            self.false_by_kind[kind] = self.false_by_kind.get(kind, 0) + n
        for _, windows, events in score.detections:
            self.injected += 1
            if windows is not None and events is not None:
                self.detected += 1
                self.delays.append(windows)
                self.delay_events.append(events)
        self.flaps += score.flaps
        self.flap_pairs += score.flap_pairs


def run_scenario(scenario: Scenario, seeds: range, config: Settings) -> Outcome:
    outcome = Outcome(scenario)
    w = config.detect.window_buckets
    table = load(scenario.design.table)
    for seed in seeds:
        t0 = time.perf_counter()
        events, stream = alerts_of(scenario, seed, config)
        outcome.add(score_run(episodes(events), stream, table, window_buckets=w),
                    evaluations(scenario))  # fmt: skip
        outcome.seconds += time.perf_counter() - t0
    return outcome


def spread(values: list[float], digits: int = 2) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), digits), "max": round(max(values), digits)}


def row(outcome: Outcome, config: Settings) -> dict[str, Any]:
    """The JSON row of one scenario (targets are added by the report)."""
    s = outcome.scenario
    d = s.design
    w = config.detect.window_buckets
    expected = [c for c in d.changes if c.expected]
    limits = [limit(c, d, config.detect) for c in expected]
    fired = outcome.true_alerts + outcome.false_alerts
    out: dict[str, Any] = {
        "group": s.group,
        "scenario": s.name,
        "table": d.table,
        "window_events": d.window_events,
        "reference_rows": d.reference_rows,
        "window_buckets": w,
        "buckets": d.buckets,
        "kind": "stationary" if s.stationary else "quiet" if s.quiet else "change",
        "abrupt": s.abrupt and not s.quiet,
        "borderline": s.borderline,
        "runs": outcome.runs,
        "mde": round(min(m for m, _ in limits), 4) if limits else None,
        "size_over_mde": round(min(r for _, r in limits), 2) if limits else None,
        "injected": outcome.injected,
        "detected": outcome.detected,
        "recall": round(outcome.detected / outcome.injected, 3) if outcome.injected else None,
        "alerts": fired,
        "true_alerts": outcome.true_alerts,
        "false_alerts": outcome.false_alerts,
        "precision": round(outcome.true_alerts / fired, 3) if fired else None,
        "delay_windows": spread(outcome.delays),
        "delay_events": spread(outcome.delay_events, 0),
        "evaluations": outcome.evaluations,
        "false_per_10k": round(outcome.false_alerts / max(outcome.evaluations, 1) * 1e4, 3),
        "false_by_kind": outcome.false_by_kind,
        "flaps_per_24_max": round(max(outcome.flaps), 2) if outcome.flaps else 0.0,
        "flap_pairs": outcome.flap_pairs,
        "seconds": round(outcome.seconds, 1),
    }
    return out


def run_all(scenarios: list[Scenario], seeds: range, config: Settings) -> list[dict[str, Any]]:
    rows = []
    for scenario in scenarios:
        outcome = run_scenario(scenario, seeds, config)
        rows.append(row(outcome, config))
        print(f"  {scenario.group} | {scenario.name}: {outcome.seconds:.0f} s",
              file=sys.stderr, flush=True)  # fmt: skip
    return rows
