"""Realized performance of a classifier from mergeable state, with confidence intervals.

:class:`ClassificationState` keeps what every metric needs and nothing per prediction: the
confusion counts (actual x predicted label), and for a binary classifier with scores the
score histograms per actual class (ROC AUC), the sums of the log loss and of its square, and
per-bin score sums (calibration error). Two states of the same shape merge by adding, so a
window is the merge of its buckets and an aggregate the merge of its segments.

Exactness: accuracy, precision, recall, F1, the log loss and the label distribution are exact.
ROC AUC is computed from :data:`SCORE_BINS` equal bins over [0, 1]: pairs whose scores fall in
the same bin count one half, so the value is within :attr:`ClassificationMetrics.auc_bin_error`
(half the share of positive-negative pairs that share a bin) of the exact AUC, a bound the
result carries. The calibration error is the expected calibration error over
:data:`CALIBRATION_BINS` equal-width bins (the usual definition, exact for those bins).

Intervals are 95%: Wilson's for proportions, Hanley and McNeil's standard error for the AUC,
the normal one for the mean log loss.

>>> state = ClassificationState(positive="1")
>>> for actual, score in [("1", 0.9), ("0", 0.2), ("1", 0.4), ("0", 0.6), ("1", 0.8)]:
...     state.update(actual, "1" if score >= 0.5 else "0", score)
>>> m = state.metrics()
>>> m.n, m.accuracy.value, round(m.auc.value, 3)
(5, 0.6, 0.833)
>>> ClassificationState.from_bytes(state.to_bytes()).to_bytes() == state.to_bytes()
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from driftwire._codec import Reader, Writer, seal, unseal
from driftwire.errors import FormatError
from driftwire.truth.interval import Estimate, mean_interval, wilson

__all__ = [
    "CALIBRATION_BINS",
    "SCORE_BINS",
    "ClassMetrics",
    "ClassificationMetrics",
    "ClassificationState",
    "score_histogram",
]

SCORE_BINS = 1000
CALIBRATION_BINS = 10
_PROB_FLOOR = 2.0**-52  # scikit-learn's clip for the log loss: float64 machine epsilon
_MAGIC = b"DWCP"
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    """Precision, recall and F1 of one class, one-vs-rest."""

    precision: Estimate
    recall: Estimate
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class ClassificationMetrics:
    """Realized classification performance over the joined predictions of a window."""

    n: int
    accuracy: Estimate
    per_class: dict[str, ClassMetrics]
    actual_shares: dict[str, float]
    auc: Estimate | None
    auc_bin_error: float | None
    log_loss: Estimate | None
    calibration_error: float | None


class ClassificationState:
    """Mergeable confusion counts and score statistics; see the module docstring.

    ``positive`` names the positive class of a binary classifier, whose ``score`` is the
    probability of that class; without it (or without scores) only the label metrics exist.
    """

    __slots__ = ("_cal_score_sum", "_confusion", "_loss", "_neg_hist", "_pos_hist", "positive")

    def __init__(self, positive: str | None = None) -> None:
        self.positive = positive
        self._confusion: dict[tuple[str, str], int] = {}
        self._pos_hist = np.zeros(SCORE_BINS, dtype=np.int64)
        self._neg_hist = np.zeros(SCORE_BINS, dtype=np.int64)
        self._loss = np.zeros(2)  # sum of the log loss, sum of its square
        self._cal_score_sum = np.zeros(CALIBRATION_BINS)

    @property
    def n(self) -> int:
        return sum(self._confusion.values())

    def update(self, actual: str, predicted: str | None, score: float | None = None) -> None:
        """Count one joined prediction. ``predicted`` None counts as a wrong answer."""
        key = (actual, "" if predicted is None else predicted)
        self._confusion[key] = self._confusion.get(key, 0) + 1
        if self.positive is None or score is None or not math.isfinite(score):
            return
        p = min(max(score, 0.0), 1.0)
        is_positive = actual == self.positive
        (self._pos_hist if is_positive else self._neg_hist)[_score_bin(p)] += 1
        clipped = min(max(p, _PROB_FLOOR), 1 - _PROB_FLOOR)
        loss = -math.log(clipped if is_positive else 1 - clipped)
        self._loss += (loss, loss * loss)
        self._cal_score_sum[min(int(p * CALIBRATION_BINS), CALIBRATION_BINS - 1)] += p

    def score_histograms(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the score counts per bin of the actual positives and negatives."""
        return self._pos_hist.copy(), self._neg_hist.copy()

    def merge(self, other: ClassificationState) -> ClassificationState:
        """Add ``other`` into this state (same positive class) and return it."""
        if other.positive != self.positive:
            raise ValueError(f"positive classes differ: {self.positive!r}, {other.positive!r}")
        for key, count in other._confusion.items():
            self._confusion[key] = self._confusion.get(key, 0) + count
        self._pos_hist += other._pos_hist
        self._neg_hist += other._neg_hist
        self._loss += other._loss
        self._cal_score_sum += other._cal_score_sum
        return self

    def metrics(self) -> ClassificationMetrics:
        """Every metric the state supports, with its interval."""
        n = self.n
        actual_counts: dict[str, int] = {}
        predicted_counts: dict[str, int] = {}
        correct: dict[str, int] = {}
        for (actual, predicted), count in self._confusion.items():
            actual_counts[actual] = actual_counts.get(actual, 0) + count
            predicted_counts[predicted] = predicted_counts.get(predicted, 0) + count
            if actual == predicted:
                correct[actual] = correct.get(actual, 0) + count
        per_class = {}
        for label in sorted(actual_counts.keys() | predicted_counts.keys() - {""}):
            hits = correct.get(label, 0)
            precision = wilson(hits, predicted_counts.get(label, 0))
            recall = wilson(hits, actual_counts.get(label, 0))
            total = predicted_counts.get(label, 0) + actual_counts.get(label, 0)
            per_class[label] = ClassMetrics(
                precision, recall, 2 * hits / total if total else 0.0, actual_counts.get(label, 0)
            )
        auc, bin_error = self._auc()
        scored = int(self._pos_hist.sum() + self._neg_hist.sum())
        return ClassificationMetrics(
            n=n,
            accuracy=wilson(sum(correct.values()), n),
            per_class=per_class,
            actual_shares={k: v / n for k, v in sorted(actual_counts.items())},
            auc=auc,
            auc_bin_error=bin_error,
            log_loss=mean_interval(float(self._loss[0]), float(self._loss[1]), scored)
            if scored
            else None,
            calibration_error=self._calibration_error(scored) if scored else None,
        )

    def _auc(self) -> tuple[Estimate | None, float | None]:
        pos, neg = self._pos_hist.astype(np.float64), self._neg_hist.astype(np.float64)
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos == 0 or n_neg == 0:
            return None, None
        neg_below = np.cumsum(neg) - neg  # negatives in lower bins
        ties = float(pos @ neg)
        auc = float((pos @ neg_below + 0.5 * ties) / (n_pos * n_neg))
        # Hanley & McNeil (1982)
        q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
        var = (
            auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)
        ) / (n_pos * n_neg)
        half = 1.959963984540054 * math.sqrt(max(var, 0.0))
        estimate = Estimate(auc, max(0.0, auc - half), min(1.0, auc + half), int(n_pos + n_neg))
        return estimate, 0.5 * ties / (n_pos * n_neg)

    def _calibration_error(self, scored: int) -> float:
        per_bin = SCORE_BINS // CALIBRATION_BINS
        positives = self._pos_hist.reshape(CALIBRATION_BINS, per_bin).sum(axis=1)
        counts = positives + self._neg_hist.reshape(CALIBRATION_BINS, per_bin).sum(axis=1)
        gaps = np.abs(self._cal_score_sum - positives)  # |sum(score) - sum(actual)| per bin
        return float(gaps[counts > 0].sum() / scored)

    # --- serialization -------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        w = Writer()
        w.u8(self.positive is not None)
        if self.positive is not None:
            w.text(self.positive)
        w.uvarint(len(self._confusion))
        for (actual, predicted), count in sorted(self._confusion.items()):
            w.text(actual)
            w.text(predicted)
            w.uvarint(count)
        for hist in (self._pos_hist, self._neg_hist):
            nonzero = np.flatnonzero(hist)
            w.uvarint(len(nonzero))
            for index in nonzero.tolist():
                w.uvarint(index)
                w.uvarint(int(hist[index]))
        for value in (*self._loss.tolist(), *self._cal_score_sum.tolist()):
            w.f64(value)
        return seal(_MAGIC, _FORMAT, w.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes) -> ClassificationState:
        r = Reader(unseal(data, _MAGIC, _FORMAT, "classification performance"))
        state = cls(r.text() if r.u8() else None)
        for _ in range(r.uvarint()):
            key = (r.text(), r.text())
            state._confusion[key] = r.uvarint()
        for hist in (state._pos_hist, state._neg_hist):
            for _ in range(r.uvarint()):
                index = r.uvarint()
                if index >= SCORE_BINS:
                    raise FormatError(f"classification performance: score bin {index} out of range")
                hist[index] = r.uvarint()
        state._loss[:] = [r.f64(), r.f64()]
        state._cal_score_sum[:] = [r.f64() for _ in range(CALIBRATION_BINS)]
        r.done()
        return state


def _score_bin(p: float) -> int:
    return min(int(p * SCORE_BINS), SCORE_BINS - 1)


def score_histogram(scores: np.ndarray) -> np.ndarray:
    """Counts of finite scores per bin (scores clipped to [0, 1]), as :meth:`update` bins them.

    >>> score_histogram(np.array([0.0, 0.2, 0.2, 1.0, np.nan]))[[0, 200, 999]].tolist()
    [1, 2, 1]
    """
    values = np.asarray(scores, dtype=np.float64)
    values = np.clip(values[np.isfinite(values)], 0.0, 1.0)
    bins = np.minimum((values * SCORE_BINS).astype(np.int64), SCORE_BINS - 1)
    return np.bincount(bins, minlength=SCORE_BINS).astype(np.int64)
