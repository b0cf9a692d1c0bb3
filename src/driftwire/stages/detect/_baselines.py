"""The detect stage's baselines follower: published baselines into the reference store.

A plain aiokafka consumer (no group) reads the compacted baselines topic from the beginning
and keeps following it, loading each baseline into the
:class:`~driftwire.detect.reference.ReferenceStore` the detectors read; a tombstone withdraws one.
:attr:`BaselinesFollower.ready` is set once the topic was read to its end (or has nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from driftwire.errors import FormatError
from driftwire.stages.consumer_stop import stop_consumer

if TYPE_CHECKING:
    from driftwire.detect.reference import ReferenceStore
    from driftwire.ops.config import Settings

log = logging.getLogger("driftwire.stages.detect.stage")  # one logger name for the whole stage


class BaselineMetrics(Protocol):
    """What the follower counts (the detect stage's and the truth stage's metrics have it)."""

    baselines: Any  # a Counter labelled by result: loaded, removed, invalid
    baselines_loaded: Any  # a Gauge: baselines held


class BaselinesFollower:
    """Loads the baselines topic into ``references`` and follows it until ``run`` is told."""

    def __init__(
        self,
        settings: Settings,
        references: ReferenceStore,
        metrics: BaselineMetrics,
        *,
        client_suffix: str = "baselines",
    ) -> None:
        self._s = settings
        self._refs = references
        self._m = metrics
        self._keys: dict[bytes, tuple[str, str]] = {}
        self._client_suffix = client_suffix
        self.ready = asyncio.Event()

    async def run(self, finished: asyncio.Event) -> None:
        """Read the compacted baselines topic from the beginning, then keep following it."""
        topic = self._s.topics.baselines
        opts = {**self._s.kafka.client_options()}
        opts["client_id"] = f"{self._s.kafka.client_id}-{self._client_suffix}"
        consumer = AIOKafkaConsumer(
            **opts, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        admin = AIOKafkaAdminClient(**opts)
        await admin.start()
        await consumer.start()
        try:
            assigned: set[TopicPartition] = set()
            ends: dict[TopicPartition, int] | None = None
            next_check = 0.0
            unreachable = False  # said once per outage
            loop = asyncio.get_running_loop()
            while not finished.is_set():
                if loop.time() >= next_check:
                    next_check = loop.time() + 30.0
                    try:
                        found = await self.partitions(admin, topic)
                    except (KafkaError, OSError) as exc:
                        # the broker is away (a restart): keep the baselines held, ask again
                        next_check = loop.time() + 1.0
                        if not unreachable:
                            log.warning(
                                f"baselines topic {topic}: cannot list its partitions ({exc!r}); "
                                "keeping the baselines loaded and asking again every second",
                                extra={"fields": {"topic": topic}},
                            )
                        unreachable = True
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(finished.wait(), timeout=1.0)
                        continue
                    unreachable = False
                    if found - assigned:
                        consumer.assign(sorted(found, key=lambda tp: tp.partition))
                        await consumer.seek_to_beginning(*found)
                        assigned = found
                        if ends is None:
                            ends = await consumer.end_offsets(sorted(found))
                    if not found:
                        self.ready.set()  # nothing published yet
                if not assigned:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(finished.wait(), timeout=1.0)
                    continue
                batch = await consumer.getmany(timeout_ms=500, max_records=100)
                for records in batch.values():
                    for record in records:
                        self._apply(record.key, record.value)
                if ends is not None and not self.ready.is_set():
                    positions = {tp: await consumer.position(tp) for tp in ends}
                    if all(positions[tp] >= end for tp, end in ends.items()):
                        self.ready.set()
                        log.info("baselines loaded", extra={"fields": {"count": len(self._refs)}})
        finally:
            await stop_consumer(consumer)  # told to finish during start(): stop() at once
            await admin.close()

    @staticmethod
    async def partitions(admin: AIOKafkaAdminClient, topic: str) -> set[TopicPartition]:
        """The partitions of ``topic`` (none when it does not exist; it is not created)."""
        if topic not in await admin.list_topics():  # describing a missing topic may create it
            return set()
        (described,) = await admin.describe_topics([topic])
        return {TopicPartition(topic, p["partition"]) for p in described["partitions"]}

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        from driftwire.detect.reference import Reference, baseline_key

        if value is None:  # tombstone: the baseline was withdrawn
            target = self._keys.pop(key, None) if key is not None else None
            if target is None and key is not None and b"/" in key:
                model, _, version = key.decode(errors="replace").rpartition("/")
                target = (model, version)
            if target is None:
                self._m.baselines.labels(result="invalid").inc()
                log.warning("baselines tombstone without a model/version key")
                return
            self._refs.remove(*target)
            self._m.baselines.labels(result="removed").inc()
            log.info(
                f"baseline removed: {target[0]}/{target[1]}",
                extra={"fields": {"model": target[0], "model_version": target[1]}},
            )
        else:
            try:
                ref = Reference.from_bytes(value)
                expected = baseline_key(ref.model, ref.model_version)
                if key is not None and key != expected:
                    raise FormatError(f"key {key!r} is not {expected!r}")
            except (FormatError, UnicodeDecodeError) as exc:
                self._m.baselines.labels(result="invalid").inc()
                log.warning(
                    "invalid baseline skipped",
                    extra={
                        "fields": {
                            "key": (key or b"").decode(errors="replace")[:200],
                            "error": str(exc)[:200],
                        }
                    },
                )
                return
            self._refs.put(ref)
            self._keys[expected] = (ref.model, ref.model_version)
            self._m.baselines.labels(result="loaded").inc()
            log.info(
                f"baseline loaded: {ref.model}/{ref.model_version} ({ref.count} rows)",
                extra={
                    "fields": {
                        "model": ref.model,
                        "model_version": ref.model_version,
                        "baseline_id": ref.id,
                        "rows": ref.count,
                    }
                },
            )
        self._m.baselines_loaded.set(len(self._refs))
