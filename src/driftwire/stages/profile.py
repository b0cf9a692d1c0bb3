"""Stage 1 on Kafka: an aiokafka consumer-group member around the pure profile core.

The loop reads bounded batches with ``getmany``, decodes them, sends rejected events to the
dead-letter topic, folds valid events into the core, produces what the core says is due
(partials of closed buckets, watermarks), waits for the broker's acknowledgement of all of it
and only then commits offsets, at the point the core says is safe (at-least-once, never
at-most-once). Revoked partitions are flushed before they are given up; SIGTERM stops
fetching, flushes, commits and leaves the group.

aiokafka runs the rebalance listener in the coordinator's task, concurrently with the loop's
``getmany``, and activates a new assignment *before* ``on_partitions_assigned`` runs: records of
a new partition can be returned while the listener still reads its resume point. One lock
serialises the two: the loop holds it while it handles a batch (taken right after ``getmany``
returns, with no await in between), the listener while it flushes and commits revoked
partitions or sets up assigned ones. So a batch fetched before a revoke is folded, emitted and
committed before the partition is given up, and records of a new partition wait for its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from operator import attrgetter
from typing import TYPE_CHECKING

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CommitFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.structs import OffsetAndMetadata

from driftwire.decode.deadletter import SourceRecord, dead_letter_headers, fit_dead_letter
from driftwire.decode.decoder import REASONS, decode_batch
from driftwire.decode.limits import DecoderLimits
from driftwire.errors import BrokerSetupError
from driftwire.ops.config import Settings
from driftwire.ops.health import Liveness, Readiness, failure_line
from driftwire.ops.lifecycle import Lifecycle
from driftwire.ops.metrics import Metrics
from driftwire.profiling.partitions import OutRecord, ProfileCore, Resume
from driftwire.stages._fetch import FetchedRecord, RecordIntake, open_intake
from driftwire.stages.compression import output_producer_options
from driftwire.stages.profile_core import count_emitted, count_folded
from driftwire.stages.profile_txn import PartitionTransactions

if TYPE_CHECKING:
    from prometheus_client import Counter

log = logging.getLogger(__name__)

STAGE = "profile"

_VALUE = attrgetter("value")
_OFFSET = attrgetter("offset")

#: failures of the rebalance listener that the worker reports as one line naming the fix
#: (a missing ACL, a broker without a transaction coordinator), not with aiokafka's traceback
EXPLAINED = (
    BrokerSetupError,
    TransactionalIdAuthorizationFailed,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)


def _numbers(partitions: list[TopicPartition]) -> list[int]:
    return sorted(tp.partition for tp in partitions)


def _names(partitions: list[TopicPartition]) -> str:
    """``events[0,1,2]``, topic by topic."""
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return " ".join(f"{t}[{','.join(map(str, sorted(p)))}]" for t, p in sorted(by_topic.items()))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, stage: ProfileStage) -> None:
        self._stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._stage.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._stage.on_assigned(assigned)


class ProfileStage:
    """The profile stage of one worker process.

    Lifecycle: ``await run(stop)`` starts the clients, loops until ``stop`` is set, then
    flushes, commits and closes. It is not restartable. A stop (SIGTERM) finishes the batch in
    hand, flushes, commits and leaves the group within ``consumer.shutdown_timeout_seconds``,
    also when the broker is gone.
    """

    TOPIC_POLL_S = 1.0  # how often a missing input topic is looked for
    TOPIC_LOG_S = 5.0  # how often the wait for it is logged
    CLOSE_MIN_S = 1.0  # each client's close gets at least this, after the stop bound too

    def __init__(
        self,
        settings: Settings,
        core: ProfileCore,
        metrics: Metrics,
        readiness: Readiness,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._s = settings
        self._core = core
        self._m = metrics
        self._ready = readiness
        self._clock = clock
        self._limits = DecoderLimits(
            max_event_bytes=settings.profile.max_event_bytes,
            max_features=settings.profile.max_features,
        )
        self._topic = settings.topics.events
        self._group = settings.consumer.group_id
        self.liveness = Liveness(timeout_s=settings.http.liveness_timeout_seconds)
        self._consumer: AIOKafkaConsumer | None = None
        self._intake: RecordIntake | None = None  # None: plain getmany
        self._producer: AIOKafkaProducer | None = None
        # exactly-once: one transactional producer per owned input partition instead
        self._txn: PartitionTransactions | None = None
        self._exactly_once = settings.processing.guarantee == "exactly_once"
        self._admin: AIOKafkaAdminClient | None = None
        self._inflight: list[Awaitable[object]] = []
        self._output_failure: BaseException | None = None  # a send the broker refused
        self._partials_partitions: list[int] = []
        self._last_commit_s = 0.0
        self._lock = asyncio.Lock()  # the loop's batch handling vs. the rebalance listener
        self._listener_failure: BaseException | None = None
        self._life = Lifecycle("profile stage")
        self._stop_deadline: float | None = None  # the loop time by which a stop must be done
        self._lag = 0  # total lag of the assigned partitions at the last batch
        for reason in REASONS:  # every reason is a series from the start, at 0
            metrics.events_invalid.labels(reason=reason)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._life.start()
        s = self._s
        opts = s.kafka.client_options()
        if self._exactly_once:
            self._txn = PartitionTransactions(
                opts,
                group=self._group,
                topic=self._topic,
                timeout_ms=round(s.processing.transaction_timeout_seconds * 1000),
                coordinator_timeout_s=s.processing.coordinator_timeout_seconds,
            )
        else:
            self._producer = AIOKafkaProducer(
                **opts,
                **output_producer_options(),
            )
        self._consumer = AIOKafkaConsumer(
            **opts,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset=s.consumer.auto_offset_reset,
            max_poll_interval_ms=s.consumer.max_poll_interval_ms,
            session_timeout_ms=s.consumer.session_timeout_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self._admin = AIOKafkaAdminClient(**opts)
        self._ready.waiting[STAGE] = "partition assignment"
        try:  # clients that never started are closed too
            if self._producer is not None:
                await self._producer.start()
            await self._admin.start()
            await self._consumer.start()
            self._intake = open_intake(self._consumer, log, STAGE)
            self._ready.broker_reachable = True
            if await self._wait_for_topic(stop):
                self._consumer.subscribe([self._topic], listener=_Rebalance(self))
                await self._run_until_stopped(stop)
        except Exception as exc:
            self._ready.failed = self._ready.failed or f"profile stage failed: {failure_line(exc)}"
            raise
        finally:
            await self._close_clients()
            self._ready.broker_reachable = False
            self._life.stop()

    async def _wait_for_topic(self, stop: asyncio.Event) -> bool:
        """Wait visibly until the input topic exists: False if stopped first.

        aiokafka refreshes the metadata of a subscribed topic that does not exist only every
        ``metadata_max_age_ms`` (5 minutes), silently; this asks every
        :attr:`TOPIC_POLL_S` and says so every :attr:`TOPIC_LOG_S`.
        """
        if self._admin is None:
            raise self._life.not_started("admin client")
        loop = asyncio.get_running_loop()
        last_log: float | None = None
        waited_from = loop.time()
        while not stop.is_set():
            if self._topic in set(await self._admin.list_topics()):
                if last_log is not None:
                    log.info(
                        f"input topic {self._topic} exists now; joining the consumer group",
                        extra={"fields": {"topic": self._topic}},
                    )
                return True
            now = loop.time()
            if last_log is None or now - last_log >= self.TOPIC_LOG_S:
                last_log = now
                self._ready.waiting[STAGE] = f"input topic {self._topic} to exist"
                log.warning(
                    f"input topic {self._topic} does not exist (topics.events); waiting for it "
                    "(driftwire never creates its input: see the README's topic table)",
                    extra={
                        "fields": {
                            "topic": self._topic,
                            "waited_seconds": round(now - waited_from, 1),
                        }
                    },
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.TOPIC_POLL_S)
        return False

    async def _run_until_stopped(self, stop: asyncio.Event) -> None:
        """Loop until ``stop``; then finish the batch in hand and flush, within the bound."""
        loop_task = asyncio.create_task(self._loop(stop), name="profile-loop")
        stopping = asyncio.create_task(stop.wait(), name="profile-stop")
        watching = asyncio.create_task(self._watch_liveness(), name="profile-liveness")
        try:
            await asyncio.wait({loop_task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            loop_task.cancel()
            raise
        finally:
            stopping.cancel()
            watching.cancel()
        if loop_task.done() and not stop.is_set():
            loop_task.result()  # the loop's failure
        self._stop_deadline = (
            asyncio.get_running_loop().time() + self._s.consumer.shutdown_timeout_seconds
        )
        if await self._bounded(loop_task, "the batch in hand"):
            await self._bounded(asyncio.create_task(self._flush_all()), "the flush")

    async def _watch_liveness(self) -> None:
        """Judge liveness every second from outside the loop, so that a loop blocked in a
        batch (a commit, a send, a rebalance listener) is seen as stuck too."""
        while True:
            await asyncio.sleep(1.0)
            self._ready.stuck = self.liveness.stuck(self._clock(), self._ready.assigned, self._lag)

    def _remaining(self) -> float:
        now = asyncio.get_running_loop().time()
        if self._stop_deadline is None:
            self._stop_deadline = now + self._s.consumer.shutdown_timeout_seconds
        return max(0.0, self._stop_deadline - now)

    async def _bounded(self, task: asyncio.Task[None], what: str) -> bool:
        """Wait for ``task`` until the stop deadline; cancel it then (False)."""
        done, _ = await asyncio.wait({task}, timeout=self._remaining())
        if task in done:
            task.result()
            return True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        log.error(
            f"stopping: {what} did not finish within "
            f"{self._s.consumer.shutdown_timeout_seconds:g} s (consumer.shutdown_timeout_seconds;"
            " is the broker reachable?); events not committed are read again by the next owner",
            extra={"fields": {"stage": STAGE}},
        )
        return False

    async def _close_clients(self) -> None:
        """Stop the clients (leave the group), each within what is left of the stop bound
        (at least :attr:`CLOSE_MIN_S`); a client that does not close by then is abandoned."""
        closers: list[tuple[str, Callable[[], Awaitable[None]] | None]] = [
            ("consumer", self._consumer.stop if self._consumer else None),
            ("admin client", self._admin.close if self._admin else None),
            ("producer", self._producer.stop if self._producer else None),
            ("transactional producers", self._txn.close_all if self._txn else None),
        ]
        for name, close in closers:
            if close is None:
                continue
            task = asyncio.ensure_future(close())
            done, _ = await asyncio.wait({task}, timeout=max(self.CLOSE_MIN_S, self._remaining()))
            if task in done and not task.cancelled() and task.exception() is None:
                continue
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            log.warning(
                f"stopping: the {name} did not close cleanly in time; abandoning it",
                extra={"fields": {"stage": STAGE}},
            )

    async def _loop(self, stop: asyncio.Event) -> None:
        if self._consumer is None:
            raise self._life.not_started("consumer")
        c = self._s.consumer
        while not stop.is_set():
            data: dict[TopicPartition, list[FetchedRecord]]
            if self._intake is not None:
                data = await self._intake.getmany(
                    timeout_ms=c.fetch_timeout_ms, max_records=c.max_batch_records
                )
            else:
                data = await self._consumer.getmany(
                    timeout_ms=c.fetch_timeout_ms, max_records=c.max_batch_records
                )
            self.liveness.begin(self._clock())
            async with self._lock:  # no await before: see the module docstring
                await self._handle(data)
            self.liveness.end(self._clock())

    async def _handle(self, data: dict[TopicPartition, list[FetchedRecord]]) -> None:
        if self._consumer is None:
            raise self._life.not_started("consumer")
        if self._listener_failure is not None:
            raise self._listener_failure
        started = time.perf_counter()
        now_ms = int(self._clock() * 1000)
        for tp, records in data.items():
            if not self._core.owns(tp.partition):
                # Its state was dropped after a failed commit and the rebalance that follows
                # has not revoked it yet: read these records again if it stays assigned.
                if tp in self._consumer.assignment():
                    self._consumer.seek(tp, records[0].offset)
                continue
            await self._process(tp, records, now_ms)
        for tp in self._consumer.assignment():
            self._core.note_position(
                tp.partition, await self._consumer.position(tp), self._consumer.highwater(tp)
            )
        await self._emit(count_emitted(self._m, self._core.due(now_ms)))
        await self._settle(force=False)
        self._m.batch_duration.observe(time.perf_counter() - started)
        if data:
            self.liveness.progress(self._clock())
            self._m.last_progress.set(self._clock())
        await self._watch_lag()

    async def _send(
        self,
        source: int,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[object]:
        """Send a record caused by input partition ``source``: in its transaction with
        exactly-once, else with the shared idempotent producer."""
        if self._txn is not None:
            return await self._txn.send(
                source, topic, value, key=key, partition=partition, headers=headers or ()
            )
        if self._producer is None:
            raise self._life.not_started("producer")
        fut: asyncio.Future[object] = await self._producer.send(
            topic, value=value, key=key, partition=partition, headers=headers
        )
        return fut

    async def _process(self, tp: TopicPartition, records: list[FetchedRecord], now_ms: int) -> None:
        values: list[bytes | None] = list(map(_VALUE, records))
        self._m.events_consumed.labels(topic=tp.topic).inc(len(values))
        batch = decode_batch(values, self._limits)
        for rejection in batch.rejections:
            record = records[rejection.index]
            headers = dead_letter_headers(
                rejection,
                SourceRecord(tp.topic, tp.partition, record.offset, record.timestamp),
                group=self._group,
                stage=STAGE,
                now_ms=now_ms,
                original=tuple(record.headers or ()),
            )
            value, headers = fit_dead_letter(record.key, record.value, headers)
            if value is not record.value:
                self._m.dead_letters_truncated.inc()
            fut = await self._send(
                tp.partition,
                self._s.topics.dead_letter_topic,
                value,
                key=record.key,
                headers=list(headers),
            )
            fut.add_done_callback(_count_when_acknowledged(self._m.dead_letters))
            self._inflight.append(fut)
            self._m.events_invalid.labels(reason=rejection.reason).inc()
        offsets = np.fromiter(map(_OFFSET, records), dtype=np.int64, count=len(records))
        count_folded(self._m, self._core.process(tp.partition, batch, offsets[batch.index], now_ms))
        self._core.note_position(tp.partition, records[-1].offset + 1)

    async def _emit(self, outputs: list[OutRecord]) -> None:
        if not outputs:
            return
        if not self._partials_partitions:
            if self._txn is not None:
                parts = await self._txn.partitions_for(self._s.topics.partials)
            elif self._producer is not None:
                parts = await self._producer.partitions_for(self._s.topics.partials)
            else:
                raise self._life.not_started("producer")
            self._partials_partitions = sorted(parts)
        barriers: list[asyncio.Future[object]] = []
        for out in outputs:
            targets = self._partials_partitions if out.broadcast else [None]
            if out.source is None:
                raise ValueError("a record of the profile core without its input partition")
            if barriers and not out.barrier:
                await _acknowledged(barriers)
            for partition in targets:
                fut = await self._send(
                    out.source,
                    self._s.topics.partials,
                    out.value,
                    key=out.key,
                    partition=partition,
                    headers=list(out.headers),
                )
                self._inflight.append(fut)
                if out.barrier and self._txn is not None:
                    # another input partition's producer may send the next record: only an
                    # acknowledgement puts this one before it in the log
                    barriers.append(fut)
                if out.broadcast:
                    fut.add_done_callback(_retrieve)
                else:
                    fut.add_done_callback(_count_when_acknowledged(self._m.partials))
        await _acknowledged(barriers)

    async def _settle(self, *, force: bool) -> None:
        """Commit what the core says is safe, once every acknowledgement is in.

        Acknowledgements are awaited only before a commit (at most once a second unless
        ``force``): waiting for them after every fetch would add the producer's linger and a
        broker round trip to every batch.
        """
        if self._consumer is None:
            raise self._life.not_started("consumer")
        now = self._clock()
        if not force and now - self._last_commit_s < 1.0:
            return
        if self._output_failure is not None:
            raise self._output_failure  # never commit past output that failed
        if self._inflight:
            awaited = len(self._inflight)
            results = await asyncio.gather(*self._inflight[:awaited], return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                # Sticky: a revoke waiting on the lock must not commit past these records
                # either; the events are re-read by the next owner (or after the restart).
                self._output_failure = failed[0]
                raise failed[0]
            del self._inflight[:awaited]
        self._last_commit_s = now
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp in self._consumer.assignment():
            point = self._core.commit_point(tp.partition)
            if point is not None:
                offsets[tp] = OffsetAndMetadata(point.offset, point.metadata)
        if self._txn is not None:
            await self._commit_transactions(offsets)
            return
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
            self._m.commits.labels(result="ok").inc()
        except CommitFailedError:
            # the group moved on without us: the new owner re-reads from its last commit
            self._m.commits.labels(result="failed").inc()
            log.warning("commit failed after a rebalance; dropping in-flight state")
            for tp in offsets:
                self._core.revoke(tp.partition)

    async def _commit_transactions(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Exactly-once: commit each owned partition's output with its offsets."""
        if self._txn is None:
            raise self._life.not_started("transactional producers")
        for partition in self._txn.partitions:
            tp = TopicPartition(self._topic, partition)
            if await self._txn.commit(partition, offsets.get(tp)):
                self._m.commits.labels(result="ok").inc()
            else:  # fenced: the group moved on without us
                self._m.commits.labels(result="failed").inc()
                self._core.revoke(partition)

    async def _flush_all(self) -> None:
        if self._consumer is None:
            raise self._life.not_started("consumer")
        async with self._lock:
            parts = [tp.partition for tp in self._consumer.assignment()]
            await self._emit(self._flush(parts))
            await self._settle(force=True)

    def _flush(self, partitions: list[int]) -> list[OutRecord]:
        """Every open bucket of ``partitions``, as records (overflow counted on the way)."""
        return [out for p in partitions for out in count_emitted(self._m, self._core.flush(p))]

    async def _watch_lag(self) -> None:
        if self._consumer is None:
            raise self._life.not_started("consumer")
        assigned = self._consumer.assignment()
        total = 0
        for tp in assigned:
            end = self._consumer.highwater(tp)
            if end is None:
                continue
            lag = max(0, end - await self._consumer.position(tp))
            total += lag
            self._m.consumer_lag.labels(self._group, tp.topic, str(tp.partition)).set(lag)
        self._ready.assigned = len(assigned)
        self._lag = total
        self._ready.stuck = self.liveness.stuck(self._clock(), len(assigned), total)

    # -- rebalances ------------------------------------------------------------------------

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        self._m.rebalances.labels(phase="revoked").inc()
        if not revoked:
            return
        log.info(
            f"partitions revoked: {_names(revoked)}",
            extra={"fields": {"stage": STAGE, "partitions": _numbers(revoked)}},
        )
        async with self._lock:
            try:
                # Commit what is already acknowledged first: if the group has moved on without
                # this member, that commit fails and drops the state, so no partial is flushed
                # that no commit covers (the next owner would emit its events again).
                await self._settle(force=True)
                await self._emit(self._flush([tp.partition for tp in revoked]))
                await self._settle(force=True)
            except Exception as exc:
                if not isinstance(exc, KafkaError) and exc is not self._output_failure:
                    raise
                log.exception("flush on revoke failed; the next owner re-reads uncommitted events")
            for tp in revoked:
                self._core.revoke(tp.partition)
                self._m.consumer_lag.remove(self._group, tp.topic, str(tp.partition))
                if self._txn is not None:  # aborts what a failed flush left open
                    await self._txn.close(tp.partition)

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        self._m.rebalances.labels(phase="assigned").inc()
        self._m.assigned_partitions.set(len(assigned))
        async with self._lock:
            try:
                if self._txn is not None:
                    # first: registering each partition's transactional id aborts (or
                    # completes) what its previous owner left open, so the committed offsets
                    # read next are final
                    for tp in assigned:
                        await self._txn.open(tp.partition)
                committed = await self._committed(assigned)
            except Exception as exc:
                # aiokafka only logs a listener's failure; without their resume points the
                # partitions must not be consumed, so the loop raises it (the worker restarts)
                self._listener_failure = exc
                if isinstance(exc, EXPLAINED):
                    return  # the worker ends with one line naming the fix: no traceback
                raise
            if self._consumer is None:
                raise self._life.not_started("consumer")
            parts = self._consumer.partitions_for_topic(self._topic) or ()
            self._core.set_partition_count(len(parts))
            for tp in assigned:
                self._core.assign(tp.partition, committed.get(tp))
        self._ready.waiting.pop(STAGE, None)
        log.info(
            f"partitions assigned: {_names(assigned) or 'none (more members than partitions)'}",
            extra={"fields": {"stage": STAGE, "partitions": _numbers(assigned)}},
        )

    async def _committed(self, partitions: list[TopicPartition]) -> dict[TopicPartition, Resume]:
        """Committed offsets and their metadata (the core's resume point) for ``partitions``."""
        if self._admin is None:
            raise self._life.not_started("admin client")
        if not partitions:
            return {}
        found = await self._admin.list_consumer_group_offsets(self._group, partitions=partitions)
        return {
            tp: Resume.from_metadata(om.offset, om.metadata)
            for tp, om in found.items()
            if om is not None and om.offset >= 0
        }


async def _acknowledged(futures: list[asyncio.Future[object]]) -> None:
    """Wait until the broker has answered every send in ``futures`` (and empty it). A refusal
    is not raised here: the futures are in flight, and the next commit raises it."""
    if futures:
        await asyncio.wait(futures)
        futures.clear()


def _retrieve(fut: asyncio.Future[object]) -> None:
    """A done-callback that marks a send's refusal as seen: the next commit raises it, but if
    the stage stops first (another refusal), asyncio would log it as never retrieved when the
    future is collected, after the stage's one line."""
    if not fut.cancelled():
        fut.exception()


def _count_when_acknowledged(counter: Counter) -> Callable[[asyncio.Future[object]], None]:
    """A done-callback for a send that counts it once the broker has acknowledged it."""

    def done(fut: asyncio.Future[object]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            counter.inc()

    return done
