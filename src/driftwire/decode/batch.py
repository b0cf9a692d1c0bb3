"""The decoded form of a batch of inference events: columns, plus what was rejected.

The decoder (``driftwire.decode.decoder``) turns raw Kafka values into a :class:`DecodedBatch`;
the profiler folds a batch into sketches. Row-shaped fields are Python lists because they
come from JSON objects; numeric per-event fields are numpy arrays. A batch from the compiled
decoder also carries :class:`~driftwire.decode.columns.EventColumns` (codes and matrices, what
the profiler reads) and builds its lists only when they are read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from driftwire.decode.columns import EventColumns

FeatureValue = float | int | str | bool | None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one raw event was refused.

    ``reason`` is a stable code (``empty``, ``oversized``, ``not_json``, ``not_object``,
    ``missing_field``, ``wrong_type``, ``too_long``, ``non_finite``, ``negative_latency``,
    ``bad_timestamp``, ``too_many_features``, ``too_many_segment_keys``; see
    :data:`driftwire.decode.decoder.REASONS`); ``field`` is the dotted path it concerns
    (``features.age``) or ``None`` when the event as a whole is bad.
    """

    index: int
    reason: str
    field: str | None
    message: str


_LISTS = ("model", "model_version", "segment", "features", "prediction_label", "event_id")


class DecodedBatch:
    """Accepted events of one input batch as columns, aligned by position.

    ``index[i]`` is the position of accepted event ``i`` in the raw input batch, so that the
    caller can map it back to its Kafka offset.
    """

    __slots__ = (
        "_event_id",
        "_features",
        "_model",
        "_model_version",
        "_prediction_label",
        "_rows",
        "_segment",
        "columns",
        "index",
        "latency_ms",
        "prediction_score",
        "rejections",
        "timestamp_ms",
    )

    def __init__(
        self,
        *,
        index: np.ndarray,  # int64 (n,)
        timestamp_ms: np.ndarray,  # int64 (n,), epoch milliseconds UTC
        model: list[str] | None,
        model_version: list[str] | None,
        segment: list[dict[str, str]] | None,  # {} when the event has no segment
        features: list[dict[str, FeatureValue]] | None,
        prediction_score: np.ndarray,  # float64 (n,), NaN where the prediction has no score
        prediction_label: list[str | None] | None,  # None where the prediction has no label
        latency_ms: np.ndarray,  # float64 (n,)
        event_id: list[str | None] | None,
        rejections: list[Rejection] | None = None,
        columns: EventColumns | None = None,
        rows: Callable[[], DecodedBatch] | None = None,
    ) -> None:
        self.index = index
        self.timestamp_ms = timestamp_ms
        self._model = model
        self._model_version = model_version
        self._segment = segment
        self._features = features
        self.prediction_score = prediction_score
        self._prediction_label = prediction_label
        self.latency_ms = latency_ms
        self._event_id = event_id
        self.rejections: list[Rejection] = [] if rejections is None else rejections
        self.columns = columns
        """The compiled decoder's columns, or None (then the lists are all there is)."""
        self._rows = rows

    def _list(self, name: str) -> list[Any]:
        value: list[Any] | None = getattr(self, "_" + name)
        if value is None:  # from columns: decode the rows (off the hot path)
            if self._rows is None:
                raise ValueError(f"DecodedBatch has neither {name} nor a way to build it")
            full = self._rows()
            for other in _LISTS:
                setattr(self, "_" + other, getattr(full, other))
            value = getattr(self, "_" + name)
            assert value is not None
        return value

    @property
    def model(self) -> list[str]:
        return self._list("model")

    @property
    def model_version(self) -> list[str]:
        return self._list("model_version")

    @property
    def segment(self) -> list[dict[str, str]]:
        return self._list("segment")

    @property
    def features(self) -> list[dict[str, FeatureValue]]:
        return self._list("features")

    @property
    def prediction_label(self) -> list[str | None]:
        return self._list("prediction_label")

    @property
    def event_id(self) -> list[str | None]:
        return self._list("event_id")

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"DecodedBatch({len(self)} events, {len(self.rejections)} rejected)"

    def take(self, rows: np.ndarray) -> DecodedBatch:
        """The accepted events at positions ``rows`` (ascending), without the rejections.

        >>> from driftwire.decode.decoder import decode_batch
        >>> def event(ms: int, x: int) -> bytes:
        ...     return (b'{"timestamp": %d, "model": "m", "model_version": "1",'
        ...             b' "features": {"x": %d}, "prediction": 0.5, "latency_ms": 3}' % (ms, x))
        >>> batch = decode_batch([event(1000, 1), b"not json", event(2000, 2)])
        >>> kept = batch.take(np.array([1]))
        >>> kept.index.tolist(), kept.timestamp_ms.tolist(), kept.features, kept.rejections
        ([2], [2000], [{'x': 2}], [])
        """
        pick = rows.tolist()
        if self.columns is not None and self._model is None:
            source = self

            def taken() -> DecodedBatch:
                return source.take_lists(rows)

            return DecodedBatch(
                index=self.index[rows],
                timestamp_ms=self.timestamp_ms[rows],
                model=None,
                model_version=None,
                segment=None,
                features=None,
                prediction_score=self.prediction_score[rows],
                prediction_label=None,
                latency_ms=self.latency_ms[rows],
                event_id=None,
                columns=self.columns.take(rows),
                rows=taken,
            )
        return self.take_lists(rows, pick)

    def take_lists(self, rows: np.ndarray, pick: list[int] | None = None) -> DecodedBatch:
        """:meth:`take` into a batch of lists only."""
        pick = rows.tolist() if pick is None else pick
        return DecodedBatch(
            index=self.index[rows],
            timestamp_ms=self.timestamp_ms[rows],
            model=[self.model[i] for i in pick],
            model_version=[self.model_version[i] for i in pick],
            segment=[self.segment[i] for i in pick],
            features=[self.features[i] for i in pick],
            prediction_score=self.prediction_score[rows],
            prediction_label=[self.prediction_label[i] for i in pick],
            latency_ms=self.latency_ms[rows],
            event_id=[self.event_id[i] for i in pick],
        )
