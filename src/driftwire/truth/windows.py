"""Realized performance per prediction-time bucket, and label completeness, as labels arrive.

A joined pair counts in the bucket its *prediction* fell in (not the label's arrival), so a
window's performance is that of the predictions made in it, and it improves in completeness
as labels trickle in until the horizon. :class:`PerformanceBuckets` keeps, per (model,
version, segment, bucket start), the number of predictions seen, joined and expired, and one
:class:`~driftwire.truth.classification.ClassificationState` or
:class:`~driftwire.truth.regression.RegressionState` (chosen by the first label: a string is a
class, a number a regression target). :meth:`PerformanceBuckets.window` merges the buckets of
a window into one :class:`WindowPerformance`.

>>> from driftwire.truth.join import JoinedPair, Prediction
>>> buckets = PerformanceBuckets(bucket_ms=60_000)
>>> p = Prediction("e1", "churn", "1", "", 61_000, 0.8, None)
>>> buckets.seen(p)
>>> buckets.joined(JoinedPair(p, "true", 5_000))
>>> w = buckets.window("churn", "1", "", 0, 120_000)
>>> w.predictions, w.joined, w.completeness, w.classification.metrics().accuracy.value
(1, 1, 1.0, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from driftwire.truth.classification import SCORE_BINS, ClassificationState
from driftwire.truth.join import JoinedPair, Prediction
from driftwire.truth.regression import RegressionState

__all__ = ["POSITIVE_LABELS", "BucketKey", "PerformanceBuckets", "WindowPerformance"]

#: Labels read as the positive class of a binary classifier whose prediction is a score.
POSITIVE_LABELS = ("true", "1", "yes", "positive")

BucketKey = tuple[str, str, str, int]  # model, model_version, segment, bucket start (ms)


@dataclass
class _Bucket:
    predictions: int = 0
    joined: int = 0
    expired: int = 0
    delays_ms: list[int] = field(default_factory=list)
    classification: ClassificationState | None = None
    regression: RegressionState | None = None
    #: counts per score bin of every prediction seen (labelled or not), for estimated
    #: performance; kept only while the bucket is in the window being estimated
    scores: np.ndarray | None = None


@dataclass
class WindowPerformance:
    """What a window's joined predictions say, and how complete their labels are."""

    predictions: int
    joined: int
    expired: int
    classification: ClassificationState | None
    regression: RegressionState | None
    median_delay_ms: float | None
    #: the score histogram of every prediction of the window (:meth:`PerformanceBuckets.scores`)
    scores: np.ndarray | None = None

    @property
    def completeness(self) -> float:
        """Joined predictions over predictions seen (1.0 for an empty window)."""
        return self.joined / self.predictions if self.predictions else 1.0


class PerformanceBuckets:
    """Per-bucket performance state; see the module docstring.

    ``threshold``: a score at or above it predicts the positive class, for binary classifiers
    whose events carry a score and no label; ``positive``: the positive class label (default:
    the first of :data:`POSITIVE_LABELS` the actual labels use).
    """

    def __init__(
        self, *, bucket_ms: int, threshold: float = 0.5, positive: str | None = None
    ) -> None:
        if bucket_ms < 1:
            raise ValueError(f"bucket_ms must be >= 1, got {bucket_ms}")
        self.bucket_ms = bucket_ms
        self.threshold = threshold
        self.positive = positive
        self._buckets: dict[BucketKey, _Bucket] = {}

    def _bucket(self, p: Prediction) -> _Bucket:
        start = p.timestamp_ms - p.timestamp_ms % self.bucket_ms
        key = (p.model, p.model_version, p.segment, start)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket()
        return bucket

    def seen(self, prediction: Prediction, *, keep_score: bool = False) -> None:
        """Count a prediction that entered the join (the denominator of completeness); with
        ``keep_score``, add its score to the bucket's score histogram (estimated performance:
        :data:`~driftwire.truth.classification.SCORE_BINS` 32-bit counts per bucket, dropped
        by :meth:`drop_scores_before`)."""
        bucket = self._bucket(prediction)
        bucket.predictions += 1
        score = prediction.score
        if keep_score and score is not None and math.isfinite(score):
            if bucket.scores is None:
                bucket.scores = np.zeros(SCORE_BINS, dtype=np.int32)
            bucket.scores[min(int(min(max(score, 0.0), 1.0) * SCORE_BINS), SCORE_BINS - 1)] += 1

    def scores(self, model: str, version: str, segment: str, start: int, end: int) -> np.ndarray:
        """The score histogram of the predictions of buckets starting in ``[start, end)``."""
        total = np.zeros(SCORE_BINS, dtype=np.int64)
        for (m, v, s, begin), bucket in self._buckets.items():
            in_window = (m, v, s) == (model, version, segment) and start <= begin < end
            if in_window and bucket.scores is not None:
                total += bucket.scores
        return total

    def drop_scores_before(self, time_ms: int) -> None:
        """Free the score histograms of buckets that start before ``time_ms``."""
        for (_, _, _, begin), bucket in self._buckets.items():
            if begin < time_ms:
                bucket.scores = None

    def expired(self, prediction: Prediction) -> None:
        """Count a prediction whose label did not come within the horizon."""
        self._bucket(prediction).expired += 1

    def joined(self, pair: JoinedPair) -> None:
        """Add one joined pair to its prediction's bucket."""
        p = pair.prediction
        bucket = self._bucket(p)
        bucket.joined += 1
        bucket.delays_ms.append(pair.delay_ms)
        if isinstance(pair.actual, str):
            if bucket.classification is None:
                bucket.classification = ClassificationState(self._positive(pair.actual))
            positive = bucket.classification.positive
            predicted = p.label
            if p.score is not None and positive is not None:
                negative = _negative_of(positive)
                if predicted not in (positive, negative):
                    # no predicted class, or one named otherwise than the truth (an event's
                    # {"score": 0.8, "label": "churn"} against true/false labels): the score
                    # and the threshold say which class was predicted
                    predicted = positive if p.score >= self.threshold else negative
            bucket.classification.update(pair.actual, predicted, p.score)
        elif p.score is not None:
            if bucket.regression is None:
                bucket.regression = RegressionState()
            bucket.regression.update_batch(np.array([p.score]), np.array([pair.actual]))

    def _positive(self, actual: str) -> str | None:
        if self.positive is not None:
            return self.positive
        return actual if actual in POSITIVE_LABELS else _positive_for(actual)

    def window(
        self, model: str, version: str, segment: str, start: int, end: int
    ) -> WindowPerformance:
        """The merge of the buckets starting in ``[start, end)``."""
        predictions = joined = expired = 0
        classification: ClassificationState | None = None
        regression: RegressionState | None = None
        delays: list[int] = []
        for bucket in self._in_window(model, version, segment, start, end):
            predictions += bucket.predictions
            joined += bucket.joined
            expired += bucket.expired
            delays += bucket.delays_ms
            if bucket.classification is not None:
                if classification is None:
                    classification = ClassificationState(bucket.classification.positive)
                classification.merge(bucket.classification)
            if bucket.regression is not None:
                regression = (regression or RegressionState()).merge(bucket.regression)
        return WindowPerformance(
            predictions,
            joined,
            expired,
            classification,
            regression,
            float(np.median(delays)) if delays else None,
        )

    def _in_window(
        self, model: str, version: str, segment: str, start: int, end: int
    ) -> list[_Bucket]:
        """The buckets of one series starting in ``[start, end)``, oldest first: looked up
        one bucket start at a time when that is fewer than the buckets held (a window judged
        at several ages costs its own buckets, not every bucket kept for the horizon)."""
        first = start + (-start) % self.bucket_ms
        if (end - first) // self.bucket_ms <= len(self._buckets):
            found = (
                self._buckets.get((model, version, segment, begin))
                for begin in range(first, end, self.bucket_ms)
            )
            return [b for b in found if b is not None]
        return [
            bucket
            for (m, v, s, begin), bucket in sorted(self._buckets.items())
            if (m, v, s) == (model, version, segment) and start <= begin < end
        ]

    def drop_before(self, time_ms: int) -> int:
        """Forget buckets that start before ``time_ms`` (past every window and the horizon);
        returns how many were dropped."""
        old = [key for key in self._buckets if key[3] < time_ms]
        for key in old:
            del self._buckets[key]
        return len(old)


_PAIRS = {"true": "false", "1": "0", "yes": "no", "positive": "negative"}


def _negative_of(positive: str) -> str:
    return _PAIRS.get(positive, f"not {positive}")


def _positive_for(actual: str) -> str | None:
    """The positive label of the pair ``actual`` belongs to (``"false"`` -> ``"true"``)."""
    for positive, negative in _PAIRS.items():
        if actual == negative:
            return positive
    return None
