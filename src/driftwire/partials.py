"""The records stage 1 sends to stage 2 on the partials topic: partials and watermarks.

A *partial* holds the profiles of one closed bucket of one model version as seen by one input
partition, one profile per segment, each in the versioned binary profile format (base64 in
a JSON envelope, described by ``schemas/partial.schema.json``). Its id is derived from
(input topic, partition, bucket start, offset range, model, version, part), so a replay
after a crash
reproduces the same id and stage 2 drops the duplicate. A bucket whose profiles would exceed
Kafka's record limit is sent as several parts, each holding whole segments.

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
    last: int,
    model: str,
    model_version: str,
    part: int = 0,
) -> str:
    fields = (topic, partition, bucket_start_ms, first, last, model, model_version, part)
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
            self.last_offset,
            self.model,
            self.model_version,
            self.part,
        )

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
    if partial.id != doc["id"]:
        raise PartialIdMismatch("partial id does not match its source and bucket")
    return partial
