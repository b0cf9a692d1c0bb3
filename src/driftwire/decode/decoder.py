"""Decode and validate raw inference events into the columns of a :class:`DecodedBatch`.

The contract is ``schemas/inference-event.schema.json``; this module enforces the same rules
at Kafka speed. :func:`decode_batch` takes the raw values of one consumer batch and never
raises: every value is either accepted (it appears in the columns, ``index`` gives its
position in the input) or refused with exactly one :class:`~driftwire.decode.batch.Rejection`.

>>> from driftwire.decode.decoder import decode_batch
>>> batch = decode_batch([
...     b'{"timestamp": "2026-11-22T15:04:05.123Z", "model": "churn", "model_version": "1.4.2",'
...     b' "features": {"age": 37, "plan": null}, "prediction": 0.83, "latency_ms": 12.4}',
...     b'{"timestamp": 1795359845123, "model": "churn", "features": {}}',
...     None,
... ])
>>> batch.index.tolist(), batch.timestamp_ms.tolist(), batch.features
([0], [1795359845123], [{'age': 37, 'plan': None}])
>>> [(r.index, r.reason, r.field) for r in batch.rejections]
[(1, 'missing_field', 'model_version'), (2, 'empty', None)]

Reason codes (stable; they become the ``__driftwire.errors.reason`` dead-letter header and
the ``reason`` label of the rejection counter):

=========================  ==================================================================
``empty``                  the Kafka value is null (a tombstone) or zero bytes long
``oversized``              the value is longer than ``max_event_bytes`` (checked before parsing)
``not_json``               not strict JSON (or not bytes at all)
``not_object``             JSON, but not an object
``missing_field``          a required field is absent or null, ``model``/``model_version`` is
                           ``""``, or a prediction object has neither score nor label
``wrong_type``             a field has the wrong JSON type (a boolean is never a number)
``too_long``               a string is longer than ``max_string_length`` characters
``non_finite``             NaN, Infinity or a literal too large for a double where a number
                           belongs (``timestamp``, ``latency_ms``, ``prediction``,
                           ``prediction.score``, ``features.*``)
``negative_latency``       ``latency_ms`` < 0
``bad_timestamp``          not an RFC 3339 date-time with offset, or epoch ms out of range
``too_many_features``      more than ``max_features`` features
``too_many_segment_keys``  more than ``max_segment_keys`` segment keys
=========================  ==================================================================

``field`` is the dotted path of the offending value (``features.age``, ``segment.region``,
``prediction.score``, ``timestamp``), or ``None`` when the event as a whole is bad. Names longer
than 64 characters are cut in paths. When an event has several problems, the first in this
order is reported: model, model_version, timestamp, latency_ms, prediction, features, segment,
event_id.

Rules
-----
* ``timestamp`` is an RFC 3339 date-time string (``YYYY-MM-DDTHH:MM:SS[.frac]`` then ``Z`` or
  ``±HH:MM``; ``T``/``Z`` may be lower case; seconds required; any number of fraction digits,
  truncated to milliseconds; no leap second ``:60``; ``-00:00`` means UTC; years 0001-9999) or
  epoch milliseconds as a JSON number in ``[0, 2**53)``, fractions truncated. A date-time without
  an offset is refused: its instant is ambiguous. Numbers are never re-interpreted as seconds
  or microseconds (1.7e12 is 2023 in milliseconds; 1.7e9 is January 1970; 1.7e15, microseconds
  now, is a valid millisecond instant around the year 55,800).
* ``prediction`` is a number (score), a string (label), a boolean (label ``"true"`` or
  ``"false"``) or an object ``{"score": number, "label": string}`` with at least one of the two
  non-null; its other keys are ignored. ``prediction_score`` is NaN where there is no score.
* ``features`` maps names to a number, a string, a boolean or null; null is a missing value
  and is accepted. Objects and arrays are refused (``wrong_type`` on ``features.<name>``).
* ``segment`` (optional) maps names to strings; ``event_id`` (optional) is a string; null means
  absent for both. Unknown top-level fields are ignored, whatever they hold.
* Strings kept by the decoder (model, model_version, event_id, segment keys and values, feature
  names, string feature values, prediction label) are at most ``max_string_length`` characters.

How it is fast: a batch is parsed with ``orjson``, then checked column by column, never with a
Python loop per event (:mod:`driftwire.decode._columns`). Every column check is exact, so the
events it sets aside are exactly the refused ones; only those go through the per-event
validator (:func:`~driftwire.decode._event._validate`), to name the reason.
``_decode_reference`` runs every event through that validator; the tests hold both to the same
output.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, repeat
from operator import not_
from typing import Any

import numpy as np
import orjson

from driftwire.decode import _native
from driftwire.decode._checks import _DICT
from driftwire.decode._columns import _Columns, _decode_columns, _fill, _merge
from driftwire.decode._event import _Bad, _parse, _Row, _validate
from driftwire.decode._timestamps import MAX_EPOCH_MS
from driftwire.decode.batch import DecodedBatch, Rejection
from driftwire.decode.limits import DEFAULT_LIMITS, DecoderLimits

__all__ = ["DEFAULT_LIMITS", "MAX_EPOCH_MS", "REASONS", "DecoderLimits", "decode_batch"]

REASONS: tuple[str, ...] = (
    "empty",
    "oversized",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "too_long",
    "non_finite",
    "negative_latency",
    "bad_timestamp",
    "too_many_features",
    "too_many_segment_keys",
)


_RAW = frozenset((bytes, type(None)))

# --- Entry points -----------------------------------------------------------------------------


def decode_batch(
    values: Sequence[bytes | None], limits: DecoderLimits = DEFAULT_LIMITS
) -> DecodedBatch:
    """Decode and validate one batch of raw event values; never raises.

    ``values`` are Kafka record values in input order (``None`` for a tombstone). Accepted
    events come back as columns in input order, ``index`` giving each one's input position;
    every other value yields one :class:`~driftwire.decode.batch.Rejection`, sorted by index.
    The compiled decoder does the work when it is installed (:mod:`driftwire.decode._native`);
    :func:`_decode_python` otherwise, with the same results.
    """
    if _native.ACTIVE:
        batch = _native.decode_batch_columns(values, limits)
        if batch is not None:
            return batch
    return _decode_python(values, limits)


def _decode_python(
    values: Sequence[bytes | None], limits: DecoderLimits = DEFAULT_LIMITS
) -> DecodedBatch:
    """The pure-Python decoder: column-wise checks over ``orjson``'s parse."""
    raws = values if type(values) is list else list(values)
    rejections: list[Rejection] = []
    positions: list[int] | None = None
    try:
        lens = list(map(len, raws))
        joined = b"".join(raws)  # type: ignore[arg-type]
        plain = len(joined) == sum(lens) and max(lens, default=0) <= limits.max_event_bytes
    except TypeError:  # None (a tombstone) or something that is not bytes
        plain = False
    if plain:
        events = _loads_all(raws)
        if not set(map(type, events)) <= _DICT:  # a value that is not JSON, or not an object
            events, positions, joined, lens = _salvage(raws, limits, rejections, events)
    else:
        events, positions, joined, lens = _salvage(raws, limits, rejections)
    if not events:
        return _Columns().batch(rejections)

    columns, refused = _decode_columns(events, joined, lens, limits)
    index = np.asarray(columns.index if refused else np.arange(len(events)), dtype=np.int64)
    if positions is not None:
        index = np.array(positions, dtype=np.int64)[index]
    columns.index = index
    late: list[tuple[int, _Row]] = []
    for row in refused:
        position = row if positions is None else positions[row]
        try:
            late.append((position, _validate(events[row], limits)))
        except _Bad as bad:
            rejections.append(Rejection(position, bad.reason, bad.field, bad.message))
    if late:  # not expected: the column checks are exact; kept for safety
        _merge(columns, late)
    rejections.sort(key=lambda r: r.index)
    return columns.batch(rejections)


def _loads_all(raws: list[Any]) -> list[Any]:
    """``orjson.loads`` of every value at C speed, going on past failures (None marks them)."""
    parsed: list[Any] = []
    rest = iter(raws)
    while True:
        try:
            parsed.extend(map(orjson.loads, rest))  # keeps what it parsed before a failure
            return parsed
        except orjson.JSONDecodeError:
            parsed.append(None)


def _salvage(
    raws: list[Any],
    limits: DecoderLimits,
    rejections: list[Rejection],
    parsed: list[Any] | None = None,
) -> tuple[list[dict[str, Any]], list[int], bytes, list[int]]:
    """Parse a batch that holds bad values; refuse those (into ``rejections``).

    ``parsed`` is ``_loads_all(raws)`` if already done. Returns the parsed events, their
    positions, and their raw bytes joined, and lengths.
    """
    rows = range(len(raws))
    largest = max(map(len, filter(None, raws)), default=0) if set(map(type, raws)) <= _RAW else -1
    if 0 <= largest <= limits.max_event_bytes:
        if parsed is None:
            parsed = _loads_all(raws)
        is_event = list(map(isinstance, parsed, repeat(dict)))
        good = list(compress(raws, is_event))
        events = list(compress(parsed, is_event))
        positions = list(compress(rows, is_event))
        for i in compress(rows, map(not_, is_event)):
            item = _parse(i, raws[i], limits)  # names the reason (orjson refused it already)
            if not isinstance(item, Rejection):  # cannot happen: orjson is deterministic
                item = Rejection(i, "not_json", None, "not JSON")
            rejections.append(item)
    else:  # values that are not bytes, or oversized ones: one by one
        events, positions, good = [], [], []
        for i, raw in enumerate(raws):
            item = _parse(i, raw, limits)
            if isinstance(item, Rejection):
                rejections.append(item)
            else:
                events.append(item)
                positions.append(i)
                good.append(raw if type(raw) is bytes else bytes(raw))
    return events, positions, b"".join(good), list(map(len, good))


def _decode_reference(
    values: Sequence[bytes | None], limits: DecoderLimits = DEFAULT_LIMITS
) -> DecodedBatch:
    """One event at a time through :func:`_validate`: the semantics ``decode_batch`` must match.

    Slow; for tests and for reading.
    """
    rows: list[tuple[int, _Row]] = []
    rejections: list[Rejection] = []
    for i, raw in enumerate(values):
        parsed = _parse(i, raw, limits)
        if isinstance(parsed, Rejection):
            rejections.append(parsed)
            continue
        try:
            rows.append((i, _validate(parsed, limits)))
        except _Bad as bad:
            rejections.append(Rejection(i, bad.reason, bad.field, bad.message))
    columns = _Columns()
    _fill(columns, rows)
    return columns.batch(rejections)
