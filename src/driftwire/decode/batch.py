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
