"""Streams of inference events resampled from a real table, with injected changes of known size.

Rows are drawn with replacement from the table, whole rows at a time, so that the joint
distribution (correlations, ties, skew, the segment mix) is the table's. The reference (the
baseline a user would build from training data) is an independent resample of the same table,
profiled with :func:`driftwire.offline.baseline.build_baseline` from a Parquet file, exactly as
``driftwire baseline build`` does. A stream is a sequence of 1-hour buckets with the same
number of events each (``window_events / window_buckets``), spread at random inside the hour;
from its start bucket a :class:`Change` edits the drawn rows of its scope:

* ``location``: ``x + size * sd`` (sd of the table's column);
* ``scale``: ``mean + (x - mean) * (1 + size)`` (the sd grows by ``size`` sd);
* ``share``: the column's top category is raised to a share of ``size`` inside every segment
  (each segment from its own share), by relabelling rows of the other categories;
* ``new_category``: a share ``size`` of the events get a category never seen before.

``ramp`` buckets make the onset gradual (the size grows linearly from 0 over them). The
prediction is recomputed from the edited numeric inputs, so it moves when they move.

>>> d = Design("cancer", window_events=500, reference_rows=2000, buckets=3,
...            changes=(Change("mean_texture", 2, "location", 0.3),))
>>> s = build(d, seed=1, window_buckets=5)
>>> len(s.events), s.per_bucket, s.scope_events(2, 3, None)
(300, 100, 100)
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import orjson

from evaluation.tables import Columns, Table, load

HOUR = 3_600_000
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
VERSION = "1"
NEW = "never_seen"  # the category a new_category change introduces

Kind = Literal["location", "scale", "share", "new_category"]


@dataclass(frozen=True)
class Change:
    """One injected change of one input, from bucket ``start`` on (0-based)."""

    feature: str
    start: int
    kind: Kind
    size: float  # location / scale: sd; share: the top category's new share; new: its share
    segments: tuple[str, ...] | None = None  # None: all traffic
    ramp: int = 0  # buckets over which the size grows from 0 (gradual onset)
    expected: bool = True  # False: below the relevance a detector should keep, must stay quiet
    inside_only: bool = False  # only the segment's own condition shows it (composition)

    def factor(self, bucket: int) -> float:
        """How much of the change is in place in ``bucket`` (0 before it starts)."""
        if bucket < self.start:
            return 0.0
        if self.ramp <= 0:
            return 1.0
        return min(1.0, (bucket - self.start + 1) / self.ramp)


@dataclass(frozen=True)
class Design:
    """A table, the window and reference sizes, the stream's length and its changes."""

    table: str
    window_events: int  # events in one detection window, all segments together
    reference_rows: int
    buckets: int
    changes: tuple[Change, ...] = ()


@dataclass
class Stream:
    """The encoded events of one run and what is needed to score it."""

    design: Design
    events: list[bytes]
    per_bucket: int
    segment_counts: list[dict[str, int]] = field(default_factory=list)  # per bucket

    def scope_events(self, first: int, last: int, segments: tuple[str, ...] | None) -> int:
        """Events of buckets ``first <= b < last`` in ``segments`` (None: all traffic)."""
        total = 0
        for counts in self.segment_counts[max(first, 0) : last]:
            if segments is None:
                total += sum(counts.values())
            else:
                total += sum(counts.get(s, 0) for s in segments)
        return total


def _segments_of(table: Table, rows: np.ndarray) -> np.ndarray | None:
    return None if table.segment is None else table.columns[table.segment][rows]


def _apply(table: Table, cols: Columns, seg: np.ndarray | None, change: Change, bucket: int,
           rng: np.random.Generator) -> None:  # fmt: skip
    f = change.factor(bucket)
    if f == 0.0:
        return
    n = len(next(iter(cols.values())))
    hit = np.ones(n, dtype=bool)
    if change.segments is not None and seg is not None:
        hit = np.isin(seg, change.segments)
    x = cols[change.feature]
    if change.kind in ("location", "scale"):
        ref = table.columns[change.feature]
        if change.kind == "location":
            moved = x + change.size * f * float(ref.std())
        else:
            mean = float(ref.mean())
            moved = mean + (x - mean) * (1.0 + change.size * f)
        cols[change.feature] = np.where(hit, moved, x)
    elif change.kind == "new_category":
        new = hit & (rng.random(n) < change.size * f)
        cols[change.feature] = np.where(new, NEW, x).astype(object)
    else:  # share: raise the top category inside every segment to ``size``
        shares = table.shares(change.feature)
        top = max(shares, key=lambda k: shares[k])
        groups = [None] if seg is None else sorted(set(seg.tolist()))
        out = x.copy()
        for g in groups:
            inside = hit if g is None else hit & (seg == g)
            rows = None if g is None else np.flatnonzero(table.columns[table.segment or ""] == g)
            p = table.shares(change.feature, rows).get(top, 0.0)
            target = p + (change.size - p) * f
            if target <= p or p >= 1.0:
                continue
            flip = (target - p) / (1.0 - p)
            out[inside & (x != top) & (rng.random(n) < flip)] = top
        cols[change.feature] = out


def _rows(table: Table, rows: np.ndarray) -> Columns:
    return {name: values[rows] for name, values in table.columns.items()}


def _predictions(table: Table, cols: Columns) -> tuple[np.ndarray, list[str] | None]:
    score = table.score(cols)
    if table.labels is None:
        return score, None
    negative, positive = table.labels
    return score, [positive if s > 0.5 else negative for s in score.tolist()]


def build(design: Design, seed: int, *, window_buckets: int) -> Stream:
    """The events of ``design`` for ``seed``, one bucket after another."""
    table = load(design.table)
    per_bucket = max(1, round(design.window_events / window_buckets))
    rng = np.random.default_rng([seed, 1])
    stream = Stream(design, [], per_bucket)
    features = (*table.numeric, *table.categorical)
    for bucket in range(design.buckets):
        rows = rng.integers(0, table.rows, per_bucket)
        cols = _rows(table, rows)
        seg = _segments_of(table, rows)
        for change in design.changes:
            _apply(table, cols, seg, change, bucket, rng)
        score, labels = _predictions(table, cols)
        latency = np.round(rng.lognormal(np.log(12.0), 0.3, per_bucket), 2)
        stamps = START + bucket * HOUR + np.sort(rng.integers(0, HOUR, per_bucket))
        lists = {f: cols[f].tolist() for f in features}
        score_list = score.tolist()
        seg_list = None if seg is None else seg.tolist()
        counts: dict[str, int] = {}
        for i in range(per_bucket):
            event: dict[str, object] = {
                "timestamp": int(stamps[i]),
                "model": table.name,
                "model_version": VERSION,
                "features": {f: lists[f][i] for f in features},
                "prediction": (
                    score_list[i]
                    if labels is None
                    else {"score": score_list[i], "label": labels[i]}
                ),
                "latency_ms": float(latency[i]),
            }
            key = ""
            if seg_list is not None and table.segment is not None:
                event["segment"] = {table.segment: seg_list[i]}
                key = seg_list[i]
            counts[key] = counts.get(key, 0) + 1
            stream.events.append(orjson.dumps(event))
        stream.segment_counts.append(counts)
    return stream


def reference_rows(table: Table, rows: int, seed: int) -> Iterator[dict[str, object]]:
    """The rows of a training file: an independent resample of the table."""
    rng = np.random.default_rng([seed, 2])
    pick = rng.integers(0, table.rows, rows)
    cols = _rows(table, pick)
    score, labels = _predictions(table, cols)
    latency = np.round(rng.lognormal(np.log(12.0), 0.3, rows), 2)
    names = [*table.numeric, *table.categorical]
    if table.segment is not None:
        names.append(table.segment)
    lists = {n: cols[n].tolist() for n in names}
    for i in range(rows):
        row: dict[str, object] = {n: lists[n][i] for n in names}
        row["score"] = float(score[i])
        if labels is not None:
            row["label"] = labels[i]
        row["latency_ms"] = float(latency[i])
        yield row


@cache
def baseline_bytes(table_name: str, rows: int, seed: int) -> bytes:
    """The baseline of ``rows`` resampled rows, built as ``driftwire baseline build`` does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from driftwire.offline.baseline import BaselineSpec, build_baseline

    table = load(table_name)
    data = list(reference_rows(table, rows, seed))
    spec = BaselineSpec(
        model=table.name,
        model_version=VERSION,
        features=[*table.numeric, *table.categorical],
        prediction_column="score",
        label_column="label" if table.labels else None,
        latency_column="latency_ms",
        segment_columns=(table.segment,) if table.segment else (),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{table.name}-training.parquet"
        pq.write_table(pa.Table.from_pylist(data), path)
        reference = build_baseline(path, spec, created_ms=START)
    return reference.to_bytes()
