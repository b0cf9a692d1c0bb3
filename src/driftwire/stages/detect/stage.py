"""Stage 2 on Kafka: a faust-streaming app around the pure
:class:`~driftwire.detect.detector.Detector`.

One agent reads the partials topic (raw bytes), feeds partials and watermarks to the detector,
produces every alert it returns to the alerts topic (key = fingerprint, CloudEvents ``ce_*``
headers) and writes the snapshot of every model whose state changed into a Faust table on the
in-memory store, whose changelog topic lets a restarted or rebalanced worker resume its windows.
A Faust timer calls :meth:`Detector.tick` every second. A plain aiokafka consumer (no group)
reads the compacted baselines topic from the beginning and keeps following it, loading
baselines into the :class:`~driftwire.detect.reference.ReferenceStore` the detector reads.

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

This module holds the stage's lifecycle and record processing; its collaborators are
``driftwire.stages.detect._faust`` (faust options, credentials, app settings, the topic check),
``driftwire.stages.detect._slots`` (the detector of each partition),
``driftwire.stages.detect._table``
(snapshots and slot profiles in the table, and their restore) and
``driftwire.stages.detect._baselines`` (the baselines follower).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

from driftwire.alerts.alert import Alert, encode
from driftwire.detect.intake import IntakeLimits, InvalidPartial, Rejected, admit
from driftwire.detect.samples import ConditionSample, LatencySample, ReferenceSample
from driftwire.detect.status import ConditionStatus, ModelStatus
from driftwire.errors import AuthorizationError, InputError, TransportError
from driftwire.ops.config import Settings
from driftwire.ops.health import Readiness, failure_line
from driftwire.ops.lifecycle import Lifecycle
from driftwire.ops.metrics import DetectMetrics, DriftScoreCollector, Metrics
from driftwire.partials import Partial
from driftwire.stages.consumer_stop import cancelled_from_outside
from driftwire.stages.detect._access import AuthorizationWatch
from driftwire.stages.detect._baselines import BaselinesFollower
from driftwire.stages.detect._commit_watch import CommitWatch
from driftwire.stages.detect._consumer import commit_positions, read_committed
from driftwire.stages.detect._faust import (
    FaustOptions,
    app_settings,
    broker_urls,
    check_topics,
    faust_credentials,
    max_message_bytes,
    topic_exists,
)
from driftwire.stages.detect._inputs import InputPartitions
from driftwire.stages.detect._outbox import OutboxEntry
from driftwire.stages.detect._refusals import Refusals
from driftwire.stages.detect._slots import DetectorLike, _Slot, partition_of
from driftwire.stages.detect._table import StateTable, changelog_topic

if TYPE_CHECKING:
    import faust

    from driftwire.detect.detector import Evaluation
    from driftwire.detect.reference import ReferenceStore
    from driftwire.detect.settings import DetectSettings

__all__ = [
    "DetectMetrics",
    "DetectStage",
    "DetectorLike",
    "FaustOptions",
    "broker_urls",
    "faust_credentials",
    "partition_of",
]

log = logging.getLogger(__name__)


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
        self._m = metrics
        self._ready = readiness
        self._o = options or FaustOptions()
        self._clock = clock
        self.app_id = app_id or f"{settings.consumer.group_id}-detect"
        self._slots: dict[int, _Slot] = {}  # one detector per owned partials partition
        self._recovered = False  # the slots match the assignment
        self._store = StateTable(
            bucket_ms=int(settings.profile.bucket_seconds * 1000),
            max_bytes=self._o.max_snapshot_bytes,
            metrics=metrics,
        )
        self._baselines = BaselinesFollower(settings, references, metrics)
        self._inputs = InputPartitions(
            settings.kafka.client_options(), settings.topics.events, clock=time.monotonic
        )
        self._partitions = 0
        self._replication = 1
        self._app: faust.App | None = None
        self._alerts_topic: Any = None
        self._refusals = Refusals(
            metrics,
            partials_topic=settings.topics.partials,
            group=self.app_id,
            timeout_s=self._o.alert_timeout_s,
            clock=clock,
        )
        self._fatal: BaseException | None = None
        self._revoked_at: float | None = None
        self._last_full_snapshot = 0.0
        self._late_logged: set[str] = set()  # models whose late partials were logged
        self._commits = CommitWatch(stall_s=self._o.commit_stall_s)
        self._life = Lifecycle("detect stage")
        self._reconfigured = False  # settings reloaded since the factory's

    @classmethod
    def from_settings(
        cls, settings: Settings, metrics: Metrics, readiness: Readiness, **kwargs: Any
    ) -> DetectStage:
        """The stage with a real :class:`~driftwire.detect.detector.Detector` and reference
        store."""
        from driftwire.detect.detector import Detector
        from driftwire.detect.reference import ReferenceStore

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
        collector = DriftScoreCollector(
            stage.condition_samples,
            stage.latency_samples,
            stage.reference_samples,
            max_per_version=settings.http.max_drift_conditions_per_version,
            max_total=settings.http.max_drift_conditions,
        )
        metrics.registry.register(collector)
        metrics.before_scrape.append(collector.snapshot)
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

    def reference_samples(self) -> Iterator[ReferenceSample]:
        """Every owned detector's reference sizes, for the reference gauges."""
        for detector in list(self.detectors.values()):
            samples = getattr(detector, "reference_samples", None)
            if samples is not None:
                yield from samples()

    def status_records(self) -> tuple[list[ModelStatus], list[ConditionStatus]]:
        """Every owned model and condition, for ``/api/v1/status`` (a model lives in one slot)."""
        models: list[ModelStatus] = []
        conditions: list[ConditionStatus] = []
        for detector in list(self.detectors.values()):
            records = getattr(detector, "status_records", None)
            if records is not None:
                m, c = records()
                models += m
                conditions += c
        return models, conditions

    def reconfigure(self, settings: Settings) -> None:
        """Take reloaded settings (``driftwire.ops.reload``: only live keys differ) into every
        detector, and into those made later."""
        self._s = settings
        self._reconfigured = True
        for slot in self._slots.values():
            self._configure(slot.detector)

    def _configure(self, detector: DetectorLike) -> None:
        reconfigure = getattr(detector, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(self._s.detect, self._s.alerts)

    def _new_detector(self) -> DetectorLike:
        detector = self._factory()
        if self._reconfigured:
            self._configure(detector)
        return detector

    @staticmethod
    def _report_small_references(detector: DetectorLike) -> None:
        """Log each reference the detector found too small (it reports each once)."""
        take = getattr(detector, "take_small_references", None)
        for small in take() if take is not None else ():
            log.warning(small.message, extra={"fields": small.fields()})

    def _report_baselines(self, detector: DetectorLike, partition: int | None = None) -> None:
        """Log baselines that match no model, and models frozen while a similar name has a
        baseline (each once); with ``partition``, first check the baselines of the models
        that partition owns (``detect.unmatched_baseline_buckets``)."""
        check = getattr(detector, "check_baselines", None)
        if partition is not None and check is not None and self._partitions:
            partitions = self._partitions
            check(lambda model: partition_of(model, partitions) == partition)
        take = getattr(detector, "take_baseline_notices", None)
        for notice in take() if take is not None else ():
            log.warning(notice.message, extra={"fields": notice.fields()})

    def _count_unmatched_baselines(self) -> None:
        total = 0
        for detector in list(self.detectors.values()):
            unmatched = getattr(detector, "unmatched_baselines", None)
            total += len(unmatched()) if unmatched is not None else 0
        self._m.baselines_unmatched.set(total)

    @property
    def detect_settings(self) -> DetectSettings:
        """The detect settings in force (reloaded ones included), for the report."""
        return self._s.detect

    def last_evaluation(self, model: str, version: str | None) -> Evaluation | None:
        """The last window of ``model`` evaluated against a reference by an owned detector:
        of ``version``, or of the version evaluated most recently (``None``)."""
        for detector in list(self.detectors.values()):
            last = getattr(detector, "last_evaluation", None)
            versions = getattr(detector, "evaluated_versions", None)
            if last is None or versions is None:
                continue
            for v in [version] if version is not None else versions(model)[:1]:
                found: Evaluation | None = last(model, v)
                if found is not None:
                    return found
        return None

    def _count_late_partials(self, detector: DetectorLike) -> None:
        """Export the partials the detector set aside as late (logged once per model)."""
        take = getattr(detector, "take_late_partials", None)
        for model, n in (take() if take is not None else {}).items():
            self._m.late_partials.inc(n)
            if model not in self._late_logged:
                self._late_logged.add(model)
                log.warning(
                    "partials for an already evaluated bucket were not merged",
                    extra={"fields": {"model": model, "count": n}},
                )

    @property
    def detectors(self) -> dict[int, DetectorLike]:
        """The detector of every owned partials partition (for the drift-score metrics)."""
        return {p: slot.detector for p, slot in self._slots.items()}

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._life.start()
        self._ready.waiting["detect"] = "the detect app to start"
        finished = asyncio.Event()  # stops the baselines follower
        baselines = asyncio.create_task(self._baselines.run(finished), name="baselines")
        app: faust.App | None = None
        try:
            changelog = changelog_topic(self.app_id)
            topics = await check_topics(self._s, self._o, changelog, stop, app_id=self.app_id)
            if topics is None:
                return  # stopped while waiting for the partials topic
            self._partitions, self._replication = topics
            await self._inputs.start()  # the bound of the partitions records may name
            dead_letters = self._s.topics.dead_letter_topic
            if not await topic_exists(self._s, dead_letters):
                log.warning(
                    "dead-letter topic does not exist: refused partials records are counted "
                    "and logged, not dead-lettered (create it and restart)",
                    extra={"fields": {"topic": dead_letters}},
                )
                self._refusals.missing = True  # never send to a missing topic
            loaded = await self._wait(
                self._baselines.ready, stop, baselines, self._o.baselines_wait_s
            )
            if stop.is_set():
                return
            if not loaded:
                log.warning("baselines topic not read to its end in time; detecting anyway")
            app = self._app = self._build_app(self._partitions)
            with AuthorizationWatch(self.app_id, self._refused).watching():
                if await self._start_app(app, stop):
                    self._ready.broker_reachable = True
                    self._ready.waiting.pop("detect", None)
                    await self._supervise(app, baselines, stop)
        except Exception as exc:
            # /healthz says so from now on, while the app stops (which can take a while)
            self._ready.failed = self._ready.failed or _failure(exc)
            raise
        finally:
            self._life.stop()
            finished.set()
            if app is not None:
                await self._stop_app(app)
            await self._finish(baselines)
            await self._inputs.close()
            self._ready.details["detect_partitions"] = 0

    def _refused(self, error: AuthorizationError) -> None:
        """The broker refused one of the app's reads or writes: end the stage with it."""
        self._fatal = self._fatal or error

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
            if isinstance(self._fatal, AuthorizationError):
                raise self._fatal  # one line: the missing ACL
            if self._fatal is not None:
                raise TransportError(_failure(self._fatal)) from self._fatal
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
            if cancelled_from_outside():
                raise
            # the follower ended cancelled by itself: that must not take the place of the
            # error the stage is ending with (a missing ACL's line was lost that way)
            log.warning("baselines follower ended cancelled while the stage was stopping")
        except Exception:  # already raised by _supervise if it happened while running
            log.debug("baselines follower ended with an error", exc_info=True)

    # -- the faust app ---------------------------------------------------------------------

    def _build_app(self, partitions: int) -> faust.App:
        import faust

        s = self._s
        settings = app_settings(
            s, self._o, app_id=self.app_id, partitions=partitions, replication=self._replication
        )
        app = faust.App(self.app_id, **settings)
        read_committed(app)  # stage 1's exactly-once output: committed partials only
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
        self._refusals.topic = app.topic(
            s.topics.dead_letter_topic,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self._store.create(
            app,
            partitions,
            max_message_bytes=max_message_bytes(self._o),
            on_recover=self._on_recovered,
        )

        async def detect(stream: faust.StreamT[bytes]) -> None:
            async for event in stream.events():
                await self._on_record(event.value, event.message.partition, event.message)

        app.agent(partials, name=f"{self.app_id}.detect")(detect)
        app.timer(self._o.tick_interval_s, name=f"{self.app_id}.tick")(self._on_tick)
        app.on_partitions_revoked.connect(self._on_revoked)
        return app

    # -- processing ------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _intake_limits(self) -> IntakeLimits:
        p, d = self._s.profile, self._s.detect
        ahead_s = p.max_future_seconds + p.bucket_seconds + d.clock_skew_seconds
        return IntakeLimits(
            bucket_ms=int(p.bucket_seconds * 1000),
            max_ahead_ms=int(ahead_s * 1000),
            input_partitions=self._inputs.count,
        )

    async def _on_record(self, value: bytes | None, partition: int, message: Any = None) -> None:
        """One partials-topic record. A record that fails the intake checks
        (:mod:`driftwire.detect.intake`) is dead-lettered and counted before it touches any
        state; other bad input is counted and logged, never raised."""
        now_ms = self._now_ms()
        record = admit(value, now_ms=now_ms, limits=self._intake_limits())
        if (
            isinstance(record, Rejected)
            and record.field in ("source.partition", "source.partitions")
            and self._inputs.count is not None
            and await self._inputs.recheck()  # the events topic may have grown
        ):
            record = admit(value, now_ms=now_ms, limits=self._intake_limits())
        if isinstance(record, Rejected):
            await self._reject(record, value, partition, message, now_ms)
            return
        slot = self._slot(partition)
        try:
            if isinstance(record, Partial):
                self._store.ensure_restored(slot, record.model)
                alerts = slot.detector.on_partial(record, now_ms)
                slot.models.add(record.model)
                self._m.records.labels(type="partial").inc()
            else:
                self._m.records.labels(type="watermark").inc()
                fresh = slot.new_mark(record)  # a replayed one has nothing new to tell
                alerts = slot.detector.on_watermark(record, now_ms) if fresh else []
        except InvalidPartial as exc:
            await self._reject(exc.rejected, value, partition, message, now_ms)
            return
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
        self._report_small_references(slot.detector)
        self._report_baselines(slot.detector)
        self._count_late_partials(slot.detector)
        self._refusals.evaluation_failures(slot.detector)
        await self._send_alerts(partition, slot, alerts)
        self._store.write_parts(slot)
        self._store.write_snapshots(slot, slot.detector.take_changed())
        self._m.last_progress.set(self._clock())

    async def _reject(
        self, rejected: Rejected, value: bytes | None, partition: int, message: Any, now_ms: int
    ) -> None:
        """Dead-letter and count a refused record (``driftwire.stages.detect._refusals``); a
        dead letter the broker does not acknowledge stops the stage, so the record is read
        again after the restart."""
        failed = await self._refusals.dead_letter(rejected, value, partition, message, now_ms)
        if failed is not None:
            self._fatal = self._fatal or failed

    def _slot(self, partition: int) -> _Slot:
        slot = self._slots.get(partition)
        if slot is None:  # a record before the recovery callback: not expected, but harmless
            slot = self._slots[partition] = _Slot(self._new_detector())
        return slot

    async def _on_tick(self) -> None:
        await self._inputs.refresh_if_due()
        app = self._app
        if app is None or app.rebalancing or not self._recovered:
            return  # the models may be changing hands
        now = self._clock()
        self._watch_commits(app, now)
        full = now - self._last_full_snapshot >= self._o.snapshot_interval_s
        if full:
            self._last_full_snapshot = now
        for partition, slot in list(self._slots.items()):
            try:
                alerts = slot.detector.tick(int(now * 1000))
            except Exception:
                log.exception("detector tick failed")
                continue
            self._report_small_references(slot.detector)
            self._refusals.evaluation_failures(slot.detector)
            self._report_baselines(slot.detector, partition)
            changed = slot.detector.take_changed()
            if full:  # also what is known of the input partitions
                changed |= slot.models
            await self._send_alerts(partition, slot, alerts)
            self._store.write_parts(slot)
            self._store.write_snapshots(slot, changed)
        self._count_unmatched_baselines()
        self._m.last_progress.set(now)

    def _watch_commits(self, app: faust.App, now: float) -> None:
        """Export and log (once per episode) partials partitions whose committed offset stands
        still while records past it were read (:mod:`driftwire.stages.detect._commit_watch`)."""
        positions = commit_positions(app.consumer, self._s.topics.partials)
        for partition in self._commits.observe(now, positions):
            committed, read = positions[partition]
            log.warning(
                "stage 2's committed offset stands still while records past it were read; "
                "a restart replays them",
                extra={
                    "fields": {
                        "partition": partition,
                        "committed": committed,
                        "read": read,
                        "seconds": self._commits.stall_s,
                    }
                },
            )
        self._m.commit_stalled.set(len(self._commits.stalled))

    async def _send_alerts(self, partition: int, slot: _Slot, alerts: Iterable[Alert]) -> None:
        """Produce the partition's unacknowledged alerts, then ``alerts``, and wait for the broker.

        Whatever the broker does not acknowledge stays in the slot's outbox, which is written
        to the state table before the snapshots that say the alerts were sent; the stage then
        stops (``_fatal``) and a restarted worker sends the outbox first. Once a send has
        failed, newer alerts join the outbox unsent, so each fingerprint's transitions keep
        their order.
        """
        if self._alerts_topic is None:
            raise self._life.not_started("alerts topic")
        queue = [*slot.outbox, *(self._entry(alert) for alert in alerts)]
        if not queue:
            return
        if self._fatal is not None:
            self._keep(partition, slot, queue)
            return
        pending: list[tuple[OutboxEntry, Awaitable[Any] | BaseException]] = []
        for entry in queue:
            try:
                fut = await self._alerts_topic.send(
                    key=entry.key, value=entry.value, headers=list(entry.headers)
                )
            except Exception as exc:
                pending.append((entry, exc))
                continue
            pending.append((entry, fut))
        failed: list[OutboxEntry] = []
        for entry, fut in pending:
            try:
                if isinstance(fut, BaseException):
                    raise fut
                await asyncio.wait_for(fut, timeout=self._o.alert_timeout_s)
            except Exception as exc:
                self._m.alerts_failed.inc()
                log.error(
                    "alert not acknowledged by the broker; kept to be sent after a restart",
                    extra={
                        "fields": {
                            "fingerprint": entry.fingerprint,
                            "status": entry.status,
                            "error": repr(exc),
                        }
                    },
                )
                self._fatal = self._fatal or exc
                failed.append(entry)
                continue
            self._m.alerts.labels(kind=entry.kind, status=entry.status).inc()
            event = orjson.loads(entry.value)["data"]
            log.info(
                f"alert {entry.status}: {event['annotations'].get('summary', '')}",
                extra={
                    "fields": {
                        "fingerprint": entry.fingerprint,
                        "status": entry.status,
                        "kind": entry.kind,
                        "severity": event["labels"].get("severity"),
                        "model": event["labels"].get("model"),
                        "model_version": event["labels"].get("model_version"),
                    }
                },
            )
        if failed or slot.outbox:
            self._keep(partition, slot, failed)

    def _entry(self, alert: Alert) -> OutboxEntry:
        key, value, headers = encode(alert, self._s.alerts.source)
        return OutboxEntry(key, value, tuple(headers), alert.kind, alert.status)

    def _keep(self, partition: int, slot: _Slot, entries: list[OutboxEntry]) -> None:
        """Make ``entries`` the partition's outbox, in memory and in the state table."""
        slot.outbox = entries
        self._store.write_outbox(partition, entries)
        self._m.alerts_pending.labels(partition=str(partition)).set(len(entries))

    # -- rebalance -------------------------------------------------------------------------

    async def _on_revoked(self, sender: Any, /, *args: Any, **kwargs: Any) -> None:
        """Persist what changed since the last write; no ticks until recovery is done."""
        self._m.rebalances.labels(phase="revoked").inc()
        self._recovered = False
        self._revoked_at = asyncio.get_running_loop().time()
        try:
            for slot in self._slots.values():
                self._store.write_parts(slot)
                self._store.write_snapshots(slot, slot.models)
        except Exception:
            log.exception("writing detector state on revoke failed")

    async def _on_recovered(self) -> None:
        """After a rebalance: drop lost partitions, restore the models of new ones."""
        try:
            app = self._app
            if app is None:
                raise self._life.not_started("Faust app")
            partials = self._s.topics.partials
            owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == partials}
            for lost in set(self._slots) - owned:
                for model in self._slots.pop(lost).models:
                    self._store.forget(model)
                with contextlib.suppress(KeyError):
                    self._m.alerts_pending.remove(str(lost))
            new = owned - set(self._slots)
            for partition in new:
                self._slots[partition] = _Slot(self._new_detector())
            self._store.restore_partitions(self._slots, new)
            for partition in new:
                pending = len(self._slots[partition].outbox)
                self._m.alerts_pending.labels(partition=str(partition)).set(pending)
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


def _failure(exc: BaseException) -> str:
    """The one line ``/healthz`` and the log give for ``exc`` ending the detect stage.

    >>> _failure(TimeoutError())
    'detect stage failed: TimeoutError'
    >>> _failure(TransportError("detect stage: the alerts topic is gone"))
    'detect stage: the alerts topic is gone'
    """
    line = failure_line(exc)
    return line if line.startswith("detect stage") else f"detect stage failed: {line}"
