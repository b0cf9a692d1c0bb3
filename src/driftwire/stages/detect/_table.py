"""The detect stage's state in a Faust table: model snapshots, slot profiles, restore.

Each model's :meth:`~driftwire.detect.detector.Detector.snapshot` is stored as JSON under the
model's name, with the state format and the bucket size; it is written when its bytes changed
since the last write (or restore). The slot profiles the detector closes (trailing / seasonal
references) are stored each under its own key, in the partition of its model's state so that
they move with it. The table is on the in-memory store; its changelog topic is what a
restarted or rebalanced worker restores from.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson

from driftwire.detect._parts import is_part_key
from driftwire.detect.trailing import is_slot_key
from driftwire.errors import FormatError
from driftwire.stages.detect._outbox import (
    OutboxEntry,
    decode_outbox,
    encode_outbox,
    is_outbox_key,
    outbox_key,
    outbox_partition,
)
from driftwire.stages.detect._slots import _Slot, partition_of

if TYPE_CHECKING:
    import faust

    from driftwire.ops.metrics import DetectMetrics

log = logging.getLogger("driftwire.stages.detect.stage")  # one logger name for the whole stage

STATE_FORMAT = 1
TABLE = "detector"


def changelog_topic(app_id: str) -> str:
    """The name faust gives the changelog topic of the state table."""
    return f"{app_id}-{TABLE}-changelog"


def _state_key(model: str) -> bytes:
    return model.encode()


class StateTable:
    """Writes detector state to the Faust table and restores it into a slot's detector."""

    def __init__(self, *, bucket_ms: int, max_bytes: int, metrics: DetectMetrics) -> None:
        self.table: Any = None  # the faust table, once the app is built (create)
        self._bucket_ms = bucket_ms
        self._max_bytes = max_bytes
        self._m = metrics
        self._partitions = 0
        self._written: dict[str, bytes] = {}  # model -> digest of the last snapshot written

    def create(
        self,
        app: faust.App,
        partitions: int,
        *,
        max_message_bytes: int,
        on_recover: Callable[[], Awaitable[None]],
    ) -> None:
        """Define the table in ``app`` (``on_recover``: after every changelog recovery)."""
        self._partitions = partitions
        self.table = app.Table(
            TABLE,
            key_type=bytes,
            value_type=bytes,
            partitions=partitions,
            use_partitioner=True,  # writes outside the agent (timer) go to the model's partition
            on_recover=on_recover,
            extra_topic_configs={"max.message.bytes": str(max_message_bytes)},
            help="Detector state per model (windows, frozen references, alert policy)",
        )

    def write_snapshots(self, slot: _Slot, models: Iterable[str]) -> None:
        """Write the snapshot of each model whose bytes changed since its last write."""
        for model in sorted(models):
            state = slot.detector.snapshot(model)
            if not state:
                if self._written.pop(model, None) is not None:  # retired: its state goes too
                    with contextlib.suppress(KeyError):
                        del self.table[_state_key(model)]
                continue
            blob = orjson.dumps(
                {
                    "format": STATE_FORMAT,
                    "model": model,
                    "bucket_ms": self._bucket_ms,
                    "state": state,
                }
            )
            digest = hashlib.blake2b(blob, digest_size=16).digest()
            if self._written.get(model) == digest:
                continue
            self._m.snapshot_bytes.observe(len(blob))
            if len(blob) > self._max_bytes:
                self._m.snapshots.labels(result="too_large").inc()
                log.error(
                    "detector state too large for the changelog; not persisted",
                    extra={
                        "fields": {
                            "model": model,
                            "bytes": len(blob),
                            "limit": self._max_bytes,
                        }
                    },
                )
                continue
            self.table[_state_key(model)] = blob  # produced to the changelog
            self._written[model] = digest
            self._m.snapshots.labels(result="written").inc()

    def write_parts(self, slot: _Slot) -> None:
        """Store the parts of the detector's state kept apart from its snapshots (slot
        profiles, window buckets, frozen references), before the snapshots that name them.

        Each under its own key, in the partition of its model's state so that it moves with
        it; one that is gone is deleted.
        """
        if self.table is None:
            return
        for model, key, blob in slot.detector.stored_parts():
            if blob is not None and len(blob) > self._max_bytes:
                log.error(
                    "detector state part too large for the changelog; not persisted",
                    extra={"fields": {"model": model, "bytes": len(blob)}},
                )
                continue
            partition = partition_of(model, self._partitions)
            self.table.send_changelog(partition, key, blob, value_serializer="raw")
            if blob is None:
                self.table.data.pop(key, None)
            else:
                self.table.data[key] = blob

    def write_outbox(self, partition: int, entries: list[OutboxEntry]) -> None:
        """Store (or, when empty, delete) the unacknowledged alerts of ``partition``."""
        if self.table is None:
            return
        key = outbox_key(partition)
        blob = encode_outbox(entries) if entries else None
        self.table.send_changelog(partition, key, blob, value_serializer="raw")
        if blob is None:
            self.table.data.pop(key, None)
        else:
            self.table.data[key] = blob

    def ensure_restored(self, slot: _Slot, model: str) -> None:
        """On first sight of ``model`` in this detector, load its state from the table."""
        if model in slot.models or self.table is None:
            return
        blob = self.table.get(_state_key(model))
        if blob:
            self._restore(slot, model, blob)

    def restore_partitions(self, slots: dict[int, _Slot], new: set[int]) -> None:
        """Restore every model of the ``new`` partitions into its slot (after a rebalance)."""
        for key, blob in list(self.table.items()):
            if is_outbox_key(key):
                self._restore_outbox(slots, new, key, blob)
                continue
            if is_slot_key(key) or is_part_key(key):
                continue  # a part of a model's state, loaded with it
            model = key.decode()
            partition = partition_of(model, self._partitions)
            if partition in new:
                self._restore(slots[partition], model, blob)

    def _restore_outbox(
        self, slots: dict[int, _Slot], new: set[int], key: bytes, blob: bytes
    ) -> None:
        partition = outbox_partition(key)
        if partition not in new or not blob:
            return
        try:
            slots[partition].outbox = decode_outbox(blob)
        except FormatError as exc:
            log.error(
                "alert outbox not restored",
                extra={"fields": {"partition": partition, "error": str(exc)[:200]}},
            )

    def forget(self, model: str) -> None:
        """``model`` moved to another worker: its next snapshot here is written in full."""
        self._written.pop(model, None)

    def _restore(self, slot: _Slot, model: str, blob: bytes) -> None:
        try:
            doc = orjson.loads(blob)
            if doc.get("format") != STATE_FORMAT:
                raise FormatError(f"unknown state format {doc.get('format')!r}")
            bucket_ms = self._bucket_ms
            if doc.get("bucket_ms") != bucket_ms:
                raise FormatError(
                    f"state has {doc.get('bucket_ms')} ms buckets, settings say {bucket_ms}"
                )
            slot.detector.restore(model, doc["state"])
        except Exception as exc:
            self._m.restores.labels(result="invalid").inc()
            log.error(
                "detector state not restored; the model starts afresh",
                extra={"fields": {"model": model, "error": repr(exc)[:300]}},
            )
            return
        self._restore_parts(slot, model)
        slot.models.add(model)
        self._written[model] = hashlib.blake2b(blob, digest_size=16).digest()
        self._m.restores.labels(result="ok").inc()

    def _restore_parts(self, slot: _Slot, model: str) -> None:
        """Load the stored parts ``model``'s state names (after its snapshot)."""
        for key in slot.detector.part_keys(model):
            blob = self.table.get(key)
            if not blob:
                continue
            try:
                slot.detector.load_part(key, blob)
            except FormatError as exc:
                log.warning(
                    "stored part of the detector state skipped",
                    extra={"fields": {"model": model, "error": str(exc)[:200]}},
                )
