"""The load generator and the pipeline benchmark run end to end on a tiny input.

Only their shape is checked (every figure is there), never how fast anything was: the
numbers of a ``--quick`` run on a busy machine mean nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
LOAD_TESTS = ROOT / "load_tests"

LOADGEN_KEYS = {"events", "bytes", "seconds", "events_per_second", "topic", "partitions"}

EXPECTED: dict[str, set[str]] = {
    "machine": {"cores", "load_start", "load_end", "python", "calibration_sum_range_1000_us"},
    "broker": {"kind", "version"},
    "dataset": {"events", "bytes_per_event", "partitions", "produce_events_per_s", "load"},
    "ceiling": {"events", "seconds", "events_per_s", "cpu_s_per_million_events", "load"},
    "profile_stage": {
        "events_per_s",
        "ratio_to_ceiling",
        "target_ratio",
        "target_met",
        "cpu_s_per_million_events",
        "load",
    },
    "worker": {"events_per_s", "cpu_s_per_million_events", "alerts", "phases_s", "load"},
    "memory": {
        "events",
        "rss_start_mib",
        "rss_max_mib",
        "rss_end_mib",
        "growth_max_vs_start",
        "target_met",
        "load",
    },
    "scale_out": {"one", "two", "speedup", "alerts_match_worker", "alerts_match_one"},
    "latency": {
        "bucket_seconds",
        "changes",
        "samples",
        "p50_s",
        "p99_s",
        "target_p99_s",
        "target_met",
        "median_profile_stage_s",
        "median_detect_stage_s",
        "median_delivery_s",
        "load",
    },
}
SCALE_KEYS = {
    "segments",
    "features",
    "events",
    "events_per_s",
    "state_bytes_per_bucket",
    "max_partial_bytes",
    "fits_default_message_size",
    "load",
}
SCALE_OUT_RUN_KEYS = {"processes", "events_per_s", "per_process", "alerts", "load"}


def _run(args: list[str], bootstrap: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_loadgen_sends_the_events_it_reports(kafka_bootstrap: str, topic_name: str) -> None:
    out = _run(
        [
            str(LOAD_TESTS / "loadgen.py"),
            "--bootstrap",
            kafka_bootstrap,
            "--topic",
            topic_name,
            "--events",
            "3000",
            "--partitions",
            "2",
            "--drift",
            "income:1",
            "--drift-segment",
            "region=eu,tier=gold",
        ],
        kafka_bootstrap,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert set(report) == LOADGEN_KEYS
    assert report["events"] == 3000
    assert report["partitions"] == 2
    assert report["bytes"] > 3000 * 100


def test_bench_pipeline_quick_reports_every_figure(kafka_bootstrap: str, tmp_path: Path) -> None:
    path = tmp_path / "pipeline.json"
    out = _run(
        [str(LOAD_TESTS / "bench_pipeline.py"), "--quick", "--json", str(path)],
        kafka_bootstrap,
        timeout=240,
    )
    result = json.loads(path.read_text()) if path.exists() else {}
    # a failed section is named under "errors" (with its exception), the others still report
    assert out.returncode == 0, (result.get("errors"), out.stderr[-3000:], out.stdout[-1000:])
    assert result["quick"] is True
    for section, keys in EXPECTED.items():
        assert section in result, section
        missing = keys - set(result[section])
        assert not missing, (section, missing)
    for run in ("one", "two"):
        assert set(result["scale_out"][run]) >= SCALE_OUT_RUN_KEYS, run
    assert result["scale_out"]["two"]["processes"] == 2
    assert result["dataset"]["events"] > 0
    assert result["scale"], "no scale cell"
    for cell in result["scale"]:
        assert "error" not in cell, cell
        assert set(cell) >= SCALE_KEYS, cell
        assert cell["state_bytes_per_bucket"] > 0
    assert result["latency"]["samples"] > 0  # at least one alert whose window an event closed
    # the same figures as a table on stdout
    for label in ("ceiling", "profile stage", "worker", "scale-out", "memory", "latency"):
        assert label in out.stdout, label
    assert "state B/bucket" in out.stdout
