"""Parts of a model's state stored once under their own keys, not in every snapshot.

The shell writes a model's snapshot after every partial and every evaluation. Most of its
bytes would be the window's evaluated buckets and the frozen reference, which never change
once made: so each is handed to the shell once, under its own key in the model's changelog
partition, and the snapshot only names them (bucket starts, the frozen reference's id).
Keys: ``model \\0 bucket \\0 version \\0 start`` (bytes of
:func:`~driftwire.detect.trailing.encode_slot`, one bucket long) and ``model \\0 frozen \\0
version``
(:meth:`~driftwire.detect.reference.Reference.to_bytes`). A bucket that leaves the window, and the
parts of a retired version, are deleted (``None``).

>>> key = bucket_key("churn", "1.4.2", 60_000)
>>> key, parse_part_key(key), parse_part_key(frozen_key("churn", "1.4.2"))
(b'churn\\x00bucket\\x001.4.2\\x0060000', ('bucket', 'churn', '1.4.2', 60000), \
('frozen', 'churn', '1.4.2', 0))
"""

from __future__ import annotations

from collections.abc import Mapping

from driftwire.detect._state import _Model
from driftwire.detect.trailing import encode_slot
from driftwire.errors import FormatError

__all__ = ["PartsOutbox", "bucket_key", "frozen_key", "is_part_key", "parse_part_key"]

BUCKET, FROZEN = "bucket", "frozen"


def bucket_key(model: str, version: str, start_ms: int) -> bytes:
    return b"\x00".join((model.encode(), b"bucket", version.encode(), str(start_ms).encode()))


def frozen_key(model: str, version: str) -> bytes:
    return b"\x00".join((model.encode(), b"frozen", version.encode()))


def is_part_key(key: bytes) -> bool:
    parts = key.split(b"\x00")
    if len(parts) == 4:
        return parts[1] == b"bucket"
    return len(parts) == 3 and parts[1] == b"frozen"


def parse_part_key(key: bytes) -> tuple[str, str, str, int]:
    """``(kind, model, version, bucket start or 0)`` of a part's key."""
    if not is_part_key(key):
        raise FormatError(f"not a state part key: {key[:80]!r}")
    parts = key.split(b"\x00")
    try:
        start = int(parts[3]) if len(parts) == 4 else 0
        return parts[1].decode(), parts[0].decode(), parts[2].decode(), start
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"bad state part key {key[:80]!r}: {exc}") from exc


class PartsOutbox:
    """Parts made or dropped since the shell last took them; encoded only when taken."""

    def __init__(self, bucket_ms: int) -> None:
        self._bucket_ms = bucket_ms
        self._keys: dict[bytes, tuple[str, str, str, int]] = {}

    def bucket(self, model: str, version: str, start_ms: int) -> None:
        """A bucket was evaluated (stored), or left the window (deleted): see :meth:`drain`."""
        self._keys[bucket_key(model, version, start_ms)] = (BUCKET, model, version, start_ms)

    def frozen(self, model: str, version: str) -> None:
        self._keys[frozen_key(model, version)] = (FROZEN, model, version, 0)

    def drain(self, models: Mapping[str, _Model]) -> list[tuple[str, bytes, bytes | None]]:
        """``(model, key, bytes)`` of each part, as it is now in ``models``: ``None`` if gone."""
        out: list[tuple[str, bytes, bytes | None]] = []
        for key, (kind, model, version, start) in self._keys.items():
            state = models.get(model)
            v = None if state is None else state.versions.get(version)
            blob: bytes | None = None
            if v is not None and kind == BUCKET and start in v.buckets:
                blob = encode_slot(start, self._bucket_ms, v.buckets[start])
            elif v is not None and kind == FROZEN and v.frozen is not None:
                blob = v.frozen.to_bytes()
            out.append((model, key, blob))
        self._keys.clear()
        return out
