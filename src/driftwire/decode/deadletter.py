"""Dead-letter headers for a rejected event, in the style of Kafka Connect's ``__connect.errors.*``.

The original key, value and headers travel unchanged; these headers say why.

>>> from driftwire.decode.batch import Rejection
>>> h = dead_letter_headers(Rejection(0, "wrong_type", "features.age", "expected a number"),
...     SourceRecord("events", 2, 41, 1700000000000), group="g", stage="profile", now_ms=1)
>>> dict(h)["__driftwire.errors.reason"]
b'wrong_type'
"""

from __future__ import annotations

from dataclasses import dataclass

from driftwire.decode.batch import Rejection

HEADER_PREFIX = "__driftwire.errors."
MAX_MESSAGE_BYTES = 512


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """Where a rejected event came from."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None


def dead_letter_headers(
    rejection: Rejection,
    source: SourceRecord,
    *,
    group: str,
    stage: str,
    now_ms: int,
    original: tuple[tuple[str, bytes], ...] = (),
) -> list[tuple[str, bytes]]:
    """The original headers followed by the ``__driftwire.errors.*`` headers of ``rejection``."""
    message = rejection.message.encode()[:MAX_MESSAGE_BYTES]
    ours = {
        "reason": rejection.reason.encode(),
        "field": (rejection.field or "").encode(),
        "topic": source.topic.encode(),
        "partition": str(source.partition).encode(),
        "offset": str(source.offset).encode(),
        "timestamp": str(now_ms).encode(),
        "consumer.group": group.encode(),
        "stage": stage.encode(),
        "exception.message": message,
    }
    return [*original, *((HEADER_PREFIX + k, v) for k, v in ours.items())]
