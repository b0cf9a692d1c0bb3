"""Baselines: one built twice from the same file is the same, byte for byte (id included), and
a baseline written by the previous code (profiles holding datasketches KLL bytes) still loads.

``data/legacy_baseline_v1.json`` was built by the previous code with ``build_baseline`` from the
CSV that :func:`_write_csv` writes (20,000 rows, seed 77, segmented by region).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from driftwire.detect.reference import Reference
from driftwire.offline.baseline import BaselineSpec, build_baseline
from driftwire.sketch.numeric import NumericSketch

DATA = Path(__file__).parent / "data"
SPEC = BaselineSpec("churn", "v1", prediction_column="score", segment_columns=("region",))
RANKS = np.linspace(0.05, 0.95, 19)


def _write_csv(path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(77)
    n = 20_000
    income, score = rng.lognormal(10, 1, n), rng.random(n)
    region = np.where(rng.random(n) < 0.6, "eu", "us")
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["income", "region", "score"])
        for row in zip(income.tolist(), region.tolist(), score.tolist(), strict=True):
            w.writerow(row)
    return {"income": income, "score": score, "region": region}


def _within(s: NumericSketch, raw: np.ndarray, eps: float) -> None:
    x = np.sort(raw.astype(np.float32))
    q = s.quantiles(RANKS).astype(np.float32)
    assert np.all(np.searchsorted(x, q, "left") / x.size <= RANKS + eps)
    assert np.all(np.searchsorted(x, q, "right") / x.size >= RANKS - eps)


def test_the_same_file_gives_the_same_baseline_bytes(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    columns = _write_csv(path)
    first = build_baseline(path, SPEC, created_ms=0)
    second = build_baseline(path, SPEC, created_ms=0)
    assert first.id == second.id and first.to_bytes() == second.to_bytes()
    income = first.profiles["all"].feature("income")
    assert isinstance(income, NumericSketch)
    _within(income, columns["income"], income.rank_error)


def test_a_baseline_of_the_previous_format_loads_within_its_old_error(tmp_path: Path) -> None:
    columns = _write_csv(tmp_path / "train.csv")
    ref = Reference.from_bytes((DATA / "legacy_baseline_v1.json").read_bytes())
    assert ref.id == "baseline:b2c0dcc21f448b75" and set(ref.profiles) == {
        "all",
        "region=eu",
        "region=us",
    }
    for segment, profile in ref.profiles.items():
        chosen = np.ones(20_000, bool) if segment == "all" else columns["region"] == segment[7:]
        for name, sketch in (
            ("income", profile.feature("income")),
            ("score", profile.prediction_score),
        ):
            assert isinstance(sketch, NumericSketch)
            raw = columns[name][chosen]
            assert sketch.count == raw.size and sketch.max == raw.max()
            assert sketch.rank_error == pytest.approx(0.0133, abs=1e-4)  # the KLL's, carried
            _within(sketch, raw, sketch.rank_error)
    again = Reference.from_bytes(ref.to_bytes())  # rewritten in the new profile format
    assert again.to_bytes() == ref.to_bytes()
