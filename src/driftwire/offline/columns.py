"""Do a table's columns look like model features? Checked before a baseline is built from them.

Three mistakes give a baseline that is valid but useless, and each is named with its fix:

* the columns are an inference event's envelope (``event_id``, ``timestamp``, ``model``, ...):
  the file is logged events flattened into a table, not training data — a warning, and the fix
  (JSON Lines events with ``--format events``, or ``--features``);
* no feature column is numeric or categorical (all nested, binary or dates): an error;
* a column holds a different value on every row (an id): as a feature it would look drifted in
  every window — a warning naming it.

>>> import pyarrow as pa
>>> batch = pa.RecordBatch.from_pylist(
...     [{"event_id": f"e{i}", "timestamp": i, "age": 30 + i % 5} for i in range(300)])
>>> for line in feature_warnings(batch, ["event_id", "timestamp", "age"]):
...     print(line.split(":")[0])
columns event_id, timestamp are an inference event's envelope, not features
column event_id holds a different value on each of 300 rows (an id?)
column timestamp holds a different value on each of 300 rows (an id?)
>>> feature_warnings(batch, ["age"])
[]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from driftwire.errors import InputError

__all__ = ["UNIQUE_MIN_ROWS", "feature_warnings"]

#: An envelope column name of the inference event (never a feature of it).
ENVELOPE_COLUMNS = ("event_id", "timestamp", "model", "model_version", "segment", "latency_ms")
#: Fewer rows than this say nothing about a column being unique per row.
UNIQUE_MIN_ROWS = 200


def _usable(kind: Any) -> bool:
    import pyarrow.types as t

    if t.is_dictionary(kind):
        kind = kind.value_type
    return bool(
        t.is_integer(kind)
        or t.is_floating(kind)
        or t.is_boolean(kind)
        or t.is_decimal(kind)
        or t.is_string(kind)
        or t.is_large_string(kind)
        or t.is_null(kind)  # all missing in this batch: still a feature
    )


def _id_like(name: str, column: Any) -> bool:
    import pyarrow.compute as pc
    import pyarrow.types as t

    kind = column.type
    if len(column) < UNIQUE_MIN_ROWS or column.null_count:
        return False
    text = t.is_string(kind) or t.is_large_string(kind)
    if not (text or t.is_integer(kind)):
        return False  # floats are unique per row by nature
    if int(pc.count_distinct(column).as_py()) != len(column):
        return False
    if text:
        return True
    lowered = name.lower()
    ordered = bool(pc.all(pc.greater(column[1:], column[:-1])).as_py())
    return ordered or lowered == "id" or lowered.endswith(("_id", "id", "uuid", "key"))


def feature_warnings(batch: Any, features: Sequence[str]) -> list[str]:
    """Warnings about ``features`` of a pyarrow record ``batch`` (the file's first); raises
    :class:`InputError` when no feature column can be profiled."""
    envelope = [c for c in features if c in ENVELOPE_COLUMNS]
    warnings = []
    if len(envelope) >= 2:
        warnings.append(
            f"columns {', '.join(envelope)} are an inference event's envelope, not features: "
            "for logged events use JSON Lines with --format events, "
            "else name the features with --features"
        )
    usable = [f for f in features if _usable(batch.column(f).type)]
    if not usable:
        kinds = ", ".join(f"{f} ({batch.column(f).type})" for f in list(features)[:5])
        raise InputError(
            f"no numeric or categorical feature column among {kinds or 'no columns'}: "
            "for logged events use JSON Lines with --format events, "
            "else name flat feature columns with --features"
        )
    nested = [f for f in features if f not in usable]
    if nested:
        warnings.append(
            f"columns {', '.join(nested)} are neither numeric nor categorical "
            f"({batch.column(nested[0]).type}): leave them out with --features"
        )
    for name in usable:
        if _id_like(name, batch.column(name)):
            warnings.append(
                f"column {name} holds a different value on each of {batch.num_rows} rows "
                "(an id?): as a feature it drifts in every window; leave it out with --features"
            )
    return warnings
