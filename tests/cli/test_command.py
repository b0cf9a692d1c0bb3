"""The command line: help, version, demo, baseline build and replay on real files."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from driftwire import __version__
from driftwire.cli.command import main
from driftwire.cli.demo import DRIFT_SEGMENT, run_demo
from driftwire.offline.generator import Change, StreamSpec, generate

MINUTE = 60_000


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_reads_like_the_readme() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    for text in ("make demo", "make test", "worker", "replay", "baseline", "DRIFTWIRE_"):
        assert text in out.stdout


def test_version() -> None:
    out = run_cli("--version")
    assert out.stdout.strip() == f"driftwire {__version__}"


def test_no_command_prints_help_and_fails() -> None:
    assert main([]) == 2


def test_demo_catches_the_injected_drift_and_its_end() -> None:
    out = io.StringIO()
    assert run_demo(events=200_000, seed=7, out=out) == 0
    text = out.getvalue()
    firing = [line for line in text.splitlines() if "FIRING" in line]
    resolved = [line for line in text.splitlines() if "RESOLVED" in line]
    # the injected segment fires; under the calibrated rule the aggregate over segments, which
    # the shift moves by a few tenths of an sd, fires too, and nothing else does
    assert firing and all("income" in line for line in firing)
    assert any(DRIFT_SEGMENT in line for line in firing)
    assert all(DRIFT_SEGMENT in line or "all traffic" in line for line in firing)
    assert resolved and all("income" in line for line in resolved)
    assert "dead-lettered" in text


def _training_rows(n: int) -> list[dict[str, object]]:
    rows = []
    for value in generate(StreamSpec(events=n, seed=4)):
        event = orjson.loads(value)
        rows.append(
            {
                **event["features"],
                "score": event["prediction"]["score"],
                "latency": event["latency_ms"],
            }
        )
    return rows


def test_baseline_build_from_csv_and_parquet_then_replay(tmp_path: Path) -> None:
    rows = _training_rows(20_000)
    train_csv = tmp_path / "train.csv"
    with train_csv.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    train_parquet = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), train_parquet)
    for source, name in ((train_csv, "csv.dwb"), (train_parquet, "parquet.dwb")):
        out = run_cli(
            "baseline",
            "build",
            str(source),
            "--model",
            "churn",
            "--model-version",
            "1.4.2",
            "--prediction-column",
            "score",
            "--latency-column",
            "latency",
            "-o",
            str(tmp_path / name),
        )
        assert out.returncode == 0, out.stderr
        assert "20000 rows" in out.stderr
    # both files describe the same data: same features, same counts
    csv_ref = orjson.loads((tmp_path / "csv.dwb").read_bytes())
    pq_ref = orjson.loads((tmp_path / "parquet.dwb").read_bytes())
    assert csv_ref["meta"]["rows"] == pq_ref["meta"]["rows"] == 20_000

    start = StreamSpec(events=1).start_ms
    live = StreamSpec(
        events=30_000,
        seed=9,
        events_per_second=30_000 / 1800,
        changes=(Change("age", start + 10 * MINUTE, 3.0),),
    )
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(generate(live)) + b"\n{broken\n")
    alerts_file = tmp_path / "alerts.jsonl"
    out = run_cli(
        "replay", str(events), "--baseline", str(tmp_path / "parquet.dwb"), "-o", str(alerts_file)
    )
    assert out.returncode == 0, out.stderr
    assert "1 rejected" in out.stderr and "not_json" in out.stderr
    alerts = [orjson.loads(line) for line in alerts_file.read_bytes().splitlines()]
    assert alerts
    assert {a["data"]["reference"]["kind"] for a in alerts} == {"baseline"}
    assert ("age", "all") in {
        (a["data"]["labels"]["feature"], a["data"]["labels"]["segment"]) for a in alerts
    }


def test_baseline_build_names_a_missing_column(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text("age,income\n1,2\n")
    out = run_cli(
        "baseline",
        "build",
        str(train),
        "--model",
        "m",
        "--model-version",
        "1",
        "--prediction-column",
        "score",
        "-o",
        str(tmp_path / "b.dwb"),
    )
    assert out.returncode == 1
    assert "no column 'score'" in out.stderr


def test_baseline_build_of_a_small_file_warns_with_the_fix(tmp_path: Path) -> None:
    rows = _training_rows(500)
    for i, row in enumerate(rows):
        row["region"] = "eu" if i % 5 else "us"
    train = tmp_path / "train.csv"
    with train.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    args = ["baseline", "build", str(train), "--model", "churn", "--model-version", "1.4.2"]
    out = run_cli(*args, "--segment-columns", "region", "-o", str(tmp_path / "b.dwb"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "b.dwb").exists()
    warning = next(line for line in out.stderr.splitlines() if line.startswith("warning:"))
    assert "fewer than 1000 events (detect.min_reference_count)" in warning
    assert "all 500" in warning and "region=eu 400" in warning and "region=us 100" in warning
    assert "rebuild the baseline from more rows" in warning
    assert "lower detect.min_reference_count" in warning
    # replaying live traffic against it says so too, once
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        b"\n".join(generate(StreamSpec(events=3_000, seed=2, events_per_second=5))) + b"\n"
    )
    out = run_cli("replay", str(events), "--baseline", str(tmp_path / "b.dwb"), "-o", os.devnull)
    assert out.returncode == 0, out.stderr
    (replayed,) = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert "the baseline reference of churn 1.4.2 has fewer than 1000 events" in replayed
    # enough rows for the configured minimum: no warning
    config = tmp_path / "c.yaml"
    config.write_text("detect:\n  min_reference_count: 100\n")
    out = run_cli(
        *args, "--segment-columns", "region", "-o", str(tmp_path / "c.dwb"), "-c", str(config)
    )
    assert out.returncode == 0, out.stderr
    assert "warning" not in out.stderr


def test_replay_with_a_baseline_for_a_misspelt_model_says_so(tmp_path: Path) -> None:
    rows = _training_rows(2_000)
    train = tmp_path / "train.csv"
    with train.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    build = ["baseline", "build", str(train), "--model-version", "1.4.2", "--latency-column"]
    out = run_cli(*build, "latency", "--model", "chrun", "-o", str(tmp_path / "typo.dwb"))
    assert out.returncode == 0, out.stderr
    events = tmp_path / "events.jsonl"  # model churn 1.4.2, 30 one-minute buckets
    events.write_bytes(
        b"\n".join(generate(StreamSpec(events=6_000, seed=3, events_per_second=100 / 30))) + b"\n"
    )
    out = run_cli("replay", str(events), "--baseline", str(tmp_path / "typo.dwb"), "-o", os.devnull)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if "chrun" in line]
    assert len(warnings) == 2, out.stderr  # (the frozen window's small size is warned too)
    frozen, unmatched = warnings
    assert frozen.startswith("warning: churn 1.4.2 has no baseline: its first window is frozen")
    assert "baselines exist for similar model names: chrun 1.4.2" in frozen
    assert unmatched.startswith("warning: baseline chrun 1.4.2 matches no model")
    assert "reached this detector by the end of the stream" in unmatched
    assert "Is chrun a typo of churn?" in unmatched
    # the right name: no warning
    out = run_cli(*build, "latency", "--model", "churn", "-o", str(tmp_path / "right.dwb"))
    assert out.returncode == 0, out.stderr
    out = run_cli(
        "replay", str(events), "--baseline", str(tmp_path / "right.dwb"), "-o", os.devnull
    )
    assert out.returncode == 0, out.stderr
    assert "warning:" not in out.stderr
