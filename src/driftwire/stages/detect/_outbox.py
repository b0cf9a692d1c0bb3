"""Alerts the broker has not acknowledged yet: the detect stage's outbox.

The detector's policy state says a transition was announced as soon as it returns the alert,
and that state is written to the state table with the record that caused it. So an alert the
broker does not acknowledge must be kept in the same table, or a restart would restore
"firing, sent" and never send it. Each owned partials partition keeps its unacknowledged
alerts, encoded exactly as they were first sent (same CloudEvents id), under one key in its own
changelog partition; the stage sends them before any newer alert of that partition.

>>> entry = OutboxEntry(b"fp", b'{"id": "1"}', (("ce_id", b"1"),), "data_drift", "firing")
>>> decode_outbox(encode_outbox([entry])) == [entry]
True
>>> is_outbox_key(outbox_key(3)), outbox_partition(outbox_key(3)), is_outbox_key(b"churn")
(True, 3, False)
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import orjson

from driftwire.errors import FormatError

OUTBOX_FORMAT = 1
_PREFIX = b"\x00outbox\x00"


@dataclass(frozen=True)
class OutboxEntry:
    """One alert emission as produced: Kafka key, value and headers, plus what it counts as."""

    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    kind: str
    status: str

    @property
    def fingerprint(self) -> str:
        return self.key.decode()


def outbox_key(partition: int) -> bytes:
    """The table key of partials partition ``partition``'s outbox."""
    return _PREFIX + str(partition).encode()


def is_outbox_key(key: bytes) -> bool:
    return key.startswith(_PREFIX)


def outbox_partition(key: bytes) -> int:
    return int(key[len(_PREFIX) :])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encode_outbox(entries: list[OutboxEntry]) -> bytes:
    """The stored form of ``entries`` (JSON; bytes as base64)."""
    return orjson.dumps(
        {
            "format": OUTBOX_FORMAT,
            "alerts": [
                {
                    "key": _b64(e.key),
                    "value": _b64(e.value),
                    "headers": [[k, _b64(v)] for k, v in e.headers],
                    "kind": e.kind,
                    "status": e.status,
                }
                for e in entries
            ],
        }
    )


def decode_outbox(blob: bytes) -> list[OutboxEntry]:
    """The entries of a stored outbox; :class:`FormatError` if it is not one."""
    try:
        doc = orjson.loads(blob)
        if doc.get("format") != OUTBOX_FORMAT:
            raise FormatError(f"unknown outbox format {doc.get('format')!r}")
        return [
            OutboxEntry(
                key=base64.b64decode(a["key"]),
                value=base64.b64decode(a["value"]),
                headers=tuple((k, base64.b64decode(v)) for k, v in a["headers"]),
                kind=a["kind"],
                status=a["status"],
            )
            for a in doc["alerts"]
        ]
    except FormatError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FormatError(f"unreadable alert outbox: {exc}") from exc
