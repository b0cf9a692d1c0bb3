"""The latency evaluation's quick mode runs end to end and meets its targets at defaults.

``load_tests/eval_latency.py --quick``: one seeded week per family (four for the weekly one,
two of them its reference), the stationary and cyclic families and the spikes, at defaults
(latency's seasonal reference: the same hour of the last 7 days). Targets: at most one false
latency alert per series per week on the stationary and cyclic families; every spike of 3x
and more caught within one 1-hour window.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_latency_evaluation_meets_the_targets(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "load_tests" / "eval_latency.py"), "--quick", "--json",
         str(out)],
        capture_output=True, text=True, env=env, timeout=400, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["family"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"stationary", "heavy_tail", "daily", "weekly", "spikes"}
    for family in ("stationary", "heavy_tail", "daily", "weekly"):
        row = rows[family]
        assert row["weeks"] >= 0.85  # a week minus its 15% of reference (weekly: 2 of 4)
        # at most one false alert per series per week (at least one in the evaluated span)
        assert row["false_alerts"] <= max(1.0, row["weeks"]), row
    spikes = rows["spikes"]
    assert spikes["anomalies"] >= 3
    assert spikes["spikes_3x_within_window"] == 1.0, spikes
    assert spikes["precision"] is not None and spikes["precision"] >= 0.9
    assert "targets: met" in done.stdout
