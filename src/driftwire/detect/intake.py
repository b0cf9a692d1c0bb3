"""Which partials-topic records stage 2 may use: the checks a record passes before it touches
any state.

Anyone who can write to the partials topic can send stage 2 anything, and one record must not
be able to move its state for good: a watermark ten years ahead would complete every bucket
up to then, and every partial arriving afterwards would be late. So each record is checked,
cheaply, before the detector sees it; a rejected one comes back as a :class:`Rejected` with a
stable ``reason`` (one of :data:`REASONS`), which the shell dead-letters and counts.

* ``malformed``: not JSON, or not one of the two record types of this envelope format;
* ``schema``: a field missing, unknown, of the wrong type or out of its range, as
  ``schemas/partial.schema.json`` says (:func:`schema_violation` checks the same rules in
  code; a test keeps the two equal);
* ``id``: a partial whose id is not the hash of its source and bucket;
* ``source``: a source partition outside ``[0, partitions)``, or more input partitions than
  :data:`MAX_INPUT_PARTITIONS`, or offsets that run backwards; and, when stage 2 knows how many
  partitions the input topic has (``input_partitions``, from the broker), a partial or
  watermark naming a partition beyond them, or a watermark claiming more of them: stage 2
  would wait for that partition, for ever if its watermark were low, and the count it is told
  only ever grows;
* ``bucket``: a bucket that is not one aligned bucket of ``bucket_ms``;
* ``count``: more events than the offset range holds (each event is one offset);
* ``future_bucket`` / ``future_watermark``: a bucket end or watermark more than
  ``max_ahead_ms`` ahead of ``now_ms``. Stage 1 keeps its watermark at or behind its wall
  clock, and an idle partition's at most ``profile.max_future_seconds`` plus one bucket ahead
  of it, so ``max_ahead_ms`` is that plus an allowance for the skew between the two clocks.

The detector itself refuses a partial whose profiles do not deserialize (``sketch``) or do not
add up to its ``events`` (``count``), before it merges any of them
(:class:`~driftwire.detect.detector.InvalidPartial`).

>>> limits = IntakeLimits(bucket_ms=60_000, max_ahead_ms=600_000)
>>> w = Watermark("events", 0, 1, 120_000)
>>> admit(w.encode(), now_ms=1_000_000, limits=limits) == w
True
>>> far = Watermark("events", 0, 1, 1_000_000 + 10 * 365 * 86_400_000)
>>> admit(far.encode(), now_ms=1_000_000, limits=limits).reason
'future_watermark'
>>> admit(b"\\x00garbage", now_ms=0, limits=limits).reason
'malformed'
>>> known = IntakeLimits(bucket_ms=60_000, max_ahead_ms=600_000, input_partitions=2)
>>> admit(Watermark("events", 7, 8, 120_000).encode(), now_ms=1_000_000, limits=known).message
'partition 7: the input topic has 2 partitions'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from driftwire.errors import FormatError, InputError
from driftwire.partials import (
    ENVELOPE_VERSION,
    REJECT_REASONS,
    Partial,
    PartialIdMismatch,
    Watermark,
    record_from_doc,
)
from driftwire.sketch.profile import Profile

#: Every reason a partials-topic record can be refused for (a bounded label set).
REASONS = REJECT_REASONS

#: More partitions than any input topic has: a watermark claiming more is refused, because the
#: detector waits for every partition of the count it is told.
MAX_INPUT_PARTITIONS = 10_000


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a partials-topic record was refused: a reason from :data:`REASONS`, the field at
    fault (dotted, may be empty) and a message for the dead-letter header."""

    reason: str
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class IntakeLimits:
    """The bounds a record must keep: the bucket size, how far ahead of stage 2's clock a
    bucket end or watermark may be, and the input topic's partition count if known."""

    bucket_ms: int
    max_ahead_ms: int
    max_partitions: int = MAX_INPUT_PARTITIONS
    input_partitions: int | None = None


def admit(
    value: bytes | None, *, now_ms: int, limits: IntakeLimits
) -> Partial | Watermark | Rejected:
    """The record in ``value`` if stage 2 may use it, else why not."""
    try:
        doc = orjson.loads(value if value is not None else b"")
    except orjson.JSONDecodeError as exc:
        return Rejected("malformed", "", f"not JSON: {exc}")
    if not isinstance(doc, dict) or doc.get("type") not in ("partial", "watermark"):
        kind = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        return Rejected("malformed", "type", f"not a partial or watermark record: {kind!r}")
    violation = schema_violation(doc)
    if violation is not None:
        return Rejected("schema", *violation)
    try:
        record = record_from_doc(doc)
    except PartialIdMismatch as exc:
        return Rejected("id", "id", str(exc))
    except FormatError as exc:  # e.g. a segment that is not base64
        return Rejected("schema", "", str(exc))
    problem = bounds_violation(record, now_ms=now_ms, limits=limits)
    return record if problem is None else problem


def bounds_violation(
    record: Partial | Watermark, *, now_ms: int, limits: IntakeLimits
) -> Rejected | None:
    """What a schema-valid record breaks of the bounds in ``limits``, or None."""
    ahead = now_ms + limits.max_ahead_ms
    if isinstance(record, Watermark):
        if record.partitions > limits.max_partitions:
            return Rejected(
                "source",
                "source.partitions",
                f"{record.partitions} input partitions (at most {limits.max_partitions})",
            )
        if record.partition >= record.partitions:
            return Rejected(
                "source",
                "source.partition",
                f"partition {record.partition} of a topic with {record.partitions}",
            )
        beyond = _beyond_input(record.partition, limits.input_partitions)
        if beyond is not None:
            return beyond
        if limits.input_partitions is not None and record.partitions > limits.input_partitions:
            return Rejected(
                "source",
                "source.partitions",
                f"{record.partitions} input partitions: the input topic has "
                f"{limits.input_partitions}",
            )
        if record.watermark_ms > ahead:
            return Rejected(
                "future_watermark",
                "watermark_ms",
                f"watermark {record.watermark_ms} is more than {limits.max_ahead_ms} ms ahead "
                f"of {now_ms}",
            )
        return None
    beyond = _beyond_input(record.partition, limits.input_partitions)
    if beyond is not None:
        return beyond
    b = limits.bucket_ms
    if record.bucket_start_ms % b or record.bucket_end_ms - record.bucket_start_ms != b:
        return Rejected(
            "bucket",
            "bucket",
            f"[{record.bucket_start_ms}, {record.bucket_end_ms}) is not one bucket of {b} ms",
        )
    if record.bucket_end_ms > ahead:
        return Rejected(
            "future_bucket",
            "bucket.end_ms",
            f"bucket end {record.bucket_end_ms} is more than {limits.max_ahead_ms} ms ahead "
            f"of {now_ms}",
        )
    if record.last_offset < record.first_offset:
        return Rejected(
            "source",
            "source.last_offset",
            f"offsets run backwards: {record.first_offset}..{record.last_offset}",
        )
    span = record.last_offset - record.first_offset + 1
    if record.events > span:
        return Rejected(
            "count", "events", f"{record.events} events from {span} offsets (one event each)"
        )
    return None


def _beyond_input(partition: int, input_partitions: int | None) -> Rejected | None:
    if input_partitions is None or partition < input_partitions:
        return None
    return Rejected(
        "source",
        "source.partition",
        f"partition {partition}: the input topic has {input_partitions} partitions",
    )


class InvalidPartial(InputError):
    """A partial the detector refused before merging any of it (see :func:`partial_profiles`)."""

    def __init__(self, reason: str, field: str, message: str) -> None:
        super().__init__(f"{reason} at {field}: {message}")
        self.rejected = Rejected(reason, field, message)


@dataclass(frozen=True, slots=True)
class EvaluationFailure:
    """An evaluation that raised: the model (empty for the retirement step), the end of the
    bucket that was dropped (None when the whole step failed) and the error, shortened."""

    model: str
    bucket_end_ms: int | None
    error: str


def partial_profiles(partial: Partial, pending: dict[str, Profile] | None) -> dict[str, Profile]:
    """The profiles of ``partial`` by segment, checked against its ``events`` and against
    ``pending`` (the profiles its bucket already holds, which they will be merged into).

    Raises :class:`InvalidPartial`: ``sketch`` for a profile that does not deserialize or
    was made with other sketch parameters than the bucket's, ``count`` when the profiles'
    events do not add up to the partial's.

    >>> p = Partial("events", 0, 0, 9, 0, 60_000, "m", "1", events=10, segments={"": b"junk"})
    >>> partial_profiles(p, None)
    Traceback (most recent call last):
    ...
    driftwire.detect.intake.InvalidPartial: sketch at segments.: ...
    """
    profiles: dict[str, Profile] = {}
    for segment, blob in partial.segments.items():
        try:
            profile = Profile.from_bytes(blob)
        except Exception as exc:  # untrusted bytes: any failure to read them is the same
            raise InvalidPartial("sketch", f"segments.{segment}", f"{exc}"[:200]) from exc
        held = None if pending is None else pending.get(segment)
        if held is not None and held.params != profile.params:
            raise InvalidPartial(
                "sketch",
                f"segments.{segment}",
                f"made with {profile.params}, the bucket holds {held.params}",
            )
        profiles[segment] = profile
    total = sum(p.n_events for p in profiles.values())
    if total != partial.events:
        raise InvalidPartial(
            "count", "events", f"{partial.events} events, but its profiles hold {total}"
        )
    return profiles


# -- the schema, in code ---------------------------------------------------------------------

_PARTIAL_REQUIRED: tuple[str, ...] = ("type", "format", "id", "source", "bucket", "model")
_PARTIAL_REQUIRED += ("model_version", "events", "segments")
_PARTIAL_KEYS = frozenset((*_PARTIAL_REQUIRED, "part"))
_PARTIAL_SOURCE = ("topic", "partition", "first_offset", "last_offset")
_WATERMARK_REQUIRED = ("type", "format", "source", "watermark_ms", "idle")
_WATERMARK_SOURCE = ("topic", "partition", "partitions")
_HEX = frozenset("0123456789abcdef")


def _integer(x: object) -> bool:
    """JSON Schema's ``integer``: a number with no fractional part (1.0 is one), not a bool."""
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or (isinstance(x, float) and x.is_integer())


def _keys(
    doc: dict[str, Any], required: tuple[str, ...], allowed: frozenset[str], at: str
) -> tuple[str, str] | None:
    for key in required:
        if key not in doc:
            return f"{at}{key}", "required field missing"
    for key in doc:
        if key not in allowed:
            return f"{at}{key}", "unknown field"
    return None


def _object(doc: object, required: tuple[str, ...], at: str) -> tuple[str, str] | None:
    if not isinstance(doc, dict):
        return at.rstrip("."), "expected an object"
    return _keys(doc, required, frozenset(required), at)


def _integers(
    doc: dict[str, Any], minimums: dict[str, int | None], at: str
) -> tuple[str, str] | None:
    for key, low in minimums.items():
        if key not in doc:
            continue
        x = doc[key]
        if not _integer(x):
            return f"{at}{key}", "expected an integer"
        if low is not None and x < low:
            return f"{at}{key}", f"expected at least {low}"
    return None


def schema_violation(doc: dict[str, Any]) -> tuple[str, str] | None:
    """The first rule of ``schemas/partial.schema.json`` that ``doc`` breaks, as (field,
    problem), or None; ``doc["type"]`` is ``"partial"`` or ``"watermark"``.

    >>> schema_violation(orjson.loads(Watermark("events", 0, 2, 60_000).encode())) is None
    True
    >>> schema_violation({"type": "watermark", "format": 1, "source": {"topic": "e",
    ...     "partition": -1, "partitions": 2}, "watermark_ms": 0, "idle": False})
    ('source.partition', 'expected at least 0')
    """
    if doc["type"] == "watermark":
        problem = _keys(doc, _WATERMARK_REQUIRED, frozenset(_WATERMARK_REQUIRED), "")
        problem = problem or _format(doc)
        problem = problem or _object(doc["source"], _WATERMARK_SOURCE, "source.")
        if problem is None and not isinstance(doc["source"]["topic"], str):
            problem = "source.topic", "expected a string"
        problem = problem or _integers(doc["source"], {"partition": 0, "partitions": 1}, "source.")
        problem = problem or _integers(doc, {"watermark_ms": None}, "")
        if problem is None and not isinstance(doc["idle"], bool):
            problem = "idle", "expected a boolean"
        return problem
    problem = _keys(doc, _PARTIAL_REQUIRED, _PARTIAL_KEYS, "")
    problem = problem or _format(doc)
    if problem is None:
        pid = doc["id"]
        if not (isinstance(pid, str) and len(pid) == 24 and _HEX.issuperset(pid)):
            problem = "id", "expected 24 lowercase hex digits"
    problem = problem or _object(doc["source"], _PARTIAL_SOURCE, "source.")
    if problem is None and not isinstance(doc["source"]["topic"], str):
        problem = "source.topic", "expected a string"
    problem = problem or _integers(
        doc["source"], {"partition": 0, "first_offset": 0, "last_offset": 0}, "source."
    )
    problem = problem or _object(doc["bucket"], ("start_ms", "end_ms"), "bucket.")
    problem = problem or _integers(doc["bucket"], {"start_ms": None, "end_ms": None}, "bucket.")
    for key in ("model", "model_version"):
        if problem is None and not (isinstance(doc[key], str) and doc[key]):
            problem = key, "expected a non-empty string"
    problem = problem or _integers(doc, {"part": 0, "events": 0}, "")
    if problem is None:
        segments = doc["segments"]
        if not isinstance(segments, dict):
            problem = "segments", "expected an object"
        elif not all(isinstance(v, str) for v in segments.values()):
            problem = "segments", "expected base64 strings"
    return problem


def _format(doc: dict[str, Any]) -> tuple[str, str] | None:
    f = doc["format"]
    if isinstance(f, bool) or f != ENVELOPE_VERSION or not isinstance(f, int | float):
        return "format", f"expected {ENVELOPE_VERSION}"
    return None
