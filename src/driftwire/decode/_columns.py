"""The decoder's fast path: a parsed batch checked column by column.

After ``orjson`` (which never yields NaN or infinities) has parsed a batch, every field is
checked for the whole column at once with C-level builtins (``map``, ``set``, ``str.join``)
and numpy (:mod:`driftwire.decode._checks`), never with a Python loop per event: one scan of
the raw bytes rules out nested containers and over-long strings
(:mod:`driftwire.decode._scan`), timestamps are parsed for the whole column at once
(:mod:`driftwire.decode._timestamps`). Every column check is exact, so the events it sets
aside are exactly the refused ones. Accepted rows are kept in :class:`_Columns`.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain, compress, repeat
from typing import Any

import numpy as np

from driftwire.decode._checks import (
    _DICT,
    _NUM,
    _STR_OR_NONE,
    _names_bad,
    _prediction_column,
    _rows_where,
    _timestamp_column,
)
from driftwire.decode._event import _Row
from driftwire.decode._scan import _byte_scan, _strings_ok
from driftwire.decode.batch import DecodedBatch, FeatureValue, Rejection
from driftwire.decode.limits import DecoderLimits

_DICT_OR_NONE = frozenset((dict, type(None)))
_CONTAINERS = frozenset((dict, list))
_FEW = 64  # refused rows up to which the list columns are edited in place


class _Columns:
    """Accepted rows, column-wise, in input order."""

    __slots__ = (
        "event_id",
        "features",
        "index",
        "label",
        "latency",
        "model",
        "score",
        "segment",
        "timestamp",
        "version",
    )

    def __init__(self) -> None:
        self.index: list[int] | np.ndarray = []
        self.timestamp: list[int] | np.ndarray = []
        self.model: list[str] = []
        self.version: list[str] = []
        self.segment: list[dict[str, str]] = []
        self.features: list[dict[str, FeatureValue]] = []
        self.score: list[float] | np.ndarray = []
        self.label: list[str | None] = []
        self.latency: list[float] | np.ndarray = []
        self.event_id: list[str | None] = []

    def batch(self, rejections: list[Rejection]) -> DecodedBatch:
        return DecodedBatch(
            index=np.asarray(self.index, dtype=np.int64),
            timestamp_ms=np.asarray(self.timestamp, dtype=np.int64),
            model=self.model,
            model_version=self.version,
            segment=self.segment,
            features=self.features,
            prediction_score=np.asarray(self.score, dtype=np.float64),
            prediction_label=self.label,
            latency_ms=np.asarray(self.latency, dtype=np.float64),
            event_id=self.event_id,
            rejections=rejections,
        )


def _decode_columns(
    events: list[dict[str, Any]], joined: bytes, lens: list[int], limits: DecoderLimits
) -> tuple[_Columns, list[int]]:
    """Column-wise decode of parsed objects; returns accepted columns and the rows to refuse.

    Every check is exact: a row is set aside only if the per-event validator refuses it.
    """
    n = len(events)
    limit = limits.max_string_length
    bad: set[int] = set()
    get = dict.get

    # orjson hands out the same str object for every occurrence of a short key; looking keys
    # up with those very objects (an identity match) is a third faster than with equal ones
    known = {key: key for key in chain(events[0], events[-1])}

    def column(name: str) -> list[Any]:
        return list(map(get, events, repeat(known.get(name, name))))

    models = column("model")
    versions = column("model_version")
    timestamps = column("timestamp")
    latencies = column("latency_ms")
    predictions = column("prediction")
    features = column("features")
    segments = column("segment")
    event_ids = column("event_id")

    bad.update(_names_bad(models, limit))
    bad.update(_names_bad(versions, limit))

    timestamp, bad_ts = _timestamp_column(timestamps)
    bad.update(bad_ts)

    if not set(map(type, latencies)) <= _NUM:
        bad_lat = _rows_where(latencies, lambda v: type(v) is int or type(v) is float)
        bad.update(bad_lat)
        latencies = [0.0 if i in bad else v for i, v in enumerate(latencies)]
    latency = np.array(latencies, dtype=np.float64)
    negative = latency < 0
    if negative.any():
        bad.update(np.flatnonzero(negative).tolist())

    prediction_kinds = set(map(type, predictions))
    score, label, bad_pred, prediction_objects = _prediction_column(predictions, prediction_kinds)
    bad.update(bad_pred)

    feature_kinds = set(map(type, features))
    if feature_kinds != _DICT:
        bad.update(_rows_where(features, lambda v: type(v) is dict))
    dict_features = (
        features if feature_kinds == _DICT else [f if type(f) is dict else {} for f in features]
    )
    if n and max(map(len, dict_features)) > limits.max_features:
        bad.update(i for i, f in enumerate(dict_features) if len(f) > limits.max_features)

    try:  # usually every event has a segment: all dicts (else TypeError) of strings
        most_keys = max(map(len, segments))
        "".join(chain.from_iterable(map(dict.values, segments)))
        segment_kinds: set[type] = {dict}
    except TypeError:
        segment_kinds = set(map(type, segments))
        if not segment_kinds <= _DICT_OR_NONE:
            bad.update(_rows_where(segments, lambda v: v is None or type(v) is dict))
        present = [s for s in segments if type(s) is dict]
        most_keys = max(map(len, present), default=0)
        try:
            "".join(chain.from_iterable(map(dict.values, present)))
        except TypeError:
            bad.update(
                i
                for i, s in enumerate(segments)
                if type(s) is dict and not all(type(v) is str for v in s.values())
            )
    if most_keys > limits.max_segment_keys:
        bad.update(
            i
            for i, s in enumerate(segments)
            if type(s) is dict and len(s) > limits.max_segment_keys
        )

    if not set(map(type, event_ids)) <= _STR_OR_NONE:
        bad.update(_rows_where(event_ids, lambda v: v is None or type(v) is str))

    # Objects each row is known to hold: itself, plus features, segment, prediction if dicts.
    columns_of_objects = (features, segments, predictions)
    column_kinds = (feature_kinds, segment_kinds, prediction_kinds)
    objects = n + prediction_objects
    objects += n if feature_kinds == _DICT else sum(map(isinstance, features, repeat(dict)))
    objects += n if segment_kinds == _DICT else sum(map(isinstance, segments, repeat(dict)))

    def objects_per_row() -> np.ndarray:
        counts = np.ones(n, dtype=np.int64)
        for column, kinds in zip(columns_of_objects, column_kinds, strict=True):
            if kinds == _DICT:
                counts += 1
            elif dict in kinds:
                counts += np.frombuffer(bytes(map(isinstance, column, repeat(dict))), dtype=bool)
        return counts

    if segment_kinds != _DICT:
        segments = [s if type(s) is dict else {} for s in segments]
    containers, strings = _byte_scan(joined, lens, objects, objects_per_row, limit)
    for row in containers - bad:
        if not _CONTAINERS.isdisjoint(map(type, features[row].values())):
            bad.add(row)
    for row in strings - bad:
        if not _strings_ok(features[row], segments[row], label[row], event_ids[row], limit):
            bad.add(row)

    columns = _Columns()
    columns.timestamp, columns.latency, columns.score = timestamp, latency, score
    columns.model, columns.version, columns.segment = models, versions, segments
    columns.features, columns.label, columns.event_id = features, label, event_ids
    if not bad:
        return columns, []
    keep = np.ones(n, dtype=bool)
    refused = sorted(bad)
    keep[refused] = False
    columns.timestamp, columns.latency, columns.score = timestamp[keep], latency[keep], score[keep]
    columns.index = np.flatnonzero(keep)
    lists: list[list[Any]] = [models, versions, segments, features, label, event_ids]
    if len(refused) <= _FEW:  # a few deletions (a memmove each) beat copying every list
        for row in reversed(refused):
            for values in lists:
                del values[row]
    else:
        kept = keep.tolist()
        lists = [list(compress(values, kept)) for values in lists]
    columns.model, columns.version, columns.segment = lists[0], lists[1], lists[2]
    columns.features, columns.label, columns.event_id = lists[3], lists[4], lists[5]
    return columns, refused


def _merge(columns: _Columns, late: list[tuple[int, _Row]]) -> None:
    rows: list[tuple[int, _Row]] = list(
        zip(
            np.asarray(columns.index).tolist(),
            zip(
                np.asarray(columns.timestamp).tolist(),
                columns.model,
                columns.version,
                columns.segment,
                columns.features,
                np.asarray(columns.score).tolist(),
                columns.label,
                np.asarray(columns.latency).tolist(),
                columns.event_id,
                strict=True,
            ),
            strict=True,
        )
    )
    rows.extend(late)
    rows.sort(key=lambda item: item[0])
    _fill(columns, rows)


def _fill(columns: _Columns, rows: Iterable[tuple[int, _Row]]) -> None:
    rows = list(rows)
    columns.index = [i for i, _ in rows]
    columns.timestamp = [r[0] for _, r in rows]
    columns.model = [r[1] for _, r in rows]
    columns.version = [r[2] for _, r in rows]
    columns.segment = [r[3] for _, r in rows]
    columns.features = [r[4] for _, r in rows]
    columns.score = [r[5] for _, r in rows]
    columns.label = [r[6] for _, r in rows]
    columns.latency = [r[7] for _, r in rows]
    columns.event_id = [r[8] for _, r in rows]
