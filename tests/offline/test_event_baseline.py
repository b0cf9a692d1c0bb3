"""``driftwire baseline build`` on logged inference events, and the checks of a table's columns."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from driftwire.detect.reference import Reference
from driftwire.errors import InputError
from driftwire.offline.event_baseline import build_event_baseline
from driftwire.offline.generator import Change, StreamSpec, generate
from driftwire.sketch.numeric import NumericSketch

MINUTE = 60_000
FEATURES = {
    "age",
    "income",
    "tenure_days",
    "sessions_7d",
    "basket_value",
    "discount",
    "support_calls",
    "pages_per_visit",
    "country",
    "plan",
    "device",
    "newsletter",
}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _events(path: Path, n: int, seed: int, **spec: Any) -> list[dict[str, Any]]:
    values = list(generate(StreamSpec(events=n, seed=seed, **spec)))
    path.write_bytes(b"\n".join(values) + b"\n")
    return [orjson.loads(v) for v in values]


def test_an_events_file_is_profiled_by_its_features_not_its_envelope(tmp_path: Path) -> None:
    events_file = tmp_path / "logged.jsonl"
    events = _events(events_file, 12_000, seed=5)
    out = run_cli("baseline", "build", str(events_file), "-o", str(tmp_path / "b.dwb"))
    assert out.returncode == 0, out.stderr
    assert "warning" not in out.stderr
    assert "of churn 1.4.2: 12000 events, 12 features" in out.stderr
    ref = Reference.from_bytes((tmp_path / "b.dwb").read_bytes())
    assert (ref.model, ref.model_version, ref.kind) == ("churn", "1.4.2", "baseline")
    everything = ref.profiles["all"]
    assert set(everything.features) == FEATURES  # not event_id, timestamp, model, ...
    assert ref.meta["format"] == "events"
    # segments as the stream keys them, each with its own profile
    per_segment = Counter(
        ",".join(f"{k}={v}" for k, v in sorted(e["segment"].items())) for e in events
    )
    assert set(ref.profiles) == set(per_segment) | {"all"}
    assert {k: ref.profiles[k].n_events for k in per_segment} == per_segment
    # the numbers are the events' own: count, mean, prediction scores and latency
    ages = np.array([e["features"]["age"] for e in events])
    age = everything.feature("age")
    assert isinstance(age, NumericSketch) and age.count == len(events)
    assert age.mean == pytest.approx(ages.mean(), rel=1e-9)
    assert everything.prediction_score.count == len(events)
    latencies = np.array([e["latency_ms"] for e in events])
    assert everything.latency_ms.mean == pytest.approx(latencies.mean(), rel=1e-9)


def test_a_baseline_from_events_finds_a_drift_in_later_events(tmp_path: Path) -> None:
    logged = tmp_path / "last_week.jsonl"
    _events(logged, 20_000, seed=4)
    assert run_cli("baseline", "build", str(logged), "-o", str(tmp_path / "b.dwb")).returncode == 0
    start = StreamSpec(events=1).start_ms
    live = tmp_path / "today.jsonl"
    _events(
        live,
        30_000,
        seed=9,
        events_per_second=30_000 / 1800,
        changes=(Change("age", start + 10 * MINUTE, 3.0),),
    )
    out = run_cli("replay", str(live), "--baseline", str(tmp_path / "b.dwb"))
    assert out.returncode == 0, out.stderr
    alerts = [orjson.loads(line) for line in out.stdout.splitlines()]
    assert {a["data"]["reference"]["kind"] for a in alerts} == {"baseline"}
    drifted = {a["data"]["labels"].get("feature") for a in alerts}
    assert "age" in drifted
    assert drifted - {None} <= FEATURES


def test_several_model_versions_need_a_choice(tmp_path: Path) -> None:
    lines = []
    for model, version in (("churn", "1"), ("churn", "2"), ("fraud", "7")):
        for i in range(300):
            event = {
                "timestamp": 1_767_225_600_000 + i * 1000,
                "model": model,
                "model_version": version,
                "features": {"x": i % 17, "kind": "a" if i % 3 else "b"},
                "prediction": 0.5,
                "latency_ms": 3,
            }
            lines.append(orjson.dumps(event))
    lines.append(b'{"timestamp": 1, "model": "churn"}')  # refused: misses fields
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = run_cli("baseline", "build", str(path), "-o", str(tmp_path / "b.dwb"))
    assert out.returncode == 1
    (line,) = out.stderr.splitlines()
    assert "3 model versions (churn 1, churn 2, fraud 7)" in line
    assert "pick one with --model and --model-version" in line
    out = run_cli("baseline", "build", str(path), "--model", "fraud", "-o", str(tmp_path / "f.dwb"))
    assert out.returncode == 0, out.stderr
    assert "of fraud 7: 300 events, 2 features (kind, x)" in out.stderr
    warnings = [w for w in out.stderr.splitlines() if w.startswith("warning:")]
    assert warnings[0].startswith("warning: 1 lines refused (1 missing_field), first line 901:")
    assert warnings[1] == (
        "warning: events of other model versions left out: churn 1 (300), churn 2 (300)"
    )
    out = run_cli("baseline", "build", str(path), "--model", "churm", "-o", str(tmp_path / "x.dwb"))
    assert out.returncode == 1
    assert "no events of churm (the file holds churn 1, churn 2, fraud 7)" in out.stderr
    with pytest.raises(InputError, match="no valid inference event"):
        build_event_baseline(iter([[b"nope"]]), created_ms=0, source="x")


def test_table_options_on_an_events_file_are_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _events(path, 100, seed=1)
    out = run_cli("baseline", "build", str(path), "--features", "age", "-o", str(tmp_path / "b"))
    assert out.returncode == 1
    (line,) = out.stderr.splitlines()
    assert "holds inference events: --features apply to tables only" in line
    assert "pass --format table" in line


def test_a_table_of_envelope_columns_and_ids_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["event_id", "timestamp", "model", "age", "customer_id"])
        for i in range(1500):
            writer.writerow([f"ev-{i}", 1_767_225_600_000 + i, "churn", 20 + i % 50, 9000 + i])
    out = run_cli(
        "baseline", "build", str(path), "--model", "m", "--model-version", "1", "-o",
        str(tmp_path / "b.dwb"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    warnings = [w for w in out.stderr.splitlines() if w.startswith("warning:")]
    assert warnings == [
        "warning: columns event_id, timestamp, model are an inference event's envelope, not "
        "features: for logged events use JSON Lines with --format events, else name the "
        "features with --features",
        "warning: column event_id holds a different value on each of 1500 rows (an id?): as a "
        "feature it drifts in every window; leave it out with --features",
        "warning: column timestamp holds a different value on each of 1500 rows (an id?): as a "
        "feature it drifts in every window; leave it out with --features",
        "warning: column customer_id holds a different value on each of 1500 rows (an id?): as "
        "a feature it drifts in every window; leave it out with --features",
    ]
    # the fix given works: naming the features leaves nothing to warn about
    out = run_cli(
        "baseline", "build", str(path), "--model", "m", "--model-version", "1", "--features",
        "age", "-o", str(tmp_path / "b.dwb"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "warning" not in out.stderr


def test_a_table_without_a_numeric_or_categorical_column_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nested.jsonl"
    path.write_bytes(b'{"a": {"x": 1}, "b": [1, 2]}\n' * 10)
    out = run_cli(
        "baseline", "build", str(path), "--model", "m", "--model-version", "1", "-o",
        str(tmp_path / "b.dwb"),
    )  # fmt: skip
    assert out.returncode == 1
    (line,) = out.stderr.splitlines()
    assert "no numeric or categorical feature column among a (struct<x: int64>)" in line
    assert "--format events" in line
    assert not (tmp_path / "b.dwb").exists()
    out = run_cli("baseline", "build", str(path), "-o", str(tmp_path / "b.dwb"))
    assert out.returncode == 1
    assert out.stderr.strip().endswith("a table needs --model and --model-version "
                                       "(events files carry them)")  # fmt: skip
