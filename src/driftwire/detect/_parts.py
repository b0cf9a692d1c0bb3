"""Parts of a model's state stored once under their own keys, not in every snapshot.

The shell writes a model's snapshot after every partial and every evaluation. Most of its
bytes would be the window's evaluated buckets, the frozen reference and the buckets still being
assembled: so each is handed to the shell under its own key in the model's changelog
partition, and the snapshot only names them (bucket starts, the frozen reference's id, the
pending buckets' generations).
Keys: ``model \0 bucket \0 version \0 start`` (bytes of
:func:`~driftwire.detect.trailing.encode_slot`, one bucket long), ``model \0 frozen \0
version``
(:meth:`~driftwire.detect.reference.Reference.to_bytes`) and ``model \0 pending \0 version \0
start \0 generation`` (a pending bucket, :func:`~driftwire.detect.trailing.encode_slot` too). A
bucket that leaves the window, and the parts of a retired version, are deleted (``None``).

A pending bucket changes with every partial merged into it, so each write of it is a new
*generation* under a new key, and the snapshot names the generation it goes with: a worker that
stops between the part and the snapshot restores the previous snapshot with the part it names,
which is still there. A generation is deleted one drain after the snapshot that stopped naming
it was written (:meth:`PartsOutbox.drain` is followed by the snapshots of the models it changed).

>>> key = bucket_key("churn", "1.4.2", 60_000)
>>> key, parse_part_key(key), parse_part_key(frozen_key("churn", "1.4.2"))
(b'churn\\x00bucket\\x001.4.2\\x0060000', ('bucket', 'churn', '1.4.2', 60000), \
('frozen', 'churn', '1.4.2', 0))
>>> parse_part_key(pending_key("churn", "1.4.2", 60_000, 3)), pending_generation(
...     pending_key("churn", "1.4.2", 60_000, 3))
(('pending', 'churn', '1.4.2', 60000), 3)
"""

from __future__ import annotations

from collections.abc import Mapping

from driftwire.detect._state import _Model, _Version
from driftwire.detect.trailing import encode_slot
from driftwire.errors import FormatError

__all__ = [
    "PartsOutbox",
    "bucket_key",
    "frozen_key",
    "is_part_key",
    "parse_part_key",
    "pending_generation",
    "pending_key",
]

BUCKET, FROZEN, PENDING = "bucket", "frozen", "pending"


def bucket_key(model: str, version: str, start_ms: int) -> bytes:
    return b"\x00".join((model.encode(), b"bucket", version.encode(), str(start_ms).encode()))


def frozen_key(model: str, version: str) -> bytes:
    return b"\x00".join((model.encode(), b"frozen", version.encode()))


def pending_key(model: str, version: str, start_ms: int, generation: int) -> bytes:
    return b"\x00".join(
        (model.encode(), b"pending", version.encode(), b"%d" % start_ms, b"%d" % generation)
    )


def is_part_key(key: bytes) -> bool:
    parts = key.split(b"\x00")
    if len(parts) == 4:
        return parts[1] == b"bucket"
    if len(parts) == 5:
        return parts[1] == b"pending"
    return len(parts) == 3 and parts[1] == b"frozen"


def pending_generation(key: bytes) -> int:
    """The generation of a pending bucket's key (0 for the other parts)."""
    parts = key.split(b"\x00")
    try:
        return int(parts[4]) if len(parts) == 5 and parts[1] == b"pending" else 0
    except ValueError as exc:
        raise FormatError(f"bad state part key {key[:80]!r}: {exc}") from exc


def parse_part_key(key: bytes) -> tuple[str, str, str, int]:
    """``(kind, model, version, bucket start or 0)`` of a part's key."""
    if not is_part_key(key):
        raise FormatError(f"not a state part key: {key[:80]!r}")
    parts = key.split(b"\x00")
    try:
        start = int(parts[3]) if len(parts) >= 4 else 0
        return parts[1].decode(), parts[0].decode(), parts[2].decode(), start
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"bad state part key {key[:80]!r}: {exc}") from exc


class PartsOutbox:
    """Parts made or dropped since the shell last took them; encoded only when taken."""

    def __init__(self, bucket_ms: int) -> None:
        self._bucket_ms = bucket_ms
        self._keys: dict[bytes, tuple[str, str, str, int]] = {}
        self._pending: dict[tuple[str, str, int], None] = {}  # changed pending buckets
        self._retire_next: list[tuple[str, bytes]] = []  # unnamed by the next snapshot
        self._retire_now: list[tuple[str, bytes]] = []  # unnamed by the last one: delete

    def bucket(self, model: str, version: str, start_ms: int) -> None:
        """A bucket was evaluated (stored), or left the window (deleted): see :meth:`drain`."""
        self._keys[bucket_key(model, version, start_ms)] = (BUCKET, model, version, start_ms)

    def frozen(self, model: str, version: str) -> None:
        self._keys[frozen_key(model, version)] = (FROZEN, model, version, 0)

    def pending(self, model: str, version: str, start_ms: int) -> None:
        """A pending bucket changed: its next generation is stored at the next drain."""
        self._pending[(model, version, start_ms)] = None

    def pending_gone(self, model: str, version_name: str, version: _Version, start: int) -> None:
        """A pending bucket left ``version`` (evaluated, or dropped with it): its stored
        generation is deleted once a snapshot without it was written."""
        generation = version.pending_gen.pop(start, 0)
        if generation:
            self._retire_next.append((model, pending_key(model, version_name, start, generation)))

    def discard(self) -> None:
        """Forget what :meth:`drain` would hand out: for a shell that stores no state."""
        self._keys.clear()
        self._pending.clear()
        self._retire_next.clear()
        self._retire_now.clear()

    def drain(self, models: Mapping[str, _Model]) -> list[tuple[str, bytes, bytes | None]]:
        """``(model, key, bytes)`` of each part, as it is now in ``models``: ``None`` if gone.

        The snapshots of the models changed are written right after, so the generations this
        drain replaces are deleted by the next one.
        """
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
        out += [(model, key, None) for model, key in self._retire_now]
        self._retire_now, self._retire_next = self._retire_next, []
        for model, version, start in self._pending:
            state = models.get(model)
            v = None if state is None else state.versions.get(version)
            if v is None or start not in v.pending:
                continue  # evaluated or dropped since: pending_gone retired it
            old = v.pending_gen.get(start, 0)
            v.pending_gen[start] = old + 1
            blob = encode_slot(start, self._bucket_ms, v.pending[start])
            out.append((model, pending_key(model, version, start, old + 1), blob))
            if old:
                self._retire_now.append((model, pending_key(model, version, start, old)))
        self._pending.clear()
        return out
