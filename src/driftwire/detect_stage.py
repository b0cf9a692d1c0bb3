"""Stage 2 on Kafka: a faust-streaming app around the pure :class:`~driftwire.detector.Detector`.

One agent reads the partials topic (raw bytes), feeds partials and watermarks to the detector,
produces every alert it returns to the alerts topic (key = fingerprint, CloudEvents ``ce_*``
headers) and writes the snapshot of every model whose state changed into a Faust table on the
in-memory store, whose changelog topic lets a restarted or rebalanced worker resume its windows.
A Faust timer calls :meth:`Detector.tick` every second. A plain aiokafka consumer (no group)
reads the compacted baselines topic from the beginning and keeps following it, loading
baselines into the :class:`~driftwire.reference.ReferenceStore` the detector reads.

The app runs inside the caller's event loop as a mode service (``await app.start()`` /
``await app.stop()``): no :class:`faust.Worker`, so faust installs no signal handlers and does
not touch logging; ``run(stop)`` returns when ``stop`` is set, and raises when the app crashes,
when start-up or a rebalance recovery does not finish in time (the faust-streaming#21 family),
or when an alert cannot be delivered -- so the worker exits and its orchestrator restarts it.

Ownership: partials are keyed by model, so the partials partition of a model is
``murmur2(model) % partitions``; table keys are the same bytes and the table uses the
producer's partitioner (``use_partitioner=True``), so a model's snapshot lives in the changelog
partition with the same number, which faust assigns to the member that owns the partials
partition. The stage keeps one detector per owned partials partition: a watermark copy on
partition p is ordered only after the partials of partition p, so it must complete the buckets
of p's models and no others. After a rebalance the detectors of lost partitions are dropped and
those of new partitions restored from the table before processing resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from driftwire.alerts import Alert, encode
from driftwire.config import KafkaSettings, Settings
from driftwire.errors import ConfigError, FormatError, InputError, TransportError
from driftwire.health import Readiness
from driftwire.history import is_slot_key
from driftwire.metrics import (
    ConditionSample,
    DetectMetrics,
    DriftScoreCollector,
    LatencySample,
    Metrics,
)
from driftwire.partials import Partial, Watermark, decode_record

if TYPE_CHECKING:
    import faust

    from driftwire.reference import ReferenceStore

log = logging.getLogger(__name__)

STATE_FORMAT = 1
TABLE = "detector"


class DetectorLike(Protocol):
    """What the shell needs of :class:`driftwire.detector.Detector`."""

    def on_partial(self, partial: Partial, now_ms: int) -> list[Alert]: ...
    def on_watermark(self, mark: Watermark, now_ms: int) -> list[Alert]: ...
    def tick(self, now_ms: int) -> list[Alert]: ...
    def take_changed(self) -> set[str]: ...
    def snapshot(self, model: str) -> dict[str, Any]: ...
    def restore(self, model: str, state: dict[str, Any]) -> None: ...
    def closed_slots(self) -> list[tuple[str, bytes, bytes | None]]: ...
    def slot_keys(self, model: str) -> list[bytes]: ...
    def load_slot(self, key: bytes, blob: bytes) -> None: ...


@dataclass(frozen=True)
class FaustOptions:
    """Timeouts and sizes of the Faust app; the defaults suit a production cluster.

    ``replication_factor`` of the changelog topic: ``None`` derives it from the cluster
    (3, or fewer on a smaller cluster).
    """

    replication_factor: int | None = None
    tick_interval_s: float = 1.0
    start_timeout_s: float = 300.0  # start-up includes the changelog recovery
    recovery_timeout_s: float = 300.0  # one rebalance, revoke to "worker ready"
    stop_timeout_s: float = 30.0
    topic_wait_s: float = 60.0  # for the partials topic to exist
    baselines_wait_s: float = 60.0  # to read the baselines topic to its end before detecting
    alert_timeout_s: float = 60.0  # one alert's acknowledgement
    snapshot_interval_s: float = 60.0  # every model's snapshot at least this often
    max_snapshot_bytes: int = 8 * 1024 * 1024
    extra: dict[str, Any] = field(default_factory=dict)  # any other faust setting


def faust_credentials(kafka: KafkaSettings) -> Any:
    """``broker_credentials`` for faust from the same settings aiokafka gets."""
    import faust

    opts = kafka.client_options()
    ssl_context = opts.get("ssl_context")
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context,
        )
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None


def broker_urls(bootstrap_servers: str) -> list[str]:
    """``host:port,host:port`` as the ``kafka://`` URLs faust takes.

    >>> broker_urls("a:9092, b:9093")
    ['kafka://a:9092', 'kafka://b:9093']
    """
    return [f"kafka://{h.strip()}" for h in bootstrap_servers.split(",") if h.strip()]


def partition_of(model: str, partitions: int) -> int:
    """The partials (and state) partition of ``model``: Kafka's default murmur2 partitioner."""
    return int(DefaultPartitioner()(model.encode(), list(range(partitions)), None))


@dataclass
class _Slot:
    """The detector of one partials partition and what it holds.

    A watermark copy on partition p is ordered after every partial produced to p before it,
    but not after partials on other partitions: so it may only complete the buckets of the
    models of partition p. One detector per partition gives each watermark copy exactly the
    models it speaks for (and a lost partition is dropped whole).
    """

    detector: DetectorLike
    models: set[str] = field(default_factory=set)
    marks: dict[tuple[str, int], tuple[int, bool]] = field(default_factory=dict)

    def new_mark(self, mark: Watermark) -> bool:
        """False for a watermark this partition has already seen (a replay)."""
        key = (mark.topic, mark.partition)
        seen = self.marks.get(key)
        if seen is not None and mark.watermark_ms <= seen[0] and mark.idle == seen[1]:
            return False
        top = mark.watermark_ms if seen is None else max(mark.watermark_ms, seen[0])
        self.marks[key] = (top, mark.idle)
        return True


class DetectStage:
    """The detect stage of one worker process.

    Lifecycle: ``await run(stop)`` builds and starts the Faust app and the baselines follower,
    runs until ``stop`` is set, then stops both. It is not restartable: a new stage resumes from
    the state table.
    """

    def __init__(
        self,
        settings: Settings,
        detector_factory: Callable[[], DetectorLike],
        references: ReferenceStore,
        metrics: DetectMetrics,
        readiness: Readiness,
        *,
        options: FaustOptions | None = None,
        app_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._s = settings
        self._factory = detector_factory
        self._refs = references
        self._m = metrics
        self._ready = readiness
        self._o = options or FaustOptions()
        self._clock = clock
        self.app_id = app_id or f"{settings.consumer.group_id}-detect"
        self._slots: dict[int, _Slot] = {}  # one detector per owned partials partition
        self._recovered = False  # the slots match the assignment
        self._written: dict[str, bytes] = {}  # model -> digest of the last snapshot written
        self._baseline_keys: dict[bytes, tuple[str, str]] = {}
        self._baselines_ready = asyncio.Event()
        self._partitions = 0
        self._replication = 1
        self._app: faust.App | None = None
        self._table: Any = None
        self._alerts_topic: Any = None
        self._fatal: BaseException | None = None
        self._revoked_at: float | None = None
        self._last_full_snapshot = 0.0
        self._state = "new"

    @classmethod
    def from_settings(
        cls, settings: Settings, metrics: Metrics, readiness: Readiness, **kwargs: Any
    ) -> DetectStage:
        """The stage with a real :class:`~driftwire.detector.Detector` and reference store."""
        from driftwire.detector import Detector
        from driftwire.reference import ReferenceStore

        references = ReferenceStore()

        detect_metrics = DetectMetrics(metrics.registry)

        def factory() -> Detector:
            return Detector(
                settings.detect,
                settings.alerts,
                references,
                bucket_ms=int(settings.profile.bucket_seconds * 1000),
                on_evaluation=detect_metrics.evaluated,
            )

        stage = cls(settings, factory, references, detect_metrics, readiness, **kwargs)
        metrics.registry.register(
            DriftScoreCollector(stage.condition_samples, stage.latency_samples)
        )
        return stage

    def condition_samples(self) -> Iterator[ConditionSample]:
        """Every owned detector's conditions, for the drift-score metrics."""
        for detector in list(self.detectors.values()):
            samples = getattr(detector, "condition_samples", None)
            if samples is not None:
                yield from samples()

    def latency_samples(self) -> Iterator[LatencySample]:
        """Every owned detector's latest latency percentiles, for the latency gauge."""
        for detector in list(self.detectors.values()):
            samples = getattr(detector, "latency_samples", None)
            if samples is not None:
                yield from samples()

    @property
    def detectors(self) -> dict[int, DetectorLike]:
        """The detector of every owned partials partition (for the drift-score metrics)."""
        return {p: slot.detector for p, slot in self._slots.items()}

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        if self._state != "new":
            raise RuntimeError(f"DetectStage is {self._state}; it cannot run again")
        self._state = "running"
        finished = asyncio.Event()  # stops the baselines follower
        baselines = asyncio.create_task(self._follow_baselines(finished), name="baselines")
        app: faust.App | None = None
        try:
            self._partitions = await self._check_topics(stop)
            loaded = await self._wait(
                self._baselines_ready, stop, baselines, self._o.baselines_wait_s
            )
            if stop.is_set():
                return
            if not loaded:
                log.warning("baselines topic not read to its end in time; detecting anyway")
            app = self._app = self._build_app(self._partitions)
            if await self._start_app(app, stop):
                self._ready.broker_reachable = True
                await self._supervise(app, baselines, stop)
        finally:
            self._state = "stopped"
            finished.set()
            if app is not None:
                await self._stop_app(app)
            await self._finish(baselines)
            self._ready.details["detect_partitions"] = 0

    async def _wait(
        self, event: asyncio.Event, stop: asyncio.Event, task: asyncio.Task[None], limit_s: float
    ) -> bool:
        """Wait for ``event``; False after ``limit_s`` or on ``stop``; raise if ``task`` failed."""
        deadline = asyncio.get_running_loop().time() + limit_s
        while not event.is_set() and not stop.is_set():
            if task.done():
                task.result()  # raises its error
                return event.is_set()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=min(left, 0.2))
        return event.is_set()

    async def _start_app(self, app: faust.App, stop: asyncio.Event) -> bool:
        """Start the app; table recovery finishes inside ``app.start()``. False if stopped."""
        started = asyncio.create_task(app.start(), name="faust-start")
        stopping = asyncio.create_task(stop.wait(), name="faust-start-stop")
        try:
            done, _ = await asyncio.wait(
                {started, stopping},
                timeout=self._o.start_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stopping.cancel()
        if started in done:
            started.result()
            log.info(
                "detect stage started",
                extra={"fields": {"app_id": self.app_id, "partitions": self._partitions}},
            )
            return True
        started.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await started
        if stop.is_set():
            return False
        raise TransportError(
            f"detect stage did not start within {self._o.start_timeout_s:.0f}s "
            "(broker unreachable, or changelog recovery stuck: faust-streaming#21)"
        )

    async def _supervise(
        self, app: faust.App, baselines: asyncio.Task[None], stop: asyncio.Event
    ) -> None:
        """Return when ``stop`` is set; raise when the app, recovery or the follower fail."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            if self._fatal is not None:
                raise TransportError(f"detect stage failed: {self._fatal!r}") from self._fatal
            if app.crashed:
                reason = getattr(app, "_crash_reason", None)
                raise TransportError(f"faust app crashed: {reason!r}") from reason
            if baselines.done():
                baselines.result()
                raise TransportError("baselines follower stopped")
            if (
                self._revoked_at is not None
                and loop.time() - self._revoked_at > self._o.recovery_timeout_s
            ):
                raise TransportError(
                    f"rebalance recovery did not finish within {self._o.recovery_timeout_s:.0f}s"
                    " (faust-streaming#21/#532); exiting to be restarted"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)

    async def _stop_app(self, app: faust.App) -> None:
        try:
            await asyncio.wait_for(app.stop(), timeout=self._o.stop_timeout_s)
        except TimeoutError:
            log.error("faust app did not stop within %.0fs; abandoning it", self._o.stop_timeout_s)
        except Exception:
            log.exception("faust app failed while stopping")
        self._ready.broker_reachable = False

    async def _finish(self, task: asyncio.Task[None]) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self._o.stop_timeout_s)
        except TimeoutError:
            log.error("baselines follower did not stop in time; cancelling it")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception:  # already raised by _supervise if it happened while running
            log.debug("baselines follower ended with an error", exc_info=True)

    # -- the faust app ---------------------------------------------------------------------

    async def _check_topics(self, stop: asyncio.Event) -> int:
        """Partitions of the partials topic; the state changelog must have as many.

        Topics are looked up by listing, never described by name: a metadata request naming a
        missing topic makes a broker with ``auto.create.topics.enable`` create it.
        """
        admin = AIOKafkaAdminClient(**self._s.kafka.client_options())
        await admin.start()
        try:
            partials = self._s.topics.partials
            changelog = f"{self.app_id}-{TABLE}-changelog"
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._o.topic_wait_s
            while partials not in await admin.list_topics():
                if stop.is_set():
                    return 0
                if loop.time() > deadline:
                    raise TransportError(
                        f"partials topic {partials!r} does not exist (create it with as many "
                        "partitions as detect workers may ever run)"
                    )
                await asyncio.sleep(1.0)
            names = [partials] + ([changelog] if changelog in await admin.list_topics() else [])
            found = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
            if self._o.replication_factor is None:
                brokers = len((await admin.describe_cluster())["brokers"])
                self._replication = max(1, min(3, brokers))
            else:
                self._replication = self._o.replication_factor
        finally:
            await admin.close()
        n = found[partials]
        if changelog in found and found[changelog] != n:
            raise ConfigError(
                "topics.partials",
                f"{partials!r} has {n} partitions but the state changelog {changelog!r} has "
                f"{found[changelog]}",
                "a model's state must live in the partition of its partials: restore the "
                "partition count, or delete the changelog (the windows then start again)",
            )
        return n

    def _datadir(self) -> str:
        """Where faust keeps its (small) local files: never the working directory."""
        path = Path(self._s.detect.data_dir or Path(tempfile.gettempdir()) / "driftwire")
        path.mkdir(parents=True, exist_ok=True)
        return str(path / self.app_id)

    def _build_app(self, partitions: int) -> faust.App:
        import faust

        s = self._s
        o = self._o
        session_s = s.consumer.session_timeout_ms / 1000
        max_message = o.max_snapshot_bytes + 256 * 1024
        settings: dict[str, Any] = dict(
            broker=broker_urls(s.kafka.bootstrap_servers),
            broker_credentials=faust_credentials(s.kafka),
            broker_client_id=f"{s.kafka.client_id}-detect",
            store="memory://",  # no RocksDB (faust-streaming#543); state lives in the changelog
            web_enabled=False,
            datadir=self._datadir(),
            autodiscover=False,
            topic_replication_factor=self._replication,
            topic_partitions=partitions,
            topic_disable_leader=True,  # no on_leader timers: no leader-election topic
            table_standby_replicas=0,  # standbys would double the memory of the memory store
            consumer_auto_offset_reset="earliest",  # "latest" can stall recovery (faust#651)
            processing_guarantee="at_least_once",  # no transaction markers in the changelog
            producer_acks=-1,
            producer_compression_type="gzip",
            producer_max_request_size=max_message,
            producer_request_timeout=o.alert_timeout_s,  # faust's default is 20 minutes
            broker_session_timeout=session_s,
            broker_heartbeat_interval=max(1.0, session_s / 10),
            broker_request_timeout=session_s + 10,  # faust requires request >= session
            broker_rebalance_timeout=max(60.0, session_s),
            broker_max_poll_interval=s.consumer.max_poll_interval_ms / 1000,
            broker_max_poll_records=200,
            stream_wait_empty=True,  # every event is acked promptly: the agent never blocks
            stream_processing_timeout=o.alert_timeout_s + 30,
        )
        settings.update(o.extra)
        app = faust.App(self.app_id, **settings)
        partials = app.topic(
            s.topics.partials,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self._alerts_topic = app.topic(
            s.topics.alerts,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self._table = app.Table(
            TABLE,
            key_type=bytes,
            value_type=bytes,
            partitions=partitions,
            use_partitioner=True,  # writes outside the agent (timer) go to the model's partition
            on_recover=self._on_recovered,
            extra_topic_configs={"max.message.bytes": str(max_message)},
            help="Detector state per model (windows, frozen references, alert policy)",
        )

        async def detect(stream: faust.StreamT[bytes]) -> None:
            async for event in stream.events():
                await self._on_record(event.value, event.message.partition)

        app.agent(partials, name=f"{self.app_id}.detect")(detect)
        app.timer(o.tick_interval_s, name=f"{self.app_id}.tick")(self._on_tick)
        app.on_partitions_revoked.connect(self._on_revoked)
        return app

    # -- processing ------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _on_record(self, value: bytes | None, partition: int) -> None:
        """One partials-topic record. Bad input is counted and logged, never raised."""
        now_ms = self._now_ms()
        try:
            record = decode_record(value if value is not None else b"")
        except FormatError as exc:
            self._m.records.labels(type="malformed").inc()
            log.warning(
                "malformed partials record skipped",
                extra={"fields": {"partition": partition, "error": str(exc)[:200]}},
            )
            return
        slot = self._slot(partition)
        try:
            if isinstance(record, Partial):
                self._ensure_restored(slot, record.model)
                alerts = slot.detector.on_partial(record, now_ms)
                slot.models.add(record.model)
                self._m.records.labels(type="partial").inc()
            else:
                self._m.records.labels(type="watermark").inc()
                fresh = slot.new_mark(record)  # a replayed one has nothing new to tell
                alerts = slot.detector.on_watermark(record, now_ms) if fresh else []
        except InputError as exc:
            self._m.records.labels(type="malformed").inc()
            log.warning(
                "partials record with unusable content skipped",
                extra={"fields": {"partition": partition, "error": str(exc)[:200]}},
            )
            return
        except Exception:
            self._m.records.labels(type="failed").inc()
            log.exception(
                "detector failed on a partials record; skipped",
                extra={"fields": {"partition": partition}},
            )
            return
        await self._send_alerts(alerts)
        self._write_snapshots(slot, slot.detector.take_changed())
        self._write_slots(slot)
        self._m.last_progress.set(self._clock())

    def _slot(self, partition: int) -> _Slot:
        slot = self._slots.get(partition)
        if slot is None:  # a record before the recovery callback: not expected, but harmless
            slot = self._slots[partition] = _Slot(self._factory())
        return slot

    async def _on_tick(self) -> None:
        app = self._app
        if app is None or app.rebalancing or not self._recovered:
            return  # the models may be changing hands
        now = self._clock()
        full = now - self._last_full_snapshot >= self._o.snapshot_interval_s
        if full:
            self._last_full_snapshot = now
        for slot in list(self._slots.values()):
            try:
                alerts = slot.detector.tick(int(now * 1000))
            except Exception:
                log.exception("detector tick failed")
                continue
            changed = slot.detector.take_changed()
            if full:  # also what is known of the input partitions
                changed |= slot.models
            await self._send_alerts(alerts)
            self._write_snapshots(slot, changed)
            self._write_slots(slot)
        self._m.last_progress.set(now)

    async def _send_alerts(self, alerts: Iterable[Alert]) -> None:
        """Produce alerts and wait for the broker; a failure stops the stage (at-least-once)."""
        assert self._alerts_topic is not None
        pending: list[tuple[Alert, Awaitable[Any]]] = []
        for alert in alerts:
            key, value, headers = encode(alert, self._s.alerts.source)
            fut = await self._alerts_topic.send(key=key, value=value, headers=headers)
            pending.append((alert, fut))
        for alert, fut in pending:
            try:
                await asyncio.wait_for(fut, timeout=self._o.alert_timeout_s)
            except Exception as exc:
                self._m.alerts_failed.inc()
                log.error(
                    "alert not acknowledged by the broker",
                    extra={
                        "fields": {
                            "fingerprint": alert.fingerprint,
                            "status": alert.status,
                            "summary": alert.summary,
                            "error": repr(exc),
                        }
                    },
                )
                self._fatal = self._fatal or exc
                continue
            self._m.alerts.labels(kind=alert.kind, status=alert.status).inc()

    # -- state -----------------------------------------------------------------------------

    def _state_key(self, model: str) -> bytes:
        return model.encode()

    def _write_snapshots(self, slot: _Slot, models: Iterable[str]) -> None:
        """Write the snapshot of each model whose bytes changed since its last write."""
        bucket_ms = int(self._s.profile.bucket_seconds * 1000)
        for model in sorted(models):
            state = slot.detector.snapshot(model)
            if not state:
                continue
            blob = orjson.dumps(
                {"format": STATE_FORMAT, "model": model, "bucket_ms": bucket_ms, "state": state}
            )
            digest = hashlib.blake2b(blob, digest_size=16).digest()
            if self._written.get(model) == digest:
                continue
            self._m.snapshot_bytes.observe(len(blob))
            if len(blob) > self._o.max_snapshot_bytes:
                self._m.snapshots.labels(result="too_large").inc()
                log.error(
                    "detector state too large for the changelog; not persisted",
                    extra={
                        "fields": {
                            "model": model,
                            "bytes": len(blob),
                            "limit": self._o.max_snapshot_bytes,
                        }
                    },
                )
                continue
            self._table[self._state_key(model)] = blob  # produced to the changelog
            self._written[model] = digest
            self._m.snapshots.labels(result="written").inc()

    def _restore(self, slot: _Slot, model: str, blob: bytes) -> None:
        try:
            doc = orjson.loads(blob)
            if doc.get("format") != STATE_FORMAT:
                raise FormatError(f"unknown state format {doc.get('format')!r}")
            bucket_ms = int(self._s.profile.bucket_seconds * 1000)
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
        self._restore_slots(slot, model)
        slot.models.add(model)
        self._written[model] = hashlib.blake2b(blob, digest_size=16).digest()
        self._m.restores.labels(result="ok").inc()

    def _ensure_restored(self, slot: _Slot, model: str) -> None:
        """On first sight of ``model`` in this detector, load its state from the table."""
        if model in slot.models or self._table is None:
            return
        blob = self._table.get(self._state_key(model))
        if blob:
            self._restore(slot, model, blob)

    def _write_slots(self, slot: _Slot) -> None:
        """Store the slot profiles (trailing / seasonal references) the detector closed.

        Each under its own key, in the partition of its model's state so that it moves with
        it; an expired one is deleted.
        """
        if self._table is None:
            return
        for model, key, blob in slot.detector.closed_slots():
            if blob is not None and len(blob) > self._o.max_snapshot_bytes:
                log.error(
                    "slot profile too large for the changelog; not persisted",
                    extra={"fields": {"model": model, "bytes": len(blob)}},
                )
                continue
            partition = partition_of(model, self._partitions)
            self._table.send_changelog(partition, key, blob, value_serializer="raw")
            if blob is None:
                self._table.data.pop(key, None)
            else:
                self._table.data[key] = blob

    def _restore_slots(self, slot: _Slot, model: str) -> None:
        """Load the stored slot profiles ``model``'s references need (after its state)."""
        for key in slot.detector.slot_keys(model):
            blob = self._table.get(key)
            if not blob:
                continue
            try:
                slot.detector.load_slot(key, blob)
            except FormatError as exc:
                log.warning(
                    "stored slot profile skipped",
                    extra={"fields": {"model": model, "error": str(exc)[:200]}},
                )

    async def _on_revoked(self, sender: Any, /, *args: Any, **kwargs: Any) -> None:
        """Persist what changed since the last write; no ticks until recovery is done."""
        self._m.rebalances.labels(phase="revoked").inc()
        self._recovered = False
        self._revoked_at = asyncio.get_running_loop().time()
        try:
            for slot in self._slots.values():
                self._write_snapshots(slot, slot.models)
                self._write_slots(slot)
        except Exception:
            log.exception("writing detector state on revoke failed")

    async def _on_recovered(self) -> None:
        """After a rebalance: drop lost partitions, restore the models of new ones."""
        try:
            app = self._app
            assert app is not None
            partials = self._s.topics.partials
            owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == partials}
            for lost in set(self._slots) - owned:
                for model in self._slots.pop(lost).models:
                    self._written.pop(model, None)
            new = owned - set(self._slots)
            for partition in new:
                self._slots[partition] = _Slot(self._factory())
            for key, blob in list(self._table.items()):
                if is_slot_key(key):
                    continue  # a slot profile, loaded with its model's state
                model = key.decode()
                partition = partition_of(model, self._partitions)
                if partition in new:
                    self._restore(self._slots[partition], model, blob)
            self._recovered = True
            self._revoked_at = None
            self._m.rebalances.labels(phase="recovered").inc()
            self._m.owned_partitions.set(len(owned))
            self._ready.details["detect_partitions"] = len(owned)
            log.info(
                "detect stage owns partitions",
                extra={
                    "fields": {
                        "partitions": sorted(owned),
                        "new": sorted(new),
                        "models": sum(len(slot.models) for slot in self._slots.values()),
                    }
                },
            )
        except Exception as exc:  # faust would swallow it: fail the stage instead
            log.exception("restoring detector state after a rebalance failed")
            self._fatal = self._fatal or exc

    # -- baselines -------------------------------------------------------------------------

    async def _follow_baselines(self, finished: asyncio.Event) -> None:
        """Read the compacted baselines topic from the beginning, then keep following it."""
        topic = self._s.topics.baselines
        opts = {**self._s.kafka.client_options()}
        opts["client_id"] = f"{self._s.kafka.client_id}-baselines"
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
            loop = asyncio.get_running_loop()
            while not finished.is_set():
                if loop.time() >= next_check:
                    next_check = loop.time() + 30.0
                    found = await self._baseline_partitions(admin, topic)
                    if found - assigned:
                        consumer.assign(sorted(found, key=lambda tp: tp.partition))
                        await consumer.seek_to_beginning(*found)
                        assigned = found
                        if ends is None:
                            ends = await consumer.end_offsets(sorted(found))
                    if not found:
                        self._baselines_ready.set()  # nothing published yet
                if not assigned:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(finished.wait(), timeout=1.0)
                    continue
                batch = await consumer.getmany(timeout_ms=500, max_records=100)
                for records in batch.values():
                    for record in records:
                        self._apply_baseline(record.key, record.value)
                if ends is not None and not self._baselines_ready.is_set():
                    positions = {tp: await consumer.position(tp) for tp in ends}
                    if all(positions[tp] >= end for tp, end in ends.items()):
                        self._baselines_ready.set()
                        log.info("baselines loaded", extra={"fields": {"count": len(self._refs)}})
        finally:
            await consumer.stop()
            await admin.close()

    @staticmethod
    async def _baseline_partitions(admin: AIOKafkaAdminClient, topic: str) -> set[TopicPartition]:
        if topic not in await admin.list_topics():  # describing a missing topic may create it
            return set()
        (described,) = await admin.describe_topics([topic])
        return {TopicPartition(topic, p["partition"]) for p in described["partitions"]}

    def _apply_baseline(self, key: bytes | None, value: bytes | None) -> None:
        from driftwire.reference import Reference, baseline_key

        if value is None:  # tombstone: the baseline was withdrawn
            target = self._baseline_keys.pop(key, None) if key is not None else None
            if target is None and key is not None and b"/" in key:
                model, _, version = key.decode(errors="replace").rpartition("/")
                target = (model, version)
            if target is None:
                self._m.baselines.labels(result="invalid").inc()
                log.warning("baselines tombstone without a model/version key")
                return
            self._refs.remove(*target)
            self._m.baselines.labels(result="removed").inc()
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
            self._baseline_keys[expected] = (ref.model, ref.model_version)
            self._m.baselines.labels(result="loaded").inc()
        self._m.baselines_loaded.set(len(self._refs))
