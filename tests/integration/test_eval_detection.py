"""The detection-quality evaluation: its quick run reports every table, and its parts measure
what its docstring says.

The quick run's figures are never checked (a subset with one seed on a busy machine decides
nothing; the full run checks the targets); only that every table, figure and verdict is there
and that the printed tables parse. The scoring, the streams and the limits are checked on
small inputs whose answer is known.
"""

from __future__ import annotations

import doctest
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from evaluation import generated, power, real, report, runs, scoring, streams, tables, theory

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "load_tests" / "eval_detection.py"

REAL_KEYS = {
    "group", "scenario", "table", "window_events", "reference_rows", "kind", "runs", "mde",
    "size_over_mde", "injected", "detected", "recall", "alerts", "true_alerts", "false_alerts",
    "precision", "delay_windows", "delay_events", "evaluations", "false_per_10k",
    "flaps_per_24_max", "flap_pairs", "targets",
}  # fmt: skip
POWER_KEYS = {
    "window_events", "reference_rows", "per_seed", "smallest_all_seeds", "mde_power_0.8",
    "alpha", "family", "q", "method", "ratio", "target",
}  # fmt: skip


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": path},
        cwd=ROOT,
        check=False,
    )


def _markdown_tables(text: str) -> list[list[list[str]]]:
    tables_: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            tables_.append(current)
            current = []
    return tables_


def test_quick_run_reports_every_table_and_parses(tmp_path: Path) -> None:
    path = tmp_path / "detection.json"
    out = _run(["--quick", "--json", str(path)], timeout=280)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(path.read_text())
    assert result["quick"] is True
    assert {"window_buckets", "statistics", "q", "fdr_method"} <= set(result["settings"])
    rows = result["real"]
    assert {r["kind"] for r in rows} == {"stationary", "change"}
    assert {r["table"] for r in rows} >= {"cancer", "rand", "diabetes"}
    for r in rows:
        assert set(r) >= REAL_KEYS, (r["scenario"], REAL_KEYS - set(r))
        assert r["runs"] == 1 and r["evaluations"] > 0
        for check in r["targets"].values():
            assert isinstance(check["pass"], bool)
        if r["kind"] == "change":
            assert r["injected"] >= 1 and r["size_over_mde"] > 0
            # held to recall only at 1.5 x the limit and above (the new category at 1% is
            # 1.27 x at 1,000 events)
            assert ("recall" in r["targets"]) == (r["size_over_mde"] >= report.MDE_FACTOR)
        assert r["scenario"] in out.stdout
    assert result["real_pooled"]["quiet_evaluations"] > 0
    assert result["power"] and set(result["power"][0]) >= POWER_KEYS
    (limit,) = result["new_category_limit"]  # quick: 1,000-event windows only
    assert limit["window_events"] == 1000 and limit["critical_count"] == 6
    assert limit["check_within_1_window"] <= limit["best_within_1_window"] < 1
    assert result["generated"] and result["generated"][0]["group"] == "generated"
    for name in ("recall", "false alerts (real)", "power"):
        assert isinstance(result["summary"][name]["pass"], bool), name
    assert "== targets" in out.stdout
    md = _run(["--markdown", "--from", str(path)], timeout=60)
    assert md.returncode == 0, md.stderr[-2000:]
    found = _markdown_tables(md.stdout)
    assert len(found) >= 6  # 3 real groups, generated, power, new-category limit, targets
    for table in found:
        assert all(set(cell) <= {"-"} for cell in table[1]), table[1]  # the separator row
        assert all(len(row) == len(table[0]) for row in table), table[0]
    verdicts = found[-1][2:]
    assert verdicts and all(row[2].split()[0] in ("PASS", "FAIL") for row in verdicts)


# -- scoring: alerts read as a subscriber reads them -------------------------------------------


def _event(status: str, hour: int, **labels: Any) -> dict[str, Any]:
    base = {"kind": "data_drift", "model": "cancer", "model_version": "1", "segment": "all",
            "feature": "x", "statistic": "ks", "severity": "warning"}  # fmt: skip
    members = labels.pop("members", None)
    data = {"status": status, "labels": {**base, **labels}, "evidence": {}}
    if members is not None:
        data["evidence"]["members"] = [
            {"kind": "data_drift", "feature": f, "segment": "all", "statistic": "ks"}
            for f in members
        ]
    return {"time": f"2026-01-0{1 + hour // 24}T{hour % 24:02d}:00:00.000Z", "data": data}


def _hour(ms: int | None) -> int | None:
    return None if ms is None else (ms - streams.START) // streams.HOUR


def test_an_incident_announces_its_members_while_it_fires() -> None:
    incident = {"kind": "upstream_change", "feature": "", "statistic": "breaching_inputs"}
    eps = scoring.episodes([
        _event("firing", 3, **incident, members=["a", "b", "c"]),
        _event("firing", 5, **incident, members=["a", "b", "c", "d"]),  # d joins
        _event("resolved", 8, **incident),
    ])  # fmt: skip
    spans = {e.condition.feature: (_hour(e.start_ms), _hour(e.end_ms)) for e in eps}
    assert spans == {"a": (3, 8), "b": (3, 8), "c": (3, 8), "d": (5, 8)}


def test_an_escalation_is_one_alert_and_a_refire_is_two() -> None:
    eps = scoring.episodes([
        _event("firing", 2),
        _event("resolved", 4), _event("firing", 4, severity="critical"),  # escalation
        _event("resolved", 6, severity="critical"),
        _event("firing", 9),  # fires again: a second alert
    ])  # fmt: skip
    assert [(_hour(e.start_ms), _hour(e.end_ms)) for e in eps] == [(2, 6), (9, None)]


def test_what_counts_as_a_true_alert() -> None:
    table = tables.load("rand")
    shift = streams.Change("lpi", 10, "location", 0.3, segments=("c95",))
    share = streams.Change("health", 10, "share", 0.8)

    def episode(feature: str, segment: str, hour: int, kind: str = "data_drift") -> Any:
        cond = scoring.Condition(kind, "rand", "1", segment, feature, "psi")
        return scoring.Episode(cond, streams.START + hour * streams.HOUR)

    def true(ep: Any, *changes: streams.Change) -> bool:
        return scoring.cause(ep, table, changes) is not None

    assert true(episode("lpi", "plan=c95", 12), shift)
    assert true(episode("lpi", "all", 12), shift)  # the aggregate over segments
    assert not true(episode("lpi", "plan=free", 12), shift)  # a segment that did not change
    assert not true(episode("lpi", "plan=c95", 10), shift)  # the window before the change
    assert not true(episode("fmde", "plan=c95", 12), shift)
    assert true(episode("prediction.score", "plan=c95", 12, "prediction_drift"), shift)
    assert not true(episode("prediction.score", "all", 12, "prediction_drift"), share)
    inside = streams.Change("lpi", 10, "location", 0.3, segments=("c95",), inside_only=True)
    assert scoring.announces(episode("lpi", "plan=c95", 12), inside)
    assert not scoring.announces(episode("lpi", "all", 12), inside)  # true, but not recall


def test_a_run_score_has_its_delays_in_windows_and_events() -> None:
    change = streams.Change("mean_texture", 10, "location", 0.3)
    design = streams.Design("cancer", 500, 2000, 20, (change,))
    stream = streams.Stream(design, [], 100, [{"": 100}] * 20)
    cond = scoring.Condition("data_drift", "cancer", "1", "", "mean_texture", "psi")
    late = scoring.Episode(cond, streams.START + 13 * streams.HOUR)  # window ending at hour 13
    score = scoring.score_run([late], stream, tables.load("cancer"), window_buckets=5)
    assert score.detections == [(change, 0.6, 300)]  # 3 hours of 5; buckets 10, 11, 12
    assert (score.true_alerts, score.false_alerts, score.flap_pairs) == (1, 0, 0)


# -- streams and limits --------------------------------------------------------------------


def test_changes_move_their_scope_by_their_size() -> None:
    table = tables.load("rand")
    sd = float(table.columns["fmde"].std())
    changes = (
        streams.Change("fmde", 2, "location", 0.5, segments=("free",)),
        streams.Change("health", 2, "share", 0.8),
    )
    design = streams.Design("rand", 20_000, 2000, 4, changes)
    stream = streams.build(design, seed=3, window_buckets=1)
    rows = [json.loads(e) for e in stream.events]
    before, after = rows[: 2 * stream.per_bucket], rows[2 * stream.per_bucket :]

    def mean(rs: list[dict[str, Any]], plan: str) -> float:
        return float(np.mean([r["features"]["fmde"] for r in rs if r["segment"]["plan"] == plan]))

    assert abs((mean(after, "free") - mean(before, "free")) / sd - 0.5) < 0.1
    assert abs((mean(after, "c25") - mean(before, "c25")) / sd) < 0.1
    for plan in ("free", "c25", "c95"):
        share = np.mean([r["features"]["health"] == "excellent"
                         for r in after if r["segment"]["plan"] == plan])  # fmt: skip
        assert abs(share - 0.8) < 0.03, plan


def test_the_location_mde_has_the_stated_power() -> None:
    rng = np.random.default_rng(7)
    n, m, alpha = 300, 2000, 0.01
    shift = theory.mde_location(n, m, alpha=alpha)
    z_crit = theory.norm.isf(alpha / 2)
    trials = 4000
    x = rng.normal(shift, 1.0, (trials, n)).mean(axis=1)
    y = rng.normal(0.0, 1.0, (trials, m)).mean(axis=1)
    power_seen = np.mean(np.abs(x - y) / math.sqrt(1 / n + 1 / m) > z_crit)
    assert abs(power_seen - theory.POWER) < 0.03  # 4,000 trials: sd of the estimate 0.006


def test_the_level_is_read_from_settings_or_assumed() -> None:
    config = runs.settings()
    level = theory.level(config.detect)
    assert 0 < level.q < 1 and level.method == "Holm"  # detect.fdr auto: Holm's step-down
    assert theory.Level(0.05, "Holm", "x").alpha(10) == theory.Level(0.05, "BH", "x").alpha(10)
    tests = real.family(tables.load("cancer"), config.detect)
    assert level.alpha(tests) <= level.q / tests + 1e-15
    assert theory.Level(0.05, "BY", "x").alpha(10) < theory.Level(0.05, "BH", "x").alpha(10)
    by = theory.level(SimpleNamespace(significance=SimpleNamespace(q=0.01, method="BY")))
    assert (by.q, by.method, by.source) == (0.01, "BY", "detect.significance.q")
    assert theory.level(SimpleNamespace(fdr_q=0.1)).q == 0.1
    assert theory.level(SimpleNamespace(statistics={})).source == "assumed"


def test_quick_subset_and_targets_cover_every_kind_of_row() -> None:
    w = runs.settings().detect.window_buckets
    full, quick = real.scenarios(w), real.scenarios(w, quick=True)
    assert {(s.group, s.name) for s in quick} <= {(s.group, s.name) for s in full}
    assert len({s.design for s in full}) == len(full)
    change = {"kind": "change", "size_over_mde": 2.0, "recall": 0.5, "precision": 1.0,
              "abrupt": True, "delay_windows": {"median": 0.4, "max": 0.4}}  # fmt: skip
    checks = report.row_targets(change)
    assert not checks["recall"]["pass"] and checks["precision"]["pass"]
    assert not checks["delay"]["pass"]  # a change missed in one run is not "within 1 window"
    assert "recall" not in report.row_targets({**change, "size_over_mde": 1.2})


@pytest.mark.parametrize(
    "module", [generated, power, real, report, runs, scoring, streams, tables, theory]
)
def test_docstring_examples_run(module: Any) -> None:
    failures, _ = doctest.testmod(module, raise_on_error=False)
    assert failures == 0
