"""Dead-letter headers for a rejected event, in the style of Kafka Connect's ``__connect.errors.*``.

The original key, value and headers travel unchanged; these headers say why.

>>> from driftwire.decode.batch import Rejection
>>> h = dead_letter_headers(Rejection(0, "wrong_type", "features.age", "expected a number"),
...     SourceRecord("events", 2, 41, 1700000000000), group="g", stage="profile", now_ms=1)
>>> dict(h)["__driftwire.errors.reason"]
b'wrong_type'

A dead letter must fit in one Kafka record: :func:`fit_dead_letter` cuts the value of one that
would not (an input record near the broker's 1 MiB limit plus these headers) and says so:

>>> value, headers = fit_dead_letter(b"k", b"x" * 2000, h, max_bytes=1000)
>>> len(value) < 1000, dict(headers)["__driftwire.errors.value.original.bytes"]
(True, b'2000')
"""

from __future__ import annotations

from dataclasses import dataclass

from driftwire.decode.batch import Rejection

HEADER_PREFIX = "__driftwire.errors."
MAX_MESSAGE_BYTES = 512
#: Key, value and headers of one dead letter: under the producer's 1 MiB ``max_request_size``
#: with room for the record's own framing.
MAX_DEAD_LETTER_BYTES = 1_000_000
TRUNCATED = HEADER_PREFIX + "value.truncated"
ORIGINAL_BYTES = HEADER_PREFIX + "value.original.bytes"


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


def _headers_size(headers: list[tuple[str, bytes]]) -> int:
    # a Kafka header's value may be null (None): the original headers keep it as it came
    return sum(len(k.encode()) + len(v or b"") for k, v in headers)


def fit_dead_letter(
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]],
    *,
    max_bytes: int = MAX_DEAD_LETTER_BYTES,
) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """``value`` and ``headers`` as sent: unchanged if they fit in ``max_bytes`` with ``key``,
    else the value cut to fit, with ``value.truncated`` and ``value.original.bytes`` headers.
    """
    body = len(value or b"")
    size = len(key or b"") + body + _headers_size(headers)
    if size <= max_bytes or value is None:
        return value, headers
    marked = [*headers, (TRUNCATED, b"true"), (ORIGINAL_BYTES, str(body).encode())]
    room = max_bytes - len(key or b"") - _headers_size(marked)
    return value[: max(0, room)], marked
