"""``driftwire baseline build --target-column``: the reference's realized performance, stored in
the baseline, against scikit-learn on the same rows (models trained here on data bundled with
scikit-learn)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from driftwire.detect.reference import Reference
from driftwire.truth.reference import ReferencePerformance


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def classifier_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A validation split of the breast-cancer data with the model's score, its class and a
    segment column; returns (target, score, segment)."""
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_valid, y_train, y_valid = train_test_split(x, y, test_size=0.5, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, y_train)
    score = model.predict_proba(x_valid)[:, 1]
    half = np.arange(len(y_valid)) % 2
    columns = {f"f{i}": x_valid[:, i] for i in range(5)}
    columns |= {"score": score, "diagnosis": y_valid, "half": half}
    pacsv.write_csv(pa.table(columns), path)
    return y_valid, score, half


def build(path: Path, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "baseline", "build", str(path), "--model", "m", "--model-version", "1", "-o", str(out),
        *options,
    )  # fmt: skip


def test_classifier_reference_performance_matches_scikit_learn(tmp_path: Path) -> None:
    table, out = tmp_path / "valid.csv", tmp_path / "b.dwb"
    y, score, half = classifier_file(table)
    done = build(
        table, out, "--prediction-column", "score", "--target-column", "diagnosis",
        "--target-classes", "--segment-columns", "half",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "reference performance: 285 labelled rows, accuracy" in done.stderr
    reference = Reference.from_bytes(out.read_bytes())
    assert reference.performance is not None
    performance = ReferencePerformance.from_bytes(reference.performance)
    assert set(performance.segments) == {"all", "half=0", "half=1"}
    every = performance.segment("all").classification
    assert every is not None and every.positive == "1"
    m = every.metrics()
    predicted = (score >= 0.5).astype(int)
    assert m.n == len(y) == 285
    assert m.accuracy.value == accuracy_score(y, predicted)  # exact
    assert m.auc is not None and m.auc_bin_error is not None and m.log_loss is not None
    assert abs(m.auc.value - roc_auc_score(y, score)) <= m.auc_bin_error + 1e-12
    assert abs(m.log_loss.value - log_loss(y, score)) < 1e-9
    for part in (0, 1):
        rows = half == part
        segment = performance.segment(f"half={part}").classification
        assert segment is not None
        assert segment.metrics().accuracy.value == accuracy_score(y[rows], predicted[rows])
    # the profiles do not take the target for a feature
    assert "diagnosis" not in reference.profiles["all"].features


def test_regressor_reference_performance_matches_scikit_learn(tmp_path: Path) -> None:
    x, y = load_diabetes(return_X_y=True)
    x_train, x_valid, y_train, y_valid = train_test_split(x, y, test_size=0.5, random_state=1)
    predicted = LinearRegression().fit(x_train, y_train).predict(x_valid)
    table, out = tmp_path / "valid.parquet", tmp_path / "b.dwb"
    columns = {f"f{i}": x_valid[:, i] for i in range(4)}
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns | {"predicted": predicted, "progression": y_valid}), table)
    done = build(table, out, "--prediction-column", "predicted", "--target-column", "progression")
    assert done.returncode == 0, done.stderr
    assert "MAE" in done.stderr
    blob = Reference.from_bytes(out.read_bytes()).performance
    assert blob is not None
    regression = ReferencePerformance.from_bytes(blob).segment("all").regression
    assert regression is not None
    r = regression.metrics()
    assert r.n == len(y_valid)
    assert abs(r.mae.value - mean_absolute_error(y_valid, predicted)) < 1e-9
    assert abs(r.rmse.value - float(np.sqrt(np.mean((predicted - y_valid) ** 2)))) < 1e-9
    assert abs(r.bias.value - float(np.mean(predicted - y_valid))) < 1e-9


def test_a_target_without_predictions_is_one_line_with_the_fix(tmp_path: Path) -> None:
    table = tmp_path / "valid.csv"
    classifier_file(table)
    done = build(table, tmp_path / "b.dwb", "--target-column", "diagnosis")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "--target-column needs the model's predictions" in done.stderr
    assert "--prediction-column" in done.stderr


def test_a_baseline_without_target_has_no_performance_and_older_ones_load(tmp_path: Path) -> None:
    table, out = tmp_path / "valid.csv", tmp_path / "b.dwb"
    classifier_file(table)
    assert build(table, out, "--prediction-column", "score").returncode == 0
    state = orjson.loads(out.read_bytes())
    assert "performance" not in state  # written as the previous code wrote it
    assert Reference.from_bytes(out.read_bytes()).performance is None
    with_target = tmp_path / "t.dwb"
    options = ("--prediction-column", "score", "--target-column", "diagnosis", "--target-classes")
    assert build(table, with_target, *options).returncode == 0
    assert "diagnosis" in Reference.from_bytes(out.read_bytes()).profiles["all"].features
    assert Reference.from_bytes(with_target.read_bytes()).performance is not None


def test_the_same_rows_with_another_target_are_another_baseline(tmp_path: Path) -> None:
    """The truth stage replaces a reference when the baseline id changes: a rebuild with
    another target must change it, a rebuild of the same file must not."""
    table = tmp_path / "valid.csv"
    classifier_file(table)
    common = ("--prediction-column", "score", "--features", "f0,f1", "--target-classes")
    ids = []
    for name, target in (("a", "diagnosis"), ("b", "diagnosis"), ("c", "half")):
        out = tmp_path / f"{name}.dwb"
        assert build(table, out, *common, "--target-column", target).returncode == 0
        ids.append(orjson.loads(out.read_bytes())["id"])
    assert ids[0] == ids[1] != ids[2]
