"""The profile of one (model, model_version, segment) over one time span, and its bytes.

A :class:`Profile` holds ``n_events``, the span ``[start_ms, end_ms)``, one sketch per feature
(:class:`~driftwire.sketch.numeric.NumericSketch` or
:class:`~driftwire.sketch.numeric.CategoricalSketch`
by the feature's kind), ``wrong_type`` counts per feature, and sketches of the prediction
score, the prediction label and the latency. Who it belongs to (model, version, segment) is
the key it is stored under, not part of it, so profiles of several segments or versions can
be merged (all traffic, canary comparisons).

Feature kinds follow :mod:`driftwire.sketch.kinds`: declared, else inferred from the first non-null
value (bool and str → categorical, int and float → numeric), then fixed; a value of the other
kind increments ``wrong_type[feature]``. A feature whose kind is still unknown (only nulls or
undecidable values so far) keeps its missing count in ``untyped_missing`` until it has one.

Merging is a union of features. When two profiles disagree on a feature's kind (two stage-1
workers inferred differently), numeric wins: the categorical side's non-missing values are
added to ``wrong_type`` and its missing values to the numeric sketch's. That rule is a join
on kinds, so merges stay associative and commutative. Declare kinds to avoid it.

Bytes: ``b"DWPF" | format 2 | k, cap, lg_k | n_events | span | score, label, latency sketches
| features sorted by name (name, kind, wrong_type, sketch or missing count) | CRC-32``, with
varints and length-prefixed strings. Format 1 (numeric sketches holding datasketches KLL
bytes) still loads: see :meth:`NumericSketch._read`. State with other sketch parameters, another
format version, a bad checksum or a short read raises :class:`~driftwire.errors.FormatError`.

>>> p = Profile(start_ms=0, end_ms=60_000)
>>> p.update(
...     [{"age": 37, "country": "DE"}, {"age": "n/a", "country": "FR"}, {"age": 41}],
...     prediction_score=np.array([0.2, 0.9, np.nan]),
... )
>>> p.n_events, p.kind("age"), p.feature("age").mean, p.wrong_type["age"]
(3, <FeatureKind.NUMERIC: 'numeric'>, 39.0, 1)
>>> dict(p.feature("country").counts), p.feature("country").missing
({'DE': 1, 'FR': 1}, 1)
>>> q = Profile.from_bytes(p.to_bytes())
>>> q.to_bytes() == p.to_bytes(), q.merge(p).n_events
(True, 6)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from driftwire._codec import Reader, Writer, seal, unseal_any
from driftwire.errors import FormatError
from driftwire.sketch.kinds import (
    FeatureKind,
    FeatureKinds,
    feature_columns,
    tally_categories,
    to_numeric,
)
from driftwire.sketch.numeric import CategoricalSketch, NumericSketch, SketchParams

__all__ = ["Profile", "Sketch"]

Sketch = NumericSketch | CategoricalSketch

_MAGIC = b"DWPF"
_FORMAT = 2
#: Format 1 held the numeric sketches' datasketches KLL bytes; it still loads, converted.
_LEGACY_FORMAT = 1
_UNTYPED, _NUMERIC, _CATEGORICAL = 0, 1, 2


class Profile:
    """Sketches of one model version's traffic (one segment) over ``[start_ms, end_ms)``."""

    __slots__ = (
        "_end_ms",
        "_features",
        "_kinds",
        "_label",
        "_latency",
        "_n_events",
        "_params",
        "_score",
        "_start_ms",
        "_untyped",
        "_wrong",
    )

    def __init__(
        self,
        params: SketchParams | None = None,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        kinds: FeatureKinds | Mapping[str, FeatureKind | str] | None = None,
    ) -> None:
        self._params = params if params is not None else SketchParams()
        if not isinstance(self._params, SketchParams):
            raise TypeError(f"params must be SketchParams, got {type(params).__name__}")
        self._start_ms: int | None = None
        self._end_ms: int | None = None
        if start_ms is not None or end_ms is not None:
            if start_ms is None or end_ms is None:
                raise ValueError("give both start_ms and end_ms, or neither")
            self.extend_span(start_ms, end_ms)
        self._kinds = kinds if isinstance(kinds, FeatureKinds) else FeatureKinds(kinds)
        self._n_events = 0
        self._features: dict[str, Sketch] = {}
        self._untyped: dict[str, int] = {}
        self._wrong: dict[str, int] = {}
        p = self._params
        self._score = NumericSketch(p.k)
        self._label = CategoricalSketch(p.cap, p.lg_k)
        self._latency = NumericSketch(p.k)

    # -- queries --------------------------------------------------------------------------

    @property
    def params(self) -> SketchParams:
        return self._params

    @property
    def n_events(self) -> int:
        return self._n_events

    @property
    def start_ms(self) -> int | None:
        return self._start_ms

    @property
    def end_ms(self) -> int | None:
        return self._end_ms

    @property
    def features(self) -> Mapping[str, Sketch]:
        """Feature name → its sketch (read-only view)."""
        return MappingProxyType(self._features)

    def feature(self, name: str) -> Sketch | None:
        return self._features.get(name)

    def kind(self, name: str) -> FeatureKind | None:
        sketch = self._features.get(name)
        if sketch is None:
            return None
        return FeatureKind.NUMERIC if isinstance(sketch, NumericSketch) else FeatureKind.CATEGORICAL

    @property
    def wrong_type(self) -> Mapping[str, int]:
        """Feature name → values of the wrong kind (read-only view)."""
        return MappingProxyType(self._wrong)

    @property
    def untyped_missing(self) -> Mapping[str, int]:
        """Missing values of features whose kind is not known yet (read-only view)."""
        return MappingProxyType(self._untyped)

    @property
    def prediction_score(self) -> NumericSketch:
        return self._score

    @property
    def prediction_label(self) -> CategoricalSketch:
        return self._label

    @property
    def latency_ms(self) -> NumericSketch:
        return self._latency

    def __repr__(self) -> str:
        return (
            f"Profile(n_events={self._n_events}, span=[{self._start_ms}, {self._end_ms}), "
            f"features={len(self._features)}, params={self._params})"
        )

    # -- updates --------------------------------------------------------------------------

    def update(
        self,
        features: Sequence[Mapping[str, Any]],
        *,
        prediction_score: np.ndarray | None = None,
        prediction_label: Sequence[str | None] | None = None,
        latency_ms: np.ndarray | None = None,
    ) -> None:
        """Add events given as rows (one features dict each), e.g. to build a baseline.

        The stream path (:class:`~driftwire.profiling.profiler.Profiler`) folds columns instead.
        """
        n = len(features)
        for what, column in (
            ("prediction_score", prediction_score),
            ("prediction_label", prediction_label),
            ("latency_ms", latency_ms),
        ):
            if column is not None and len(column) != n:
                raise ValueError(f"{what} has {len(column)} entries for {n} events")
        for name, column in zip(*feature_columns(features), strict=True):
            self.update_feature(name, column)
        if prediction_score is not None:
            self._score.update_batch(prediction_score)
        if prediction_label is not None:
            self._label.update_batch(prediction_label)
        if latency_ms is not None:
            self._latency.update_batch(latency_ms)
        self._n_events += n

    def update_feature(self, name: str, values: Iterable[Any]) -> None:
        """Add raw values of one feature (``None`` missing; the wrong kind counted, not kept)."""
        column = list(values)
        kind = self.kind(name) or self._kinds.resolve(name, column)
        sketch = self.sketch_for(name, kind) if kind is not None else None
        if sketch is None:
            missing = sum(value is None for value in column)
            self.add_untyped_missing(name, missing)
            self.add_wrong_type(name, len(column) - missing)
        elif isinstance(sketch, NumericSketch):
            numbers, wrong = to_numeric(column)
            if wrong is not None:
                numbers = numbers[~wrong]
                self.add_wrong_type(name, int(wrong.sum()))
            sketch.update_batch(numbers)
        else:
            tally, missing, n_wrong = tally_categories(column)
            sketch.update_counts(tally, missing)
            self.add_wrong_type(name, n_wrong)

    def sketch_for(self, name: str, kind: FeatureKind) -> Sketch | None:
        """The sketch of ``name`` if it is (or can become) of ``kind``; ``None`` if not."""
        sketch = self._features.get(name)
        if sketch is None:
            p = self._params
            sketch = (
                NumericSketch(p.k)
                if kind is FeatureKind.NUMERIC
                else CategoricalSketch(p.cap, p.lg_k)
            )
            missing = self._untyped.pop(name, 0)
            if missing:
                sketch.add_missing(missing)
            self._features[name] = sketch
            return sketch
        wanted = NumericSketch if kind is FeatureKind.NUMERIC else CategoricalSketch
        return sketch if isinstance(sketch, wanted) else None

    def numeric_sketch(self, name: str) -> NumericSketch | None:
        """:meth:`sketch_for` ``(name, NUMERIC)``: ``None`` if ``name`` is held as categorical."""
        sketch = self._features.get(name)
        if sketch.__class__ is NumericSketch:  # the hot path: once per feature and group
            return sketch
        sketch = self.sketch_for(name, FeatureKind.NUMERIC)
        return sketch if isinstance(sketch, NumericSketch) else None

    def categorical_sketch(self, name: str) -> CategoricalSketch | None:
        """:meth:`sketch_for` ``(name, CATEGORICAL)``: ``None`` if ``name`` is held as numeric."""
        sketch = self._features.get(name)
        if sketch.__class__ is CategoricalSketch:
            return sketch
        sketch = self.sketch_for(name, FeatureKind.CATEGORICAL)
        return sketch if isinstance(sketch, CategoricalSketch) else None

    def add_events(self, n: int) -> None:
        self._n_events += n

    def add_wrong_type(self, name: str, n: int) -> None:
        if n:
            self._wrong[name] = self._wrong.get(name, 0) + n

    def add_untyped_missing(self, name: str, n: int) -> None:
        if not n:
            return
        sketch = self._features.get(name)
        if sketch is not None:
            sketch.add_missing(n)
        else:
            self._untyped[name] = self._untyped.get(name, 0) + n

    def extend_span(self, start_ms: int, end_ms: int) -> None:
        """Widen the span to cover ``[start_ms, end_ms)``."""
        start_ms, end_ms = int(start_ms), int(end_ms)
        if end_ms < start_ms:
            raise ValueError(f"span end {end_ms} is before its start {start_ms}")
        if self._start_ms is None or self._end_ms is None:
            self._start_ms, self._end_ms = start_ms, end_ms
        else:
            self._start_ms = min(self._start_ms, start_ms)
            self._end_ms = max(self._end_ms, end_ms)

    # -- merge ----------------------------------------------------------------------------

    def merge(self, other: Profile) -> Profile:
        """Add ``other`` into this profile and return ``self`` (never aliases ``other``)."""
        if not isinstance(other, Profile):
            raise TypeError(f"can only merge a Profile, got {type(other).__name__}")
        if other._params != self._params:
            raise FormatError(
                f"cannot merge a profile made with {other._params} into one "
                f"made with {self._params}"
            )
        if other is self:
            return self.merge(other.copy())
        self._n_events += other._n_events
        if other._start_ms is not None and other._end_ms is not None:
            self.extend_span(other._start_ms, other._end_ms)
        self._score.merge(other._score)
        self._label.merge(other._label)
        self._latency.merge(other._latency)
        for name, n in other._wrong.items():
            self.add_wrong_type(name, n)
        for name, theirs in other._features.items():
            mine = self._features.get(name)
            if mine is None:
                mine = self._features[name] = theirs.copy()
                mine.add_missing(self._untyped.pop(name, 0))
            elif type(mine) is type(theirs):
                mine.merge(theirs)  # type: ignore[arg-type]
            elif isinstance(mine, NumericSketch):
                self._demote(name, theirs, mine)  # type: ignore[arg-type]
            else:  # numeric wins a kind conflict
                numeric = self._features[name] = theirs.copy()
                self._demote(name, mine, numeric)  # type: ignore[arg-type]
        for name, n in other._untyped.items():
            self.add_untyped_missing(name, n)
        return self

    def _demote(self, name: str, loser: CategoricalSketch, winner: NumericSketch) -> None:
        self.add_wrong_type(name, loser.count)
        winner.add_missing(loser.missing)

    def copy(self) -> Profile:
        out = Profile(self._params, kinds=self._kinds)
        out._n_events, out._start_ms, out._end_ms = self._n_events, self._start_ms, self._end_ms
        out._features = {name: sketch.copy() for name, sketch in self._features.items()}
        out._untyped = dict(self._untyped)
        out._wrong = dict(self._wrong)
        out._score = self._score.copy()
        out._label = self._label.copy()
        out._latency = self._latency.copy()
        return out

    def latency_part(self) -> Profile:
        """A copy with the span, the event count and the latency sketch only (no feature or
        prediction sketch): what a reference of latency alone needs to keep."""
        out = Profile(self._params, kinds=self._kinds)
        out._n_events, out._start_ms, out._end_ms = self._n_events, self._start_ms, self._end_ms
        out._latency = self._latency.copy()
        return out

    def with_sketches(self, sketches: Mapping[str, Sketch]) -> Profile:
        """A copy whose named sketches come from ``sketches`` (a reference composed per feature).

        Names are feature names, or ``prediction.score`` / ``prediction.label``.
        """
        out: Profile = self.copy()
        for name, sketch in sketches.items():
            if name == "prediction.score" and isinstance(sketch, NumericSketch):
                out._score = sketch.copy()
            elif name == "prediction.label" and isinstance(sketch, CategoricalSketch):
                out._label = sketch.copy()
            else:
                out._features[name] = sketch.copy()
        return out

    def split_features(self, max_bytes: int) -> list[Profile]:
        """This profile as parts whose merge is exactly it, each encoded in ``max_bytes``
        if its features allow (one feature's sketch is never split).

        The first part keeps the event count, the prediction and latency sketches, the
        wrong-type and untyped counts and the features that fit beside them; the others hold
        features only (no events), each over the same span. A profile that fits is returned
        whole.

        >>> p = Profile(start_ms=0, end_ms=60_000)
        >>> p.update([{f"f{i}": float(j) for i in range(20)} for j in range(300)])
        >>> parts = p.split_features(len(p.to_bytes()) // 3)
        >>> len(parts) > 1, [q.n_events for q in parts][:2]
        (True, [300, 0])
        >>> merged = parts[0].copy()
        >>> for q in parts[1:]:
        ...     _ = merged.merge(q)
        >>> merged.to_bytes() == p.to_bytes()
        True
        """
        if len(self.to_bytes()) <= max_bytes or len(self._features) < 2:
            return [self]
        overhead = len(self._feature_part([]).to_bytes())
        groups: list[list[str]] = [[]]
        size = len(self._head_part([]).to_bytes())
        for name in sorted(self._features):
            cost = len(self._feature_part([name]).to_bytes()) - overhead
            if groups[-1] and size + cost > max_bytes:
                groups.append([])
                size = overhead
            groups[-1].append(name)
            size += cost
        return [self._head_part(groups[0]), *(self._feature_part(g) for g in groups[1:])]

    def _feature_part(self, names: Iterable[str]) -> Profile:
        """The named features' sketches over the same span, nothing else."""
        out = Profile(self._params, kinds=self._kinds)
        out._start_ms, out._end_ms = self._start_ms, self._end_ms
        out._features = {name: self._features[name].copy() for name in names}
        return out

    def _head_part(self, names: Iterable[str]) -> Profile:
        """A copy with only the named features' sketches (all other state kept)."""
        out = Profile(self._params, kinds=self._kinds)
        out._n_events, out._start_ms, out._end_ms = self._n_events, self._start_ms, self._end_ms
        out._features = {name: self._features[name].copy() for name in names}
        out._untyped = dict(self._untyped)
        out._wrong = dict(self._wrong)
        out._score = self._score.copy()
        out._label = self._label.copy()
        out._latency = self._latency.copy()
        return out

    # -- bytes ----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        w = Writer()
        p = self._params
        w.uvarint(p.k)
        w.uvarint(p.cap)
        w.u8(p.lg_k)
        w.uvarint(self._n_events)
        if self._start_ms is None or self._end_ms is None:
            w.u8(0)
        else:
            w.u8(1)
            w.svarint(self._start_ms)
            w.svarint(self._end_ms)
        self._score.write_into(w)
        self._label.write_into(w)
        self._latency.write_into(w)
        names = sorted(self._features.keys() | self._untyped.keys() | self._wrong.keys())
        w.uvarint(len(names))
        for name in names:
            w.text(name)
            sketch = self._features.get(name)
            code = (
                _UNTYPED
                if sketch is None
                else _NUMERIC
                if isinstance(sketch, NumericSketch)
                else _CATEGORICAL
            )
            w.u8(code)
            w.uvarint(self._wrong.get(name, 0))
            if sketch is None:
                w.uvarint(self._untyped.get(name, 0))
            else:
                sketch.write_into(w)
        return seal(_MAGIC, _FORMAT, w.getvalue())

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        params: SketchParams | None = None,
        *,
        kinds: FeatureKinds | None = None,
    ) -> Profile:
        """Read a profile; with ``params``, refuse one made with other sketch parameters."""
        versions = (_LEGACY_FORMAT, _FORMAT)
        version, payload = unseal_any(data, _MAGIC, versions, "Profile")
        r = Reader(payload, "Profile")
        legacy = version == _LEGACY_FORMAT
        k, cap, lg_k = r.uvarint(), r.uvarint(), r.u8()
        try:
            found = SketchParams(k, cap, lg_k)
        except ValueError as exc:
            raise FormatError(f"Profile: bad sketch parameters: {exc}") from exc
        if params is not None and found != params:
            raise FormatError(f"Profile: made with {found}, expected {params}")
        out = cls(found, kinds=kinds)
        out._n_events = r.uvarint()
        has_span = r.u8()
        if has_span > 1:
            raise FormatError("Profile: bad span flag")
        if has_span:
            out._start_ms, out._end_ms = r.svarint(), r.svarint()
            if out._end_ms < out._start_ms:
                raise FormatError("Profile: span ends before it starts")
        out._score = NumericSketch.read_from(r, k, legacy_kll=legacy)
        out._label = CategoricalSketch.read_from(r, cap, lg_k)
        out._latency = NumericSketch.read_from(r, k, legacy_kll=legacy)
        previous: str | None = None
        for _ in range(r.uvarint()):
            name, code, wrong = r.text(), r.u8(), r.uvarint()
            if previous is not None and name <= previous:
                raise FormatError("Profile: features not sorted and unique")
            previous = name
            if wrong:
                out._wrong[name] = wrong
            if code == _UNTYPED:
                missing = r.uvarint()
                if not (missing or wrong):
                    raise FormatError(f"Profile: empty entry for feature {name!r}")
                if missing:
                    out._untyped[name] = missing
            elif code == _NUMERIC:
                out._features[name] = NumericSketch.read_from(r, k, legacy_kll=legacy)
            elif code == _CATEGORICAL:
                out._features[name] = CategoricalSketch.read_from(r, cap, lg_k)
            else:
                raise FormatError(f"Profile: unknown feature kind code {code}")
        r.done()
        return out
