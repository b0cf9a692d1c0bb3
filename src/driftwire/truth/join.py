"""The ground-truth join: predictions meet their labels by ``event_id``, in bounded state.

Time is event time: the join's clock (its *watermark*) is the largest prediction timestamp or
label ``observed_ms`` it has seen, so the same input in the same order gives the same result,
run after run, whatever the wall clock says. Each call first moves the watermark, then expires
what it has passed, then matches:

* a prediction waits ``horizon_ms`` after its timestamp for its label; a label waits
  ``horizon_ms`` after ``observed_ms`` for its prediction (labels can overtake predictions,
  which travel on another topic); one that arrives after its own wait is over is counted at
  once (an expired prediction, an orphan label), so the outcome depends only on the order of
  the records, not on when :meth:`TruthJoin.drain_expired` is called;
* a label observed more than ``horizon_ms`` after its prediction is *late*: counted, not
  joined;
* an expired prediction (no label within the horizon) is returned by :meth:`TruthJoin.drain_expired`
  so that its window's label completeness can count it;
* ids that joined or expired are remembered for one more horizon, so a second label or
  prediction for them is counted as a duplicate (or late label), not mistaken for a new one;
* ``max_pending`` bounds each of the three maps: when one is full its oldest entry is evicted
  and counted (``evicted``), never a silent drop and never unbounded growth;
* ``sample_fraction`` < 1 keeps only the ids that :func:`is_sampled` selects, the same ids on
  every member and in the serving stack, so labels can be sent for that fraction only.

Every prediction and every label ends in exactly one count of :class:`JoinCounts` (or is still
held): the conservation law ``predictions == joined + expired + evicted_predictions + pending +
duplicate_predictions + not_sampled_predictions`` is checked by the tests.

>>> join = TruthJoin(horizon_ms=1_000)
>>> join.add_prediction(Prediction("e1", "churn", "1", "", 100, 0.8, None)) is None
True
>>> pair = join.add_label(GroundTruth("e1", "churn", None, "true", 400, None))
>>> pair.actual, pair.delay_ms
('true', 300)
>>> join.counts.joined, join.pending_predictions
(1, 0)
"""

from __future__ import annotations

import hashlib
import heapq
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TypeVar

from driftwire._codec import Reader, Writer, check_int, seal, unseal
from driftwire.truth.label import Actual, GroundTruth

__all__ = ["JoinCounts", "JoinedPair", "Prediction", "TruthJoin", "is_sampled"]

_MAGIC = b"DWTJ"
_FORMAT = 1
_JOINED, _EXPIRED = 0, 1
T = TypeVar("T")


def is_sampled(event_id: str, fraction: float) -> bool:
    """Whether ``event_id`` is in the deterministic sample of ``fraction`` of all ids.

    The rule, for producers in any language: the first 8 bytes of BLAKE2b (8-byte digest) of
    the UTF-8 id, read big-endian as an unsigned integer, divided by 2**64, is below
    ``fraction``.

    >>> is_sampled("e1", 1.0), is_sampled("e1", 0.0)
    (True, False)
    >>> sum(is_sampled(f"id-{i}", 0.25) for i in range(10_000))
    2430
    """
    if fraction >= 1.0:
        return True
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2.0**64


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the join keeps of one prediction: where it belongs and what the model said."""

    event_id: str
    model: str
    model_version: str
    segment: str
    timestamp_ms: int
    score: float | None
    label: str | None


@dataclass(frozen=True, slots=True)
class JoinedPair:
    """A prediction and its ground truth; ``delay_ms`` is how long the truth took."""

    prediction: Prediction
    actual: Actual
    delay_ms: int


@dataclass(slots=True)
class JoinCounts:
    """Where every prediction and label went (see the module docstring's conservation law)."""

    predictions: int = 0
    labels: int = 0
    joined: int = 0
    expired: int = 0
    late_labels: int = 0
    orphan_labels: int = 0
    duplicate_predictions: int = 0
    duplicate_labels: int = 0
    mismatched_labels: int = 0
    not_sampled_predictions: int = 0
    not_sampled_labels: int = 0
    evicted_predictions: int = 0
    evicted_labels: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class TruthJoin:
    """Bounded, deterministic join of predictions and labels; see the module docstring."""

    def __init__(
        self, *, horizon_ms: int, max_pending: int = 1_000_000, sample_fraction: float = 1.0
    ) -> None:
        check_int("horizon_ms", horizon_ms, 1, 2**53)
        check_int("max_pending", max_pending, 1, 2**40)
        if not 0.0 < sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must be in (0, 1], got {sample_fraction}")
        self.horizon_ms = horizon_ms
        self.max_pending = max_pending
        self.sample_fraction = sample_fraction
        self.watermark_ms = -(2**62)
        self.counts = JoinCounts()
        self._predictions: OrderedDict[str, Prediction] = OrderedDict()
        self._labels: OrderedDict[str, GroundTruth] = OrderedDict()
        self._done: OrderedDict[str, tuple[int, int]] = OrderedDict()  # id -> (state, forget)
        self._expired: list[Prediction] = []
        # (deadline, event_id) per map, popped lazily: an entry whose id left the map (joined,
        # evicted) or came back with another deadline is skipped.
        self._prediction_deadlines: list[tuple[int, str]] = []
        self._label_deadlines: list[tuple[int, str]] = []
        self._done_deadlines: list[tuple[int, str]] = []

    @property
    def pending_predictions(self) -> int:
        return len(self._predictions)

    @property
    def pending_labels(self) -> int:
        return len(self._labels)

    def add_prediction(self, prediction: Prediction) -> JoinedPair | None:
        """Hold ``prediction`` for its label, or join it with a label that came first."""
        self.counts.predictions += 1
        if not is_sampled(prediction.event_id, self.sample_fraction):
            self.counts.not_sampled_predictions += 1
            return None
        self._advance(prediction.timestamp_ms)
        event_id = prediction.event_id
        if event_id in self._predictions or event_id in self._done:
            self.counts.duplicate_predictions += 1
            return None
        label = self._labels.get(event_id)
        if label is not None and not _belongs(label, prediction):
            del self._labels[event_id]
            self.counts.mismatched_labels += 1
            label = None
        if label is not None:
            del self._labels[event_id]
            if label.observed_ms - prediction.timestamp_ms > self.horizon_ms:
                self.counts.late_labels += 1
                self._remember(prediction, _EXPIRED)
                self.counts.expired += 1
                self._expired.append(prediction)
                return None
            return self._join(prediction, label)
        if prediction.timestamp_ms + self.horizon_ms < self.watermark_ms:
            self.counts.expired += 1  # arrived after its own horizon: no label can join it
            self._remember(prediction, _EXPIRED)
            self._expired.append(prediction)
            return None
        self._predictions[event_id] = prediction
        heapq.heappush(self._prediction_deadlines, (self._deadline_of(prediction), event_id))
        if len(self._predictions) > self.max_pending:
            _, evicted = self._predictions.popitem(last=False)
            self.counts.evicted_predictions += 1
            self._expired.append(evicted)
        return None

    def add_label(self, label: GroundTruth) -> JoinedPair | None:
        """Join ``label`` with its held prediction, or hold it until the prediction comes."""
        self.counts.labels += 1
        if not is_sampled(label.event_id, self.sample_fraction):
            self.counts.not_sampled_labels += 1
            return None
        self._advance(label.observed_ms)
        event_id = label.event_id
        prediction = self._predictions.get(event_id)
        if prediction is not None:
            if not _belongs(label, prediction):
                self.counts.mismatched_labels += 1
                return None
            del self._predictions[event_id]
            return self._join(prediction, label)
        done = self._done.get(event_id)
        if done is not None:
            if done[0] == _JOINED:
                self.counts.duplicate_labels += 1
            else:
                self.counts.late_labels += 1
            return None
        late = label.prediction_ms is not None and (
            label.observed_ms - label.prediction_ms > self.horizon_ms
        )
        if late:
            self.counts.late_labels += 1
            return None
        if label.observed_ms + self.horizon_ms < self.watermark_ms:
            self.counts.orphan_labels += 1  # its prediction's wait is already over
            return None
        if event_id in self._labels:
            self.counts.duplicate_labels += 1
            return None
        self._labels[event_id] = label
        heapq.heappush(self._label_deadlines, (label.observed_ms + self.horizon_ms, event_id))
        if len(self._labels) > self.max_pending:
            self._labels.popitem(last=False)
            self.counts.evicted_labels += 1
        return None

    def drain_expired(self) -> list[Prediction]:
        """Predictions whose horizon passed without a label (or evicted), since the last call."""
        expired, self._expired = self._expired, []
        return expired

    def _join(self, prediction: Prediction, label: GroundTruth) -> JoinedPair:
        self.counts.joined += 1
        self._remember(prediction, _JOINED)
        return JoinedPair(prediction, label.actual, label.observed_ms - prediction.timestamp_ms)

    def _remember(self, prediction: Prediction, state: int) -> None:
        forget = prediction.timestamp_ms + 2 * self.horizon_ms
        self._done[prediction.event_id] = (state, forget)
        heapq.heappush(self._done_deadlines, (forget, prediction.event_id))
        if len(self._done) > self.max_pending:
            self._done.popitem(last=False)

    def _deadline_of(self, prediction: Prediction) -> int:
        return prediction.timestamp_ms + self.horizon_ms

    def _advance(self, time_ms: int) -> None:
        if time_ms <= self.watermark_ms:
            return
        self.watermark_ms = now = time_ms
        for event_id in _due(self._prediction_deadlines, now, self._predictions, self._deadline_of):
            prediction = self._predictions.pop(event_id)
            self.counts.expired += 1
            self._remember(prediction, _EXPIRED)
            self._expired.append(prediction)
        label_deadline = _label_deadline(self.horizon_ms)
        for event_id in _due(self._label_deadlines, now, self._labels, label_deadline):
            del self._labels[event_id]
            self.counts.orphan_labels += 1
        for event_id in _due(self._done_deadlines, now, self._done, _forget_time):
            del self._done[event_id]
        self._compact_deadlines()

    def _compact_deadlines(self) -> None:
        """Rebuild a deadline heap that holds many more entries than its map (joined ids)."""
        for heap, held, deadline in (
            (self._prediction_deadlines, self._predictions, self._deadline_of),
            (self._label_deadlines, self._labels, _label_deadline(self.horizon_ms)),
            (self._done_deadlines, self._done, _forget_time),
        ):
            if len(heap) > 2 * len(held) + 1024:
                _rebuild(heap, held, deadline)  # type: ignore[arg-type]

    def _rebuild_deadlines(self) -> None:
        _rebuild(self._prediction_deadlines, self._predictions, self._deadline_of)
        _rebuild(self._label_deadlines, self._labels, _label_deadline(self.horizon_ms))
        _rebuild(self._done_deadlines, self._done, _forget_time)

    # --- serialization -------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The whole state (held entries, remembered ids, counts), for a restart."""
        w = Writer()
        for value in (self.horizon_ms, self.max_pending):
            w.uvarint(value)
        w.f64(self.sample_fraction)
        w.svarint(self.watermark_ms)
        for f in fields(JoinCounts):
            w.uvarint(getattr(self.counts, f.name))
        _write_predictions(w, list(self._predictions.values()))
        _write_predictions(w, self._expired)
        w.uvarint(len(self._labels))
        for g in self._labels.values():
            w.text(g.event_id)
            w.text(g.model)
            _write_optional_text(w, g.model_version)
            _write_actual(w, g.actual)
            w.svarint(g.observed_ms)
            _write_optional_int(w, g.prediction_ms)
        w.uvarint(len(self._done))
        for event_id, (state, forget) in self._done.items():
            w.text(event_id)
            w.u8(state)
            w.svarint(forget)
        return seal(_MAGIC, _FORMAT, w.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes) -> TruthJoin:
        r = Reader(unseal(data, _MAGIC, _FORMAT, "ground-truth join state"))
        horizon, max_pending = r.uvarint(), r.uvarint()
        join = cls(horizon_ms=horizon, max_pending=max_pending, sample_fraction=r.f64())
        join.watermark_ms = r.svarint()
        for f in fields(JoinCounts):
            setattr(join.counts, f.name, r.uvarint())
        for p in _read_predictions(r):
            join._predictions[p.event_id] = p
        join._expired = _read_predictions(r)
        for _ in range(r.uvarint()):
            g = GroundTruth(
                event_id=r.text(),
                model=r.text(),
                model_version=_read_optional_text(r),
                actual=_read_actual(r),
                observed_ms=r.svarint(),
                prediction_ms=_read_optional_int(r),
            )
            join._labels[g.event_id] = g
        for _ in range(r.uvarint()):
            event_id = r.text()
            state = r.u8()
            join._done[event_id] = (state, r.svarint())
        r.done()
        join._rebuild_deadlines()
        return join


def _due(
    heap: list[tuple[int, str]], now: int, held: Mapping[str, T], deadline: Callable[[T], int]
) -> list[str]:
    """Pop the ids of ``held`` whose deadline is before ``now``, in (deadline, id) order."""
    due: dict[str, None] = {}
    while heap and heap[0][0] < now:
        when, event_id = heapq.heappop(heap)
        value = held.get(event_id)
        if value is not None and deadline(value) == when:
            due[event_id] = None
    return list(due)


def _rebuild(
    heap: list[tuple[int, str]], held: Mapping[str, T], deadline: Callable[[T], int]
) -> None:
    heap[:] = [(deadline(value), event_id) for event_id, value in held.items()]
    heapq.heapify(heap)


def _label_deadline(horizon_ms: int) -> Callable[[GroundTruth], int]:
    return lambda label: label.observed_ms + horizon_ms


def _forget_time(done: tuple[int, int]) -> int:
    return done[1]


def _belongs(label: GroundTruth, prediction: Prediction) -> bool:
    if label.model != prediction.model:
        return False
    return label.model_version is None or label.model_version == prediction.model_version


def _write_predictions(w: Writer, predictions: list[Prediction]) -> None:
    w.uvarint(len(predictions))
    for p in predictions:
        for text in (p.event_id, p.model, p.model_version, p.segment):
            w.text(text)
        w.svarint(p.timestamp_ms)
        if p.score is None:
            w.u8(0)
        else:
            w.u8(1)
            w.f64(p.score)
        _write_optional_text(w, p.label)


def _read_predictions(r: Reader) -> list[Prediction]:
    out = []
    for _ in range(r.uvarint()):
        event_id, model, version, segment = r.text(), r.text(), r.text(), r.text()
        timestamp = r.svarint()
        score = r.f64() if r.u8() else None
        out.append(
            Prediction(event_id, model, version, segment, timestamp, score, _read_optional_text(r))
        )
    return out


def _write_optional_text(w: Writer, value: str | None) -> None:
    w.u8(value is not None)
    if value is not None:
        w.text(value)


def _read_optional_text(r: Reader) -> str | None:
    return r.text() if r.u8() else None


def _write_optional_int(w: Writer, value: int | None) -> None:
    w.u8(value is not None)
    if value is not None:
        w.svarint(value)


def _read_optional_int(r: Reader) -> int | None:
    return r.svarint() if r.u8() else None


def _write_actual(w: Writer, actual: Actual) -> None:
    if isinstance(actual, str):
        w.u8(0)
        w.text(actual)
    else:
        w.u8(1)
        w.f64(actual)


def _read_actual(r: Reader) -> Actual:
    return r.text() if r.u8() == 0 else r.f64()
