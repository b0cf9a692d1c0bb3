"""Reference performance: the realized metrics of the reference data, stored in a baseline.

``driftwire baseline build --target-column`` reads a file that has the model's predictions and
the truth side by side and folds every row through the same
:class:`~driftwire.truth.windows.PerformanceBuckets` the stream uses (one bucket, every row a
joined pair), per segment and ``all``. The result, a :class:`ReferencePerformance`, travels
in the baseline as an opaque blob (:attr:`driftwire.detect.reference.Reference.performance`);
the truth stage then judges windows against it instead of freezing a reference from the first
labels that arrive, and fits the score calibration of estimated performance on it.

>>> rows = ReferencePerformanceBuilder(threshold=0.5)
>>> for score, actual in [(0.9, "true"), (0.2, "false"), (0.7, "false"), (0.1, "false")]:
...     rows.add(segment="all", score=score, label=None, actual=actual)
>>> built = rows.finish()
>>> built.segment("all").classification.metrics().accuracy.value
0.75
>>> ReferencePerformance.from_bytes(built.to_bytes()).to_bytes() == built.to_bytes()
True
"""

from __future__ import annotations

from dataclasses import dataclass

from driftwire._codec import Reader, Writer, seal, unseal
from driftwire.truth.classification import ClassificationState
from driftwire.truth.join import JoinedPair, Prediction
from driftwire.truth.label import Actual
from driftwire.truth.regression import RegressionState
from driftwire.truth.windows import PerformanceBuckets, WindowPerformance

__all__ = ["ALL", "ReferencePerformance", "ReferencePerformanceBuilder"]

ALL = "all"
_MAGIC = b"DWRF"
_FORMAT = 1


@dataclass(frozen=True)
class ReferencePerformance:
    """Realized performance of the reference per segment (``all`` = every row)."""

    segments: dict[str, WindowPerformance]

    def segment(self, name: str) -> WindowPerformance:
        """The performance of segment ``name``, falling back to every row's."""
        return self.segments.get(name) or self.segments[ALL]

    def to_bytes(self) -> bytes:
        w = Writer()
        w.uvarint(len(self.segments))
        for name, p in sorted(self.segments.items()):
            w.text(name)
            w.uvarint(p.predictions)
            w.uvarint(p.joined)
            w.u8(p.classification is not None)
            if p.classification is not None:
                w.blob(p.classification.to_bytes())
            w.u8(p.regression is not None)
            if p.regression is not None:
                w.blob(p.regression.to_bytes())
        return seal(_MAGIC, _FORMAT, w.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes) -> ReferencePerformance:
        r = Reader(unseal(data, _MAGIC, _FORMAT, "reference performance"))
        segments: dict[str, WindowPerformance] = {}
        for _ in range(r.uvarint()):
            name = r.text()
            predictions, joined = r.uvarint(), r.uvarint()
            classification = ClassificationState.from_bytes(r.blob()) if r.u8() else None
            regression = RegressionState.from_bytes(r.blob()) if r.u8() else None
            segments[name] = WindowPerformance(
                predictions, joined, 0, classification, regression, None
            )
        r.done()
        if ALL not in segments:
            from driftwire.errors import FormatError

            raise FormatError("reference performance: no 'all' segment")
        return cls(segments)


class ReferencePerformanceBuilder:
    """Rows of (prediction, truth) into a :class:`ReferencePerformance`; ``threshold`` makes a
    binary classifier's score a predicted class, as in the stream."""

    def __init__(self, *, threshold: float = 0.5) -> None:
        self._buckets = PerformanceBuckets(bucket_ms=1, threshold=threshold)
        self._segments: set[str] = {ALL}
        self.rows = 0

    def add(self, *, segment: str, score: float | None, label: str | None, actual: Actual) -> None:
        """One row: the model's score (or regression value) and/or predicted label, the truth;
        counted in ``segment`` and in ``all``."""
        self.rows += 1
        for name in {ALL, segment}:
            self._segments.add(name)
            p = Prediction(str(self.rows), "", "", name, 0, score, label)
            self._buckets.seen(p)
            self._buckets.joined(JoinedPair(p, actual, 0))

    def finish(self) -> ReferencePerformance:
        return ReferencePerformance(
            {s: self._buckets.window("", "", s, 0, 1) for s in sorted(self._segments)}
        )
