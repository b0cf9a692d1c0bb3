"""``driftwire baseline build``: a reference profile from a training or validation file.

Reads CSV, JSON Lines or Parquet (by extension) with pyarrow, in batches, and folds the rows
into the same :class:`~driftwire.sketch.profile.Profile` sketches the stream uses: one per segment
(from ``segment_columns``) and ``all``. Every column that is not the prediction, the latency
or a segment column is a feature, unless ``features`` names them. The result is written to a
file and can be published to the compacted baselines topic keyed by ``model/version``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftwire.detect.reference import ALL, Reference, baseline_id
from driftwire.errors import InputError
from driftwire.offline.columns import feature_warnings
from driftwire.sketch.profile import Profile
from driftwire.truth.reference import ReferencePerformanceBuilder

BATCH_ROWS = 50_000


@dataclass(frozen=True)
class BaselineSpec:
    """Which columns of the file mean what."""

    model: str
    model_version: str
    features: Sequence[str] | None = None
    prediction_column: str | None = None
    label_column: str | None = None
    latency_column: str | None = None
    segment_columns: Sequence[str] = ()
    #: the truth beside the predictions: its realized performance is stored in the baseline
    target_column: str | None = None
    #: read a numeric target as class labels (``1`` -> ``"1"``), for classifiers whose classes
    #: are numbers; else a numeric target is a regression target, as on the labels topic
    target_is_class: bool = False
    #: a score at or above it predicts the positive class (the truth stage's score_threshold)
    score_threshold: float = 0.5


def _batches(path: Path) -> Iterator[Any]:
    """pyarrow record batches of ``path``; the format from its extension."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if suffix.endswith(".parquet") or suffix.endswith(".pq"):
            yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)
        elif suffix.endswith(".csv"):
            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 24))
            yield from reader
        elif suffix.endswith((".jsonl", ".ndjson", ".json")):
            yield from pajson.read_json(path).to_batches(max_chunksize=BATCH_ROWS)
        else:
            raise InputError(f"{path}: unknown file type (use .csv, .jsonl or .parquet)")
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: {exc}") from exc


def count_rows(path: Path) -> int | None:
    """Rows in ``path`` when cheap to know (Parquet metadata), for the progress bar."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    return None


def _segment_key(row: dict[str, Any], columns: Sequence[str]) -> str:
    return ",".join(f"{c}={row[c]}" for c in sorted(columns) if row.get(c) is not None)


def build_baseline(
    path: str | Path,
    spec: BaselineSpec,
    *,
    created_ms: int,
    progress: Callable[[int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Reference:
    """Profile every row of ``path`` into a baseline :class:`Reference`.

    ``warn`` gets one line per doubt about the feature columns (the first batch's envelope
    names, id-like columns: :func:`~driftwire.offline.columns.feature_warnings`).
    """
    path = Path(path)
    special = {spec.prediction_column, spec.label_column, spec.latency_column, spec.target_column}
    special |= set(spec.segment_columns)
    if spec.target_column is not None and spec.prediction_column is spec.label_column is None:
        raise InputError(
            f"{path}: --target-column needs the model's predictions beside it: "
            "add --prediction-column (a score or regression value) or --label-column"
        )
    truth = ReferencePerformanceBuilder(threshold=spec.score_threshold)
    profiles: dict[str, Profile] = {}
    rows_seen = 0
    for batch in _batches(path):
        columns = batch.schema.names
        missing = [c for c in special if c is not None and c not in columns]
        if missing:
            raise InputError(f"{path}: no column {missing[0]!r} (columns: {', '.join(columns)})")
        features = list(spec.features or [c for c in columns if c not in special])
        absent = [f for f in features if f not in columns]
        if absent:
            raise InputError(f"{path}: no feature column {absent[0]!r}")
        if not rows_seen:
            try:
                doubts = feature_warnings(batch, features)
            except InputError as exc:
                raise InputError(f"{path}: {exc}") from exc
            if warn is not None:
                for line in doubts:
                    warn(line)
        rows = batch.to_pylist()
        groups: dict[str, list[int]] = {}
        if spec.segment_columns:
            for i, row in enumerate(rows):
                groups.setdefault(_segment_key(row, spec.segment_columns), []).append(i)
        groups[ALL] = list(range(len(rows)))
        for segment, index in groups.items():
            chosen = [rows[i] for i in index]
            profile = profiles.setdefault(segment, Profile())
            profile.update(
                [{f: r[f] for f in features} for r in chosen],
                prediction_score=_floats(chosen, spec.prediction_column),
                prediction_label=_labels(chosen, spec.label_column),
                latency_ms=_floats(chosen, spec.latency_column),
            )
        if spec.target_column is not None:
            _add_truth(truth, rows, spec, spec.target_column)
        rows_seen += len(rows)
        if progress is not None:
            progress(len(rows))
    if not rows_seen:
        raise InputError(f"{path}: no rows")
    performance = None if spec.target_column is None else _performance(truth, path)
    return Reference(
        kind="baseline",
        id=baseline_id(spec.model, spec.model_version, profiles, performance),
        model=spec.model,
        model_version=spec.model_version,
        profiles=profiles,
        note=f"Baseline built from {path.name} ({rows_seen} rows).",
        created_ms=created_ms,
        meta={"source": path.name, "rows": rows_seen},
        performance=performance,
    )


def _add_truth(
    truth: ReferencePerformanceBuilder,
    rows: list[dict[str, Any]],
    spec: BaselineSpec,
    target: str,
) -> None:
    """The rows with a target into the reference performance (a missing target: skipped)."""
    for row in rows:
        actual = _actual(row[target], spec.target_is_class)
        if actual is None:
            continue
        score = None if spec.prediction_column is None else row[spec.prediction_column]
        label = None if spec.label_column is None else row[spec.label_column]
        segment = _segment_key(row, spec.segment_columns) if spec.segment_columns else ALL
        truth.add(
            segment=segment or ALL,
            score=None if score is None else float(score),
            label=None if label is None else str(label),
            actual=actual,
        )


def _actual(value: Any, as_class: bool) -> str | float | None:
    """A target cell as the labels topic reads it: booleans and text are classes, numbers
    regression targets (classes too with ``as_class``)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and not as_class:
        return float(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _performance(truth: ReferencePerformanceBuilder, path: Path) -> bytes:
    if not truth.rows:
        raise InputError(f"{path}: the target column is empty on every row")
    return truth.finish().to_bytes()


def _floats(rows: list[dict[str, Any]], column: str | None) -> np.ndarray | None:
    if column is None:
        return None
    return np.array([r[column] for r in rows], dtype=np.float64)


def _labels(rows: list[dict[str, Any]], column: str | None) -> list[str | None] | None:
    if column is None:
        return None
    return [None if r[column] is None else str(r[column]) for r in rows]
