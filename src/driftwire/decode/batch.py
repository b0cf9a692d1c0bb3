"""The decoded form of a batch of inference events: columns, plus what was rejected.

The decoder (``driftwire.decode.decoder``) turns raw Kafka values into a :class:`DecodedBatch`;
the profiler folds a batch into sketches. Row-shaped fields stay Python lists because they
come from JSON objects; numeric per-event fields are numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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


@dataclass(slots=True)
class DecodedBatch:
    """Accepted events of one input batch as columns, aligned by position.

    ``index[i]`` is the position of accepted event ``i`` in the raw input batch, so that the
    caller can map it back to its Kafka offset.
    """

    index: np.ndarray  # int64 (n,)
    timestamp_ms: np.ndarray  # int64 (n,), epoch milliseconds UTC
    model: list[str]
    model_version: list[str]
    segment: list[dict[str, str]]  # {} when the event has no segment
    features: list[dict[str, FeatureValue]]
    prediction_score: np.ndarray  # float64 (n,), NaN where the prediction has no score
    prediction_label: list[str | None]  # None where the prediction has no label
    latency_ms: np.ndarray  # float64 (n,)
    event_id: list[str | None]
    rejections: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.model)

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
