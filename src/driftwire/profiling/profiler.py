"""Stage 1's pure core: fold decoded batches into per-(model, version, segment, bucket) profiles.

:class:`Profiler` asks its :class:`~driftwire.profiling.clock.EventClock` which events are on time,
groups the accepted rows by (model, model_version, segment key, bucket) once, and folds each
feature column-wise: one list comprehension and one numpy conversion per (model version,
feature); then one pass of numpy reductions over all numeric columns and groups at once
(``update_numeric_matrix``), and one KLL update or one ``Counter`` per (column, group). When
the watermark closes buckets it hands back their profiles as :class:`ClosedBucket` records;
it never does I/O and never reads a clock.

Segment keys, kinds and cardinality caps live in a
:class:`~driftwire.profiling.catalog.ModelCatalog`
(see :mod:`driftwire.profiling.catalog`); ``overflow_counts`` says what the caps folded or dropped.

>>> from driftwire.profiling.clock import EventClock
>>> profiler = Profiler(EventClock(bucket_ms=60_000, allowed_lateness_ms=0))
>>> def batch(times, ages):
...     n = len(times)
...     return DecodedBatch(
...         index=np.arange(n), timestamp_ms=np.array(times, dtype=np.int64),
...         model=["churn"] * n, model_version=["1"] * n, segment=[{"region": "eu"}] * n,
...         features=[{"age": a} for a in ages], prediction_score=np.full(n, 0.5),
...         prediction_label=[None] * n, latency_ms=np.full(n, 10.0), event_id=[None] * n)
>>> profiler.fold(batch([1_000, 2_000], [30, 40])).closed
[]
>>> [closed] = profiler.fold(batch([61_000], [50])).closed
>>> closed.start_ms, closed.events, closed.segments["region=eu"].feature("age").mean
(0, 2, 35.0)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from operator import itemgetter
from types import MappingProxyType
from typing import Any

import numpy as np

from driftwire.decode.batch import DecodedBatch
from driftwire.decode.columns import ABSENT, BOOL, NULL, NUMBER, STRING, EventColumns
from driftwire.profiling._columns import (
    categorical_parts,
    decided_kind,
    feature_order,
    first_seen,
    group_order,
    label_parts,
    numeric_parts,
    per_model,
    segment_ids,
    unique_counts,
)
from driftwire.profiling.catalog import (
    OTHER,
    ModelCatalog,
    ProfilerLimits,
    parse_segment_key,
    segment_key,
)
from driftwire.profiling.clock import Admission, EventClock, distinct_starts
from driftwire.sketch.kinds import (
    FeatureKind,
    FeatureKinds,
    capped_columns,
    tally_categories,
    to_numeric,
)
from driftwire.sketch.numeric import (
    NumericSketch,
    SketchParams,
    update_numeric_matrix,
)
from driftwire.sketch.profile import Profile

__all__ = [
    "OTHER",
    "ClosedBucket",
    "FoldResult",
    "ModelCatalog",
    "Profiler",
    "ProfilerLimits",
    "parse_segment_key",
    "segment_key",
]

_SEGMENT_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class ClosedBucket:
    """The profiles of one closed bucket of one model version, one per segment key."""

    model: str
    model_version: str
    start_ms: int
    end_ms: int
    segments: dict[str, Profile]

    @property
    def events(self) -> int:
        return sum(p.n_events for p in self.segments.values())


@dataclass(frozen=True, slots=True)
class FoldResult:
    """What one :meth:`Profiler.fold` did: per-event decisions and the buckets it closed."""

    admission: Admission  # accepted / late / future masks and bucket starts, per event
    closed: list[ClosedBucket]
    late: dict[str, int]  # late events of this batch per model
    future: dict[str, int]  # future events of this batch per model


_Key = tuple[str, str]  # (model, model_version)


class Profiler:
    """Folds :class:`DecodedBatch` es into open bucket profiles; returns them once closed."""

    def __init__(
        self,
        clock: EventClock,
        *,
        params: SketchParams | None = None,
        catalog: ModelCatalog | None = None,
    ) -> None:
        self.clock = clock
        self.params = params if params is not None else SketchParams()
        self.catalog = catalog if catalog is not None else ModelCatalog()
        self._open: dict[int, dict[_Key, dict[str, Profile]]] = {}
        self._late: Counter[str] = Counter()
        self._future: Counter[str] = Counter()
        self._segment_cache: dict[tuple[tuple[str, Any], ...], str] = {}

    # -- counters -------------------------------------------------------------------------

    @property
    def late_counts(self) -> Mapping[str, int]:
        """Late events per model since the start."""
        return MappingProxyType(self._late)

    @property
    def future_counts(self) -> Mapping[str, int]:
        """Future (untrusted time) events per model since the start."""
        return MappingProxyType(self._future)

    @property
    def overflow_counts(self) -> Mapping[tuple[str, str], int]:
        return self.catalog.overflow_counts

    @property
    def open_profiles(self) -> int:
        return sum(len(segs) for per in self._open.values() for segs in per.values())

    # -- folding --------------------------------------------------------------------------

    def fold(self, batch: DecodedBatch, now_ms: int | None = None) -> FoldResult:
        """Fold the on-time events of ``batch``; return decisions and the closed buckets."""
        admission = self.clock.advance(batch.timestamp_ms, now_ms)
        late = self._per_model(batch, admission.late)
        future = self._per_model(batch, admission.future)
        self._late.update(late)
        self._future.update(future)
        accepted = admission.accepted
        if not len(accepted):
            pass
        elif accepted.all():
            self._fold_rows(batch, admission.bucket_start, None)
        elif accepted.any():
            self._fold_rows(batch, admission.bucket_start, np.flatnonzero(accepted))
        return FoldResult(admission, self._pop(admission.closed), late, future)

    def advance_to(self, watermark_ms: int) -> list[ClosedBucket]:
        """Move the watermark (an idle input) and return the buckets that closed."""
        return self._pop(self.clock.advance_to(watermark_ms))

    def flush(self) -> list[ClosedBucket]:
        """Close and return every open bucket (shutdown, revoked partition)."""
        self.clock.flush()
        return self._pop(tuple(sorted(self._open)))

    def _pop(self, starts: Sequence[int]) -> list[ClosedBucket]:
        out = []
        for start in starts:
            per_version = self._open.pop(start, None)
            if not per_version:
                continue
            for model, version in sorted(per_version):
                out.append(
                    ClosedBucket(
                        model,
                        version,
                        start,
                        start + self.clock.bucket_ms,
                        per_version[(model, version)],
                    )
                )
        return out

    @staticmethod
    def _per_model(batch: DecodedBatch, mask: np.ndarray) -> dict[str, int]:
        if batch.columns is not None:
            return per_model(batch.columns, mask)
        return _per_model(batch.model, mask)

    def _fold_rows(self, batch: DecodedBatch, buckets: np.ndarray, rows: np.ndarray | None) -> None:
        columns = batch.columns
        if columns is not None:  # the compiled decoder's codes: no list per row
            picked = slice(None) if rows is None else rows
            model_ids, model_names = first_seen(columns.model_codes[picked], columns.model_names)
            version_ids, version_names = first_seen(
                columns.version_codes[picked], columns.version_names
            )
            if len(self._segment_cache) > _SEGMENT_CACHE_MAX:
                self._segment_cache.clear()
            seg_ids, segment_names = segment_ids(
                columns.segment_codes[picked], columns.segment_items, self._segment_cache
            )
            if rows is not None:
                buckets = buckets[rows]
        else:
            if rows is None:
                models, versions, segments = batch.model, batch.model_version, batch.segment
            else:
                picks = rows.tolist()
                models = [batch.model[i] for i in picks]
                versions = [batch.model_version[i] for i in picks]
                segments = [batch.segment[i] for i in picks]
                buckets = buckets[rows]
            model_ids, model_names = _factorize(models)
            version_ids, version_names = _factorize(versions)
            seg_ids, segment_names = self._segment_ids(segments)
        if buckets[0] == buckets[-1] and (buckets == buckets[0]).all():  # one bucket: usual
            bucket_values, bucket_ids = buckets[:1], np.zeros(len(buckets), dtype=np.int64)
        else:
            bucket_values, bucket_ids = distinct_starts(buckets, self.clock.bucket_ms)

        # Caps: models beyond the catalog's room are dropped, versions and segments beyond it
        # become OTHER (least recently seen names make room first: see the catalog).
        self.catalog.observe(int(bucket_values[-1]))
        admitted = np.array([self.catalog.admit_model(m) for m in model_names], dtype=bool)
        version_ids, version_names = self._versions(
            model_ids, model_names, admitted, version_ids, version_names
        )
        n_seg = len(segment_names)
        pairs, pair_ids, pair_counts = unique_counts(
            model_ids * n_seg + seg_ids, len(model_names) * n_seg
        )
        effective: dict[str, int] = {}
        pair_effective = np.empty(len(pairs), dtype=np.int64)
        for j, (pair, count) in enumerate(zip(pairs.tolist(), pair_counts.tolist(), strict=True)):
            model = model_names[pair // n_seg]
            if not admitted[pair // n_seg]:
                self.catalog.count_overflow(OTHER, "models", count)
                pair_effective[j] = 0
                continue
            key = self.catalog.segment(model, segment_names[pair % n_seg])
            if key == OTHER:
                self.catalog.count_overflow(model, "segments", count)
            pair_effective[j] = effective.setdefault(key, len(effective))
        effective_names = list(effective) or [""]
        seg_eff = pair_effective[pair_ids]

        n_v, n_s, n_b = len(version_names), len(effective_names), len(bucket_values)
        code = ((model_ids * n_v + version_ids) * n_s + seg_eff) * n_b + bucket_ids
        if not admitted.all():
            code[~admitted[model_ids]] = -1
        order = group_order(code, len(model_names) * n_v * n_s * n_b)
        sorted_code = code[order]
        starts = np.flatnonzero(np.diff(sorted_code)) + 1
        starts = np.concatenate(([0], starts))
        ends = np.append(starts[1:], len(order))
        group_codes = sorted_code[starts]
        positions = order if rows is None else rows[order]

        # Group codes are sorted, so the groups of one model version are contiguous.
        mv_of_group = np.where(group_codes >= 0, group_codes // (n_s * n_b), -1)
        block_starts = np.flatnonzero(np.diff(mv_of_group, prepend=-2))
        block_ends = np.append(block_starts[1:], len(group_codes))
        for b0, b1 in zip(block_starts.tolist(), block_ends.tolist(), strict=True):
            mv = int(mv_of_group[b0])
            if mv < 0:
                continue
            model = model_names[mv // n_v]
            version = version_names[mv % n_v]
            kinds = self.catalog.kinds(model, version)
            lo, hi = int(starts[b0]), int(ends[b1 - 1])
            profiles = []
            for code_value in group_codes[b0:b1].tolist():
                bucket = int(bucket_values[code_value % n_b])
                segment = effective_names[(code_value // n_b) % n_s]
                profiles.append(self._profile(bucket, model, version, segment, kinds))
            local = starts[b0:b1] - lo
            if columns is not None:
                self._fold_block_columns(
                    batch, columns, positions[lo:hi], local, profiles, model, kinds
                )
            else:
                self._fold_block(batch, positions[lo:hi], local, profiles, model, kinds)

    def _versions(
        self,
        model_ids: np.ndarray,
        model_names: list[str],
        admitted: np.ndarray,
        version_ids: np.ndarray,
        version_names: list[str],
    ) -> tuple[np.ndarray, list[str]]:
        """Version ids and names after the per-model version cap (OTHER beyond it)."""
        n_v = len(version_names)
        pairs, pair_ids, pair_counts = unique_counts(
            model_ids * n_v + version_ids, len(model_names) * n_v
        )
        effective: dict[str, int] = {}
        pair_effective = np.empty(len(pairs), dtype=np.int64)
        for j, (pair, count) in enumerate(zip(pairs.tolist(), pair_counts.tolist(), strict=True)):
            if not admitted[pair // n_v]:
                pair_effective[j] = 0
                continue
            model = model_names[pair // n_v]
            name = self.catalog.version(model, version_names[pair % n_v])
            if name == OTHER:
                self.catalog.count_overflow(model, "versions", count)
            pair_effective[j] = effective.setdefault(name, len(effective))
        return pair_effective[pair_ids], list(effective) or [""]

    def _profile(
        self, bucket: int, model: str, version: str, segment: str, kinds: FeatureKinds
    ) -> Profile:
        per_segment = self._open.setdefault(bucket, {}).setdefault((model, version), {})
        profile = per_segment.get(segment)
        if profile is None:
            profile = per_segment[segment] = Profile(
                self.params, start_ms=bucket, end_ms=bucket + self.clock.bucket_ms, kinds=kinds
            )
        return profile

    def _fold_block(
        self,
        batch: DecodedBatch,
        positions: np.ndarray,
        starts: np.ndarray,
        profiles: list[Profile],
        model: str,
        kinds: FeatureKinds,
    ) -> None:
        """Fold the rows of one model version (``positions``, sorted by group) into ``profiles``.

        Feature values are read in arrival order (the order the decoder allocated them in,
        which is kind to the cache) and converted; the numeric columns (features without
        wrong-typed values, prediction score, latency) are stacked into one matrix, put in
        group order with one take and folded by one ``update_numeric_matrix`` call.
        """
        n = len(positions)
        bounds = np.append(starts, n).tolist()
        for profile, a, b in zip(profiles, bounds, bounds[1:], strict=False):
            profile.add_events(b - a)
        labels = list(map(batch.prediction_label.__getitem__, positions.tolist()))
        for profile, a, b in zip(profiles, bounds, bounds[1:], strict=False):
            profile.prediction_label.update_batch(labels[a:b])

        arrival = np.sort(positions)
        reorder = None if len(profiles) == 1 else np.searchsorted(arrival, positions)
        reorder_list = None if reorder is None else reorder.tolist()
        rows = list(map(batch.features.__getitem__, arrival.tolist()))
        # The per-model feature cap applies before any column is built: 2,000 rows of 100
        # fresh names each would otherwise be 200,000 columns of 2,000 slots.
        names, columns, uniform, refused = capped_columns(
            rows, lambda name: self.catalog.admit_feature(model, name)
        )
        self.catalog.count_overflow(model, "features", refused)
        matrix = []  # numeric rows in arrival order, and their sketches per group
        matrix_sketches: list[Sequence[NumericSketch | None]] = []
        for name, column in zip(names, columns, strict=True):
            kind = kinds.resolve(name, column)
            # A row without the name counts as missing, but a group none of whose rows has
            # the name does not get the feature (as Profile.update on those rows would not).
            targets: list[Profile | None] = list(profiles)
            if not uniform:
                present = np.fromiter((name in r for r in rows), dtype=bool, count=n)
                if reorder is not None:
                    present = present[reorder]
                active = np.logical_or.reduceat(present, starts).tolist()
                targets = [p if on else None for p, on in zip(profiles, active, strict=True)]
            if kind is FeatureKind.NUMERIC:
                values, wrong = to_numeric(column)
                sketches = _numeric_sketches(name, targets)
                if wrong is None and sketches is not None:
                    matrix.append(values)
                    matrix_sketches.append(sketches)
                    continue
                if reorder is not None:
                    values = values[reorder]
                    wrong = None if wrong is None else wrong[reorder]
                self._fold_numeric(name, values, wrong, starts, bounds, targets)
                continue
            if reorder_list is not None:
                column = list(map(column.__getitem__, reorder_list))
            if kind is FeatureKind.CATEGORICAL:
                self._fold_categorical(name, column, bounds, targets)
            else:  # no kind yet: only nulls and undecidable values so far
                for target, a, b in zip(targets, bounds, bounds[1:], strict=False):
                    if target is not None:
                        missing = column[a:b].count(None)
                        target.add_untyped_missing(name, missing)
                        target.add_wrong_type(name, b - a - missing)
        matrix += (batch.prediction_score[arrival], batch.latency_ms[arrival])
        matrix_sketches += (
            [p.prediction_score for p in profiles],
            [p.latency_ms for p in profiles],
        )
        stacked = np.vstack(matrix)
        update_numeric_matrix(
            matrix_sketches, stacked if reorder is None else stacked[:, reorder], starts
        )

    def _fold_block_columns(
        self,
        batch: DecodedBatch,
        columns: EventColumns,
        positions: np.ndarray,
        starts: np.ndarray,
        profiles: list[Profile],
        model: str,
        kinds: FeatureKinds,
    ) -> None:
        """:meth:`_fold_block` from the compiled decoder's columns: the same folds in the same
        order, read from code and value matrices instead of per-row dicts.

        Columns are gathered once, straight into group order (``positions``); the arrival
        order is read only where it decides something (the features' first-seen order, a new
        feature's kind). The numeric feature columns, prediction score and latency become one
        matrix, taken in one call, for one ``update_numeric_matrix``.
        """
        n = len(positions)
        bounds = np.append(starts, n).tolist()
        for profile, a, b in zip(profiles, bounds, bounds[1:], strict=False):
            profile.add_events(b - a)
        for profile, (tally, missing) in zip(
            profiles, label_parts(columns, positions, starts), strict=True
        ):
            profile.prediction_label.update_valid_counts(tally, missing)

        every_row = n == columns.kind.shape[1]  # then positions is a permutation of all rows
        in_arrival = every_row and len(profiles) == 1  # one group: positions is 0..n-1
        if every_row:
            kind_arrival, rank_arrival = columns.kind, columns.rank
        else:
            arrival = np.sort(positions)
            kind_arrival, rank_arrival = columns.kind[:, arrival], columns.rank[:, arrival]
        order = feature_order(kind_arrival, rank_arrival)
        kind_block = kind_arrival if in_arrival else columns.kind[:, positions]
        uniform = bool((kind_block[order] != ABSENT).all())
        has_wrong = ((kind_block == STRING) | (kind_block == BOOL)).any(axis=1)
        numeric_rows: list[int] = []
        matrix_sketches: list[Sequence[NumericSketch | None]] = []
        for f in order:
            name = columns.feature_names[f]
            kind_row = kind_block[f]
            if not self.catalog.admit_feature(model, name):
                self.catalog.count_overflow(
                    model, "features", int(np.count_nonzero(kind_row >= NUMBER))
                )
                continue
            kind = decided_kind(kinds, name, kind_arrival[f])
            targets: list[Profile | None] = list(profiles)
            if not uniform:
                active = np.logical_or.reduceat(kind_row != ABSENT, starts).tolist()
                targets = [p if on else None for p, on in zip(profiles, active, strict=True)]
            if kind is FeatureKind.NUMERIC:
                sketches = _numeric_sketches(name, targets)
                if not has_wrong[f] and sketches is not None:
                    numeric_rows.append(f)
                    matrix_sketches.append(sketches)
                    continue
                values, wrong = numeric_parts(kind_row, columns.value[f, positions])
                self._fold_numeric(name, values, wrong, starts, bounds, targets)
                continue
            if kind is FeatureKind.CATEGORICAL:
                codes = columns.code[f, positions]
                parts = categorical_parts(kind_row, codes, columns.categories[f], starts)
                self._apply_categorical(name, parts, targets)
            else:  # no kind yet: only nulls and undecidable values so far
                is_missing = kind_row <= NULL
                for target, a, b in zip(targets, bounds, bounds[1:], strict=False):
                    if target is not None:
                        missing = int(np.count_nonzero(is_missing[a:b]))
                        target.add_untyped_missing(name, missing)
                        target.add_wrong_type(name, b - a - missing)
        matrix_sketches += (
            [p.prediction_score for p in profiles],
            [p.latency_ms for p in profiles],
        )
        stacked = np.empty((len(numeric_rows) + 2, n), dtype=np.float64)
        if numeric_rows:
            picked = columns.value[numeric_rows]
            if in_arrival:
                stacked[:-2] = picked
            else:
                np.take(picked, positions, axis=1, out=stacked[:-2])
        np.take(batch.prediction_score, positions, out=stacked[-2])
        np.take(batch.latency_ms, positions, out=stacked[-1])
        update_numeric_matrix(matrix_sketches, stacked, starts)

    def _fold_numeric(
        self,
        name: str,
        values: np.ndarray,
        wrong: np.ndarray | None,
        starts: np.ndarray,
        bounds: list[int],
        profiles: list[Profile | None],
    ) -> None:
        """A numeric column with wrong-typed values, or held as categorical by some profile."""
        if wrong is not None:  # drop wrong-typed entries and shift the group starts
            removed = np.zeros(len(values) + 1, dtype=np.int64)
            np.cumsum(wrong, out=removed[1:])
            per_group = np.diff(removed[bounds]).tolist()
            for profile, n_wrong in zip(profiles, per_group, strict=True):
                if profile is not None:
                    profile.add_wrong_type(name, n_wrong)
            values = values[~wrong]
            starts = starts - removed[starts]
        sketches = _numeric_sketches(name, profiles)
        if sketches is not None:
            update_numeric_matrix((sketches,), values.reshape(1, -1), starts)
            return
        # A profile holding this feature as categorical (only after an outside merge).
        ends = np.append(starts[1:], len(values)).tolist()
        for profile, a, b in zip(profiles, starts.tolist(), ends, strict=True):
            if profile is None:
                continue
            part = values[a:b]
            sketch = profile.sketch_for(name, FeatureKind.NUMERIC)
            if isinstance(sketch, NumericSketch):
                sketch.update_batch(part)
            else:
                n_missing = int(np.isnan(part).sum())
                profile.add_untyped_missing(name, n_missing)
                profile.add_wrong_type(name, len(part) - n_missing)

    def _fold_categorical(
        self, name: str, column: list[Any], bounds: list[int], profiles: list[Profile | None]
    ) -> None:
        parts = [tally_categories(column[a:b]) for a, b in pairwise(bounds)]
        self._apply_categorical(name, parts, profiles)

    @staticmethod
    def _apply_categorical(
        name: str,
        parts: Sequence[tuple[Mapping[str, int], int, int]],
        profiles: list[Profile | None],
    ) -> None:
        """Each group's ``(counts, missing, wrong-typed)`` into its profile's sketch."""
        for profile, (tally, missing, n_wrong) in zip(profiles, parts, strict=False):
            if profile is None:
                continue
            sketch = profile.categorical_sketch(name)
            if sketch is not None:
                sketch.update_valid_counts(tally, missing)  # tally_categories made them valid
            else:  # held as numeric (only after an outside merge)
                profile.add_untyped_missing(name, missing)
                n_wrong += sum(tally.values())
            if n_wrong:
                profile.add_wrong_type(name, n_wrong)

    def _segment_ids(self, segments: list[dict[str, Any]]) -> tuple[np.ndarray, list[str]]:
        """Per row, the index of its canonical segment key; and the distinct keys."""
        if not any(segments):
            return np.zeros(len(segments), dtype=np.int64), [""]
        codes, combos = _combine_columns(segments)
        if len(self._segment_cache) > _SEGMENT_CACHE_MAX:
            self._segment_cache.clear()
        index: dict[str, int] = {}
        mapping = np.empty(len(combos), dtype=np.int64)
        for j, items in enumerate(combos):
            key = self._segment_cache.get(items)
            if key is None:
                key = self._segment_cache[items] = segment_key(dict(items))
            mapping[j] = index.setdefault(key, len(index))
        return mapping[codes], list(index)


def _combine_columns(
    dicts: list[dict[str, Any]],
) -> tuple[np.ndarray, list[tuple[tuple[str, Any], ...]]]:
    """Group equal dicts: a code per row, and the items of each distinct dict (by code).

    Fast path: every dict has the first one's keys; each key's values are factorized apart
    (cheap: str hashes are cached) and the codes combined. Otherwise each dict's item tuple
    is hashed (key order does not matter: the canonical key is computed later).
    """
    n = len(dicts)
    keys = list(dicts[0])
    radix = 1
    if keys and sum(map(len, dicts)) == n * len(keys):
        try:
            factors = [
                _factorize(list(map(itemgetter(k), dicts)), often_uniform=False) for k in keys
            ]
        except (KeyError, TypeError):
            factors = []
        for _, values in factors:
            radix *= len(values)
        if factors and radix < 1 << 62:
            code = np.zeros(n, dtype=np.int64)
            for ids, values in factors:
                code = code * len(values) + ids
            unique, inverse = np.unique(code, return_inverse=True)
            combos = []
            for value in unique.tolist():
                picked = []
                for _, values in reversed(factors):
                    value, rest = divmod(value, len(values))
                    picked.append(values[rest])
                combos.append(tuple(zip(keys, reversed(picked), strict=True)))
            return inverse.reshape(-1), combos
    items = [tuple(d.items()) for d in dicts]
    try:
        index: dict[Any, Any] = dict.fromkeys(items)
    except TypeError:  # unhashable values: compare their text
        items = [tuple((k, str(v)) for k, v in d.items()) for d in dicts]
        index = dict.fromkeys(items)
    for i, item in enumerate(index):
        index[item] = i
    codes = np.fromiter(map(index.__getitem__, items), dtype=np.int64, count=n)
    return codes, list(index)


def _numeric_sketches(
    name: str, profiles: list[Profile | None]
) -> list[NumericSketch | None] | None:
    """Each group's numeric sketch of ``name`` (``None`` for a group without the feature);
    ``None`` if a profile holds the feature as categorical (only after an outside merge)."""
    sketches: list[NumericSketch | None] = []
    for profile in profiles:
        if profile is None:
            sketches.append(None)
            continue
        sketch = profile.numeric_sketch(name)
        if sketch is None:
            return None
        sketches.append(sketch)
    return sketches


def _factorize(values: list[Any], *, often_uniform: bool = True) -> tuple[np.ndarray, list[Any]]:
    """Integer codes of ``values`` (first-seen order) and the distinct values."""
    if often_uniform and values and values.count(values[0]) == len(values):
        return np.zeros(len(values), dtype=np.int64), [values[0]]
    index: dict[str, Any] = dict.fromkeys(values)
    for i, value in enumerate(index):
        index[value] = i
    codes = np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values))
    return codes, list(index)


def _per_model(models: list[str], mask: np.ndarray) -> dict[str, int]:
    if not mask.any():
        return {}
    return dict(Counter(models[i] for i in np.flatnonzero(mask).tolist()))
