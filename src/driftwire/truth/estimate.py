"""Estimated performance of a binary classifier before its labels arrive (confidence-based).

On the reference, where scores and outcomes are both known, :class:`ScoreCalibration` learns
how often a score turned out positive (isotonic regression over the score bins). In a window
without labels, every prediction then counts as a fraction ``p`` of a positive and ``1 - p``
of a negative, ``p`` its score's calibrated probability: summed over the window's score
histogram that gives the *expected* confusion matrix, hence expected accuracy, precision,
recall, F1 and ROC AUC. The estimate is right as long as the score means what it meant on the
reference (covariate shift) and the window's scores stay where the reference had scores (each
estimate reports its share beyond the reference's central 99%, where it extrapolates). It
cannot see concept drift, which only realized performance shows; the alert that carries it
says it is an estimate.

>>> import numpy as np
>>> from driftwire.truth.classification import SCORE_BINS
>>> positives = np.zeros(SCORE_BINS, dtype=np.int64); negatives = positives.copy()
>>> positives[900], negatives[900] = 900, 100     # scores near 0.9: 90% positive
>>> positives[100], negatives[100] = 100, 900     # scores near 0.1: 10% positive
>>> calibration = ScoreCalibration.fit(positives, negatives)
>>> window = np.zeros(SCORE_BINS, dtype=np.int64); window[900], window[100] = 300, 700
>>> e = estimate_binary(window, calibration, threshold=0.5)
>>> round(e.accuracy, 3), round(e.precision, 3), round(e.recall, 3)
(0.9, 0.9, 0.794)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from driftwire.truth.classification import SCORE_BINS

__all__ = ["EstimatedPerformance", "ScoreCalibration", "estimate_binary"]


@dataclass(frozen=True, slots=True)
class ScoreCalibration:
    """Calibrated probability of the positive class for each of the :data:`SCORE_BINS` bins."""

    probability: np.ndarray  # float64 (SCORE_BINS,)
    reference_count: int
    #: bins outside the central 99% of the reference's scores: a window's share there is read
    #: by extrapolation (see :attr:`EstimatedPerformance.outside_reference_share`)
    outside: np.ndarray  # bool (SCORE_BINS,)

    @classmethod
    def fit(
        cls, positives: np.ndarray, negatives: np.ndarray, *, min_block: int = 100
    ) -> ScoreCalibration:
        """Isotonic regression of the outcome on the score, from the reference's score
        histograms per actual class: pool-adjacent-violators over the occupied bins (weighted
        by their counts), then linear interpolation between the pooled blocks' mean scores,
        so a window with more high or low scores than the reference is not read through one
        coarse step (constant beyond the outermost blocks). Blocks of fewer than
        ``min_block`` reference predictions are pooled with their neighbour, so that a few
        extreme scores do not set the ends of the map."""
        pos = np.asarray(positives, dtype=np.float64)
        total = pos + np.asarray(negatives, dtype=np.float64)
        occupied = np.flatnonzero(total > 0)
        centres = (np.arange(SCORE_BINS) + 0.5) / SCORE_BINS
        if occupied.size == 0:
            return cls(np.full(SCORE_BINS, 0.5), 0, np.ones(SCORE_BINS, dtype=bool))
        cumulative = np.cumsum(total) / total.sum()
        outside = (cumulative < 0.005) | (cumulative - total / total.sum() > 0.995)
        # blocks of [weight, sum of outcomes, sum of weighted scores]
        blocks: list[list[float]] = []
        for b in occupied.tolist():
            blocks.append([total[b], pos[b], total[b] * centres[b]])
            while len(blocks) > 1 and blocks[-2][1] / blocks[-2][0] > blocks[-1][1] / blocks[-1][0]:
                w, y, x = blocks.pop()
                blocks[-1][0] += w
                blocks[-1][1] += y
                blocks[-1][2] += x
        blocks = _pool_small(blocks, min_block)
        xs = np.array([x / w for w, _, x in blocks])
        ys = np.array([y / w for w, y, _ in blocks])
        return cls(np.interp(centres, xs, ys), int(total.sum()), outside)


def _pool_small(blocks: list[list[float]], min_block: int) -> list[list[float]]:
    """Merge each block under ``min_block`` into its smaller neighbour (monotone stays so: a
    pooled rate lies between the two it pools)."""
    while len(blocks) > 1:
        small = min(range(len(blocks)), key=lambda i: blocks[i][0])
        if blocks[small][0] >= min_block:
            break
        if small == 0:
            other = 1
        elif small == len(blocks) - 1:
            other = small - 1
        else:
            other = small - 1 if blocks[small - 1][0] <= blocks[small + 1][0] else small + 1
        lo, hi = sorted((small, other))
        blocks[lo] = [a + b for a, b in zip(blocks[lo], blocks[hi], strict=True)]
        del blocks[hi]
    return blocks


@dataclass(frozen=True, slots=True)
class EstimatedPerformance:
    """Expected metrics of a window from its scores alone; ``n`` predictions behind them."""

    n: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    auc: float
    expected_positive_share: float
    #: the window's share of scores beyond the reference's central 99%: where it is large
    #: (a strong shift of the scores), the estimate extrapolates and is less reliable
    outside_reference_share: float


def estimate_binary(
    scores: np.ndarray, calibration: ScoreCalibration, *, threshold: float = 0.5
) -> EstimatedPerformance:
    """Expected confusion matrix of a window's score histogram (counts per score bin)."""
    counts = np.asarray(scores, dtype=np.float64)
    n = float(counts.sum())
    p = calibration.probability
    predicted_positive = (np.arange(SCORE_BINS) / SCORE_BINS) >= threshold - 1e-12
    expected_pos, expected_neg = counts * p, counts * (1 - p)
    tp = float(expected_pos[predicted_positive].sum())
    fp = float(expected_neg[predicted_positive].sum())
    fn = float(expected_pos[~predicted_positive].sum())
    tn = float(expected_neg[~predicted_positive].sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    positives, negatives = expected_pos.sum(), expected_neg.sum()
    below = np.cumsum(expected_neg) - expected_neg
    auc = (
        float((expected_pos @ below + 0.5 * expected_pos @ expected_neg) / (positives * negatives))
        if positives > 0 and negatives > 0
        else float("nan")
    )
    return EstimatedPerformance(
        n=int(n),
        accuracy=(tp + tn) / n if n else float("nan"),
        precision=precision,
        recall=recall,
        f1=f1,
        auc=auc,
        expected_positive_share=float(positives / n) if n else float("nan"),
        outside_reference_share=float(counts[calibration.outside].sum() / n) if n else 0.0,
    )
