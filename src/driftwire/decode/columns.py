"""Accepted events as columns of codes and matrices, as the compiled decoder returns them.

A :class:`~driftwire.decode.batch.DecodedBatch` from the compiled decoder carries an
:class:`EventColumns` and builds its per-row lists (``model``, ``features``, ...) only when
they are read (by decoding its rows again); the profiler folds the columns directly, with no
Python object per value.

Strings are codes into tables of distinct values (first seen first). Features are one row
per name of dense ``(features, events)`` matrices: ``kind`` (:data:`ABSENT`, :data:`NULL`,
:data:`NUMBER`, :data:`STRING`, :data:`BOOL`), ``value`` (the float64 of a number, NaN
otherwise), ``code`` (a string's or a boolean's index into ``categories[feature]``, where
booleans are ``"true"`` / ``"false"``; -1 otherwise) and ``rank`` (the name's position in its
event's ``features`` object; -1 where absent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ABSENT, NULL, NUMBER, STRING, BOOL = 0, 1, 2, 3, 4

__all__ = ["ABSENT", "BOOL", "NULL", "NUMBER", "STRING", "EventColumns"]


@dataclass(frozen=True, slots=True)
class EventColumns:
    """The string and feature columns of accepted events (see the module docstring)."""

    model_codes: np.ndarray  # int32 (n,)
    model_names: list[str]
    version_codes: np.ndarray  # int32 (n,)
    version_names: list[str]
    segment_codes: np.ndarray  # int32 (n,)
    segment_items: list[tuple[tuple[str, str], ...]]
    label_codes: np.ndarray  # int32 (n,), -1: no label
    label_names: list[str]
    event_id_buffer: bytes  # UTF-8 of every present event id, joined
    event_id_ends: np.ndarray  # int64 (n,), end of each row's id in the buffer
    event_id_present: np.ndarray  # bool (n,)
    feature_names: list[str]
    kind: np.ndarray  # uint8 (features, n)
    value: np.ndarray  # float64 (features, n)
    code: np.ndarray  # int32 (features, n)
    rank: np.ndarray  # int32 (features, n)
    categories: list[list[str]]

    def take(self, rows: np.ndarray) -> EventColumns:
        """The columns of the events at positions ``rows``."""
        starts = np.concatenate(([0], self.event_id_ends[:-1]))[rows]
        ends = self.event_id_ends[rows]
        buffer = b"".join(
            self.event_id_buffer[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        )
        return EventColumns(
            self.model_codes[rows],
            self.model_names,
            self.version_codes[rows],
            self.version_names,
            self.segment_codes[rows],
            self.segment_items,
            self.label_codes[rows],
            self.label_names,
            buffer,
            np.cumsum(ends - starts),
            self.event_id_present[rows],
            self.feature_names,
            self.kind[:, rows],
            self.value[:, rows],
            self.code[:, rows],
            self.rank[:, rows],
            self.categories,
        )
