"""The records stage 1 sends to stage 2 on the partials topic: partials and watermarks.

A *partial* holds the profiles of one closed bucket of one model version as seen by one input
partition, one profile per segment, each in the versioned binary profile format (base64 in
a JSON envelope, described by ``schemas/partial.schema.json``). Its id is derived from what
the partial means: (input topic, partition, bucket start, the bucket's first offset, model,
version, part). The last offset is left out: where a bucket closes depends on batch
boundaries and on the wall clock (idle closing, the future cap), so a replay after a crash can
cover more or fewer events than the first attempt, but it starts at the same offset.
:func:`admit_partial` is stage 2's dedup: per (input partition, version, bucket) it keeps the
offset span it merged and drops a replay of any shape (see its rules). A bucket whose profiles
would exceed Kafka's record limit is sent as several parts, each holding whole segments.
Records written with the earlier id (which hashed the last offset too) still decode.

A *watermark* says that an input partition has closed every bucket that ends at or before
``watermark_ms``, or that it is idle. Stage 1 broadcasts it to every partials partition, so
every stage-2 member knows when a bucket is complete for its models.

>>> w = Watermark("events", 0, 4, 60_000, idle=False)
>>> decode_record(w.encode()) == w
True
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from driftwire.errors import FormatError

ENVELOPE_VERSION = 1

#: Why stage 2 refuses a partials-topic record (``driftwire.detect.intake``): a bounded set,
#: the label values of its metric and the dead-letter reason codes.
REJECT_REASONS = (
    "malformed",
    "schema",
    "id",
    "source",
    "bucket",
    "count",
    "sketch",
    "future_bucket",
    "future_watermark",
)


def partial_id(
    topic: str,
    partition: int,
    bucket_start_ms: int,
    first: int,
    model: str,
    model_version: str,
    part: int = 0,
) -> str:
    """The id of a partial: the same for a replay whatever its batch boundaries.

    >>> partial_id("events", 0, 60_000, 17, "churn", "1") == partial_id(
    ...     "events", 0, 60_000, 17, "churn", "1", part=0)
    True
    """
    fields = ("v2", topic, partition, bucket_start_ms, first, model, model_version, part)
    return _digest(fields)


def legacy_partial_id(
    topic: str,
    partition: int,
    bucket_start_ms: int,
    first: int,
    last: int,
    model: str,
    model_version: str,
    part: int = 0,
) -> str:
    """The id earlier releases gave a partial (it hashed the last offset too)."""
    return _digest((topic, partition, bucket_start_ms, first, last, model, model_version, part))


def _digest(fields: tuple[object, ...]) -> str:
    raw = "\x00".join(str(f) for f in fields).encode()
    return hashlib.sha256(raw).hexdigest()[:24]


@dataclass(frozen=True)
class Partial:
    """Profiles of one (model, version, bucket) from one input partition."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    bucket_start_ms: int
    bucket_end_ms: int
    model: str
    model_version: str
    events: int
    segments: dict[str, bytes] = field(default_factory=dict)  # segment key -> profile bytes
    part: int = 0  # a bucket with many segments is split into parts of whole segments

    @property
    def id(self) -> str:
        return partial_id(
            self.topic,
            self.partition,
            self.bucket_start_ms,
            self.first_offset,
            self.model,
            self.model_version,
            self.part,
        )

    @property
    def legacy_id(self) -> str:
        """The id an earlier release gave this partial (found in older stored state)."""
        return legacy_partial_id(
            self.topic,
            self.partition,
            self.bucket_start_ms,
            self.first_offset,
            self.last_offset,
            self.model,
            self.model_version,
            self.part,
        )

    @property
    def span_key(self) -> str:
        """(input topic, partition, version, bucket): the unit whose offsets stage 2 tracks."""
        return f"{self.topic}\x00{self.partition}\x00{self.model_version}\x00{self.bucket_start_ms}"

    @property
    def key(self) -> bytes:
        """Kafka key: the model, so one stage-2 member owns all of a model's windows."""
        return self.model.encode()

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "type": "partial",
                "format": ENVELOPE_VERSION,
                "id": self.id,
                "source": {
                    "topic": self.topic,
                    "partition": self.partition,
                    "first_offset": self.first_offset,
                    "last_offset": self.last_offset,
                },
                "bucket": {"start_ms": self.bucket_start_ms, "end_ms": self.bucket_end_ms},
                "model": self.model,
                "model_version": self.model_version,
                "part": self.part,
                "events": self.events,
                "segments": {k: base64.b64encode(v).decode() for k, v in self.segments.items()},
            }
        )


@dataclass(frozen=True)
class Watermark:
    """Input ``partition`` (of ``partitions``) closed every bucket ending <= ``watermark_ms``."""

    topic: str
    partition: int
    partitions: int
    watermark_ms: int
    idle: bool = False

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "type": "watermark",
                "format": ENVELOPE_VERSION,
                "source": {
                    "topic": self.topic,
                    "partition": self.partition,
                    "partitions": self.partitions,
                },
                "watermark_ms": self.watermark_ms,
                "idle": self.idle,
            }
        )


class PartialIdMismatch(FormatError):
    """A partial whose id is not the hash of its source and bucket."""


def decode_record(value: bytes) -> Partial | Watermark:
    """Parse a partials-topic record; anything else raises :class:`FormatError`."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise FormatError(f"malformed partials record: {exc!r}") from exc
    return record_from_doc(doc)


def record_from_doc(doc: object) -> Partial | Watermark:
    """The record of a parsed partials-topic document; anything else raises
    :class:`FormatError` (:class:`PartialIdMismatch` for a partial with a wrong id)."""
    try:
        if not isinstance(doc, dict):
            raise FormatError(f"a partials record is a JSON object, not {type(doc).__name__}")
        if doc.get("format") != ENVELOPE_VERSION:
            raise FormatError(f"unsupported partial envelope format {doc.get('format')!r}")
        src = doc["source"]
        if doc["type"] == "watermark":
            return Watermark(
                src["topic"],
                int(src["partition"]),
                int(src["partitions"]),
                int(doc["watermark_ms"]),
                bool(doc["idle"]),
            )
        if doc["type"] != "partial":
            raise FormatError(f"unknown record type {doc['type']!r}")
        partial = Partial(
            topic=src["topic"],
            partition=int(src["partition"]),
            first_offset=int(src["first_offset"]),
            last_offset=int(src["last_offset"]),
            bucket_start_ms=int(doc["bucket"]["start_ms"]),
            bucket_end_ms=int(doc["bucket"]["end_ms"]),
            model=doc["model"],
            model_version=doc["model_version"],
            events=int(doc["events"]),
            part=int(doc.get("part", 0)),
            segments={k: base64.b64decode(v) for k, v in doc["segments"].items()},
        )
    except FormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FormatError(f"malformed partials record: {exc!r}") from exc
    if doc["id"] not in (partial.id, partial.legacy_id):
        raise PartialIdMismatch("partial id does not match its source and bucket")
    return partial


def admit_partial(partial: Partial, ids: dict[str, int], spans: dict[str, list[int]]) -> bool:
    """Whether stage 2 merges ``partial`` (True) or drops it as a replay; records it if merged.

    ``ids`` maps the ids merged to their bucket end; ``spans`` maps a partial's
    :attr:`~Partial.span_key` to ``[first offset, last offset, bucket end]`` of the latest
    emission merged for it. A partial is a replay when

    * its id (or the id an earlier release gave it) was merged: the same emission again;
    * or it starts at or before the last offset merged for its input partition, version and
      bucket with another span: a replay whose batches, or whose wall clock, closed the bucket
      at another offset. Its events are in the merged emission, or were set aside as late by
      the first attempt (which the replay must not undo): it is dropped whole.

    A partial that starts after that offset is new (the bucket went on after a flush on
    revoke), as is one with the span of the emission merged last (another of its parts).

    >>> from driftwire.partials import Partial
    >>> def p(first: int, last: int, part: int = 0) -> Partial:
    ...     return Partial("events", 0, first, last, 0, 60_000, "churn", "1", 10, part=part)
    >>> ids: dict[str, int] = {}; spans: dict[str, list[int]] = {}
    >>> [admit_partial(x, ids, spans) for x in (p(5, 90), p(5, 90, 1), p(5, 90), p(5, 120))]
    [True, True, False, False]
    >>> [admit_partial(x, ids, spans) for x in (p(5, 70), p(40, 95), p(91, 99))]
    [False, False, True]
    """
    if is_replay(partial, ids, spans):
        return False
    record_merged(partial, ids, spans)
    return True


def is_replay(partial: Partial, ids: Mapping[str, int], spans: Mapping[str, list[int]]) -> bool:
    """:func:`admit_partial`'s verdict without recording anything."""
    if partial.id in ids or partial.legacy_id in ids:
        return True
    span = spans.get(partial.span_key)
    first, last = partial.first_offset, partial.last_offset
    return span is not None and first <= span[1] and (first, last) != (span[0], span[1])


def record_merged(partial: Partial, ids: dict[str, int], spans: dict[str, list[int]]) -> None:
    """Record ``partial`` as merged, for :func:`is_replay`."""
    ids[partial.id] = partial.bucket_end_ms
    span = spans.get(partial.span_key)
    if span is None or partial.first_offset > span[1]:
        spans[partial.span_key] = [partial.first_offset, partial.last_offset, partial.bucket_end_ms]
